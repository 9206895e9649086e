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


def test_upscale_makes_every_pixel_a_block():
    image = _batch(1, h=3, w=4)[0]
    big = images.upscale(image, 3)
    assert big.shape == (9, 12, 3)
    for r in range(9):
        for c in range(12):
            np.testing.assert_array_equal(big[r, c], image[r // 3, c // 3])
    with pytest.raises(ValueError, match="'factor' must be a positive integer"):
        images.upscale(image, 0)


def test_viewing_scale_brings_images_to_about_128_pixels():
    assert [images.viewing_scale((s, s)) for s in (8, 28, 32, 64, 200)] == [16, 4, 4, 2, 1]
    assert images.viewing_scale((32, 64)) == 2  # the longer side decides


def test_labelled_grid_is_the_upscaled_tiles_below_a_strip_of_the_label():
    batch = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    label = ['patches', 'epoch 1', 'test 4.873 bits/dim', 'seed 2']
    grid = images.image_grid(batch, label=label, scale=4)
    tiles = images.upscale(images.tile_images(batch), 4)
    assert tiles.shape == (67 * 4, 67 * 4, 3)
    strip = grid.shape[0] - tiles.shape[0]
    assert strip > 0 and grid.shape[1:] == tiles.shape[1:]
    np.testing.assert_array_equal(grid[strip:], tiles)  # the images, exactly, 4x4 blocks
    # The strip: the label in Pillow's font, dark on white (grey at the letters' edges),
    # on the lines that fit 268 pixels with a margin of 4 either side: the first two
    # parts, then the last two.
    first = images.render_text('patches  epoch 1')
    second = images.render_text('test 4.873 bits/dim  seed 2')
    assert 8 + images.text_width('patches  epoch 1  test 4.873 bits/dim') > 268
    height = first.shape[0]
    expected = np.full((4 + 2 * (height + 4), 268), 255.0)
    expected[4:4 + height, 4:4 + first.shape[1]] -= first
    expected[8 + height:8 + 2 * height, 4:4 + second.shape[1]] -= second
    assert strip == expected.shape[0]
    assert (grid[:strip] == grid[:strip, :, :1]).all()  # grey: the same in every channel
    np.testing.assert_array_equal(grid[:strip, :, 0], expected.astype(np.uint8))


def test_a_label_wider_than_the_grid_widens_the_canvas_not_the_images():
    batch = _batch(4, h=4, w=4)
    grid = images.image_grid(batch, label=['a label much wider than 11 pixels'], scale=1)
    tiles = images.tile_images(batch)
    strip = grid.shape[0] - tiles.shape[0]
    assert grid.shape[1] == 8 + images.text_width('a label much wider than 11 pixels') > 11
    np.testing.assert_array_equal(grid[strip:, :11], tiles)
    assert (grid[strip:, 11:] == 255).all()


def test_the_font_is_pillows_and_draws_each_character_its_own_way():
    text = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:/-+=_()%?'
    glyphs = [images.render_text(char).tobytes() for char in text]
    assert len(set(glyphs)) == len(text)  # no two characters look the same
    line_height = images.render_text('x').shape[0]
    assert all(images.render_text(char).shape[0] == line_height for char in text)
    assert images.render_text('ab', 32).shape[0] > line_height  # it scales
    assert images.render_text('ab').max() == 255 and images.render_text(' ').max() == 0


def test_labelled_png_reads_back_as_its_grid_and_gray_stays_gray(tmp_path):
    import imageio.v3 as iio

    for batch, name in ((_batch(5), 'rgb.png'), (_batch(5, c=1), 'gray.png')):
        path = tmp_path / name
        images.save_image_grid(str(path), batch, label=['mnist', 'epoch 3'], scale=2)
        expected = images.image_grid(batch, label=['mnist', 'epoch 3'], scale=2)
        np.testing.assert_array_equal(iio.imread(path), expected[..., 0] if batch.shape[-1] == 1
                                      else expected)
