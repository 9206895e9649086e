"""The training step against the original's: Adam, the learning-rate schedule and the
Polyak update, step by step from the golden checkpoint (tests/golden/README.md,
"Training trajectory")."""

import json
import os
import sys

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.training import Trainer


def test_training_steps_follow_the_originals_trajectory(golden_dir):
    folder = os.path.join(golden_dir, 'train_cifar_small')
    with open(os.path.join(folder, 'config.json')) as f:
        config = json.load(f)
    want = np.load(os.path.join(folder, 'trajectory.npz'))
    options = {k: config[k] for k in ('image_shape', 'nr_resnet', 'nr_filters', 'nr_logistic_mix',
                                      'resnet_nonlinearity', 'num_classes', 'dropout_p')}
    trainer = Trainer(tf.distribute.OneDeviceStrategy('/cpu:0'), options,
                      batch_size=config['batch'], learning_rate=config['learning_rate'],
                      lr_decay=config['lr_decay'], polyak_decay=config['polyak_decay'])
    trainer.start_from(os.path.join(golden_dir, config['source'], 'params_golden.ckpt'))
    start = {name: var.numpy() for name, var in trainer.model.named_weights()}

    losses, rates = [], []
    for images in want['images']:
        _, nll = trainer.train_step(images)
        losses.append(float(nll))
        rates.append(float(trainer.learning_rate.numpy()))
    np.testing.assert_allclose(losses, want['loss_nats'], rtol=1e-4)
    np.testing.assert_allclose(rates, want['learning_rates'], rtol=1e-6)

    # Weights and averages within 1% of how far the weights moved, root of summed squares
    # over all weights (tests/golden/README.md); measured 0.26% / 0.16%. Per variable a
    # float-noise gradient can flip a whole Adam step (measured worst 1.7%, deconv2d_0/V), so
    # each variable is held to 5%: a wrong learning rate, t, beta or order is off by 10-70%.
    averages = dict(zip([n for n, _ in trainer.model.named_weights()], trainer.polyak.shadows))
    moved = off_weights = off_averages = 0.0
    for name, var in trainer.model.named_weights():
        step = np.sum((want['final/' + name] - start[name]) ** 2)
        assert step > 0, name  # every weight moved, so the comparisons below can fail
        off_w = np.sum((var.numpy() - want['final/' + name]) ** 2)
        off_a = np.sum((averages[name].numpy() - want['final_avg/' + name]) ** 2)
        assert max(off_w, off_a) <= 0.05 ** 2 * step, name
        moved, off_weights, off_averages = moved + step, off_weights + off_w, off_averages + off_a
    assert np.sqrt(off_weights / moved) <= 0.01
    assert np.sqrt(off_averages / moved) <= 0.01


def _tiny_trainer():
    from pixel_cnn_pp.config import ModelConfig

    return Trainer(tf.distribute.OneDeviceStrategy('/cpu:0'),
                   ModelConfig((4, 4, 3), nr_resnet=1, nr_filters=4, nr_logistic_mix=1),
                   batch_size=2)


def test_without_tensorflows_internal_optimiser_api_each_device_optimises_as_before(
        monkeypatch):
    from pixel_cnn_pp.training import _optimised_once
    from tensorflow.python import grappler

    spec = [tf.TensorSpec((2, 3), tf.float32)]
    traced = tf.function(lambda x: (tf.nn.relu(x) * 2.0, [x])).get_concrete_function(*spec)
    x = tf.constant([[-1.0, 2.0, 3.0], [4.0, -5.0, 6.0]])
    once = _optimised_once(traced, spec, '/job:localhost/replica:0/task:0/device:CPU:0')
    want = traced(x)
    got = once(x)  # the same structure and numbers
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1][0], want[1][0])
    # A pass in bfloat16 is optimised on each device (a bfloat16 fusion has no CPU kernel).
    half = tf.function(lambda x: tf.cast(tf.nn.relu(tf.cast(x, tf.bfloat16)), tf.float32))
    assert _optimised_once(half.get_concrete_function(*spec), spec,
                           '/job:localhost/replica:0/task:0/device:CPU:0') is None
    monkeypatch.delattr(grappler, 'tf_optimizer')
    monkeypatch.setitem(sys.modules, 'tensorflow.python.grappler.tf_optimizer', None)
    assert _optimised_once(traced, spec, '/job:localhost/replica:0/task:0/device:CPU:0') is None


def _files(folder):
    """{relative path: bytes} of every file under `folder`, and every folder (as None)."""
    out = {}
    for base, dirs, names in os.walk(folder):
        for name in dirs:
            out[os.path.relpath(os.path.join(base, name), folder)] = None
        for name in names:
            with open(os.path.join(base, name), 'rb') as f:
                out[os.path.relpath(os.path.join(base, name), folder)] = f.read()
    return out


def test_a_save_that_fails_on_a_full_disk_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    import pytest

    from pixel_cnn_pp.training import CheckpointWriteError

    trainer = _tiny_trainer()
    manager = tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path), 3,
                                         checkpoint_name='ckpt')
    first = trainer.save(manager, {'epoch': 1})
    before = _files(tmp_path)

    def full_disk(prefix, options=None):
        # What TensorFlow's sharded save leaves when the disk fills up part-way: the
        # temporary folder with part of the data, before any file of ckpt-2 is whole.
        os.makedirs(prefix + '_temp')
        with open(os.path.join(prefix + '_temp', 'part-00000-of-00001.data-00000-of-00001'),
                  'wb') as f:
            f.write(b'\0' * 10)
        # TensorFlow's own text for it (as measured with RLIMIT_FSIZE, "File too large").
        raise tf.errors.ResourceExhaustedError(
            None, None, '{{function_node __wrapped__SaveV2_dtypes_3_device_/job:localhost/'
            'replica:0/task:0/device:CPU:0}} %s_temp/part-00000-of-00001.data-00000-of-00001.'
            'tempstate7253123035670188303; No space left on device [Op:SaveV2]' % prefix)

    monkeypatch.setattr(trainer.checkpoint, '_write', full_disk)  # what manager.save calls
    with pytest.raises(CheckpointWriteError) as error:
        trainer.save(manager, {'epoch': 2})
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert message.startswith('cannot write a checkpoint into %s (' % tmp_path), message
    assert '(No space left on device): ' in message and 'last good checkpoint, %s, is kept' \
        % first in message
    assert '{{' not in message and '[Op:' not in message and '_temp' not in message, message
    assert _files(tmp_path) == before  # no ckpt-2_temp/, the state file still names ckpt-1
    assert tf.train.latest_checkpoint(str(tmp_path)) == first
    assert _tiny_trainer().restore(first) == {'epoch': 1}


def test_restoring_a_truncated_checkpoint_says_it_is_damaged(tmp_path):
    import pytest

    trainer = _tiny_trainer()
    manager = tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path), 3)
    path = trainer.save(manager, {'epoch': 1})
    os.truncate(path + '.data-00000-of-00001', 100)
    with pytest.raises(ValueError, match='checkpoint %s is damaged or truncated \\(Read less '
                                         'bytes than requested\\)' % path):
        _tiny_trainer().restore(path)


_PER_REPLICA = """
    import json
    import numpy as np
    from pixel_cnn_pp import distribute
    devices = distribute.configure_devices(2)
    import tensorflow as tf
    from pixel_cnn_pp.training import Trainer

    trainer = Trainer(distribute.make_strategy(devices),
                      dict(image_shape=(4, 4, 3), nr_resnet=1, nr_filters=4, nr_logistic_mix=1,
                           num_classes=3), batch_size=2)
    # Two global batches of 2 towers x 2 images; image k is filled with the value k.
    images = np.repeat(np.arange(8, dtype=np.uint8), 48).reshape(2, 4, 4, 4, 3)
    labels = np.arange(8, dtype=np.int32).reshape(2, 4) % 3
    trainer.initialize(images[0], labels[0])
    received = []
    for x, y in trainer.distribute(lambda: tf.data.Dataset.from_tensor_slices((images, labels))):
        xs, ys = (trainer.strategy.experimental_local_results(v) for v in (x, y))
        received.append([dict(images=t.numpy()[:, 0, 0, 0].tolist(), labels=u.numpy().tolist(),
                              device=t.device) for t, u in zip(xs, ys)])
        trainer.train_step(x, y)
    split = trainer.strategy.experimental_local_results(trainer._split(images[0]))
    # Per tower function: Grappler on at its calls, fused convolutions in its body.
    passes = [[optimise, any(op.type == '_FusedConv2D' for op in f.graph.get_operations())]
              for f, optimise in trainer._traced.values()]
    towers = [[list(a.shape) for a in f.structured_input_signature[0][1:3]
               if isinstance(a, tf.TensorSpec)] for f, _ in trainer._traced.values()]
    print(json.dumps(dict(received=received, devices=devices, towers=towers, passes=passes,
                          split=[t.numpy()[:, 0, 0, 0].tolist() for t in split],
                          split_devices=[t.device for t in split])))
"""


def test_each_tower_receives_only_its_own_images_on_its_device():
    import subprocess
    import sys
    import textwrap

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(_PER_REPLICA)], cwd=root,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=root),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    devices = [tf.DeviceSpec.from_string(d) for d in out['devices']]

    def on(device, i):
        spec = tf.DeviceSpec.from_string(device)
        return (spec.device_type, spec.device_index) == (devices[i].device_type.upper(),
                                                         devices[i].device_index)

    # Tower i of step s receives images [4s + 2i, 4s + 2i + 1] and their labels, on its device.
    assert len(out['received']) == 2
    for s, step in enumerate(out['received']):
        for i, tower in enumerate(step):
            first = 4 * s + 2 * i
            assert tower['images'] == [first, first + 1]
            assert tower['labels'] == [first % 3, (first + 1) % 3]
            assert on(tower['device'], i), (tower['device'], i)
    # A global batch given to train_step is split the same way.
    assert out['split'] == [[0, 1], [2, 3]]
    assert all(on(d, i) for i, d in enumerate(out["split_devices"])), out["split_devices"]
    # What each tower computes is traced for its 2 images (and labels), not the 4 of the step.
    assert [[2, 4, 4, 3], [2]] in out['towers']
    # The forward and backward pass was optimised by Grappler once (its fused convolutions are
    # in the body every tower calls) and each tower's device instantiates it with Grappler
    # off; the update is never optimised.
    assert sorted(out['passes']) == [[False, False], [False, True]]


def test_resumes_across_precisions_write_the_next_number_and_keep_every_older_checkpoint(
        tmp_path):
    # float32 -> float16 -> float16 -> float32, each resuming the newest checkpoint as
    # train.py -r does. A float16 trainer resuming a float32 checkpoint restores the layout
    # without the loss scale; its own save counter then stayed 0 and it wrote ckpt-1 again.
    import hashlib

    from pixel_cnn_pp.config import ModelConfig
    from pixel_cnn_pp.run import RunOutputs

    def digests():
        return {name: hashlib.sha256(data).hexdigest()
                for name, data in _files(tmp_path).items()
                if data is not None and name.startswith('ckpt-')}

    config = ModelConfig((4, 4, 3), nr_resnet=1, nr_filters=4, nr_logistic_mix=1)
    before, latest = {}, None
    for number, precision in enumerate(['float32', 'float16', 'float16', 'float32'], 1):
        trainer = Trainer(tf.distribute.OneDeviceStrategy('/cpu:0'), config, batch_size=2,
                          precision=precision)
        if latest is not None:
            assert trainer.restore(latest) == {'epoch': number - 1, 'name': 'run'}
        outputs = RunOutputs(str(tmp_path), trainer, 'run', sample_batches=0, keep_checkpoints=10)
        latest = outputs.save({'epoch': number})
        assert latest == str(tmp_path / ('ckpt-%d' % number)), (precision, latest)
        assert tf.train.latest_checkpoint(str(tmp_path)) == latest
        after = digests()
        assert {k: v for k, v in after.items() if k in before} == before, precision
        assert len(after) > len(before)  # the new checkpoint's files
        before = after
