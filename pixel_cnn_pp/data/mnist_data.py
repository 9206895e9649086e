"""MNIST: 60,000 training and 10,000 test digits, 28x28x1 uint8, labels 0-9.

Layout under data_dir:

    <data_dir>/mnist/train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
                     t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

or, instead of the IDX files, Keras's <data_dir>/mnist/mnist.npz (x_train, y_train, x_test,
y_test). Missing IDX files are downloaded (gzipped, MD5 checked) from the mirrors in turn.

IDX format (LeCun et al.): big-endian; magic 0x00000803 then count, rows, cols (uint32) for
images, magic 0x00000801 then count for labels; then the uint8 payload.
"""

import gzip
import os
import zlib
import zipfile

import numpy as np

from . import download as _download
from .loader import DataError
from .loader import DownloadingLoader

MIRRORS = ['https://ossci-datasets.s3.amazonaws.com/mnist/', 'http://yann.lecun.com/exdb/mnist/']
MD5 = {
    'train-images-idx3-ubyte.gz': 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
    'train-labels-idx1-ubyte.gz': 'd53e105ee54ea40749a09fcbcd1e9432',
    't10k-images-idx3-ubyte.gz': '9fb629c4189551a2d022fa330f9573f3',
    't10k-labels-idx1-ubyte.gz': 'ec29112dd5afa0611ce80d1b7f02629c',
}
FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
         'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
NUM_LABELS = 10


def read_idx(path, magic):
    """One IDX file (gzipped or not) -> uint8 array (count, rows, cols) or (count,).

    Raises DataError naming the file when the magic number, the header or the payload
    length is not what an IDX file of that kind must have.
    """
    kind = 'images' if magic == IMAGES_MAGIC else 'labels'
    with open(path, 'rb') as f:
        raw = f.read()
    if raw[:2] == b'\x1f\x8b':  # gzip's magic bytes, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f'{path}: truncated or corrupt gzip file ({e}); delete it and '
                            'download it again') from e
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f'{path}: only {len(raw)} bytes, too short for an IDX {kind} header')
    found = int.from_bytes(raw[:4], 'big')
    if found != magic:
        raise DataError(f'{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x} '
                        f'(IDX {kind}, uint8, {ndim}-d); not an MNIST {kind} file')
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    expected = int(np.prod(dims))
    payload = len(raw) - header
    if payload != expected:
        what = 'truncated' if payload < expected else 'has trailing bytes'
        raise DataError(f'{path}: {what}: header says {" x ".join(map(str, dims))} = {expected} '
                        f'bytes of {kind}, found {payload}; delete it and download it again')
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder, name):
    for candidate in (name, name + '.gz'):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _read_keras_npz(path, subset):
    split = 'train' if subset == 'train' else 'test'
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z[f'x_{split}'], z[f'y_{split}']
    except KeyError as e:
        raise DataError(f'{path}: no array {e}; expected x_train, y_train, x_test, y_test') from e
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f'{path}: truncated or corrupt npz ({e})') from e
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (len(images),):
        raise DataError(f'{path}: x_{split} is {images.dtype} {images.shape} and y_{split} '
                        f'{labels.shape}; expected uint8 (N, 28, 28) and (N,)')
    return images, labels


def load(mnist_dir, subset, download=True, progress=None):
    """(images uint8 (N, 28, 28), labels (N,)) of a subset, downloading if needed."""
    names = FILES[subset]
    paths = [_find(mnist_dir, n) for n in names]
    keras_npz = os.path.join(mnist_dir, 'mnist.npz')
    if None in paths and os.path.isfile(keras_npz):
        return _read_keras_npz(keras_npz, subset)
    if None in paths:
        missing = [n + '.gz' for n, p in zip(names, paths) if p is None]
        hint = (f'place {" and ".join(missing)} in {mnist_dir} by hand, from '
                f'{" or ".join(MIRRORS)}')
        if not download:
            raise DataError(f'MNIST not found in {mnist_dir}: {hint}')
        try:
            for name in missing:
                _download.download([m + name for m in MIRRORS], os.path.join(mnist_dir, name),
                                   md5=MD5[name], progress=progress)
        except _download.DownloadError as e:
            tried = ''.join(f'\n  {attempt}' for attempt in e.tried)
            raise DataError(f'MNIST not found in {mnist_dir} and download failed (offline?): '
                            f'{hint}\nTried:{tried}') from e
        paths = [_find(mnist_dir, n) for n in names]
    images = read_idx(paths[0], IMAGES_MAGIC)
    labels = read_idx(paths[1], LABELS_MAGIC)
    if len(labels) != len(images):
        raise DataError(f'{paths[1]} has {len(labels)} labels but {paths[0]} has {len(images)} '
                        'images; they must come from the same release')
    return images, labels


class DataLoader(DownloadingLoader):
    """MNIST from <data_dir>/mnist; see loader.py for the interface (download, progress:
    as loader.DownloadingLoader).

    Example: DataLoader('/data', 'test', 100, return_labels=True)
    """

    def _load(self, data_dir, subset):
        images, labels = load(os.path.join(data_dir, 'mnist'), subset, self.download,
                             self.progress)
        if len(labels) and labels.max() >= NUM_LABELS:
            raise DataError(f'MNIST labels in {data_dir}/mnist go up to {labels.max()}, '
                            'expected 0..9')
        return images[..., None], labels, NUM_LABELS   # (N, 28, 28, 1)
