"""sample.py: checkpoints in, a PNG grid and an npz out, test bits/dim, and clear refusals.

Most runs call sample.run in this process on flags parsed as the command line would
be (fast: TensorFlow is imported once); one runs sample.py itself, to check the exit
code and the single error line.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import imageio.v3 as iio
import numpy as np
import pytest

import pixel_cnn_pp
import sample
from pixel_cnn_pp import images, sampling
from pixel_cnn_pp.data import patches_data
from tests.conftest import (Unhandled, assert_stopped_with_one_line, random_images, run_main,
                            save_tiny_run, script_cli, write_pngs)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_MODEL = ['-q', '1', '-n', '16', '-m', '3']  # the golden cifar_small model's options


cli = script_cli('sample.py', sample)


@pytest.fixture
def golden_prefix(golden_dir):
    return os.path.join(golden_dir, 'cifar_small', 'params_golden.ckpt')


@pytest.fixture(scope='module')
def conditional_run(tmp_path_factory):
    """A folder holding our checkpoint of a tiny class-conditional 8x8x1 model (3 classes)."""
    folder = tmp_path_factory.mktemp('run')
    model = pixel_cnn_pp.PixelCNN((8, 8, 1), nr_resnet=1, nr_filters=8, nr_logistic_mix=2,
                                  num_classes=3, seed=2)
    model.initialize(random_images(6, (8, 8, 1)), np.arange(6) % 3)
    return save_tiny_run(folder, model)


def test_tf1_checkpoint_gives_the_librarys_samples_as_png_and_npz(cli, golden_prefix, tmp_path):
    out = tmp_path / 'out' / 'golden'
    samples = cli('--checkpoint', golden_prefix, *GOLDEN_MODEL, '--num_samples', 2, '-s', 3,
                  '--output', out)
    model = pixel_cnn_pp.load(golden_prefix, nr_resnet=1, nr_filters=16, nr_logistic_mix=3)
    np.testing.assert_array_equal(samples, sampling.sample(model, 2, seed=3))
    with np.load(str(out) + '.npz') as f:
        np.testing.assert_array_equal(f['samples'], samples)
        assert 'labels' not in f
    # The grid: 2 images side by side, 1-pixel borders, all 4x (32x32 images), below a
    # label naming the checkpoint (a TF1 one says nothing of its data set or epoch).
    grid = iio.imread(str(out) + '.png')
    tiles = images.upscale(images.tile_images(samples), 4)
    assert tiles.shape == (4 * (1 + 33), 4 * (1 + 2 * 33), 3)
    h, w = tiles.shape[:2]
    assert grid.shape[0] > h and grid.shape[1] == w  # the label above, on two lines
    np.testing.assert_array_equal(grid[-h:], tiles)
    np.testing.assert_array_equal(grid, images.image_grid(
        samples, label=['cifar_small/params_golden.ckpt', 'seed 3'], scale=4))


def test_eval_reports_the_test_bits_per_dim(cli, golden_prefix, tmp_path, capsys):
    cli('--checkpoint', golden_prefix, *GOLDEN_MODEL, '--num_samples', 1, '--eval',
        '-d', 'patches', '--eval_images', 6, '-b', 4, '--output', tmp_path / 's')
    printed = capsys.readouterr().out
    reported = float(printed.split('test bits/dim: ')[1].split()[0])
    assert '(6 patches test images)' in printed
    model = pixel_cnn_pp.load(golden_prefix, nr_resnet=1, nr_filters=16, nr_logistic_mix=3)
    with np.load(patches_data.PATH) as f:
        images = f['testx'][:6]
    expected = pixel_cnn_pp.bits_per_dim(model.nll(images).mean(), (32, 32, 3))
    assert abs(reported - expected) < 1e-4


def test_conditional_model_sweeps_the_classes_or_takes_labels(cli, conditional_run, tmp_path):
    out = tmp_path / 'c'
    fast = cli('--checkpoint', conditional_run, '--num_samples', 5, '--output', out)
    with np.load(str(out) + '.npz') as f:
        np.testing.assert_array_equal(f['labels'], [0, 1, 2, 0, 1])  # every class in turn
        np.testing.assert_array_equal(f['samples'], fast)
    # The same seed gives the same images, by either method.
    naive = cli('--checkpoint', conditional_run, '--num_samples', 5, '--output', out,
                '--method', 'naive')
    assert sum(np.array_equal(a, b) for a, b in zip(fast, naive)) >= 4  # see test_sampling
    cli('--checkpoint', conditional_run, '--num_samples', 3, '--labels', '2,2,1',
        '--output', out)
    with np.load(str(out) + '.npz') as f:
        np.testing.assert_array_equal(f['labels'], [2, 2, 1])


@pytest.mark.parametrize('argv,message', [
    (['--labels', '0,1'], '--labels given, but the model is unconditional'),
    (['--num_samples', 0], '--num_samples must be at least 1'),
    (['-n', '32'], r'conv2d_0/V/ExponentialMovingAverage has shape \[2, 3, 4, 16\], but the '
                   r'model .* expects \[2, 3, 4, 32\]'),
    (['-c'], "'class_conditional' given, but the checkpoint .* is unconditional"),
    (['--pretrained', 'cifar'], '--pretrained or --checkpoint, not both'),
])
def test_bad_input_on_a_tf1_checkpoint_is_refused(cli, golden_prefix, tmp_path, argv, message):
    base = ['--checkpoint', golden_prefix, '-q', '1', '-n', '16', '-m', '3', '--output',
            tmp_path / 'x']
    with pytest.raises(ValueError, match=message):
        cli(*(base + argv))


def test_the_library_arguments_in_an_error_are_said_as_flags(golden_prefix, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_main(sample, 'sample.py', '--checkpoint', golden_prefix, '-q', '1', '-n', '16', '-m',
                 '3', '-c', '--output', tmp_path / 'x')
    assert capsys.readouterr().err.startswith(
        'sample.py: error: -c/--class_conditional given, but the checkpoint %s has no '
        'conditional weights: it is unconditional' % golden_prefix)


@pytest.mark.parametrize('argv,message', [
    (['--num_samples', 2, '--labels', '0'], r'--labels must give 2 classes in 0..2, one per image; got 0$'),
    (['--num_samples', 2, '--labels', '0,3'], '--labels must give 2 classes in 0..2'),
    (['--num_samples', 2, '--labels', '0,cat'], '--labels must be integers'),
    (['-q', '2'], 'trained with nr_resnet=1, but nr_resnet=2 was asked for'),
])
def test_bad_input_on_our_checkpoint_is_refused(cli, conditional_run, tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        cli('--checkpoint', conditional_run, '--output', tmp_path / 'x', *argv)


def test_missing_checkpoint_and_unwritable_output_are_refused(cli, golden_prefix, tmp_path):
    with pytest.raises(FileNotFoundError, match='no checkpoint in folder'):
        cli('-o', tmp_path, '--output', tmp_path / 'x')
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    with pytest.raises(ValueError, match='its folder .*a_file is a file, not a folder$'):
        cli('--checkpoint', golden_prefix, *GOLDEN_MODEL, '--output', blocker / 'samples')


def test_command_line_error_is_one_line_and_exit_1(golden_prefix, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'sample.py'), '--checkpoint', golden_prefix,
         *GOLDEN_MODEL, '--num_samples', '0', '--output', str(tmp_path / 'x')],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    errors = [l for l in result.stderr.splitlines() if l.startswith('sample.py: error:')]
    assert errors == ['sample.py: error: --num_samples must be at least 1 (sample.py draws that '
                      'many images, or completions per image with --complete); got 0']


# ------------------------------------------------------------------ --complete


def test_complete_keeps_the_known_rows_and_writes_originals_beside_completions(
        cli, conditional_run, tmp_path):
    given = random_images(2, (8, 8, 1), seed=7)
    folder = write_pngs(tmp_path / 'in', given)
    out = tmp_path / 'done'
    samples = cli('--checkpoint', conditional_run, '--complete', folder, '--known_rows', 3,
                  '--num_samples', 3, '--labels', '2,0', '-s', 4, '--output', out)
    assert samples.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(samples[:, :3], np.repeat(given, 3, axis=0)[:, :3])
    assert not np.array_equal(samples[0, 3:], samples[1, 3:])  # completions of one image differ
    model = pixel_cnn_pp.load(conditional_run)
    np.testing.assert_array_equal(samples, model.complete(np.repeat(given, 3, axis=0), 3,
                                                          labels=[2, 2, 2, 0, 0, 0], seed=4))
    with np.load(str(out) + '.npz') as f:
        np.testing.assert_array_equal(f['samples'], samples)
        np.testing.assert_array_equal(f['originals'], given)
        np.testing.assert_array_equal(f['labels'], [2, 2, 2, 0, 0, 0])
        assert int(f['known_rows']) == 3
    grid = iio.imread(str(out) + '.png')
    tiles = images.tile_images(np.concatenate([given[:1], samples[:3], given[1:], samples[3:]]),
                               columns=4)  # one row per image: the original, its 3 completions
    assert tiles.shape == (1 + 2 * 9, 1 + 4 * 9, 1)
    np.testing.assert_array_equal(tiles[10:18, 1:9], given[1])  # second row: the original
    tiles = images.upscale(tiles, images.viewing_scale((8, 8)))[..., 0]
    np.testing.assert_array_equal(grid[-tiles.shape[0]:, :tiles.shape[1]], tiles)  # below the label


def test_complete_defaults_to_half_the_rows_and_four_completions(cli, conditional_run, tmp_path):
    given = random_images(1, (8, 8, 1), seed=8)
    np.savez(str(tmp_path / 'in.npz'), images=given)
    samples = cli('--checkpoint', conditional_run, '--complete', tmp_path / 'in.npz',
                  '-o', tmp_path)
    assert samples.shape == (4, 8, 8, 1)
    np.testing.assert_array_equal(samples[:, :4], np.repeat(given, 4, axis=0)[:, :4])
    assert os.path.exists(str(tmp_path / 'completions_seed1.png'))


@pytest.mark.parametrize('make,argv,message', [
    (lambda d: write_pngs(d, random_images(1, (8, 12, 1))), [],
     r'--complete: .*im0.png is 8x12x1 \(one channel\), but the model takes 8x8x1'),
    (lambda d: write_pngs(d, random_images(1, (8, 8, 3))), [],
     r'im0.png is 8x8x3 \(RGB\), but the model takes 8x8x1 \(one channel\)'),
    (lambda d: write_pngs(d, random_images(1, (8, 8, 1))), ['--known_rows', 9],
     r'--known_rows must be an integer in 0..8'),
    (lambda d: (d.mkdir(), (d / 'bad.png').write_bytes(b'not a png'), d)[-1], [],
     r'bad.png: not a readable image'),
    (lambda d: d / 'missing', [], r'missing: no such file or folder'),
])
def test_complete_refuses_bad_images_and_rows(cli, conditional_run, tmp_path, make, argv,
                                              message):
    path = make(tmp_path / 'in')
    with pytest.raises(ValueError, match=message):
        cli('--checkpoint', conditional_run, '--complete', path, '--output', tmp_path / 'x',
            *argv)
    assert not os.path.exists(str(tmp_path / 'x.png'))


def test_nr_gpu_splits_the_images_over_logical_cpu_towers(conditional_run, tmp_path):
    """sample.py --nr_gpu 8 on a machine without GPUs, 3 images: one on each of three towers
    (an 8-GPU machine's default), the images of one."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    out = tmp_path / 'two'
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'sample.py'), '--checkpoint', conditional_run,
         '--nr_gpu', '8', '--num_samples', '3', '-s', '5', '--output', str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'no GPU visible: 8 towers on 8 logical CPU devices' in result.stdout
    model = pixel_cnn_pp.load(conditional_run)
    with np.load(str(out) + '.npz') as f:
        np.testing.assert_array_equal(f['samples'], model.sample(3, [0, 1, 2], seed=5))



def _label_args(**values):
    defaults = dict(data_set='cifar', eval=False, eval_images=0, pretrained=None, seed=1)
    return types.SimpleNamespace(**dict(defaults, **values))


def test_grid_label_says_data_set_epoch_and_test_bits_per_dim_of_our_run(tmp_path):
    import tensorflow as tf

    record = dict(epoch=4, position=0, name='patches', loader=None,
                  history=dict(epoch=[0, 1, 2, 3], train_bpd=[6, 5, 4.5, 4.2],
                               test_bpd=[6.5, 4.9, 4.61, 4.5123]))
    prefix = str(tmp_path / 'run' / 'ckpt-4')
    tf.train.Checkpoint(progress=tf.Variable(json.dumps(record))).write(prefix)
    assert sample.grid_label(_label_args(seed=7), prefix) == \
        ['patches', 'epoch 3', 'test 4.512 bits/dim', 'seed 7']
    # --eval's figure (on part of the test set here) replaces the run's.
    assert sample.grid_label(_label_args(eval=True, eval_images=100, data_set='patches'),
                             prefix, 4.44444, 100) == \
        ['patches', 'epoch 3', 'test 4.444 bits/dim (100 images)', 'seed 1']
    # Stopped mid-epoch: where it was, and no test figure yet.
    tf.train.Checkpoint(progress=tf.Variable(json.dumps(dict(record, position=320)))).write(
        prefix)
    assert sample.grid_label(_label_args(), prefix) == \
        ['patches', 'epoch 4, 320 images in', 'seed 1']


def test_into_a_pipe_progress_is_plain_lines_and_the_grid_is_labelled(golden_prefix, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PIXELCNN_PROGRESS_SECONDS='0.02')
    out = tmp_path / 'piped'
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'sample.py'), '--checkpoint', golden_prefix,
         *GOLDEN_MODEL, '--num_samples', '2', '--output', str(out), '--eval', '-d', 'patches',
         '--eval_images', '64', '-b', '8'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '\r' not in result.stdout + result.stderr
    # A line per 0.02 s while sampling (32 rows) and evaluating (8 batches), never a bar
    # redrawn in place; a rate and time left only once there is a rate.
    sampling_lines = re.findall(r'^sampling  \[.*$', result.stderr, re.M)
    assert len(sampling_lines) >= 2, result.stderr[-3000:]
    assert re.findall(r'^evaluating  \[', result.stderr, re.M), result.stderr[-3000:]
    assert all('left' not in line or 'rows/s' in line for line in sampling_lines)
    with np.load(str(out) + '.npz') as f:
        samples = f['samples']
    grid = iio.imread(str(out) + '.png')
    tiles = images.upscale(images.tile_images(samples), 4)
    np.testing.assert_array_equal(grid[-tiles.shape[0]:, :tiles.shape[1]], tiles)
    assert (grid[:-tiles.shape[0]] == 0).any()  # the label's ink


# ---------------------------------------------------- flags, locks, signals


@pytest.mark.parametrize('argv, message', [
    (['--known_rows', 4], r'^--known_rows is for --complete \(the rows kept of each image\)'),
    (['--complete', 'x.png', '--score', 'x.png'], r'^--score and --complete: give one'),
    (['--score', 'x.png', '--num_samples', 2], r'^-ns/--num_samples does nothing with --score'),
    (['--score', 'x.png', '-s', 3], r'^-s/--seed does nothing with --score'),
    (['--score', 'x.png', '--eval'], r'^--eval does nothing with --score'),
    (['--eval_images', 5], r'^--eval_images is how many test images --eval uses: give --eval'),
    (['-i', 'data'], r'^-i/--data_dir is where --eval finds the test set: give --eval'),
], ids=['known_rows_alone', 'complete_and_score', 'score_num_samples', 'score_seed',
        'score_eval', 'eval_images_alone', 'data_dir_alone'])
def test_flags_that_would_be_ignored_are_refused_naming_them(cli, tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        cli('--checkpoint', tmp_path / 'never_read', '--output', tmp_path / 'x', *argv)
    assert os.listdir(tmp_path) == []


def test_a_signal_while_the_grid_and_npz_are_written_leaves_neither(conditional_run, tmp_path,
                                                                    monkeypatch, capsys):
    from pixel_cnn_pp.signals import signals_raise

    npz_writer = images.npz_writer

    def write_half_then_stop(**arrays):
        def write(path):
            npz_writer(**arrays)(path)
            os.truncate(path, os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGTERM)
        return write

    monkeypatch.setattr(images, 'npz_writer', write_half_then_stop)
    (tmp_path / 'out.png').write_bytes(b'an earlier grid')  # sample.py may replace its own
    with pytest.raises(SystemExit) as stopped, signals_raise(Unhandled):
        run_main(sample, 'sample.py', '--checkpoint', conditional_run, '--num_samples', 2,
                 '--method', 'naive', '--output', tmp_path / 'out')
    assert stopped.value.code == 128 + signal.SIGTERM
    assert_stopped_with_one_line(capsys.readouterr().err, 'sample.py', signal.SIGTERM)
    # The grid was whole, but without its .npz it does not land: the old grid stays.
    assert os.listdir(tmp_path) == ['out.png']
    assert (tmp_path / 'out.png').read_bytes() == b'an earlier grid'


# Runs sample.py (argv after the marker path) and stops for 300 s at its first row of
# sampling, after creating the marker file: a run caught in the middle of its work.
_PAUSED_SAMPLE_PY = '''
import sys, time
marker = sys.argv.pop(1)
sys.argv[0] = 'sample.py'
import sample
from absl import app
from pixel_cnn_pp import progress
update = progress.Progress.update
def pause_while_sampling(self, *args):
    update(self, *args)
    if self.label == 'sampling':
        open(marker, 'w').close()
        time.sleep(300)
progress.Progress.update = pause_while_sampling
app.run(sample.main)
'''


def test_a_second_run_into_the_same_output_is_refused_and_ctrl_c_is_one_line(
        cli, conditional_run, tmp_path):
    out, marker = tmp_path / 'one_output' / 'samples', tmp_path / 'sampling'
    first = subprocess.Popen(
        [sys.executable, '-c', _PAUSED_SAMPLE_PY, str(marker), '--checkpoint', conditional_run,
         '--num_samples', '2', '--method', 'naive', '--output', str(out)], cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    try:
        deadline = time.time() + 300
        while not marker.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert marker.exists(), first.communicate(timeout=60)
        with pytest.raises(ValueError, match=r'^--output %s is in use by another run: pid %d on '
                                             r'host .* \(sample.py\), since .*; wait for it to '
                                             r'end or pass another --output$' % (out, first.pid)):
            cli('--checkpoint', conditional_run, '--num_samples', 2, '--output', out)
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 130, stderr[-3000:]
    assert_stopped_with_one_line(stderr, 'sample.py', signal.SIGINT)
    assert not (tmp_path / 'one_output').exists()  # no output, no lock, not the folder it made
