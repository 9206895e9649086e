"""pixel_cnn_pp.image_input: a user's images from PNG/JPEG files, folders and .npz files."""

import imageio.v3 as iio
import numpy as np
import pytest

from pixel_cnn_pp import image_input
from tests.conftest import random_images


def test_files_folders_and_npz_in_order_with_names(tmp_path):
    rgb = random_images(3, (8, 8, 3), seed=1)
    (tmp_path / 'dir').mkdir()
    for i in (2, 0, 1):  # written out of order: the folder is read by name
        iio.imwrite(str(tmp_path / 'dir' / ('b%d.png' % i)), rgb[i])
    (tmp_path / 'dir' / 'notes.txt').write_text('not an image')
    np.savez(str(tmp_path / 'more.npz'), samples=rgb[:2])
    images, names = image_input.read_images([str(tmp_path / 'dir'), str(tmp_path / 'more.npz')])
    np.testing.assert_array_equal(images, np.concatenate([rgb, rgb[:2]]))
    assert [n.split('/')[-1] for n in names] == ['b0.png', 'b1.png', 'b2.png', 'more.npz[0]',
                                                 'more.npz[1]']


def test_grey_and_opaque_rgba_pngs(tmp_path):
    grey = random_images(1, (8, 8, 1), seed=2)[0]
    iio.imwrite(str(tmp_path / 'g.png'), grey[..., 0])
    images, _ = image_input.read_images(str(tmp_path / 'g.png'), (8, 8, 1))
    np.testing.assert_array_equal(images[0], grey)
    rgba = np.concatenate([random_images(1, (8, 8, 3))[0], np.full((8, 8, 1), 255, np.uint8)], -1)
    iio.imwrite(str(tmp_path / 'a.png'), rgba)
    np.testing.assert_array_equal(image_input.read_images(str(tmp_path / 'a.png'))[0][0],
                                  rgba[..., :3])
    rgba[0, 0, 3] = 10
    iio.imwrite(str(tmp_path / 't.png'), rgba)
    with pytest.raises(ValueError, match='t.png: has transparent pixels'):
        image_input.read_images(str(tmp_path / 't.png'))


@pytest.mark.parametrize('make,message', [
    (lambda p: np.savez(str(p / 'x.npz'), a=np.zeros((2, 8, 8, 3), np.uint8),
                        b=np.zeros(2)), r'x.npz: holds \['),
    (lambda p: np.savez(str(p / 'x.npz'), images=np.zeros((2, 8, 8, 3))),
     r"x.npz: 'images' is float64; uint8 images"),
    (lambda p: (p / 'x.npz').write_bytes(b'PK garbage'), 'x.npz: not a readable .npz'),
    (lambda p: iio.imwrite(str(p / 'x.png'), np.zeros((8, 8), np.uint16)),
     'x.png: uint16 pixels; 8-bit images are expected'),
])
def test_bad_files_are_refused_naming_them(tmp_path, make, message):
    make(tmp_path)
    path = next(p for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=message):
        image_input.read_images(str(path))


def test_mixed_shapes_empty_folders_and_the_wrong_shape_are_refused(tmp_path):
    iio.imwrite(str(tmp_path / 'a.png'), random_images(1, (8, 8, 3))[0])
    iio.imwrite(str(tmp_path / 'b.png'), random_images(1, (4, 8, 3))[0])
    with pytest.raises(ValueError, match=r'b.png is 4x8x3 \(RGB\) but .*a.png is 8x8x3'):
        image_input.read_images(str(tmp_path))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='empty: a folder without .png/.jpg/.jpeg images'):
        image_input.read_images(str(tmp_path / 'empty'))
    with pytest.raises(ValueError, match=r'--score: .*a.png is 8x8x3 \(RGB\), but the model takes '
                                         r'32x32x3'):
        image_input.read_images(str(tmp_path / 'a.png'), (32, 32, 3), '--score')
