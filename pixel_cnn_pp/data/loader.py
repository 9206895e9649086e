"""The one DataLoader interface every data set speaks, and helpers around it.

A DataLoader holds one subset ('train' or 'test') of a data set in memory as uint8
images in NHWC layout and hands them out in batches. The interface is the one of the
original's data/cifar10_data.py, so loaders written against it keep working:

    import numpy as np
    from pixel_cnn_pp.data.loader import get_loader, to_tf_dataset

    rng = np.random.RandomState(1)
    train = get_loader('cifar', '/tmp/pxpp/data', 'train', batch_size=64, rng=rng,
                       shuffle=True, return_labels=True)
    x, y = train.next(16)           # 16 images for data-dependent init
    train.reset()
    for x, y in train:              # one epoch: x uint8 (64, 32, 32, 3), y int32 (64,)
        ...
    for x, y in to_tf_dataset(train):   # the same, through a prefetching tf.data pipeline
        ...

Epoch semantics, as in the original: iterating yields batches until fewer than
`batch_size` images remain (that last partial batch is dropped), then raises
StopIteration and rewinds, so the next `for` loop is the next epoch. With shuffle=True
each epoch's order is a fresh permutation drawn from `rng` when the epoch's first batch is
requested. The order within an epoch is therefore a deterministic function of the rng's
state at that moment: checkpoint `loader.get_state()` (JSON-serialisable; it holds that
rng state and the position in the epoch) and `set_state` it after a restart to resume
exactly where training stopped.

Data set names for `get_loader`:
    'cifar'     CIFAR-10 (cifar10_data.py), downloaded when missing
    'imagenet'  Small ImageNet 32x32 or 64x64 (imagenet_data.py), option image_size
    'mnist'     MNIST (mnist_data.py), downloaded when missing
    'folder'    your own PNG/JPEG images (folder_data.py), option image_size
    'patches'   the small offline set bundled with the repo (patches_data.py)
"""

import importlib
import os

import numpy as np

from ..config import check_integer

SUBSETS = ('train', 'test')

# name -> module (relative to this package) that defines that data set's DataLoader.
DATA_SETS = {
    'cifar': '.cifar10_data',
    'folder': '.folder_data',
    'imagenet': '.imagenet_data',
    'mnist': '.mnist_data',
    'patches': '.patches_data',
}


class DataError(ValueError):
    """A data file is missing, unreadable, or not what it should be.

    The message names the file or folder, says what was expected, and where to put
    the files by hand when they cannot be downloaded.
    """


class DataLoader:
    """Batches of one subset of a data set: uint8 images (N, H, W, C), optionally labels.

    Subclasses only supply the arrays, by implementing `_load(data_dir, subset)`; the
    batching, shuffling and epoch logic live here, once.

    Args:
      data_dir: folder the data set lives in (each data set documents its layout).
      subset: 'train' or 'test'.
      batch_size: images per batch (a positive int, at most the subset's size).
      rng: a numpy.random.RandomState (as in the original) or numpy.random.Generator,
        used only to shuffle. Defaults to RandomState(1), as the original does.
      shuffle: draw a new order for every epoch.
      return_labels: yield (x, y) instead of x; y is int32 (batch,), 0-based.

    Attributes:
      data: uint8 array (N, H, W, C), in file order.
      labels: int32 array (N,), or None when the data set has no labels.
      p: position in the current epoch (images handed out so far).

    Example (any data set's loader; here MNIST's):
      from pixel_cnn_pp.data.mnist_data import DataLoader
      test = DataLoader('/data', 'test', 100)     # reads /data/mnist/t10k-*
      for x in test:                              # x: uint8 (100, 28, 28, 1)
          ...
    """

    def __init__(self, data_dir, subset, batch_size, rng=None, shuffle=False,
                 return_labels=False):
        if subset not in SUBSETS:
            raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
        batch_size = check_integer('batch_size', batch_size)
        if rng is None:
            rng = np.random.RandomState(1)
        if not isinstance(rng, (np.random.RandomState, np.random.Generator)):
            raise ValueError('rng must be a numpy.random.RandomState or numpy.random.Generator, '
                             f'got {type(rng).__name__}')
        self.data_dir = data_dir
        self.subset = subset
        self.batch_size = int(batch_size)
        self.rng = rng
        self.shuffle = bool(shuffle)
        self.return_labels = bool(return_labels)

        data, labels, self.num_labels = self._load(data_dir, subset)
        # Our own invariants: every _load must hand back arrays of this form.
        assert isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 4, \
            (type(data), getattr(data, 'dtype', None), getattr(data, 'shape', None))
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int32)
            assert labels.shape == (len(data),), (labels.shape, data.shape)
        if self.return_labels and labels is None:
            raise DataError(f'{type(self).__module__}: the {subset} set in {data_dir} has no '
                            'labels; use return_labels=False (unconditional training)')
        if len(data) < self.batch_size:
            raise ValueError(f'batch_size {self.batch_size} is larger than the {subset} set '
                             f'({len(data)} images in {data_dir}): no batch would ever be made')
        self.data = data
        self.labels = labels
        self.p = 0
        self._order = None             # this epoch's permutation (None: file order)
        self._epoch_rng_state = None   # rng state from which that permutation was drawn

    def _load(self, data_dir, subset):
        """Returns (data uint8 (N, H, W, C), labels (N,) ints or None, num_labels or None)."""
        raise NotImplementedError

    def get_observation_size(self):
        """Shape of one image, (H, W, C)."""
        return self.data.shape[1:]

    def get_num_labels(self):
        """Number of classes of the data set (not just those in this subset), or None."""
        return self.num_labels

    def __len__(self):
        """Batches per epoch."""
        return len(self.data) // self.batch_size

    def reset(self):
        """Rewind to the start of an epoch; with shuffle, the next batch starts a new order."""
        self.p = 0

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self, n=None):
        """The next n images (default batch_size), or (x, y) with return_labels.

        Raises StopIteration, and rewinds, when fewer than n images are left in the epoch.
        """
        n = self.batch_size if n is None else int(n)
        if self.p == 0:
            self._begin_epoch()
        if self.p + n > len(self.data):
            self.reset()
            raise StopIteration
        if self._order is None:
            index = slice(self.p, self.p + n)
            x = self.data[index].copy()
        else:
            index = self._order[self.p:self.p + n]
            x = self.data[index]
        self.p += n
        if self.return_labels:
            return x, self.labels[index].copy()
        return x

    def _begin_epoch(self):
        if self.shuffle:
            self._epoch_rng_state = _get_rng_state(self.rng)
            self._order = self.rng.permutation(len(self.data))
        else:
            self._order = None

    def get_state(self, position=None):
        """Where the loader is, as a JSON-serialisable dict, for exact resumption.

        The dict holds the position in the epoch and, with shuffle, the rng state from
        which this epoch's order was (or will be) drawn; `set_state` redraws the same
        order and leaves the rng exactly as it is now.

        Args:
          position: images of the current epoch that the caller has actually used, when
            that differs from the loader's own position: a prefetching pipeline
            (`to_tf_dataset`) runs a few batches ahead of the training loop. If the
            pipeline has already run to the end of the epoch, the position still refers
            to that epoch. Default: the loader's position.
        """
        if position is None:
            position = self.p
        position = int(position)
        if not 0 <= position <= len(self.data):
            raise ValueError(f'position must be in [0, {len(self.data)}], got {position}')
        rng_state = None
        if self.shuffle:
            if (self.p > 0 or position > 0) and self._epoch_rng_state is not None:
                rng_state = self._epoch_rng_state   # the epoch has begun: its order is drawn
            else:
                rng_state = _get_rng_state(self.rng)
        return {'num_examples': int(len(self.data)), 'position': position,
                'epoch_rng_state': rng_state}

    def set_state(self, state):
        """Restore a position saved by `get_state` (sets the rng's state too)."""
        if state.get('num_examples') != len(self.data):
            raise ValueError(f"state is for a subset of {state.get('num_examples')} images, "
                             f'this loader has {len(self.data)}')
        if (state.get('epoch_rng_state') is not None) != self.shuffle:
            raise ValueError('state was saved by a loader with shuffle='
                             f"{state.get('epoch_rng_state') is not None}, this one has "
                             f'shuffle={self.shuffle}')
        if self.shuffle:
            _set_rng_state(self.rng, state['epoch_rng_state'])
        self.p = 0
        self._order = None
        if state['position'] > 0:
            self._begin_epoch()
            self.p = int(state['position'])


class DownloadingLoader(DataLoader):
    """The DataLoader of a data set that is downloaded when its files are missing.

    Args (beyond the common ones):
      download: fetch the missing files (default True; False: a DataError saying where
        to put them).
      progress: how to show a download (download.py's `progress`; None: quiet).
    """

    def __init__(self, data_dir, subset, batch_size, rng=None, shuffle=False,
                 return_labels=False, download=True, progress=None):
        self.download, self.progress = download, progress
        super().__init__(data_dir, subset, batch_size, rng=rng, shuffle=shuffle,
                         return_labels=return_labels)


def _to_json(value):
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _get_rng_state(rng):
    if isinstance(rng, np.random.RandomState):
        return _to_json(rng.get_state(legacy=False))
    return _to_json(rng.bit_generator.state)


def _set_rng_state(rng, state):
    if isinstance(rng, np.random.RandomState):
        state = dict(state, state=dict(state['state'], key=np.asarray(
            state['state']['key'], dtype=np.uint32)))
        rng.set_state(state)
    else:
        rng.bit_generator.state = state


def get_loader(data_set, data_dir, subset, batch_size, rng=None, shuffle=False,
               return_labels=False, **opts):
    """The DataLoader of the data set called `data_set` (see DATA_SETS).

    `opts` go to that data set's loader: image_size=32|64 for 'imagenet', image_size=None|int|
    (height, width) for 'folder', download=True|False and progress for 'cifar' and 'mnist'
    (`loader_options` builds them).

    Example: get_loader('imagenet', '/data', 'test', 100, image_size=64)
    """
    if data_set not in DATA_SETS:
        raise ValueError(f'unknown data set {data_set!r}; valid names: '
                         f'{", ".join(sorted(DATA_SETS))}')
    module = importlib.import_module(DATA_SETS[data_set], __package__)
    return module.DataLoader(data_dir, subset, batch_size, rng=rng, shuffle=shuffle,
                             return_labels=return_labels, **opts)


# Which data sets take which option of loader_options.
_SIZED, _DOWNLOADED = ('imagenet', 'folder'), ('cifar', 'mnist')


def loader_options(data_set, image_size=None, download=True, progress=None):
    """The `opts` of get_loader for `data_set`, from the options every script has.

    image_size applies to imagenet (32 or 64) and folder (resize); given for another
    data set it is a ValueError rather than silently ignored. download and progress
    (download.py's callback) apply to the data sets that download.
    """
    opts = {}
    if image_size is not None:
        if data_set not in _SIZED:
            raise ValueError('--image_size applies to --data_set imagenet (32 or 64) and folder '
                             '(resize), not to %s' % data_set)
        opts['image_size'] = image_size
    if data_set in _DOWNLOADED:
        opts.update(download=download, progress=progress)
    return opts


def describe_split(data_set, data_dir, subset):
    """How messages name a subset: its folder for 'folder', else the set and its data_dir."""
    if data_set == 'folder':
        return 'the %s images in %s' % (subset, os.path.join(data_dir, subset))
    return 'the %s set of -d %s (in %s)' % (subset, data_set, data_dir)


def size_hint(data_set):
    """What --image_size can do for data_set's image size ('' where it does not apply)."""
    if data_set == 'folder':
        return '; pass --image_size N to resize every image to N x N'
    if data_set == 'imagenet':
        return '; --image_size picks Small ImageNet 32 or 64'
    return ''


def check_splits(train, test, data_set, data_dir, labelled):
    """DataError unless the test loader's images (and, if labelled, classes) match train's."""
    def size(loader):
        return 'x'.join(str(int(d)) for d in loader.get_observation_size())

    if size(test) != size(train):
        raise DataError('%s are %s, but %s are %s: both must be one size and channels%s'
                        % (describe_split(data_set, data_dir, 'test'), size(test),
                           describe_split(data_set, data_dir, 'train'), size(train),
                           size_hint(data_set)))
    if labelled:
        classes = train.get_num_labels()
        if test.get_num_labels() != classes or (len(test.labels) and test.labels.max() >= classes):
            raise DataError('-c/--class_conditional: %s have %s classes, but %s have %s: both '
                            'must have the same classes'
                            % (describe_split(data_set, data_dir, 'test'), test.get_num_labels(),
                               describe_split(data_set, data_dir, 'train'), classes))


def to_tf_dataset(loader, prefetch=None):
    """A tf.data.Dataset over `loader`'s batches, prefetched in the background.

    Each iteration over the dataset runs one epoch of the loader (reshuffled as the loader
    would be), so `for epoch ...: for x in ds:` works as with the loader itself. Elements
    are uint8 (batch_size, H, W, C) tensors, or (x, y) with y int32 (batch_size,) when the
    loader returns labels. The loader is shared, not copied: iterate one dataset at a time.
    Because prefetching runs ahead, pass the number of images actually used to
    `loader.get_state(position=...)` when checkpointing mid-epoch.

    Args:
      loader: a DataLoader.
      prefetch: batches to prepare ahead; default tf.data.AUTOTUNE.

    Example:
      dataset = to_tf_dataset(get_loader('patches', None, 'train', 16, shuffle=True))
      for epoch in range(10):
          for x in dataset:       # uint8 (16, 32, 32, 3)
              ...
    """
    import tensorflow as tf  # lazily: the loaders themselves must import fast

    x_spec = tf.TensorSpec((loader.batch_size,) + tuple(loader.get_observation_size()), tf.uint8)
    if loader.return_labels:
        signature = (x_spec, tf.TensorSpec((loader.batch_size,), tf.int32))
    else:
        signature = x_spec

    def one_epoch():
        yield from loader

    dataset = tf.data.Dataset.from_generator(one_epoch, output_signature=signature)
    return dataset.prefetch(tf.data.AUTOTUNE if prefetch is None else prefetch)
