"""Tests for pixel_cnn_pp/data/cifar10_data.py and safe_pickle.py, on CIFAR-10 batch files written
here in the real on-disk format (pickled dicts under cifar-10-python/cifar-10-batches-py)."""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from pixel_cnn_pp.data import cifar10_data
from pixel_cnn_pp.data.cifar10_data import DataLoader
from pixel_cnn_pp.data.loader import DataError
from pixel_cnn_pp.data.safe_pickle import UnsafePickleError
from tests.test_download import closed_port_url, serve

TRAIN_FILES = [f'data_batch_{i}' for i in range(1, 6)]


def write_cifar(data_dir, per_batch=8, n_test=12, seed=0, protocol=2):
    """Writes CIFAR-10 python batches under data_dir as the official archive lays them out.

    Returns {'train': (images (N, 32, 32, 3) uint8, labels), 'test': (...)}.
    """
    rng = np.random.RandomState(seed)
    folder = os.path.join(data_dir, 'cifar-10-python', 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    expected = {}
    for subset, files, n in (('train', TRAIN_FILES, per_batch), ('test', ['test_batch'], n_test)):
        xs, ys = [], []
        for name in files:
            images = rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)
            labels = rng.randint(0, 10, n)
            rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # red plane, green, blue
            batch = {b'batch_label': name.encode(), b'labels': labels.tolist(), b'data': rows,
                     b'filenames': [b'img_%d.png' % i for i in range(n)]}
            with open(os.path.join(folder, name), 'wb') as f:
                pickle.dump(batch, f, protocol=protocol)
            xs.append(images)
            ys.append(labels)
        expected[subset] = (np.concatenate(xs), np.concatenate(ys))
    with open(os.path.join(folder, 'batches.meta'), 'wb') as f:
        pickle.dump({b'label_names': [b'airplane'] * 10, b'num_vis': 3072}, f, protocol=protocol)
    return expected


def _batch_path(data_dir, name='data_batch_1'):
    return os.path.join(data_dir, 'cifar-10-python', 'cifar-10-batches-py', name)


def test_pixels_follow_the_channel_planar_row_layout(tmp_path):
    write_cifar(tmp_path)
    row = (np.arange(3072) % 251).astype(np.uint8)
    batch = {b'data': np.stack([row] * 8), b'labels': [3] * 8}
    with open(_batch_path(tmp_path, 'test_batch'), 'wb') as f:
        pickle.dump(batch, f, protocol=2)
    x, y = DataLoader(tmp_path, 'test', 8, return_labels=True).next()
    for r, c, ch in [(0, 0, 0), (5, 7, 1), (31, 31, 2), (12, 30, 2)]:
        assert x[0, r, c, ch] == (ch * 1024 + r * 32 + c) % 251
    assert y.tolist() == [3] * 8


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_batches_load_whatever_pickle_protocol_wrote_them(tmp_path, protocol):
    expected = write_cifar(tmp_path, protocol=protocol)
    loader = DataLoader(tmp_path, 'train', 40, return_labels=True, download=False)
    x, y = loader.next()
    np.testing.assert_array_equal(x, expected['train'][0])
    np.testing.assert_array_equal(y, expected['train'][1])
    assert loader.get_num_labels() == 10


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))  # what a malicious pickle would do on load


def test_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    write_cifar(tmp_path)
    marker = str(tmp_path / 'pwned')
    with open(_batch_path(tmp_path), 'wb') as f:
        pickle.dump({b'data': _RunsCode(marker), b'labels': []}, f, protocol=2)
    with pytest.raises(UnsafePickleError) as err:
        DataLoader(tmp_path, 'train', 8, download=False)
    assert not os.path.exists(marker)
    message = str(err.value)
    assert _batch_path(tmp_path) in message and 'os.makedirs' in message
    assert 'only plain containers and NumPy arrays' in message


@pytest.mark.parametrize('payload', [
    b'cbuiltins\neval\n(Vprint(1)\ntR.',                       # protocol 0 GLOBAL
    b'\x80\x02cnumpy\nfrombuffer\nq\x00.',                    # a numpy name, not on the list
    b'\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x04\x00\x00\x00zlibq\x01\x86R.',
], ids=['builtins-eval', 'numpy-other', 'codecs-other-encoding'])
def test_globals_outside_the_allow_list_are_refused(tmp_path, payload):
    write_cifar(tmp_path)
    with open(_batch_path(tmp_path), 'wb') as f:
        f.write(payload)
    with pytest.raises(UnsafePickleError, match='data_batch_1.*refusing to load'):
        DataLoader(tmp_path, 'train', 8, download=False)


def test_truncated_batch_is_an_error_naming_the_file(tmp_path):
    write_cifar(tmp_path)
    path = _batch_path(tmp_path, 'data_batch_3')
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(DataError, match='truncated or corrupt pickle') as err:
        DataLoader(tmp_path, 'train', 8, download=False)
    assert path in str(err.value)


def test_batch_of_the_wrong_shape_is_refused(tmp_path):
    write_cifar(tmp_path)
    with open(_batch_path(tmp_path, 'test_batch'), 'wb') as f:
        pickle.dump({b'data': np.zeros((4, 3000), np.uint8), b'labels': [0] * 4}, f)
    with pytest.raises(DataError, match=r"'data' is uint8 array of shape \(4, 3000\)"):
        DataLoader(tmp_path, 'test', 2, download=False)


def test_labels_outside_0_to_9_are_refused(tmp_path):
    write_cifar(tmp_path)
    with open(_batch_path(tmp_path, 'test_batch'), 'wb') as f:
        pickle.dump({b'data': np.zeros((4, 3072), np.uint8), b'labels': [0, 1, 2, 10]}, f)
    with pytest.raises(DataError, match='expected 0..9'):
        DataLoader(tmp_path, 'test', 2, download=False)


def _archive_bytes(tmp_path):
    """The fixture batches packed as the official tar.gz is: cifar-10-batches-py/..."""
    source = tmp_path / 'source'
    expected = write_cifar(source)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        tar.add(source / 'cifar-10-python' / 'cifar-10-batches-py', 'cifar-10-batches-py')
    return buffer.getvalue(), expected


def test_missing_batches_are_downloaded_checked_and_extracted(tmp_path, monkeypatch):
    archive, expected = _archive_bytes(tmp_path)
    with serve({'/cifar-10-python.tar.gz': archive}) as (url, _):
        monkeypatch.setattr(cifar10_data, 'URL', url + '/cifar-10-python.tar.gz')
        monkeypatch.setattr(cifar10_data, 'MD5', hashlib.md5(archive).hexdigest())
        loader = DataLoader(tmp_path / 'data', 'test', 12, return_labels=True)
    x, y = loader.next()
    np.testing.assert_array_equal(x, expected['test'][0])
    np.testing.assert_array_equal(y, expected['test'][1])
    where = tmp_path / 'data' / 'cifar-10-python'
    assert sorted(os.listdir(where)) == ['cifar-10-batches-py', 'cifar-10-python.tar.gz']


def test_download_with_the_wrong_checksum_leaves_nothing_behind(tmp_path, monkeypatch):
    archive, _ = _archive_bytes(tmp_path)
    with serve({'/cifar-10-python.tar.gz': archive}) as (url, _):
        monkeypatch.setattr(cifar10_data, 'URL', url + '/cifar-10-python.tar.gz')
        with pytest.raises(DataError, match='checksum mismatch'):
            DataLoader(tmp_path / 'data', 'train', 8)
    assert not any(files for _, _, files in os.walk(tmp_path / 'data'))


def test_offline_error_says_what_to_download_and_where_to_put_it(tmp_path, monkeypatch):
    url = closed_port_url('cifar-10-python.tar.gz')
    monkeypatch.setattr(cifar10_data, 'URL', url)
    with pytest.raises(DataError) as err:
        DataLoader(tmp_path, 'train', 8)
    message = str(err.value)
    assert 'offline' in message and url in message and cifar10_data.MD5 in message
    # The by-hand instruction once, with one target (the archive's path), then the attempts.
    archive = str(tmp_path / 'cifar-10-python' / 'cifar-10-python.tar.gz')
    assert message.count('by hand') == 1 and message.count(archive) == 1
    assert 'save it as %s (MD5' % archive in message
    attempts = message.split('Tried:')[1].split('\n')[1:]
    assert attempts and all(line.startswith('  %s: ' % url) for line in attempts)
    assert not any(files for _, _, files in os.walk(tmp_path))


def test_download_false_takes_an_archive_saved_by_hand(tmp_path, monkeypatch):
    archive, expected = _archive_bytes(tmp_path)
    monkeypatch.setattr(cifar10_data, 'MD5', hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(cifar10_data._download, '_fetch', None)  # would fail if it fetched
    where = tmp_path / 'data' / 'cifar-10-python'
    where.mkdir(parents=True)
    (where / 'cifar-10-python.tar.gz').write_bytes(archive)
    x = DataLoader(tmp_path / 'data', 'test', 12, download=False).next()
    np.testing.assert_array_equal(x, expected['test'][0])


def test_download_false_reports_missing_files_without_fetching(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10_data._download, 'download', None)  # would fail if called
    with pytest.raises(DataError, match='lacks test_batch'):
        DataLoader(tmp_path, 'test', 8, download=False)



def test_archive_placed_by_hand_is_checked_and_extracted_without_network(tmp_path, monkeypatch):
    archive, expected = _archive_bytes(tmp_path)
    monkeypatch.setattr(cifar10_data, 'URL', closed_port_url('cifar-10-python.tar.gz'))
    monkeypatch.setattr(cifar10_data, 'MD5', hashlib.md5(archive).hexdigest())
    where = tmp_path / 'data' / 'cifar-10-python'
    where.mkdir(parents=True)
    (where / 'cifar-10-python.tar.gz').write_bytes(archive)
    x = DataLoader(tmp_path / 'data', 'test', 12).next()
    np.testing.assert_array_equal(x, expected['test'][0])


def test_wrong_archive_placed_by_hand_is_reported_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10_data, 'URL', closed_port_url('cifar-10-python.tar.gz'))
    where = tmp_path / 'cifar-10-python'
    where.mkdir()
    (where / 'cifar-10-python.tar.gz').write_bytes(b'not the archive')
    with pytest.raises(DataError, match='cifar-10-python.tar.gz exists but checksum mismatch'):
        DataLoader(tmp_path, 'test', 12)
    assert (where / 'cifar-10-python.tar.gz').read_bytes() == b'not the archive'
