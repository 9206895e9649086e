"""Small ImageNet (downsampled ImageNet) at 32x32 or 64x64: ~1.28M training images and
50,000 validation images (our 'test' subset), 1000 classes.

Three layouts are read, in <data_dir>/small_imagenet/ for 32x32 and
<data_dir>/small_imagenet64/ for 64x64 (S = 32 or 64):

  1. imgnet_SxS.npz with uint8 arrays trainx, testx (N, S, S, 3): the original's cache.
     No labels.
  2. train_SxS/ and valid_SxS/ folders of S x S RGB PNGs, as the original downloaded them.
     No labels. Read once, in sorted file order, and cached as imgnet_SxS.npz beside them.
  3. The Imagenet32/Imagenet64 batches: train_data_batch_1 ... train_data_batch_10 and
     val_data, each an .npz (or, in the older release, a pickle without extension) with
     'data' (N x 3*S*S uint8, the red plane then green then blue, like CIFAR) and
     'labels' (1-based, 1..1000). Labels come out 0-based, so class-conditional
     ImageNet works, which the original refused.

There is no automatic download: image-net.org hands the files out after registration.
References: van den Oord et al., "Pixel Recurrent Neural Networks", 2016; Chrabaszcz et al.,
"A Downsampled Variant of ImageNet as an Alternative to the CIFAR datasets", 2017.
"""

import os
import zipfile

import numpy as np

from ..files import atomic_write
from .folder_data import list_images, read_images
from .loader import DataError
from .loader import DataLoader as _BaseLoader
from .safe_pickle import load_pickle

SIZES = (32, 64)
NUM_LABELS = 1000
BATCH_FILES = {'train': [f'train_data_batch_{i}' for i in range(1, 11)], 'test': ['val_data']}


def imagenet_dir(data_dir, image_size):
    """<data_dir>/small_imagenet for 32x32, <data_dir>/small_imagenet64 for 64x64."""
    return os.path.join(data_dir, 'small_imagenet' if image_size == 32 else 'small_imagenet64')


def _where_to_get(folder, s):
    return (f'Small ImageNet {s}x{s} is not downloaded automatically (image-net.org requires '
            f'registration). Get "Imagenet{s}" (train_data_batch_1..10.npz and val_data.npz; '
            'Downsampled ImageNet on image-net.org\'s download page) and put the files in '
            f'{folder}; or put the original\'s imgnet_{s}x{s}.npz, or its train_{s}x{s}/ and '
            f'valid_{s}x{s}/ PNG folders, there.')


def _batch_path(folder, name):
    for candidate in (name + '.npz', name):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_batch(path, image_size):
    """One Imagenet32/64 batch file -> (images uint8 (N, S, S, 3), labels int32 0-based)."""
    s = image_size
    expected = f"'data' (N x {3 * s * s} uint8) and 'labels' (1..{NUM_LABELS})"
    if path.endswith('.npz'):
        try:
            with np.load(path, allow_pickle=False) as z:
                data, labels = z['data'], z['labels']
        except KeyError as e:
            raise DataError(f'{path}: no array {e}; expected {expected}') from e
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f'{path}: truncated or corrupt npz ({type(e).__name__}: {e}); '
                            f'expected {expected}') from e
    else:
        batch = load_pickle(path, f'an Imagenet{s} batch: a dict with {expected}')
        if not isinstance(batch, dict):
            raise DataError(f'{path}: holds a {type(batch).__name__}, expected a dict with '
                            f'{expected}')
        batch = {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data, labels = batch.get('data'), batch.get('labels')
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * s * s):
        is_array = isinstance(data, np.ndarray)
        found = f'{data.dtype} {data.shape}' if is_array else type(data).__name__
        other = [t for t in SIZES
                 if t != s and is_array and data.ndim == 2 and data.shape[1] == 3 * t * t]
        hint = (f' (that is the {other[0]}x{other[0]} release: use image_size={other[0]})'
                if other else '')
        raise DataError(f"{path}: 'data' is {found}{hint}; expected {expected}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        labels = np.zeros(0)
    if labels.shape != (len(data),):
        raise DataError(f"{path}: 'labels' has {labels.size} entries for {len(data)} images")
    if len(labels) and (labels.min() < 1 or labels.max() > NUM_LABELS):
        raise DataError(f'{path}: labels range over {labels.min()}..{labels.max()}, expected '
                        f'1..{NUM_LABELS} (1-based, as distributed)')
    images = data.reshape(-1, 3, s, s).transpose(0, 2, 3, 1)  # planes -> (N, S, S, 3)
    return images, (labels - 1).astype(np.int32)


def _count(path):
    """Images in an .npz batch, from its small 'labels' array; None if unknown."""
    if not path.endswith('.npz'):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return len(z['labels'])
    except Exception:  # read_batch will report what is wrong with the file
        return None


def _read_batches(paths, image_size):
    s = image_size
    counts = [_count(p) for p in paths]
    if len(paths) == 1 or None in counts:
        parts = [read_batch(p, s) for p in paths]
        return (np.ascontiguousarray(np.concatenate([p[0] for p in parts])),
                np.concatenate([p[1] for p in parts]))
    # Fill one preallocated array batch by batch: concatenating would need twice the
    # memory, 30 GB for the 64x64 training set.
    images = np.empty((sum(counts), s, s, 3), np.uint8)
    labels = np.empty(sum(counts), np.int32)
    start = 0
    for path, n in zip(paths, counts):
        x, y = read_batch(path, s)
        images[start:start + n], labels[start:start + n] = x, y
        start += n
    return images, labels


def _read_npz(path, subset, s):
    key = 'trainx' if subset == 'train' else 'testx'
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z[key]
    except KeyError as e:
        raise DataError(f'{path}: no array {key!r}; expected trainx and testx '
                        f'(uint8 N x {s} x {s} x 3)') from e
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f'{path}: truncated or corrupt npz ({type(e).__name__}: {e}); delete it '
                        'to rebuild it from the PNG folders, or fetch it again') from e
    if images.dtype != np.uint8 or images.shape[1:] != (s, s, 3):
        raise DataError(f'{path}: {key} is {images.dtype} {images.shape}, expected uint8 '
                        f'(N, {s}, {s}, 3)')
    return images


def _cache_png_folders(folder, s, cache):
    """Reads train_SxS/ and valid_SxS/ and writes them to `cache` atomically."""
    arrays = {}
    for key, name in (('trainx', f'train_{s}x{s}'), ('testx', f'valid_{s}x{s}')):
        sub = os.path.join(folder, name)
        paths = list_images(sub)
        if not paths:
            raise DataError(f'no PNG images in {sub}; expected {s}x{s} RGB PNGs there')
        images = read_images(paths, folder=sub)
        if images.shape[1:] != (s, s, 3):
            raise DataError(f'images in {sub} are {"x".join(map(str, images.shape[1:]))}, '
                            f'expected {s}x{s}x3')
        arrays[key] = images
    def write(tmp):
        with open(tmp, 'wb') as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, **arrays)
    atomic_write(cache, write)
    return arrays


class DataLoader(_BaseLoader):
    """Small ImageNet; see loader.py for the interface and the module docstring for
    the layouts.

    Args (beyond the common ones):
      image_size: 32 or 64 (default 32).

    Example: DataLoader('/data', 'train', 64, image_size=64, return_labels=True)
    """

    def __init__(self, data_dir, subset, batch_size, rng=None, shuffle=False,
                 return_labels=False, image_size=32):
        if image_size not in SIZES:
            raise ValueError(f'image_size must be 32 or 64 for Small ImageNet, got {image_size!r}')
        self.image_size = image_size
        super().__init__(data_dir, subset, batch_size, rng=rng, shuffle=shuffle,
                         return_labels=return_labels)

    def _load(self, data_dir, subset):
        s = self.image_size
        folder = imagenet_dir(data_dir, s)
        batch_paths = [_batch_path(folder, n) for n in BATCH_FILES[subset]]
        if any(batch_paths) and not all(batch_paths):
            missing = [n for n, p in zip(BATCH_FILES[subset], batch_paths) if p is None]
            raise DataError(f'Small ImageNet {s}x{s} in {folder} is incomplete: '
                            f'{", ".join(m + ".npz" for m in missing)} missing. '
                            + _where_to_get(folder, s))
        if all(batch_paths):
            images, labels = _read_batches(batch_paths, s)
            return images, labels, NUM_LABELS
        npz = self._npz(folder)
        pngs = [os.path.join(folder, f'{name}_{s}x{s}') for name in ('train', 'valid')]
        if self.return_labels and (os.path.isfile(npz) or any(map(os.path.isdir, pngs))):
            raise DataError(f'Small ImageNet in {folder} is the unlabelled layout '
                            f'(imgnet_{s}x{s}.npz or PNG folders); class-conditional training '
                            'needs the labelled batch files. ' + _where_to_get(folder, s))
        if os.path.isfile(npz):
            return _read_npz(npz, subset, s), None, None
        present = [p for p in pngs if os.path.isdir(p)]
        if present:
            absent = [p for p in pngs if p not in present]
            if absent:
                raise DataError(f'found {present[0]} but not {absent[0]}: both PNG folders are '
                                'needed (they are read, and cached as one npz, together)')
            arrays = _cache_png_folders(folder, s, npz)
            return arrays['trainx' if subset == 'train' else 'testx'], None, None
        raise DataError(f'Small ImageNet {s}x{s} not found in {folder}. '
                        + _where_to_get(folder, s))

    def _npz(self, folder):
        s = self.image_size
        return os.path.join(folder, f'imgnet_{s}x{s}.npz')
