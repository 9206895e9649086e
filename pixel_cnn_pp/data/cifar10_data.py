"""CIFAR-10, python version: 50,000 training and 10,000 test images, 32x32x3, 10 classes.

Layout under data_dir, the same as the original's so existing downloads are reused:

    <data_dir>/cifar-10-python/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch

Each batch is a pickle of a dict with b'data' (10000 x 3072 uint8: the red plane, then
green, then blue, each 32x32 row-major) and b'labels' (ints 0-9). The pickles are read
with pixel_cnn_pp/data/safe_pickle.py, which refuses anything but containers and NumPy arrays. When
batches are missing, the official archive is downloaded (MD5 checked) and extracted.
Reference: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
"""

import os

import numpy as np

from . import download as _download
from .loader import DataError
from .loader import DownloadingLoader
from .safe_pickle import load_pickle

URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
MD5 = 'c58f30108f718f92721af3b95e74349a'
NUM_LABELS = 10
BATCH_FILES = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}


def batches_dir(data_dir):
    """Where the batch files live: <data_dir>/cifar-10-python/cifar-10-batches-py."""
    return os.path.join(data_dir, 'cifar-10-python', 'cifar-10-batches-py')


def maybe_download_and_extract(data_dir, subset, download=True, progress=None):
    """Makes sure the subset's batch files exist, downloading the archive if allowed."""
    folder = batches_dir(data_dir)
    missing = [f for f in BATCH_FILES[subset] if not os.path.isfile(os.path.join(folder, f))]
    if not missing:
        return folder
    where = os.path.dirname(folder)
    archive = os.path.join(where, os.path.basename(URL))
    # One instruction, one target: an archive saved there is checked and extracted on
    # the next run, with or without --nodownload.
    hint = (f'Download {URL} by hand and save it as {archive} (MD5 {MD5}); the next run '
            'checks and extracts it.')
    if not download and not os.path.exists(archive):
        raise DataError(f'CIFAR-10 not found: {folder} lacks {", ".join(missing)}. {hint}')
    try:
        _download.download(URL, archive, md5=MD5, progress=progress)
    except _download.DownloadError as e:
        tried = ''.join(f'\n  {attempt}' for attempt in e.tried)
        raise DataError(f'CIFAR-10 not found in {folder} and the download failed (offline?). '
                        f'{hint}\nTried:{tried}') from e
    _download.safe_extract_tar(archive, where)
    still_missing = [f for f in missing if not os.path.isfile(os.path.join(folder, f))]
    if still_missing:
        raise DataError(f'{archive} did not contain cifar-10-batches-py/{still_missing[0]}; '
                        f'is it the CIFAR-10 python version? {hint}')
    return folder


def load_batch(path):
    """One batch file -> (images uint8 (N, 32, 32, 3), labels int32 (N,))."""
    expected = "a CIFAR-10 batch: a dict with b'data' (N x 3072 uint8) and b'labels'"
    batch = load_pickle(path, expected)
    if not isinstance(batch, dict):
        raise DataError(f'{path}: holds a {type(batch).__name__}, expected {expected}')
    batch = {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get('data'), batch.get('labels')
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        found = (f'{data.dtype} array of shape {data.shape}' if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise DataError(f"{path}: 'data' is {found}, expected {expected}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        labels = None
    if labels is None or labels.shape != (len(data),):
        raise DataError(f"{path}: 'labels' must be {len(data)} ints, one per image")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_LABELS):
        raise DataError(f'{path}: labels range over {labels.min()}..{labels.max()}, expected 0..9')
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes -> (N, 32, 32, 3)
    return np.ascontiguousarray(images), labels.astype(np.int32)


class DataLoader(DownloadingLoader):
    """CIFAR-10 batches; see loader.py for the interface (download, progress: as
    loader.DownloadingLoader).

    Example: DataLoader('/data', 'train', 64, rng=np.random.RandomState(1), shuffle=True)
    """

    def _load(self, data_dir, subset):
        folder = maybe_download_and_extract(data_dir, subset, self.download,
                                           self.progress)
        parts = [load_batch(os.path.join(folder, f)) for f in BATCH_FILES[subset]]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return images, labels, NUM_LABELS
