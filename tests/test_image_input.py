"""pixel_cnn_pp.image_input: a user's images from PNG/JPEG files, folders and .npz files."""

import struct
import zlib

import imageio.v3 as iio
import numpy as np
import PIL.Image
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


def _png(path, pixels, bit_depth, colour_type, chunks=()):
    """A PNG written byte by byte (imageio writes no 16-bit RGB): pixels (H, W[, C]) ints;
    chunks: (type, data) placed before the image data (PLTE, tRNS)."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))

    pixels = np.asarray(pixels)
    rows = pixels.reshape(pixels.shape[0], -1).astype('>u2' if bit_depth == 16 else 'u1')
    header = struct.pack('>IIBBBBB', pixels.shape[1], pixels.shape[0], bit_depth, colour_type,
                         0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
                     + b''.join(chunk(k, d) for k, d in chunks)
                     + chunk(b'IDAT', zlib.compress(b''.join(b'\0' + r.tobytes() for r in rows)))
                     + chunk(b'IEND', b''))
    return path


def test_grey_and_palette_pngs_are_read_as_stored(tmp_path):
    grey = random_images(1, (8, 8, 1), seed=2)[0]
    iio.imwrite(str(tmp_path / 'g.png'), grey[..., 0])
    images, _ = image_input.read_images(str(tmp_path / 'g.png'), (8, 8, 1))
    np.testing.assert_array_equal(images[0], grey)
    # An opaque palette image: the RGB colours it shows.
    palette = _png(tmp_path / 'p.png', [[0, 1], [1, 0]], 8, 3,
                   [(b'PLTE', bytes([10, 20, 30, 200, 100, 0]))])
    np.testing.assert_array_equal(image_input.read_images(str(palette))[0][0],
                                  [[[10, 20, 30], [200, 100, 0]], [[200, 100, 0], [10, 20, 30]]])


@pytest.mark.parametrize('bit_depth, colour_type, channels, chunks, message', [
    (16, 2, 3, [], 'a 16-bit RGB PNG'),
    (16, 0, 1, [], 'a 16-bit grey PNG'),
    (8, 6, 4, [], r'an 8-bit RGBA PNG \(with an alpha channel\)'),
    (16, 6, 4, [], r'a 16-bit RGBA PNG \(with an alpha channel\)'),
    (8, 4, 2, [], r'an 8-bit grey-and-alpha PNG \(with an alpha channel\)'),
    (8, 2, 3, [(b'tRNS', bytes(6))], r'an 8-bit RGB PNG with a transparent colour \(tRNS\)'),
    (8, 3, 1, [(b'PLTE', bytes(3)), (b'tRNS', b'\x80')],
     r'an 8-bit palette PNG with a transparent colour \(tRNS\)'),
], ids=['rgb16', 'grey16', 'rgba', 'rgba16', 'grey_alpha', 'rgb_trns', 'palette_trns'])
def test_pngs_that_cannot_be_read_exactly_are_refused_by_name(tmp_path, bit_depth, colour_type,
                                                              channels, chunks, message):
    # Fully opaque, 43433 in 16 bits: the reader alone would give 8-bit 169 and drop alpha.
    pixels = np.full((4, 4, channels), 43433 if bit_depth == 16 else 255)
    path = _png(tmp_path / 'odd name.png', pixels, bit_depth, colour_type, chunks)
    with pytest.raises(ValueError, match=r'^%s: %s; the model codes opaque 8-bit grey or RGB '
                                         r'images' % (path, message)):
        image_input.read_images([str(tmp_path)])


@pytest.mark.parametrize('make,message', [
    (lambda p: np.savez(str(p / 'x.npz'), a=np.zeros((2, 8, 8, 3), np.uint8),
                        b=np.zeros(2)), r'x.npz: holds \['),
    (lambda p: np.savez(str(p / 'x.npz'), images=np.zeros((2, 8, 8, 3))),
     r"x.npz: 'images' is float64; uint8 images"),
    (lambda p: (p / 'x.npz').write_bytes(b'PK garbage'), 'x.npz: not a readable .npz'),
    (lambda p: PIL.Image.new('CMYK', (8, 8)).save(str(p / 'x.jpg')),
     r'x.jpg: shape \(8, 8, 4\) is not a grey or RGB image'),
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
