"""pixel_cnn_pp/images.py: batches tiled into grids, written as PNG and .npz without half files."""

import os

import numpy as np
import pytest

from pixel_cnn_pp import files, images


def _batch(n, h=3, w=2, c=3):
    return (np.arange(n * h * w * c) % 200 + 1).astype(np.uint8).reshape(n, h, w, c)


def test_tile_places_images_row_by_row_between_borders():
    batch = _batch(5)
    grid = images.tile_images(batch, columns=3, border=1, fill=255)
    assert grid.shape == (2 * (3 + 1) + 1, 3 * (2 + 1) + 1, 3)
    for k in range(5):
        top, left = 1 + (k // 3) * 4, 1 + (k % 3) * 3
        np.testing.assert_array_equal(grid[top:top + 3, left:left + 2], batch[k])
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()  # the border
    assert (grid[5:8, 7:9] == 255).all()  # the empty sixth cell


def test_tile_defaults_to_a_square_grid():
    assert images.tile_images(_batch(16)).shape == (4 * 4 + 1, 4 * 3 + 1, 3)
    assert images.tile_images(_batch(10)).shape == (3 * 4 + 1, 4 * 3 + 1, 3)


def test_tile_keeps_one_channel():
    gray = _batch(4, c=1)
    assert images.tile_images(gray).shape == (2 * 4 + 1, 2 * 3 + 1, 1)
    assert images.tile_images(gray[..., 0]).shape == (2 * 4 + 1, 2 * 3 + 1, 1)


@pytest.mark.parametrize('bad, match', [
    (np.zeros((2, 4, 4, 3), np.float32), 'uint8'),
    (np.zeros((2, 4, 4, 2), np.uint8), r'\(N, H, W, C\)'),
    (np.zeros((0, 4, 4, 3), np.uint8), 'N >= 1'),
])
def test_bad_batches_are_refused_with_the_expected_form(bad, match):
    with pytest.raises(ValueError, match=match):
        images.tile_images(bad)


def test_png_grid_reads_back_as_written(tmp_path):
    import imageio.v3 as iio

    batch = _batch(150)
    path = tmp_path / 'cifar_sample0.png'
    images.save_image_grid(str(path), batch)
    read = iio.imread(path)
    np.testing.assert_array_equal(read, images.tile_images(batch[:100]))  # the first 100
    assert os.listdir(tmp_path) == ['cifar_sample0.png']  # no temporary file left


def test_gray_png_is_two_dimensional(tmp_path):
    import imageio.v3 as iio

    path = tmp_path / 'mnist.png'
    images.save_image_grid(str(path), _batch(4, c=1))
    assert iio.imread(path).shape == (9, 7)


def test_npz_written_whole_with_usual_permissions(tmp_path):
    path = tmp_path / 'samples.npz'
    images.save_npz(str(path), samples=_batch(2), labels=np.array([0, 1]))
    with np.load(path) as z:
        np.testing.assert_array_equal(z['samples'], _batch(2))
        np.testing.assert_array_equal(z['labels'], [0, 1])
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'grid.png'
    images.save_image_grid(str(path), _batch(4))
    before = path.read_bytes()

    def broken(tmp):
        with open(tmp, 'wb') as f:
            f.write(b'half')
        raise OSError('disk full')

    with pytest.raises(OSError, match='disk full'):
        files.atomic_write(str(path), broken)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['grid.png']
