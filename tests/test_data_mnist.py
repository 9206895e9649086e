"""Tests for pixel_cnn_pp/data/mnist_data.py on IDX files written here with the real headers
(big-endian magic 0x00000803 / 0x00000801, counts, rows, cols), gzipped or not, and on
Keras's mnist.npz."""

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest

from pixel_cnn_pp.data import mnist_data
from pixel_cnn_pp.data.loader import DataError
from pixel_cnn_pp.data.mnist_data import DataLoader
from tests.test_download import closed_port_url, serve

NAMES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
         'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def idx_bytes(array):
    """An IDX file's bytes for a uint8 array of 1 (labels) or 3 (images) dimensions."""
    magic = 0x00000800 | array.ndim
    return struct.pack(f'>I{array.ndim}I', magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(data_dir, n_train=40, n_test=12, gz=True, seed=0):
    """Writes the four MNIST IDX files in <data_dir>/mnist; returns the expected arrays
    {'train': (images (N, 28, 28, 1), labels), 'test': ...}."""
    rng = np.random.RandomState(seed)
    folder = os.path.join(data_dir, 'mnist')
    os.makedirs(folder, exist_ok=True)
    expected = {}
    for subset, n in (('train', n_train), ('test', n_test)):
        images = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, n).astype(np.uint8)
        for name, array in zip(NAMES[subset], (images, labels)):
            data = idx_bytes(array)
            path = os.path.join(folder, name + ('.gz' if gz else ''))
            with open(path, 'wb') as f:
                f.write(gzip.compress(data) if gz else data)
        expected[subset] = (images[..., None], labels)
    return expected


@pytest.mark.parametrize('gz', [True, False], ids=['gzipped', 'plain'])
def test_idx_files_give_28x28x1_uint8_images_and_labels(tmp_path, gz):
    expected = write_mnist(tmp_path, gz=gz)
    loader = DataLoader(tmp_path, 'test', 12, return_labels=True, download=False)
    x, y = loader.next()
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.uint8
    assert loader.get_observation_size() == (28, 28, 1) and loader.get_num_labels() == 10
    np.testing.assert_array_equal(x, expected['test'][0])
    np.testing.assert_array_equal(y, expected['test'][1])


def test_image_pixels_are_row_major_after_the_16_byte_header(tmp_path):
    write_mnist(tmp_path, gz=False)
    path = tmp_path / 'mnist' / 't10k-images-idx3-ubyte'
    payload = (np.arange(12 * 784) % 253).astype(np.uint8)
    path.write_bytes(struct.pack('>IIII', 0x803, 12, 28, 28) + payload.tobytes())
    x = DataLoader(tmp_path, 'test', 12, download=False).next()
    for i, r, c in [(0, 0, 0), (0, 3, 5), (11, 27, 27)]:
        assert x[i, r, c, 0] == (i * 784 + r * 28 + c) % 253


def test_wrong_magic_number_is_refused_naming_the_file(tmp_path):
    write_mnist(tmp_path)
    folder = tmp_path / 'mnist'
    # a labels file where the images should be
    (folder / 't10k-images-idx3-ubyte.gz').write_bytes(
        (folder / 't10k-labels-idx1-ubyte.gz').read_bytes())
    with pytest.raises(DataError) as err:
        DataLoader(tmp_path, 'test', 4, download=False)
    message = str(err.value)
    assert str(folder / 't10k-images-idx3-ubyte.gz') in message
    assert '0x00000801' in message and 'expected 0x00000803' in message


@pytest.mark.parametrize('gz', [True, False], ids=['gzipped', 'plain'])
def test_truncated_idx_file_is_an_error_not_a_shorter_data_set(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    path = tmp_path / 'mnist' / ('train-images-idx3-ubyte' + ('.gz' if gz else ''))
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(DataError, match='truncated') as err:
        DataLoader(tmp_path, 'train', 4, download=False)
    assert str(path) in str(err.value)


def test_idx_file_with_trailing_bytes_is_refused(tmp_path):
    write_mnist(tmp_path, gz=False)
    path = tmp_path / 'mnist' / 't10k-labels-idx1-ubyte'
    path.write_bytes(path.read_bytes() + b'\0')
    with pytest.raises(DataError, match='trailing bytes'):
        DataLoader(tmp_path, 'test', 4, download=False)


def test_label_and_image_counts_must_agree(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / 'mnist' / 't10k-labels-idx1-ubyte').write_bytes(idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(DataError, match='11 labels but .* has 12 images'):
        DataLoader(tmp_path, 'test', 4, download=False)


def test_keras_mnist_npz_is_read_when_the_idx_files_are_absent(tmp_path):
    rng = np.random.RandomState(1)
    arrays = {'x_train': rng.randint(0, 256, (20, 28, 28)).astype(np.uint8),
              'y_train': rng.randint(0, 10, 20).astype(np.uint8),
              'x_test': rng.randint(0, 256, (10, 28, 28)).astype(np.uint8),
              'y_test': rng.randint(0, 10, 10).astype(np.uint8)}
    os.makedirs(tmp_path / 'mnist')
    np.savez(tmp_path / 'mnist' / 'mnist.npz', **arrays)
    x, y = DataLoader(tmp_path, 'train', 20, return_labels=True, download=False).next()
    np.testing.assert_array_equal(x[..., 0], arrays['x_train'])
    np.testing.assert_array_equal(y, arrays['y_train'])


def _served_files(tmp_path):
    source = tmp_path / 'source'
    expected = write_mnist(source)
    files = {f'/mnist/{n}': (source / 'mnist' / n).read_bytes()
             for n in os.listdir(source / 'mnist')}
    md5 = {path.split('/')[-1]: hashlib.md5(data).hexdigest() for path, data in files.items()}
    return files, md5, expected


def test_missing_files_are_fetched_from_the_next_mirror_when_one_fails(tmp_path, monkeypatch):
    files, md5, expected = _served_files(tmp_path)
    with serve(files) as (url, server):
        monkeypatch.setattr(mnist_data, 'MIRRORS', [closed_port_url(''), url + '/mnist/'])
        monkeypatch.setattr(mnist_data, 'MD5', md5)
        x, y = DataLoader(tmp_path / 'data', 'train', 40, return_labels=True).next()
    np.testing.assert_array_equal(x, expected['train'][0])
    np.testing.assert_array_equal(y, expected['train'][1])
    assert sorted(p for p, _ in server.requests) == ['/mnist/train-images-idx3-ubyte.gz',
                                                     '/mnist/train-labels-idx1-ubyte.gz']
    assert sorted(os.listdir(tmp_path / 'data' / 'mnist')) == [
        'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz']


def test_offline_error_names_the_folder_files_and_mirrors(tmp_path, monkeypatch):
    mirrors = [closed_port_url('') , closed_port_url('x/')]
    monkeypatch.setattr(mnist_data, 'MIRRORS', mirrors)
    with pytest.raises(DataError) as err:
        DataLoader(tmp_path, 'test', 4)
    message = str(err.value)
    assert f'MNIST not found in {tmp_path / "mnist"}' in message and 'offline' in message
    assert 't10k-images-idx3-ubyte.gz' in message and 't10k-labels-idx1-ubyte.gz' in message
    assert all(m in message for m in mirrors)
    assert message.count('by hand') == 1  # one instruction, then the attempts
    assert not any(files for _, _, files in os.walk(tmp_path))
