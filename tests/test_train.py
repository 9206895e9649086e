"""train.py end to end: towers, outputs, exact resume after SIGKILL, and clear refusals.

Every run is train.py itself in a subprocess (two towers need logical CPU devices
made before TensorFlow starts), on a tiny image-folder data set of 8x8 PNGs with a
tiny model, so the whole file runs in a couple of minutes on 2 CPU cores.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'train.py')

# A tiny model and data set: 64 train images, 2 towers x 4 images = 8 steps per epoch.
MODEL = ['-q', '1', '-n', '8', '-m', '2']
TINY = MODEL + ['-d', 'folder', '-b', '4', '-u', '8', '-g', '2', '-l', '0.004',
                '--polyak_decay', '0.9']
# The same global batch on 1 tower of 8 images: for tests whose subject is not the towers
# (a 1-tower run starts in about half the time: the step is traced for one tower).
ONE_TOWER = TINY[:TINY.index('-b')] + ['-b', '8', '-u', '8', '-g', '1'] + \
    TINY[TINY.index('-g') + 2:]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    """<dir>/train/<class>/*.png and <dir>/test/<class>/*.png: 8x8 RGB stripes, two classes."""
    import imageio.v3 as iio

    root = tmp_path_factory.mktemp('stripes')
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, 8)
    for subset, n in (('train', 32), ('test', 8)):
        for label, name in enumerate(('rows', 'columns')):
            folder = root / subset / name
            folder.mkdir(parents=True)
            for k in range(n):
                colour = rng.integers(0, 56, 3)
                image = (ramp[:, None, None] if label == 0 else ramp[None, :, None]) + colour
                image = np.broadcast_to(image, (8, 8, 3)) + rng.integers(0, 4, (8, 8, 3))
                iio.imwrite(folder / ('%02d.png' % k), image.astype(np.uint8))
    return str(root)


def train(*argv, timeout=300, log_level='2', **env_vars):
    """Run train.py with these flags; returns the CompletedProcess (text output).

    log_level: TF_CPP_MIN_LOG_LEVEL, or None for a user who has not set it; env_vars:
    more environment variables.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=log_level, **env_vars)
    if log_level is None:
        del env['TF_CPP_MIN_LOG_LEVEL']
    return subprocess.run([sys.executable, TRAIN] + [str(a) for a in argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def snapshot(folder):
    """{relative path: sha256} of every file under `folder`."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def one_error_line(result):
    """The single 'train.py: error:' line of a refused run (and no traceback)."""
    assert result.returncode == 1, (result.stdout[-2000:], result.stderr[-2000:])
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith('train.py: error:')]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def checkpoint_values(save_dir):
    """Every value in the latest checkpoint of `save_dir`, but its save counter."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(save_dir))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith('save_counter')}


# The `trained` fixture's run: class-conditional, 2 epochs on 2 towers, samples every epoch.
TRAINED = TINY + ['-c', '-x', '2', '-t', '1']


@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
    """A class-conditional run of 2 epochs on 2 towers, as the end-to-end test runs it."""
    save_dir = str(tmp_path_factory.mktemp('run') / 'save')
    result = train(*TRAINED, '-i', data_dir, '-o', save_dir, PIXELCNN_PROGRESS_SECONDS='0.2')
    assert result.returncode == 0, result.stderr[-3000:]
    return save_dir, result


def test_two_towers_two_epochs_write_every_output_and_the_loss_falls(trained):
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    import imageio.v3 as iio

    import pixel_cnn_pp
    from pixel_cnn_pp import images

    save_dir, result = trained
    assert ('2 towers on 2 logical CPU devices (they share the CPU\'s %d cores); 8 images per '
            'step (4 per tower)' % (os.cpu_count() or 1)) in result.stdout
    files = set(os.listdir(save_dir))
    assert {'flags.json', 'pixelcnn_config.json', 'checkpoint', 'test_bpd_folder.npz',
            'folder_sample0.png', 'folder_sample0.npz', 'folder_sample1.png',
            'folder_sample1.npz', 'folder_sample1_bits.png'} <= files
    assert {'ckpt-1.index', 'ckpt-2.index'} <= files
    # Output into a pipe: plain progress lines every 0.2 s, never a carriage return.
    assert '\r' not in result.stdout + result.stderr
    assert len(re.findall(r'^epoch 1  \[', result.stderr, re.M)) >= 2, result.stderr[-3000:]
    assert not [f for f in files if f.startswith('.')]  # no temporary file left behind

    with np.load(os.path.join(save_dir, 'test_bpd_folder.npz')) as z:
        test_bpd, train_bpd = z['test_bpd'], z['train_bpd']
    assert test_bpd.shape == train_bpd.shape == (2,)
    assert train_bpd[1] < train_bpd[0] and test_bpd[1] < test_bpd[0], (train_bpd, test_bpd)
    lines = re.findall(r'Iteration (\d), time = \d+s, train bits_per_dim = ([\d.]+), '
                       r'test bits_per_dim = ([\d.]+)', result.stdout)
    assert [int(e) for e, _, _ in lines] == [0, 1]
    assert float(lines[1][2]) == pytest.approx(test_bpd[1], abs=1e-4)

    with np.load(os.path.join(save_dir, 'folder_sample1.npz')) as z:
        samples, labels = z['samples'], z['labels']
    assert samples.shape == (8, 8, 8, 3) and samples.dtype == np.uint8  # 1 batch of 2 x 4
    np.testing.assert_array_equal(labels, [0, 1, 0, 1, 0, 1, 0, 1])  # every class in turn

    tags = set()
    for name in os.listdir(os.path.join(save_dir, 'tb')):
        for record in tf.data.TFRecordDataset(os.path.join(save_dir, 'tb', name)):
            tags.update(v.tag for v in event_pb2.Event.FromString(record.numpy()).summary.value)
    assert {'train/bits_per_dim', 'train/learning_rate', 'test/bits_per_dim',
            'train/epoch_bits_per_dim', 'samples'} <= tags

    # The library reads what train.py wrote: the averaged weights of the last checkpoint.
    model = pixel_cnn_pp.load(save_dir)
    assert model.config.nr_filters == 8 and model.num_classes == 2
    # The grid of epoch e is drawn with --seed + e (1 + 1 here) ...
    np.testing.assert_array_equal(samples, model.sample(8, labels, seed=2))
    # ... and shown 16x (8x8 images) under a label: data set, epoch, test bits/dim, seed.
    grid = iio.imread(os.path.join(save_dir, 'folder_sample1.png'))
    tiles = images.upscale(images.tile_images(samples), 16)
    np.testing.assert_array_equal(grid[-tiles.shape[0]:, :tiles.shape[1]], tiles)
    np.testing.assert_array_equal(grid, images.image_grid(
        samples, label=['folder', 'epoch 1', 'test %.3f bits/dim' % test_bpd[1], 'seed 2'],
        scale=16))
    with np.load(os.path.join(save_dir, 'folder_sample0.npz')) as z:
        assert np.isfinite(model.nll(z['samples'], z['labels'])).all()


def test_killed_run_resumes_as_if_never_stopped(data_dir, trained, tmp_path):
    """SIGKILL mid-epoch (likely mid-save: a checkpoint every step), then -r, equals no kill.

    The run that was never stopped is the `trained` fixture's: the same flags (dropout on,
    so the masks must resume too; samples after every epoch, which must not disturb it).
    """
    whole = trained[0]
    flags = TRAINED + ['-i', data_dir]
    killed = str(tmp_path / 'killed')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    # --deterministic: the same numbers as the fixture's run without it (CPU kernels are
    # deterministic anyway), and TensorFlow's determinism accepts every op of a run; -r
    # without the flag keeps it.
    run = subprocess.Popen([sys.executable, TRAIN] + flags + ['-o', killed, '--save_steps', '1',
                                                              '--deterministic'],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        state_file = os.path.join(killed, 'checkpoint')
        deadline = time.time() + 240
        while time.time() < deadline and run.poll() is None:
            if os.path.exists(state_file):
                with open(state_file) as f:
                    numbers = [int(n) for n in re.findall(r'ckpt-(\d+)', f.read())]
                if numbers and max(numbers) >= 10:  # step 10 of 16: into the second epoch
                    break
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)
        assert run.wait() == -signal.SIGKILL, 'the run ended before it could be killed'
    finally:
        run.kill()

    # What a kill during the next save may leave: a half-written checkpoint and state file.
    with open(state_file) as f:
        latest = max(int(n) for n in re.findall(r'ckpt-(\d+)', f.read()))
    for name in ('ckpt-%d.index' % (latest + 1), 'ckpt-%d.data-00000-of-00001' % (latest + 1),
                 'checkpoint.tmp0123456789abcdef'):
        with open(os.path.join(killed, name), 'wb') as f:
            f.write(b'\x00half')
    os.makedirs(os.path.join(killed, 'ckpt-%d_temp' % (latest + 1)), exist_ok=True)

    resumed = train(*flags, '-o', killed, '--save_steps', '1', '-r')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r'resuming from .*ckpt-%d: epoch 1, step \d+' % latest, resumed.stdout), \
        resumed.stdout

    assert '; deterministic kernels;' in resumed.stdout, resumed.stdout  # read back from TF
    with open(os.path.join(killed, 'flags.json')) as f:
        assert [i['flags']['deterministic'] for i in json.load(f)['invocations']] == [True, True]
    want, got = checkpoint_values(whole), checkpoint_values(killed)
    assert set(want) == set(got)
    for name in want:  # weights, averages, Adam moments, step, lr, RNG, data position, history
        if isinstance(want[name], bytes):  # the progress record: position, history (JSON)
            assert got[name] == want[name], name
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7,
                                       err_msg=name)
    with np.load(os.path.join(whole, 'test_bpd_folder.npz')) as a, \
            np.load(os.path.join(killed, 'test_bpd_folder.npz')) as b:
        np.testing.assert_allclose(b['test_bpd'], a['test_bpd'], rtol=1e-6)
        np.testing.assert_allclose(b['train_bpd'], a['train_bpd'], rtol=1e-6)
        assert len(a['test_bpd']) == 2


def test_run_written_before_the_model_config_resumes_as_it_did(data_dir, tmp_path):
    """A checkpoint of the code before issue 12 continues with -r as that code continued it."""
    fixture = os.path.join(ROOT, 'tests', 'fixtures', 'run_before_config')
    with open(os.path.join(fixture, 'expected.json')) as f:
        expected = json.load(f)['resumed_history']
    save_dir = str(tmp_path / 'save')
    shutil.copytree(fixture, save_dir)
    result = train('-q', '1', '-n', '4', '-m', '2', '-d', 'folder', '-b', '4', '-u', '8',
                   '-g', '1', '-l', '0.004', '--polyak_decay', '0.9', '-c', '-nl', '-ns', '0',
                   '-i', data_dir, '-o', save_dir, '-x', '2', '-r')
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r'resuming from .*ckpt-1: epoch 1, step 16', result.stdout), result.stdout
    with np.load(os.path.join(save_dir, 'test_bpd_folder.npz')) as z:
        assert z['epoch'].tolist() == expected['epoch'] == [0, 1]
        np.testing.assert_allclose(z['train_bpd'], expected['train_bpd'], rtol=1e-5)
        np.testing.assert_allclose(z['test_bpd'], expected['test_bpd'], rtol=1e-5)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(trained, tmp_path):
    save_dir = str(tmp_path / 'save')
    shutil.copytree(trained[0], save_dir)
    before = snapshot(save_dir)
    # An absurd learning rate blows the weights up after one step: the next loss is not finite.
    # (Resumed on 1 tower of 8 images instead of 2 of 4: the same global batch, and a faster start.)
    result = train(*ONE_TOWER, '-c', '-i', trained[1].args[trained[1].args.index('-i') + 1],
                   '-o', save_dir, '-x', '3', '-t', '1', '-r', '-l', '1e30')
    assert 'note: resuming with --nr_gpu 1 (the run so far used 2)' in result.stdout
    line = one_error_line(result)
    assert re.search(r'the training loss is (nan|inf|-inf) at step 18 \(epoch 2\)', line), line
    assert 'ckpt-2' in line
    after = snapshot(save_dir)
    checkpoint_files = [f for f in before if f.startswith('ckpt-') or f == 'checkpoint']
    assert checkpoint_files and all(after[f] == before[f] for f in checkpoint_files)
    assert set(f for f in after if f.startswith('ckpt-')) == \
        set(f for f in before if f.startswith('ckpt-'))


def test_resume_without_a_checkpoint_is_refused(data_dir, tmp_path):
    save_dir = tmp_path / 'nothing_here'
    line = one_error_line(train(*TINY, '-i', data_dir, '-o', save_dir, '-r'))
    assert '-r/--load_params: no checkpoint to resume in -o/--save_dir %s' % save_dir in line
    assert not save_dir.exists()


def test_resume_with_another_model_configuration_is_refused(trained, data_dir, tmp_path):
    save_dir = str(tmp_path / 'save')
    shutil.copytree(trained[0], save_dir)
    before = snapshot(save_dir)
    argv = [a if a != '8' else '16' for a in TINY]  # -n 16 instead of 8 (and -u 16)
    line = one_error_line(train(*argv, '-c', '-i', data_dir, '-o', save_dir, '-r'))
    assert 'another model configuration' in line
    assert '-n/--nr_filters: 8 in the checkpoint, 16 now' in line
    assert snapshot(save_dir) == before


def test_unconditional_resume_of_a_conditional_run_is_refused(trained, data_dir, tmp_path):
    save_dir = str(tmp_path / 'save')
    shutil.copytree(trained[0], save_dir)
    before = snapshot(save_dir)
    line = one_error_line(train(*TINY, '-i', data_dir, '-o', save_dir, '-r'))
    assert '-c/--class_conditional (number of classes): 2 in the checkpoint, 0 now' in line
    assert snapshot(save_dir) == before


def test_new_run_into_a_folder_with_a_run_is_refused(trained, data_dir):
    before = snapshot(trained[0])
    line = one_error_line(train(*TINY, '-c', '-i', data_dir, '-o', trained[0]))
    assert 'already holds a training run (ckpt-2): continue it with -r/--load_params' in line
    assert snapshot(trained[0]) == before


def test_batch_larger_than_the_data_set_is_refused(data_dir, tmp_path):
    save_dir = tmp_path / 'save'
    argv = TINY[:TINY.index('-b')] + ['-b', '64'] + TINY[TINY.index('-b') + 2:]
    line = one_error_line(train(*argv, '-i', data_dir, '-o', save_dir))
    assert '--batch_size 64 x 2 towers = 128 images per step' in line
    assert 'larger than the train set (64 images' in line
    assert not save_dir.exists()


def test_sigterm_saves_the_step_it_stopped_at_and_exits(data_dir, tmp_path):
    import tensorflow as tf

    save_dir = str(tmp_path / 'save')
    run = subprocess.Popen([sys.executable, TRAIN] + MODEL + [
        '-d', 'folder', '-i', data_dir, '-o', save_dir, '-b', '4', '-u', '8', '-g', '1',
        '-x', '50', '-ns', '0', '--save_steps', '5'], cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(save_dir, 'checkpoint')) and run.poll() is None \
                and time.time() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGTERM, err[-3000:]
    stopped = re.search(r'stopped by signal 15 at step (\d+): saved (\S+); continue with -r', out)
    assert stopped, out
    step, path = int(stopped.group(1)), stopped.group(2)
    assert path == tf.train.latest_checkpoint(save_dir)
    reader = tf.train.load_checkpoint(path)
    progress = json.loads(reader.get_tensor('progress/.ATTRIBUTES/VARIABLE_VALUE'))
    assert int(reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE')) == step
    steps_per_epoch = 64 // 4
    assert progress['epoch'] == step // steps_per_epoch
    assert progress['position'] == progress['loader']['position'] == 4 * (step % steps_per_epoch)


def test_weights_with_nan_are_never_saved(tmp_path):
    import tensorflow as tf

    from pixel_cnn_pp.training import Trainer

    strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
    trainer = Trainer(strategy, dict(image_shape=(4, 4, 3), nr_resnet=1, nr_filters=4,
                                     nr_logistic_mix=1), batch_size=2)
    manager = tf.train.CheckpointManager(trainer.checkpoint, str(tmp_path), 3)
    assert trainer.save(manager, {'epoch': 0}).endswith('ckpt-1')
    before = snapshot(str(tmp_path))
    with strategy.scope():
        trainer.weights[5].assign(tf.fill(trainer.weights[5].shape, float('nan')))
    with pytest.raises(FloatingPointError, match='NaN or Inf at step 0: not saving .*ckpt-1'):
        trainer.save(manager, {'epoch': 1})
    assert snapshot(str(tmp_path)) == before


# ----------------------------------------------- starting from a checkpoint of the original

GOLDEN_MODEL = ['-q', '1', '-n', '16', '-m', '3']  # tests/golden/cifar_small's options
# A learning rate too small to move a float32 weight, and averages that move by 1e-7 of
# the gap: the run's first checkpoint shows the weights and averages it started from.
STILL = ['-d', 'folder', '-b', '8', '-u', '8', '-g', '1', '-x', '1', '-ns', '0', '-p', '0', '-l', '1e-30',
         '--polyak_decay', '0.9999999']


@pytest.fixture(scope='module')
def data_dir_32(tmp_path_factory):
    """8 train and 4 test 32x32 RGB PNGs: one step per epoch at -b 8."""
    import imageio.v3 as iio

    root = tmp_path_factory.mktemp('smooth32')
    rng = np.random.default_rng(1)
    for subset, n in (('train', 8), ('test', 4)):
        (root / subset).mkdir()
        for k in range(n):
            image = np.linspace(0, 255, 32)[:, None, None] * rng.uniform(0.2, 1.0, 3)
            image = np.broadcast_to(image, (32, 32, 3)) + rng.integers(0, 8, (32, 32, 3))
            iio.imwrite(root / subset / ('%d.png' % k), np.clip(image, 0, 255).astype(np.uint8))
    return str(root)


def _golden_values(golden_dir, suffix=''):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(golden_dir, 'cifar_small', 'params_golden.ckpt'))
    return {name[:-len(suffix)] if suffix else name: reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()
            if name.startswith('model/') and name.endswith(suffix)
            and (suffix or not name.endswith('/ExponentialMovingAverage'))}


def _assert_started_from_golden(save_dir, golden_dir):
    import pixel_cnn_pp

    for use_ema, suffix in ((False, ''), (True, '/ExponentialMovingAverage')):
        want = _golden_values(golden_dir, suffix)
        model = pixel_cnn_pp.load(str(save_dir), use_ema=use_ema)
        got = dict(model.named_weights())
        assert set(got) == set(want)
        for name, value in want.items():
            np.testing.assert_allclose(got[name].numpy(), value, rtol=1e-5, atol=1e-6,
                                       err_msg=name)


def test_resume_from_openais_checkpoint_layout_starts_from_its_weights(data_dir_32, golden_dir,
                                                                       tmp_path):
    save_dir = tmp_path / 'finetune'
    save_dir.mkdir()
    prefix = os.path.join(golden_dir, 'cifar_small', 'params_golden.ckpt')
    for suffix in ('.index', '.data-00000-of-00001'):
        shutil.copy(prefix + suffix, save_dir / ('params_folder.ckpt' + suffix))
    result = train(*GOLDEN_MODEL, *STILL, '-i', data_dir_32, '-o', save_dir, '-r')
    assert result.returncode == 0, result.stderr[-3000:]
    assert ('starting from the weights and averages of %s' % (save_dir / 'params_folder.ckpt')
            in result.stdout), result.stdout
    _assert_started_from_golden(save_dir, golden_dir)


def test_init_checkpoint_starts_a_new_run_from_its_weights(data_dir_32, golden_dir, tmp_path):
    save_dir = tmp_path / 'new'
    prefix = os.path.join(golden_dir, 'cifar_small', 'params_golden.ckpt')
    result = train(*GOLDEN_MODEL, *STILL, '-i', data_dir_32, '-o', save_dir,
                   '--init_checkpoint', prefix, log_level=None)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'starting from the weights and averages of %s' % prefix in result.stdout
    # A user who has not set TF_CPP_MIN_LOG_LEVEL sees no TensorFlow start-up notices (on a
    # CPU machine: "E0000 ... failed call to cuInit"), and one line on where the towers run.
    assert 'cuInit' not in result.stderr and 'oneDNN' not in result.stderr, result.stderr
    assert 'E0000' not in result.stderr and 'I0000' not in result.stderr, result.stderr
    assert 'no GPU visible: 1 tower on the CPU' in result.stdout
    _assert_started_from_golden(save_dir, golden_dir)


def test_init_checkpoint_of_another_model_is_refused_naming_the_variable(data_dir_32, golden_dir,
                                                                        tmp_path):
    save_dir = tmp_path / 'mismatch'
    prefix = os.path.join(golden_dir, 'cifar_small', 'params_golden.ckpt')
    argv = ['-q', '1', '-n', '8', '-m', '3'] + STILL
    line = one_error_line(train(*argv, '-i', data_dir_32, '-o', save_dir, '--init_checkpoint',
                                prefix))
    assert re.search(r'variable model/conv2d_0/V has shape \[2, 3, 4, 16\].*expects '
                     r'\[2, 3, 4, 8\]', line), line
    assert not any(name.startswith('ckpt-') for name in os.listdir(save_dir)) \
        if save_dir.exists() else True


# ------------------------------------------- a damaged run folder, two runs, hangs (issue 17)

def test_a_damaged_state_file_is_never_overwritten_and_r_resumes_from_the_newest(trained,
                                                                               tmp_path):
    save_dir = str(tmp_path / 'save')
    shutil.copytree(trained[0], save_dir)
    with open(os.path.join(save_dir, 'checkpoint'), 'w') as f:
        f.write('\x00garbage, not the state file\n')
    before = snapshot(save_dir)
    # A new run is refused: following the old advice ("run without -r") wrote ckpt-1 over it.
    line = one_error_line(train(*TINY, '-c', '-i', trained[1].args[trained[1].args.index('-i') + 1],
                                '-o', save_dir))
    assert 'holds a training run (ckpt-1, ckpt-2), but its "checkpoint" state file could not be ' \
           'read' in line and 'continue it with -r/--load_params (from ckpt-2)' in line, line
    assert snapshot(save_dir) == before
    # -r resumes from the newest checkpoint, and keeps every file it had.
    resumed = train(*ONE_TOWER, '-c', '-i', trained[1].args[trained[1].args.index('-i') + 1],
                    '-o', save_dir, '-x', '3', '-ns', '0', '-r')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert ('note: the "checkpoint" state file of -o/--save_dir %s could not be read (or names no '
            'checkpoint there); resuming from the newest checkpoint, ckpt-2' % save_dir) \
        in resumed.stdout, resumed.stdout
    assert re.search(r'resuming from .*ckpt-2: epoch 2', resumed.stdout), resumed.stdout
    after = snapshot(save_dir)
    assert all(after[f] == before[f] for f in before if f.startswith('ckpt-'))
    import tensorflow as tf
    assert tf.train.latest_checkpoint(save_dir).endswith('ckpt-3')
    with open(os.path.join(save_dir, 'flags.json')) as f:
        invocations = json.load(f)['invocations']
    assert [i['outcome'] for i in invocations] == ['finished', 'finished']
    assert '-r' not in trained[1].args and invocations[1]['flags']['load_params']


def test_r_with_a_damaged_state_file_and_a_damaged_newest_checkpoint_is_refused(trained,
                                                                                tmp_path):
    save_dir = str(tmp_path / 'save')
    shutil.copytree(trained[0], save_dir)
    with open(os.path.join(save_dir, 'checkpoint'), 'w') as f:
        f.write('garbage')
    os.truncate(os.path.join(save_dir, 'ckpt-2.data-00000-of-00001'), 100)
    before = snapshot(save_dir)
    line = one_error_line(train(*TINY, '-c', '-i', 'unused', '-o', save_dir, '-r'))
    assert 'checkpoint %s is damaged or truncated' % os.path.join(save_dir, 'ckpt-2') in line
    assert 'move ckpt-2.* out of the folder to resume from ckpt-1' in line, line
    assert snapshot(save_dir) == before


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_finishes(data_dir,
                                                                               tmp_path):
    import pixel_cnn_pp

    save_dir = str(tmp_path / 'save')
    argv = ONE_TOWER + ['-i', data_dir, '-o', save_dir, '-x', '3', '-ns', '0']
    first = subprocess.Popen([sys.executable, TRAIN] + argv, cwd=ROOT,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(save_dir, 'run.lock')) and time.time() < deadline:
            time.sleep(0.05)
        second = train(*argv)
        running = first.poll() is None
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    line = one_error_line(second)
    assert running, 'the first run ended before the second started: nothing was tested'
    assert re.search(r'--save_dir %s is in use by another run: pid %d on host \S+ \(train.py\), '
                     r'since' % (re.escape(save_dir), first.pid), line), line
    assert first.returncode == 0, err[-3000:]
    assert 'saved %s' % os.path.join(save_dir, 'ckpt-3') in out
    with open(os.path.join(save_dir, 'flags.json')) as f:
        invocations = json.load(f)['invocations']
    assert [(i['pid'], i['outcome']) for i in invocations] == [(first.pid, 'finished')]
    assert not os.path.exists(os.path.join(save_dir, 'run.lock'))
    assert pixel_cnn_pp.load(save_dir).config.nr_filters == 8


@pytest.mark.parametrize('train_size, test_size, message', [
    (8, 12, 'the test images in {root}/test are 12x12x3, but the train images in {root}/train '
            'are 8x8x3: both must be one size and channels; pass --image_size N'),
    (30, 30, 'the train images in {root}/train are 30x30x3, which the network cannot take '
             ".*multiples of 4.*pass --image_size N .*e.g. --image_size 28 or 32"),
])
def test_images_the_model_cannot_take_are_refused_before_the_first_step(tmp_path, train_size,
                                                                        test_size, message):
    import imageio.v3 as iio

    root = tmp_path / 'images'
    for subset, size in (('train', train_size), ('test', test_size)):
        (root / subset).mkdir(parents=True)
        for k in range(8):
            iio.imwrite(root / subset / ('%d.png' % k), np.full((size, size, 3), k, np.uint8))
    save_dir = tmp_path / 'save'
    argv = MODEL + ['-d', 'folder', '-b', '4', '-u', '4', '-g', '1', '-i', root, '-o', save_dir]
    line = one_error_line(train(*argv))
    assert re.search(message.format(root=re.escape(str(root))), line), line
    assert not save_dir.exists()


def test_64_cpu_towers_are_refused_at_once_naming_the_cores(data_dir, tmp_path):
    line = one_error_line(train(*TINY[:-6], '-g', '64', '-i', data_dir, '-o', tmp_path / 's'))
    assert ('--nr_gpu 64 on a machine without GPUs (CUDA_VISIBLE_DEVICES is not set) would '
            'split its %d CPU core' % (os.cpu_count() or 1)) in line, line
    assert 'pass --nr_gpu %d or fewer' % max(8, os.cpu_count() or 1) in line
    assert not (tmp_path / 's').exists()


def test_gpus_named_by_cuda_visible_devices_but_not_seen_are_refused_with_tensorflows_reason(
        data_dir, tmp_path):
    """No silent fall-back to CPU towers; a user's default start (TF_CPP_MIN_LOG_LEVEL unset)."""
    import tensorflow as tf

    if tf.config.list_physical_devices('GPU'):
        pytest.skip('TensorFlow sees GPUs here')
    result = train(*TINY, '-i', data_dir, '-o', tmp_path / 's', log_level=None,
                   CUDA_VISIBLE_DEVICES='0,1')
    line = one_error_line(result)
    assert line.startswith('train.py: error: GPUs are expected here (CUDA_VISIBLE_DEVICES=0,1) '
                           'but TensorFlow sees none: '), line
    # This machine's reason (no driver), or a CPU-only TensorFlow's elsewhere.
    assert re.search('failed call to cuInit|Could not find cuda drivers|a CPU-only build', line)
    assert line.endswith('to run on the CPU, set CUDA_VISIBLE_DEVICES= (empty)'), line
    assert not (tmp_path / 's').exists()


def _tf_config_with_a_worker_that_never_starts():
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            ports.append(s.getsockname()[1])
    return json.dumps({'cluster': {'worker': ['127.0.0.1:%d' % p for p in ports]},
                       'task': {'type': 'worker', 'index': 0}}), '127.0.0.1:%d' % ports[1]


def test_multi_worker_wait_names_the_workers_and_times_out_with_one_line(data_dir, tmp_path):
    tf_config, other = _tf_config_with_a_worker_that_never_starts()
    save_dir = tmp_path / 'save'
    result = train(*MODEL, '-d', 'folder', '-b', '4', '-g', '1', '-i', data_dir, '-o', save_dir,
                   '--multi_worker', '--worker_timeout', '2', TF_CONFIG=tf_config, timeout=120)
    line = one_error_line(result)
    assert 'waiting for workers %s (worker 1) ...' % other in result.stdout
    assert ('--multi_worker: worker 1 (%s) of TF_CONFIG did not answer within --worker_timeout '
            '2 s' % other) in line, line
    assert not save_dir.exists()  # the lock was taken and released; nothing else was written


def test_multi_worker_wait_ends_on_sigterm(data_dir, tmp_path):
    tf_config, other = _tf_config_with_a_worker_that_never_starts()
    save_dir = tmp_path / 'save'
    run = subprocess.Popen([sys.executable, TRAIN] + MODEL + [
        '-d', 'folder', '-b', '4', '-g', '1', '-i', data_dir, '-o', save_dir, '--multi_worker'],
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_CONFIG=tf_config,
                           PYTHONUNBUFFERED=''),  # into a pipe, as a log: block-buffered
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        waiting = run.stdout.readline()  # the wait's first line (default limit: 600 s)
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert waiting.startswith('waiting for workers %s (worker 1) ...' % other), waiting
    assert run.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert 'Traceback' not in err
    assert err.strip().splitlines()[-1] == ('train.py: stopped by signal 15 while waiting for the '
                                            'workers; no checkpoint was written')
    assert not save_dir.exists()


@pytest.mark.parametrize('where', ['a file', 'under a file'])
def test_a_save_dir_that_cannot_be_a_folder_is_refused_before_the_data_loads(tmp_path, where):
    (tmp_path / 'file').write_text('not a folder')
    save_dir = tmp_path / 'file' if where == 'a file' else tmp_path / 'file' / 'run'
    # --data_dir does not exist: the run is refused before it would be read.
    line = one_error_line(train(*TINY, '-i', tmp_path / 'no_data', '-o', save_dir))
    assert line.startswith('train.py: error: -o/--save_dir %s ' % save_dir), line
    assert line.endswith('%s is a file, not a folder' % (tmp_path / 'file')) or \
        line.endswith('is a file, not a folder'), line
    assert sorted(os.listdir(tmp_path)) == ['file']


def test_r_from_a_truncated_checkpoint_or_a_garbage_config_is_one_line(trained, tmp_path):
    data = trained[1].args[trained[1].args.index('-i') + 1]
    truncated, garbage = str(tmp_path / 'truncated'), str(tmp_path / 'garbage')
    for folder in (truncated, garbage):
        shutil.copytree(trained[0], folder)
    os.truncate(os.path.join(truncated, 'ckpt-2.data-00000-of-00001'), 100)
    with open(os.path.join(garbage, 'pixelcnn_config.json'), 'w') as f:
        f.write('{"nr_filters": 8,')
    line = one_error_line(train(*TINY, '-c', '-i', data, '-o', truncated, '-r', '-x', '3'))
    assert ('checkpoint %s is damaged or truncated (Read less bytes than requested)'
            % os.path.join(truncated, 'ckpt-2')) in line, line
    line = one_error_line(train(*TINY, '-c', '-i', data, '-o', garbage, '-r', '-x', '3'))
    assert '%s (the model options of the checkpoint) cannot be read as JSON' % os.path.join(
        garbage, 'pixelcnn_config.json') in line, line


# ------------------------------------------------------------- a cluster of two workers

def _two_local_slurm_tasks():
    """SLURM_* variables of a job step of 2 tasks on this host, and their first port (the
    second task listens on the next one): what srun gives each task."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        try:
            with socket.create_server(('', port + 1)):
                break
        except OSError:
            continue
    step = dict(SLURM_STEP_NUM_TASKS='2', SLURM_STEP_NODELIST='localhost',
                SLURM_STEP_TASKS_PER_NODE='2', SLURM_JOB_ID='1')
    return [dict(step, SLURM_PROCID=str(rank)) for rank in range(2)], port


def _workers(flags_of, envs, log_level='2'):
    """Start train.py once per worker: flags_of(rank) its flags, envs[rank] its variables."""
    base = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
    return [subprocess.Popen([sys.executable, TRAIN] + [str(a) for a in flags_of(rank)],
                             cwd=ROOT, env=dict(base, TF_CPP_MIN_LOG_LEVEL=log_level, **env),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for rank, env in enumerate(envs)]


def _finish(processes, timeout=300):
    try:
        return [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            p.kill()


def test_a_cluster_stopped_by_sigterm_to_one_worker_stops_together_and_resumes_exactly(
        data_dir, trained, tmp_path):
    """Two workers of one tower each under srun (no TF_CONFIG) train the `trained` fixture's
    run. SIGTERM to worker 1 only: both stop after the same step, the chief saves it, both exit
    as a stopped run does, without a traceback. Then two wrong restarts are refused on every
    worker (worker 1 with a folder of its own; worker 1 without -r), and the right one (-r,
    one folder) ends with the weights of the run that never stopped."""
    import tensorflow as tf

    save_dir = str(tmp_path / 'common_run')
    # The fixture's flags on 1 tower per worker, without samples (which do not change the
    # training state, and would trace a sampler in each run).
    flags = TRAINED[:TRAINED.index('-g')] + ['-g', '1'] + TRAINED[TRAINED.index('-g') + 2:] + [
        '-i', data_dir, '--multi_worker', '--save_steps', '1', '-ns', '0']
    envs, port = _two_local_slurm_tasks()
    workers = _workers(lambda rank: flags + ['-o', save_dir, '--worker_port', port], envs)
    try:
        state_file, deadline = os.path.join(save_dir, 'checkpoint'), time.time() + 300
        while time.time() < deadline and all(w.poll() is None for w in workers):
            if os.path.exists(state_file):
                with open(state_file) as f:
                    if max([int(n) for n in re.findall(r'ckpt-(\d+)', f.read())] or [0]) >= 10:
                        break
            time.sleep(0.01)
        workers[1].send_signal(signal.SIGTERM)
        outputs = _finish(workers)
    finally:
        for w in workers:
            w.kill()
    steps = []
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 128 + signal.SIGTERM, err[-3000:]
        assert 'Traceback' not in err, err[-3000:]
        stopped = re.search(r'stopped by signal 15 at step (\d+): saved (\S+|\(not the chief '
                            r'worker\)); continue with -r', out)
        assert stopped, out[-3000:]
        steps.append((int(stopped.group(1)), stopped.group(2)))
    assert 'all 2 workers connected (' in outputs[0][0] and 'all-reduce: AUTO' in outputs[0][0]
    (step, path), (other_step, other_path) = steps
    assert step == other_step and 10 <= step < 16 and other_path == '(not the chief worker)'
    assert path == tf.train.latest_checkpoint(save_dir)
    assert int(tf.train.load_checkpoint(path).get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE')) \
        == step

    # Restarts refused on both workers with one line, before the data are read: worker 1
    # with another folder (one per machine), and (at the same time, in a copy of the run)
    # worker 1 without -r.
    own, copy = str(tmp_path / 'own'), str(tmp_path / 'copy')
    before = snapshot(save_dir)
    shutil.copytree(save_dir, copy)
    (envs_a, port_a), (envs_b, port_b) = _two_local_slurm_tasks(), _two_local_slurm_tasks()
    refused = _workers(lambda rank: flags + ['-r', '-o', [save_dir, own][rank], '--worker_port',
                                             port_a, '--worker_timeout', 120], envs_a) + \
        _workers(lambda rank: flags + ['-o', copy, '--worker_port', port_b, '--worker_timeout',
                                       120] + ['-r'] * (rank == 0), envs_b)
    results = _finish(refused)
    for w, (out, err) in zip(refused, results):
        assert w.returncode == 1 and 'Traceback' not in err, err[-3000:]
    lines = [[line for line in err.splitlines() if line.startswith('train.py: error:')]
             for _, err in results]
    assert all(len(found) == 1 for found in lines), lines
    assert lines[0] == lines[1] == [
        'train.py: error: --multi_worker: worker 1 (localhost:%d) does not see the chief\'s '
        '--save_dir (it finds no run.lock of the chief\'s run there): every worker needs the '
        'same --save_dir on a filesystem they share (e.g. NFS), where the chief writes the '
        'checkpoints and -r reads them on every worker' % (port_a + 1)]
    assert lines[2] == lines[3] == [
        'train.py: error: --multi_worker: worker 1 (localhost:%d) was started without -r and '
        'the chief, worker 0 (localhost:%d), with it: start every worker with the same command'
        % (port_b + 1, port_b)]
    assert snapshot(save_dir) == dict(before, **{'flags.json': snapshot(save_dir)['flags.json']})
    assert not os.path.exists(own)

    # Resumed with -r on both: the run continues exactly.
    envs, port = _two_local_slurm_tasks()
    resumed = _workers(lambda rank: flags + ['-r', '-o', save_dir, '--worker_port', port], envs)
    for w, (out, err) in zip(resumed, _finish(resumed)):
        assert w.returncode == 0, err[-3000:]
        assert re.search(r'resuming from .*ckpt-\d+: epoch 1, step %d' % step, out), out[-3000:]
    want, got = checkpoint_values(trained[0]), checkpoint_values(save_dir)
    assert set(want) == set(got)
    for name in want:
        if isinstance(want[name], bytes):
            assert got[name] == want[name], name
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7,
                                       err_msg=name)
