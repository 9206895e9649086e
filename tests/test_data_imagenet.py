"""Tests for pixel_cnn_pp/data/imagenet_data.py on all three Small ImageNet layouts,
written here in the real formats: the original's imgnet_SxS.npz, its train_SxS/ valid_SxS/ PNG folders, and the
Imagenet32/64 batch files (channel-planar 'data' rows, 1-based 'labels')."""

import os
import pickle

import imageio.v3 as iio
import numpy as np
import pytest

from pixel_cnn_pp.data.imagenet_data import DataLoader
from pixel_cnn_pp.data.loader import DataError

TRAIN_BATCHES = [f'train_data_batch_{i}' for i in range(1, 11)]


def _folder(data_dir, size):
    return os.path.join(data_dir, 'small_imagenet' if size == 32 else 'small_imagenet64')


def write_imagenet_batches(data_dir, size=32, per_batch=4, n_val=12, fmt='npz', seed=0):
    """Writes train_data_batch_1..10 and val_data (.npz, or pickles as the older release).

    Returns {'train': (images (N, S, S, 3), labels 0-based), 'test': ...}."""
    rng = np.random.RandomState(seed)
    folder = _folder(data_dir, size)
    os.makedirs(folder, exist_ok=True)
    expected = {}
    for subset, files, n in (('train', TRAIN_BATCHES, per_batch), ('test', ['val_data'], n_val)):
        xs, ys = [], []
        for name in files:
            images = rng.randint(0, 256, (n, size, size, 3)).astype(np.uint8)
            labels = rng.randint(1, 1001, n)  # 1-based, as distributed
            batch = {'data': images.transpose(0, 3, 1, 2).reshape(n, -1), 'labels': labels.tolist(),
                     'mean': np.zeros(3 * size * size, np.float32)}
            if fmt == 'npz':
                np.savez(os.path.join(folder, name + '.npz'), **batch)
            else:
                with open(os.path.join(folder, name), 'wb') as f:
                    pickle.dump(batch, f)
            xs.append(images)
            ys.append(labels - 1)
        expected[subset] = (np.concatenate(xs), np.concatenate(ys))
    return expected


def write_imagenet_npz(data_dir, size=32, n_train=40, n_test=12, seed=0):
    """Writes the original's imgnet_SxS.npz; returns {'train': (images, None), 'test': ...}."""
    rng = np.random.RandomState(seed)
    folder = _folder(data_dir, size)
    os.makedirs(folder, exist_ok=True)
    trainx = rng.randint(0, 256, (n_train, size, size, 3)).astype(np.uint8)
    testx = rng.randint(0, 256, (n_test, size, size, 3)).astype(np.uint8)
    np.savez(os.path.join(folder, f'imgnet_{size}x{size}.npz'), trainx=trainx, testx=testx)
    return {'train': (trainx, None), 'test': (testx, None)}


def write_imagenet_pngs(data_dir, size=32, n_train=40, n_test=12, seed=0):
    """Writes train_SxS/ and valid_SxS/ PNG folders; returns the images in file-name order."""
    rng = np.random.RandomState(seed)
    expected = {}
    for subset, name, n in (('train', f'train_{size}x{size}', n_train),
                            ('test', f'valid_{size}x{size}', n_test)):
        folder = os.path.join(_folder(data_dir, size), name)
        os.makedirs(folder)
        images = rng.randint(0, 256, (n, size, size, 3)).astype(np.uint8)
        for i, image in enumerate(images):
            iio.imwrite(os.path.join(folder, f'{i:08d}.png'), image)
        expected[subset] = (images, None)
    return expected


@pytest.mark.parametrize('size', [32, 64])
@pytest.mark.parametrize('fmt', ['npz', 'pickle'])
def test_batch_files_give_images_and_0_based_labels(tmp_path, size, fmt):
    expected = write_imagenet_batches(tmp_path, size=size, fmt=fmt)
    for subset, n in (('train', 40), ('test', 12)):
        loader = DataLoader(tmp_path, subset, n, image_size=size, return_labels=True)
        x, y = loader.next()
        assert x.shape == (n, size, size, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, expected[subset][0])
        np.testing.assert_array_equal(y, expected[subset][1])
        assert loader.get_num_labels() == 1000


def test_batch_rows_are_red_then_green_then_blue_planes(tmp_path):
    write_imagenet_batches(tmp_path)
    row = (np.arange(3072) % 249).astype(np.uint8)
    np.savez(tmp_path / 'small_imagenet' / 'val_data.npz', data=np.stack([row] * 2),
             labels=[1, 1000])
    x, y = DataLoader(tmp_path, 'test', 2, return_labels=True).next()
    for r, c, ch in [(0, 0, 0), (2, 9, 1), (31, 31, 2)]:
        assert x[1, r, c, ch] == (ch * 1024 + r * 32 + c) % 249
    assert y.tolist() == [0, 999]


def test_original_npz_layout_loads_without_labels(tmp_path):
    expected = write_imagenet_npz(tmp_path)
    x = DataLoader(tmp_path, 'train', 40).next()
    np.testing.assert_array_equal(x, expected['train'][0])
    with pytest.raises(DataError, match='unlabelled layout.*train_data_batch_1'):
        DataLoader(tmp_path, 'train', 8, return_labels=True)


def test_png_folders_are_read_in_name_order_and_cached_as_npz(tmp_path):
    expected = write_imagenet_pngs(tmp_path)
    x = DataLoader(tmp_path, 'test', 12).next()
    np.testing.assert_array_equal(x, expected['test'][0])
    cache = tmp_path / 'small_imagenet' / 'imgnet_32x32.npz'
    assert sorted(os.listdir(tmp_path / 'small_imagenet')) == [
        'imgnet_32x32.npz', 'train_32x32', 'valid_32x32']  # no temporary file left
    with np.load(cache) as z:
        np.testing.assert_array_equal(z['trainx'], expected['train'][0])


def test_png_cache_is_readable_by_others_sharing_the_data_folder(tmp_path):
    # It was written through NamedTemporaryFile (0600): private to whoever built it.
    import stat
    write_imagenet_pngs(tmp_path, n_train=2, n_test=1)
    old = os.umask(0o022)
    try:
        DataLoader(tmp_path, 'train', 2)
    finally:
        os.umask(old)
    cache = tmp_path / 'small_imagenet' / 'imgnet_32x32.npz'
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o644


def test_a_lone_png_folder_is_an_error_naming_the_missing_one(tmp_path):
    write_imagenet_pngs(tmp_path, n_train=2, n_test=1)
    os.rename(tmp_path / 'small_imagenet' / 'valid_32x32', tmp_path / 'elsewhere')
    with pytest.raises(DataError, match='found .*train_32x32 but not .*valid_32x32'):
        DataLoader(tmp_path, 'train', 2)
    assert sorted(os.listdir(tmp_path / 'small_imagenet')) == ['train_32x32']


def test_batch_files_are_preferred_when_labels_are_asked_for(tmp_path):
    write_imagenet_npz(tmp_path, seed=1)
    expected = write_imagenet_batches(tmp_path)
    x, y = DataLoader(tmp_path, 'test', 12, return_labels=True).next()
    np.testing.assert_array_equal(x, expected['test'][0])


def test_incomplete_batch_files_are_listed(tmp_path):
    write_imagenet_batches(tmp_path)
    os.remove(tmp_path / 'small_imagenet' / 'train_data_batch_7.npz')
    with pytest.raises(DataError, match='incomplete: train_data_batch_7.npz missing'):
        DataLoader(tmp_path, 'train', 8)


def test_missing_data_set_says_where_to_get_it_and_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as err:
        DataLoader(tmp_path, 'train', 8, image_size=64)
    message = str(err.value)
    assert str(tmp_path / 'small_imagenet64') in message and 'image-net.org' in message
    assert 'train_data_batch_1..10.npz' in message and 'imgnet_64x64.npz' in message
    assert os.listdir(tmp_path) == []


def test_64x64_files_read_as_32x32_suggest_the_right_size(tmp_path):
    write_imagenet_batches(tmp_path, size=64)
    os.rename(tmp_path / 'small_imagenet64', tmp_path / 'small_imagenet')
    with pytest.raises(DataError, match='use image_size=64'):
        DataLoader(tmp_path, 'test', 4, image_size=32)


def test_labels_that_are_not_1_based_are_refused(tmp_path):
    write_imagenet_batches(tmp_path)
    np.savez(tmp_path / 'small_imagenet' / 'val_data.npz', data=np.zeros((2, 3072), np.uint8),
             labels=[0, 5])
    with pytest.raises(DataError, match=r'val_data.npz: labels range over 0..5, expected 1..1000'):
        DataLoader(tmp_path, 'test', 2)


def test_corrupt_npz_batch_is_an_error_naming_it(tmp_path):
    write_imagenet_batches(tmp_path)
    path = tmp_path / 'small_imagenet' / 'val_data.npz'
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match='truncated or corrupt npz') as err:
        DataLoader(tmp_path, 'test', 2)
    assert str(path) in str(err.value)


def test_image_size_other_than_32_or_64_is_refused(tmp_path):
    with pytest.raises(ValueError, match='image_size must be 32 or 64'):
        DataLoader(tmp_path, 'train', 8, image_size=48)
