"""precision.py: float32 exact and the default, bfloat16 and float16 close to it and still
causal, training and float16's loss scaling, and the scripts' --precision."""

import itertools
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags as absl_flags

import pixel_cnn_pp
from pixel_cnn_pp import loading, precision, training
from pixel_cnn_pp.config import ModelConfig
from pixel_cnn_pp.run_folder import RunFolder
from pixel_cnn_pp.training import Trainer
from tests.conftest import random_images
from tests.test_cached_sampler import teacher_forced
from tests.test_checkpoints import _golden
from tests.test_model import assert_autoregressive, fit, scramble_attention, tiny_model
from tests.test_sample_cli import GOLDEN_MODEL, cli, golden_prefix  # noqa: F401 (fixtures)
from tests.test_train import ROOT, data_dir, train  # noqa: F401 (fixture)

# Golden NLLs per image, relative to the original's float32 ones (measured on 2026-12-02,
# all three golden models, averaged and raw weights: worst 4.0e-4 in bfloat16, 6.5e-5 in
# float16); the bound is five times the worst (docs/differences.md gives the bounds).
GOLDEN_RTOL = {'bfloat16': 2e-3, 'float16': 5e-4}


@pytest.mark.parametrize('name', ['cifar_small', 'mnist_small', 'mnist_ac_fork'])
@pytest.mark.parametrize('precision_', ['bfloat16', 'float16'])
def test_golden_nll_in_reduced_precision_within_the_stated_tolerance(golden_dir, name,
                                                                      precision_):
    path, options, expected = _golden(golden_dir, name)
    model = pixel_cnn_pp.load(path, precision=precision_, **options)
    assert model.compute_dtype == getattr(tf, precision_)
    got = model.nll(expected['images'])
    rel = np.abs(got / expected['nll_ema_nats'] - 1)
    assert rel.max() <= GOLDEN_RTOL[precision_], rel
    assert rel.max() > 0  # it did compute in another format (float32 agrees to 3e-7)


def test_float32_is_the_default_and_turns_tf32_off():
    model = pixel_cnn_pp.PixelCNN((8, 8, 1), nr_resnet=1, nr_filters=8)
    assert model.precision == 'float32' and model.compute_dtype == tf.float32
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    pixel_cnn_pp.PixelCNN((8, 8, 1), precision='tf32', nr_resnet=1, nr_filters=8)
    assert tf.config.experimental.tensor_float_32_execution_enabled()
    pixel_cnn_pp.PixelCNN((8, 8, 1), nr_resnet=1, nr_filters=8)
    assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_default_training_steps_run_in_tf32_and_evaluation_in_strict_float32():
    trainer = Trainer(tf.distribute.OneDeviceStrategy('/cpu:0'),
                      ModelConfig((4, 4, 3), nr_resnet=1, nr_filters=4, nr_logistic_mix=1),
                      batch_size=2)
    assert trainer.precision == 'tf32' and trainer.eval_precision == 'float32'
    switch = tf.config.experimental.tensor_float_32_execution_enabled
    seen = {}

    def recording(name, compiled):  # the TF32 switch whenever the compiled step runs
        def run(*args):
            seen.setdefault(name, []).append(switch())
            return compiled(*args)
        return run

    trainer._train_fn = recording('train', trainer._train_fn)
    trainer._test_fn = recording('test', trainer._test_fn)
    images = random_images(3, (4, 4, 3))
    trainer.initialize(images[:2])
    assert not switch()  # off outside the steps
    trainer.train_step(images[:2])
    assert not switch()
    trainer.evaluate(images)  # two batches
    trainer.averaged_model()  # samples: strict float32 too
    assert not switch()
    trainer.train_step(images[:2])
    assert seen == {'train': [True, True], 'test': [False, False]}
    # Asked for: strict float32 steps, TF32 evaluation.
    strict = Trainer(trainer.strategy, trainer.model.config, batch_size=2, precision='float32',
                     eval_precision='tf32')
    strict._train_fn = recording('strict train', strict._train_fn)
    strict._test_fn = recording('tf32 test', strict._test_fn)
    strict.train_step(images[:2])
    strict.evaluate(images[:2])
    assert seen['strict train'] == [False] and seen['tf32 test'] == [True]


def test_train_py_trains_in_tf32_by_default_and_sample_py_in_strict_float32():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--help'],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    text = ' '.join(result.stdout.split())
    help_ = text[text.index('--precision:'):]
    assert help_[:help_.index('(default:')].count('tf32 (the default') == 1
    assert help_[help_.index('(default:'):].startswith("(default: 'tf32')")
    # sample.py (and compress.py) keep the shared definition's strict float32.
    assert absl_flags.FLAGS['precision'].default == 'float32'


def test_unknown_precision_is_refused_naming_the_argument():
    with pytest.raises(ValueError, match="'precision' must be one of float32, tf32, bfloat16, "
                                         "float16; got 'float8'"):
        pixel_cnn_pp.PixelCNN((8, 8, 1), precision='float8')
    with pytest.raises(ValueError, match="'eval_precision' must be one of"):
        _trainer(eval_precision='half')


@pytest.mark.parametrize('add_coords,non_local,conditional',
                         list(itertools.product([False, True], repeat=3)))
def test_bfloat16_output_ignores_future_pixels_for_every_option(add_coords, non_local,
                                                                conditional):
    shape = (8, 8, 3) if conditional else (8, 8, 1)
    model = tiny_model(shape, add_coords=add_coords, non_local=non_local, nl_levels=(0, 1, 2),
                       num_classes=3 if conditional else 0, precision='bfloat16')
    if non_local:
        scramble_attention(model)
    assert_autoregressive(model, labels=np.array([1, 2]) if conditional else None,
                          positions=[0, 9, 36, 63], seed=1)


def test_bfloat16_cached_sampler_is_the_bfloat16_network():
    model = tiny_model((8, 8, 3), num_classes=3, non_local=True, nl_levels=(1,),
                       precision='bfloat16')
    scramble_attention(model)
    images, labels = random_images(2, (8, 8, 3), seed=5), np.array([0, 2])
    cached, sampler = teacher_forced(model, images, labels)
    assert sampler._x.var.dtype == tf.bfloat16  # the caches hold bfloat16 activations
    full = model.forward(model.scale_images(images), model.one_hot(labels)).numpy()
    assert full.dtype == np.float32
    # The same bfloat16 arithmetic in another order (matmuls for convolutions): measured
    # 1.2% of the output's scale; float32 agrees to 1e-5.
    assert np.abs(cached - full).max() <= 0.05 * np.abs(full).max()
    samples = model.sample(2, labels=labels, seed=0)
    assert samples.shape == (2, 8, 8, 3) and samples.dtype == np.uint8


def _trainer(precision_='float32', shape=(8, 8, 3), **kwargs):
    return Trainer(tf.distribute.OneDeviceStrategy('/cpu:0'),
                   ModelConfig(shape, nr_resnet=1, nr_filters=8, nr_logistic_mix=2,
                               dropout_p=0.0),
                   batch_size=8, learning_rate=2e-3, seed=0, precision=precision_, **kwargs)


def test_a_bfloat16_training_step_lowers_the_loss_like_float32s():
    images = random_images(8, (8, 8, 3), seed=6)
    _, _, full = fit(images, steps=10, learning_rate=2e-3)
    model, _, half = fit(images, steps=10, learning_rate=2e-3, precision='bfloat16')
    assert model.compute_dtype == tf.bfloat16
    assert all(w.dtype == tf.float32 for w in model.weights)
    assert full[-1] < 0.97 * full[0] and half[-1] < 0.97 * half[0], (full, half)
    # The same start (the init runs in float32) and the same course, to bfloat16's noise
    # (measured: 0.3% apart at the first step on noise images; float32 repeats exactly).
    assert abs(half[0] / full[0] - 1) < 1e-2, (half[0], full[0])
    assert abs(half[-1] / full[-1] - 1) < 2e-2, (half[-1], full[-1])


def test_trainer_tests_in_float32_whatever_it_trains_in():
    trainer = _trainer('bfloat16')
    assert trainer.model.compute_dtype == tf.bfloat16 and trainer.eval_dtype == tf.float32
    images = random_images(8, (8, 8, 3), seed=6)
    trainer.initialize(images)
    trainer.polyak.copy_to_weights()
    nats, _ = trainer.evaluate(images)
    model = pixel_cnn_pp.PixelCNN(trainer.model.config, seed=0)
    for a, b in zip(model.weights, trainer.weights):
        a.assign(b)
    assert abs(nats / model.nll(images).sum() - 1) < 1e-6


def test_float16_loss_scaling_skips_an_inf_gradient_halves_the_scale_and_resumes(tmp_path):
    images = random_images(8, (8, 8, 3), seed=6)
    trainer = _trainer('float16')
    trainer.initialize(images)
    assert float(trainer.loss_scale.numpy()) == training.INITIAL_LOSS_SCALE
    # The loss is a sum over every pixel (as the original's), so its gradients are large:
    # the first scale overflows float16, and the first steps halve it until one fits.
    scales = []
    for _ in range(20):
        trainer.train_step(images)
        scales.append(trainer.skipped_step())
        if scales[-1] is None:
            break
    assert scales[0] == training.INITIAL_LOSS_SCALE and scales[-1] is None, scales
    assert all(s == training.INITIAL_LOSS_SCALE / 2 ** k for k, s in enumerate(scales[:-1]))
    fits = float(trainer.loss_scale.numpy())
    # A scale of 2^100 is finite in float32 but Inf in float16: every gradient overflows.
    trainer.loss_scale.assign(2.0 ** 100)
    before = [w.numpy() for w in trainer.weights + trainer.polyak.shadows]
    t = float(trainer.optimizer.t.numpy())
    _, nll = trainer.train_step(images)
    assert np.isfinite(float(nll))  # the loss is float32: only the gradient overflowed
    assert trainer.skipped_step() == 2.0 ** 100
    assert float(trainer.loss_scale.numpy()) == 2.0 ** 99
    assert int(trainer.good_steps.numpy()) == 0
    assert float(trainer.optimizer.t.numpy()) == t
    for old, new in zip(before, trainer.weights + trainer.polyak.shadows):
        np.testing.assert_array_equal(old, new.numpy())
    # Back to a workable scale, training goes on; 2000 good steps in a row double it.
    trainer.loss_scale.assign(fits)
    trainer.good_steps.assign(training.LOSS_SCALE_GROWTH - 2)
    trainer.train_step(images)
    assert trainer.skipped_step() is None and int(trainer.good_steps.numpy()) == \
        training.LOSS_SCALE_GROWTH - 1
    assert any(np.any(old != new.numpy()) for old, new in zip(before, trainer.weights))
    trainer.train_step(images)
    assert float(trainer.loss_scale.numpy()) == 2 * fits and int(trainer.good_steps.numpy()) == 0
    trainer.good_steps.assign(7)

    # The scale and the count are in the checkpoint: -r continues with them.
    manager = tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path), 3)
    path = trainer.save(manager, {'epoch': 1})
    resumed = _trainer('float16')
    assert resumed.restore(path) == {'epoch': 1}
    assert float(resumed.loss_scale.numpy()) == 2 * fits and int(resumed.good_steps.numpy()) == 7
    # ... and load in another precision, which has no loss scale.
    assert _trainer('bfloat16').restore(path) == {'epoch': 1}


def test_a_float32_checkpoint_resumes_in_float16_with_a_fresh_scale(tmp_path):
    trainer = _trainer()
    trainer.initialize(random_images(8, (8, 8, 3), seed=6))
    manager = tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path), 3)
    path = trainer.save(manager, {'epoch': 1})
    assert not any(name.startswith('loss_scale') for name, _ in tf.train.list_variables(path))
    resumed = _trainer('float16')
    assert resumed.restore(path) == {'epoch': 1}
    assert float(resumed.loss_scale.numpy()) == training.INITIAL_LOSS_SCALE
    for a, b in zip(trainer.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_run_written_before_precision_existed_restores_in_float16():
    fixture = os.path.join(ROOT, 'tests', 'fixtures', 'run_before_config', 'ckpt-1')
    config = RunFolder.of_checkpoint(fixture).model_config()
    trainer = Trainer(tf.distribute.OneDeviceStrategy('/cpu:0'), config, batch_size=4,
                      precision='float16')
    assert trainer.restore(fixture)['epoch'] == 1
    assert int(trainer.step.numpy()) == 16


def test_train_py_trains_in_bfloat16_and_flags_json_records_it(data_dir, tmp_path):  # noqa: F811
    save_dir = str(tmp_path / 'save')
    result = train('-q', '1', '-n', '8', '-m', '2', '-d', 'folder', '-b', '8', '-u', '8',
                   '-g', '1', '-ns', '0', '-x', '1', '-i', data_dir, '-o', save_dir,
                   '--precision', 'bfloat16')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'warning' not in result.stderr
    assert 'test bits_per_dim' in result.stdout
    with open(os.path.join(save_dir, 'flags.json')) as f:
        invocations = json.load(f)
    text = json.dumps(invocations)
    assert '"precision": "bfloat16"' in text and '"eval_precision": "float32"' in text
    # The checkpoint is float32, and loads in float32.
    model = pixel_cnn_pp.load(save_dir)
    assert all(w.dtype == tf.float32 for w in model.weights)


def test_float16_without_a_gpu_warns_once_naming_bfloat16(tmp_path):
    if tf.config.list_physical_devices('GPU'):
        pytest.skip('this machine has a GPU')
    result = train('-d', 'folder', '-i', str(tmp_path / 'none'), '-o', str(tmp_path / 'save'),
                   '-g', '1', '--precision', 'float16')
    warnings = [line for line in result.stderr.splitlines() if line.startswith('warning:')]
    assert len(warnings) == 1 and 'bfloat16' in warnings[0], result.stderr[-2000:]
    assert result.returncode == 1  # (the data folder is missing: stopped after the warning)


def test_bfloat16_on_a_gpu_before_compute_capability_8_warns_naming_it():
    text = precision.warning('bfloat16', [(7, 0)])  # a V100
    assert text == ('--precision bfloat16 on a GPU of compute capability 7.0: bfloat16 needs '
                    '8.0 or later (A100, H100); before it TensorFlow computes in float32 behind '
                    'casts, slower than float32 itself; use --precision float16 (loss-scaled) '
                    'or float32')
    assert 'capability 7.5:' in precision.warning('bfloat16', [(8, 0), (7, 5), (7, 5)])
    assert precision.warning('bfloat16', [(8, 0), (9, 0)]) is None  # A100, H100
    assert precision.warning('bfloat16', []) is None  # a CPU: bfloat16 is its fast format
    assert precision.warning('float16', [(7, 0)]) is None and precision.warning('tf32', [(7, 0)]) \
        is None
    assert 'use --precision bfloat16 on a CPU' in precision.warning('float16', [])
    assert precision.gpu_capabilities() == [tuple(
        tf.config.experimental.get_device_details(g)['compute_capability'])
        for g in tf.config.list_physical_devices('GPU')]  # [] here


def test_unknown_precision_is_refused_by_the_flag_parser():
    flag_values = absl_flags.FLAGS
    try:
        with pytest.raises(absl_flags.IllegalFlagValueError,
                           match='float32|tf32|bfloat16|float16'.replace('|', r'\|')):
            flag_values(['train.py', '--precision', 'float8'])
        with pytest.raises(absl_flags.IllegalFlagValueError):
            flag_values(['train.py', '--eval_precision', 'int8'])
    finally:
        flag_values.unparse_flags()


def test_sample_py_samples_in_bfloat16(cli, golden_prefix, tmp_path, monkeypatch):  # noqa: F811
    loaded = []
    load = loading.load_with_prefix

    def recording_load(*args, **kwargs):
        loaded.append(load(*args, **kwargs)[0])
        return loaded[-1], args[0]

    monkeypatch.setattr(loading, 'load_with_prefix', recording_load)
    samples = cli('--checkpoint', golden_prefix, *GOLDEN_MODEL, '--num_samples', '2',
                  '--precision', 'bfloat16', '--output', str(tmp_path / 'bf16'))
    assert loaded[0].precision == 'bfloat16'
    assert samples.shape == (2, 32, 32, 3) and samples.dtype == np.uint8
    assert os.path.exists(str(tmp_path / 'bf16.png'))


def test_dropout_drops_the_same_units_in_bfloat16_as_in_float32():
    from pixel_cnn_pp import nn

    seed = tf.constant([3, 4], tf.int32)
    ones = tf.ones([2, 8, 8, 16])
    full = nn._dropout(ones, 0.5, seed).numpy()
    half = nn._dropout(tf.cast(ones, tf.bfloat16), 0.5, seed)
    assert half.dtype == tf.bfloat16
    np.testing.assert_array_equal(tf.cast(half, tf.float32).numpy(), full)
    assert 0.4 < np.mean(full == 0) < 0.6


TWO_TOWERS = '''
import numpy as np
from pixel_cnn_pp import distribute
devices = distribute.configure_devices(2)
from pixel_cnn_pp.config import ModelConfig
from pixel_cnn_pp.training import Trainer
from tests.conftest import random_images
trainer = Trainer(distribute.make_strategy(devices), ModelConfig(
    (8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=2), batch_size=4, precision='float16')
images = random_images(8, (8, 8, 3), seed=1)
trainer.initialize(images)
skipped = []
for _ in range(14):
    trainer.train_step(images)
    skipped.append(trainer.skipped_step() is not None)
print(sum(skipped), int(trainer.optimizer.t.numpy()), float(trainer.loss_scale.numpy()))
'''


def test_float16_loss_scaling_over_two_towers_skips_and_applies_on_both():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, '-c', TWO_TOWERS], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    assert result.returncode == 0, result.stderr[-3000:]
    skipped, t, scale = result.stdout.split()[-3:]
    skipped, t = int(skipped), int(t)
    # Adam's step counter t (from 1) moved once per applied step: skipped + applied = 14.
    assert 0 < skipped < 14 and t == 1 + 14 - skipped, result.stdout
    assert float(scale) == 2.0 ** 15 / 2 ** skipped


def test_compress_py_refuses_a_precision_other_than_float32():
    import compress

    flag_values = absl_flags.FLAGS
    try:
        flag_values.unparse_flags()
        flag_values(['compress.py', '--precision', 'bfloat16', '--compress', 'x.png'])
        with pytest.raises(ValueError, match='--precision bfloat16: compress.py codes in float32 '
                                             'only'):
            compress.arguments_from_flags()
    finally:
        flag_values.unparse_flags()
