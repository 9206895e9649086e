"""scoring.py and sample.py --score: the CSV is model.nll, the heatmap grid has one colour scale."""

import csv
import os
import signal

import imageio.v3 as iio
import numpy as np
import pytest

import pixel_cnn_pp
import sample
from pixel_cnn_pp import images as image_files, scoring
from tests.conftest import (Unhandled, assert_stopped_with_one_line, random_images, run_main,
                            save_tiny_run, script_cli, write_pngs)



def save_run(folder, **options):
    model = pixel_cnn_pp.PixelCNN((8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=3,
                                  seed=3, **options)
    labels = np.arange(6) % model.num_classes if model.num_classes else None
    model.initialize(random_images(6, (8, 8, 3)), labels)
    return save_tiny_run(folder, model)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    return save_run(tmp_path_factory.mktemp('run'))


cli = script_cli('sample.py', sample)


def read_csv(path):
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['file', 'bits_per_dim', 'nats']
    return [r[0] for r in rows[1:]], np.array([[float(v) for v in r[1:]] for r in rows[1:]])


def test_score_writes_the_nll_of_each_image_and_a_heatmap_grid(cli, run_dir, tmp_path, capsys):
    images = random_images(3, (8, 8, 3), seed=1)
    images[1] = 128  # a flat image: few bits
    folder = write_pngs(tmp_path / 'in', images)
    nats = cli('--checkpoint', run_dir, '--score', folder, '--output', tmp_path / 'scores')
    model = pixel_cnn_pp.load(run_dir)
    expected = model.nll(images, per_pixel=True)  # (3, 8, 8) nats
    names, values = read_csv(tmp_path / 'scores.csv')
    assert names == [str(folder / ('im%d.png' % i)) for i in range(3)]
    np.testing.assert_allclose(values[:, 1], expected.sum(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(values[:, 0], pixel_cnn_pp.bits_per_dim(
        expected.sum(axis=(1, 2)), (8, 8, 3)), atol=1e-6)
    np.testing.assert_allclose(nats, expected.sum(axis=(1, 2)))
    out = capsys.readouterr().out
    bpd = values[:, 0]
    assert 'scored 3 images: bits/dim mean %.4f, min %.4f (%s), max' % (
        bpd.mean(), bpd.min(), names[1]) in out
    bits = expected / np.log(2)
    assert 'colour scale (the bar under the grid, left to right): %.2f to %.2f bits per pixel' % (
        bits.min(), bits.max()) in out
    # The grid: 2 pairs per row (ceil(sqrt(3))), pixels enlarged 8 times (64 // 8).
    grid = iio.imread(str(tmp_path / 'scores.png'))
    cell = 8 * 8 + 1
    assert grid.shape[1:] == (1 + 4 * cell, 3) and grid.shape[0] > 1 + 2 * cell + 16 + 1
    for k in range(3):
        top, left = 1 + (k // 2) * cell, 1 + 2 * (k % 2) * cell
        np.testing.assert_array_equal(grid[top:top + 64:8, left:left + 64:8], images[k])
        heat = grid[top:top + 64:8, left + cell:left + cell + 64:8]
        t = (bits[k] - bits.min()) / (bits.max() - bits.min())  # one scale for every image
        np.testing.assert_array_equal(heat, scoring.colour_scale(t))


def test_heatmap_grid_shares_one_colour_scale_and_draws_it_as_a_bar():
    images = random_images(2, (4, 4, 1))
    bits = np.zeros((2, 4, 4))
    bits[0, 1, 2], bits[1, 3, 0] = 10.0, 30.0  # the lowest in image 0's, the highest in 1's
    bits[0] += 5.0
    grid, (lo, hi) = scoring.heatmap_grid(images, bits)
    assert (lo, hi) == (0.0, 30.0)
    factor = scoring.grid_scale(4, 4)
    assert factor == 16
    cell = 4 * factor + 1
    def at(left):  # one pixel of each enlarged one, of the tile at column `left`
        return grid[1:1 + 4 * factor:factor, left:left + 4 * factor:factor]
    heat0, heat1 = at(1 + cell), at(1 + 3 * cell)
    np.testing.assert_array_equal(heat0[1, 2], scoring.colour_scale(15 / 30))
    np.testing.assert_array_equal(heat0[0, 0], scoring.colour_scale(5 / 30))
    np.testing.assert_array_equal(heat1[3, 0], scoring.colour_scale(1.0))
    np.testing.assert_array_equal(heat1[0, 0], scoring.colour_scale(0.0))
    np.testing.assert_array_equal(at(1), np.repeat(images[0], 3, -1))  # grey shown as RGB
    bar = grid[1 + cell]  # the colour bar's first row, below the single row of pairs
    np.testing.assert_array_equal(bar[1], scoring.colour_scale(0.0))
    np.testing.assert_array_equal(bar[-2], scoring.colour_scale(1.0))
    brightness = bar[1:-1].astype(int).sum(-1)
    assert (np.diff(brightness) >= 0).all()  # the scale gets brighter from low to high
    # Under the bar, its scale in numbers: the low end's under its left end, the middle's,
    # the high end's ending under its right end, then the unit.
    scale = grid[1 + cell + factor:]
    assert (scale == scale[..., :1]).all()  # grey text on white
    ink, third = 255 - scale[..., 0].astype(int), grid.shape[1] // 3
    for text, start, end, where in (('0.00', 0, third, 'left'), ('15.00', third, 2 * third,
                                    'middle'), ('30.00', 2 * third, None, 'right'),
                                    ('bits per pixel', 0, None, 'middle')):
        found = start + _find(ink[:, start:end], image_files.render_text(
            text, scoring.BAR_TEXT_SIZE).astype(int) * (255 - 64) // 255)
        width = image_files.text_width(text, scoring.BAR_TEXT_SIZE)
        assert {'left': found == 1, 'right': found + width == grid.shape[1] - 1,
                'middle': abs(found + width / 2 - grid.shape[1] / 2) <= 2}[where], (text, found)


def _find(ink, text):
    """The column where `text` (a coverage array) stands in `ink`, to within rounding."""
    from numpy.lib.stride_tricks import sliding_window_view

    windows = sliding_window_view(ink, text.shape)
    rows, columns = np.nonzero((np.abs(windows - text) <= 1).all(axis=(-2, -1)))
    assert len(columns) == 1, (len(columns), text.shape)
    return int(columns[0])


@pytest.mark.parametrize('make, argv, message', [
    (lambda d: write_pngs(d, random_images(1, (8, 12, 3))), [],
     r'--score: .*im0.png is 8x12x3 \(RGB\), but the model takes 8x8x3 \(RGB\) images'),
    (lambda d: write_pngs(d, random_images(1, (8, 8, 1))), [],
     r'im0.png is 8x8x1 \(one channel\), but the model takes 8x8x3'),
    (lambda d: write_pngs(d, random_images(1, (8, 8, 3))), ['--labels', '1'],
     r'--labels given, but the model is unconditional'),
])
def test_score_refuses_images_the_model_does_not_take(cli, run_dir, tmp_path, make, argv,
                                                      message):
    folder = make(tmp_path / 'in')
    with pytest.raises(ValueError, match=message):
        cli('--checkpoint', run_dir, '--score', folder, '--output', tmp_path / 'x', *argv)
    assert not os.path.exists(str(tmp_path / 'x.csv'))
    assert not os.path.exists(str(tmp_path / 'x.png'))


def test_class_conditional_scores_need_a_label_per_image(cli, tmp_path):
    run = save_run(tmp_path / 'run', num_classes=3)
    images = random_images(2, (8, 8, 3), seed=2)
    folder = write_pngs(tmp_path / 'in', images)
    with pytest.raises(ValueError, match=r'class-conditional \(3 classes\): give the class of '
                                         r'each of the 2 images with --labels'):
        cli('--checkpoint', run, '--score', folder, '-o', tmp_path)
    with pytest.raises(ValueError, match=r'--labels must give 2 classes in 0..2'):
        cli('--checkpoint', run, '--score', folder, '-o', tmp_path, '--labels', '1,3')
    cli('--checkpoint', run, '--score', folder, '-o', tmp_path, '--labels', '2,0')
    _, values = read_csv(tmp_path / 'scores.csv')  # the default output: <save_dir>/scores
    model = pixel_cnn_pp.load(run)
    np.testing.assert_allclose(values[:, 1], model.nll(images, [2, 0]), rtol=1e-6)
    assert not np.allclose(values[:, 1], model.nll(images, [0, 0]), rtol=1e-4)


def test_a_signal_while_the_csv_and_heatmap_are_written_leaves_the_old_pair(
        run_dir, tmp_path, monkeypatch, capsys):
    from pixel_cnn_pp import images
    from pixel_cnn_pp.signals import signals_raise

    folder = write_pngs(tmp_path / 'in', random_images(2, (8, 8, 3), seed=4))
    old = {'scores.csv': b'file,bits_per_dim,nats\nold,1,2\n', 'scores.png': b'old heatmap'}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    png_writer = images.png_writer

    def write_then_stop(image):
        def write(path):
            png_writer(image)(path)  # the heatmap, whole, after the CSV: then SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)
        return write

    monkeypatch.setattr(images, 'png_writer', write_then_stop)
    with pytest.raises(SystemExit) as stopped, signals_raise(Unhandled):
        run_main(sample, 'sample.py', '--checkpoint', run_dir, '--score', folder,
                 '--output', tmp_path / 'scores')
    assert stopped.value.code == 128 + signal.SIGTERM
    assert_stopped_with_one_line(capsys.readouterr().err, 'sample.py', signal.SIGTERM)
    assert sorted(os.listdir(tmp_path)) == ['in', 'scores.csv', 'scores.png']
    assert {name: (tmp_path / name).read_bytes() for name in old} == old
