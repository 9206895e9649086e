"""Tests for pixel_cnn_pp/data/folder_data.py on PNG/JPEG folders written here: <dir>/train,
<dir>/test, optionally with class sub-folders."""

import os

import imageio.v3 as iio
import numpy as np
import pytest

from pixel_cnn_pp.data.folder_data import DataLoader
from pixel_cnn_pp.data.loader import DataError


def write_folder(data_dir, classes=('cat', 'dog'), n_train=20, n_test=6, size=(32, 32),
                 channels=3, seed=0):
    """Writes PNGs to <data_dir>/{train,test}/<class>/ (or flat when classes is None).

    Returns {'train': (images in the loader's order, labels or None), 'test': ...}."""
    rng = np.random.RandomState(seed)
    expected = {}
    for subset, n in (('train', n_train), ('test', n_test)):
        xs, ys = [], []
        for label, name in enumerate(classes or [None]):
            folder = os.path.join(data_dir, subset, *([name] if name else []))
            os.makedirs(folder, exist_ok=True)
            images = rng.randint(0, 256, (n, size[0], size[1], channels)).astype(np.uint8)
            for i, image in enumerate(images):
                iio.imwrite(os.path.join(folder, f'{i:04d}.png'),
                            image[..., 0] if channels == 1 else image)
            xs.append(images)
            ys += [label] * n
        expected[subset] = (np.concatenate(xs), np.array(ys) if classes else None)
    return expected


def test_class_folders_give_labels_in_sorted_name_order(tmp_path):
    expected = write_folder(tmp_path, classes=('ant', 'bee', 'cow'), n_train=4, n_test=2)
    loader = DataLoader(tmp_path, 'train', 12, return_labels=True)
    x, y = loader.next()
    np.testing.assert_array_equal(x, expected['train'][0])
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert loader.get_num_labels() == 3


def test_test_labels_follow_the_train_folders_classes(tmp_path):
    write_folder(tmp_path, classes=('ant', 'bee', 'cow'), n_train=2, n_test=2)
    os.rename(tmp_path / 'test' / 'ant', tmp_path / 'ant_away')
    x, y = DataLoader(tmp_path, 'test', 4, return_labels=True).next()
    assert y.tolist() == [1, 1, 2, 2]  # bee and cow keep the train folder's numbers
    os.rename(tmp_path / 'ant_away', tmp_path / 'test' / 'ant')
    os.rename(tmp_path / 'test' / 'ant', tmp_path / 'test' / 'eel')
    with pytest.raises(DataError, match='class folder.*eel'):
        DataLoader(tmp_path, 'test', 2)


def test_flat_folder_loads_without_labels(tmp_path):
    expected = write_folder(tmp_path, classes=None)
    loader = DataLoader(tmp_path, 'train', 20)
    np.testing.assert_array_equal(loader.next(), expected['train'][0])
    assert loader.get_num_labels() is None
    with pytest.raises(DataError, match='no class folders'):
        DataLoader(tmp_path, 'train', 20, return_labels=True)


def test_grayscale_images_stay_one_channel(tmp_path):
    expected = write_folder(tmp_path, channels=1, size=(28, 20))
    loader = DataLoader(tmp_path, 'test', 12)
    assert loader.get_observation_size() == (28, 20, 1)
    np.testing.assert_array_equal(loader.next(), expected['test'][0])


def test_alpha_channel_is_dropped(tmp_path):
    write_folder(tmp_path, channels=4, n_train=2, n_test=2)
    image = iio.imread(tmp_path / 'train' / 'cat' / '0000.png')
    x = DataLoader(tmp_path, 'train', 4).next()
    np.testing.assert_array_equal(x[0], image[..., :3])


def test_mixed_sizes_are_an_error_naming_the_sizes_and_the_way_out(tmp_path):
    write_folder(tmp_path, n_train=3)
    iio.imwrite(tmp_path / 'train' / 'dog' / 'big.png', np.zeros((64, 48, 3), np.uint8))
    with pytest.raises(DataError) as err:
        DataLoader(tmp_path, 'train', 2)
    message = str(err.value)
    assert str(tmp_path / 'train') in message and '6 of 32x32x3' in message
    assert '1 of 64x48x3 (e.g. big.png)' in message and 'image_size' in message


def test_image_size_resizes_every_image(tmp_path):
    write_folder(tmp_path, n_train=3)
    big = np.zeros((64, 64, 3), np.uint8)
    big[:, :, 0] = 200
    iio.imwrite(tmp_path / 'train' / 'dog' / 'big.png', big)
    x = DataLoader(tmp_path, 'train', 7, image_size=16).next()
    assert x.shape == (7, 16, 16, 3)
    assert (x[-1, :, :, 0] == 200).all() and (x[-1, :, :, 1:] == 0).all()  # flat colour survives


def test_mixed_gray_and_colour_is_an_error(tmp_path):
    write_folder(tmp_path, n_train=2)
    iio.imwrite(tmp_path / 'train' / 'dog' / 'gray.png', np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError, match='gray and colour images cannot be mixed'):
        DataLoader(tmp_path, 'train', 2)


def test_jpeg_files_are_read(tmp_path):
    os.makedirs(tmp_path / 'train')
    image = np.full((24, 24, 3), (10, 120, 240), np.uint8)
    iio.imwrite(tmp_path / 'train' / 'a.JPG', image, extension='.jpg')
    iio.imwrite(tmp_path / 'train' / 'b.jpeg', image, extension='.jpeg')
    x = DataLoader(tmp_path, 'train', 2).next()
    assert x.shape == (2, 24, 24, 3)
    assert np.abs(x.astype(int) - image).max() <= 4  # JPEG is lossy


def test_folder_without_images_is_an_error_saying_what_to_put_there(tmp_path):
    os.makedirs(tmp_path / 'train')
    (tmp_path / 'train' / 'notes.txt').write_text('not an image')
    with pytest.raises(DataError, match=r'no PNG or JPEG images in .*train; expected .*<class>'):
        DataLoader(tmp_path, 'train', 2)
    with pytest.raises(DataError, match='does not exist'):
        DataLoader(tmp_path, 'test', 2)


def test_loose_images_beside_class_folders_are_an_error(tmp_path):
    write_folder(tmp_path, n_train=2)
    iio.imwrite(tmp_path / 'train' / 'stray.png', np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match='both images .*stray.png.* and class folders'):
        DataLoader(tmp_path, 'train', 2)


def test_corrupt_image_is_an_error_naming_it(tmp_path):
    write_folder(tmp_path, n_train=2)
    path = tmp_path / 'train' / 'cat' / '0001.png'
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match='not a readable image') as err:
        DataLoader(tmp_path, 'train', 2)
    assert str(path) in str(err.value)


def test_16_bit_images_are_refused(tmp_path):
    os.makedirs(tmp_path / 'train')
    iio.imwrite(tmp_path / 'train' / 'deep.png', np.zeros((8, 8), np.uint16))
    with pytest.raises(DataError, match='uint16 pixels; 8-bit images are expected'):
        DataLoader(tmp_path, 'train', 1)
