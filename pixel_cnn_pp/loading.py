"""Loading a model for use: what a user means by "this model", in one function.

    model = pixel_cnn_pp.load('runs/patches')                 # a run folder: its latest checkpoint
    model = pixel_cnn_pp.load(prefix)                         # one checkpoint (or its .index)
    model = pixel_cnn_pp.load('pxpp/params_cifar.ckpt')       # OpenAI's TF1 checkpoint
    model = pixel_cnn_pp.load('params_mnist.ckpt', data_set='mnist')   # ... trained on MNIST
    model = pixel_cnn_pp.load('cifar')                        # OpenAI's published model
    model = pixel_cnn_pp.load('runs/patches', use_ema=False, precision='bfloat16')

Our checkpoints carry their model options (stored in their run folder, RunFolder);
OpenAI's TF1 checkpoints carry none, so theirs are the original's defaults unless
given (`data_set`, `class_conditional` or ModelConfig fields). A published model is
downloaded once into a cache and checked (pixel_cnn_pp/data/pretrained.py). Every
failure is one exception whose message names the file: FileNotFoundError for
nothing there, ValueError for a checkpoint that does not fit the options or whose
files are damaged. sample.py, compress.py and train.py --init_checkpoint load
through here.
"""

import os

import numpy as np

from pixel_cnn_pp import checkpoints
from pixel_cnn_pp.config import TRAINING_ONLY, ModelConfig
from pixel_cnn_pp.data import pretrained
from pixel_cnn_pp.model import PixelCNN
from pixel_cnn_pp.run_folder import RunFolder


def load(source, use_ema=True, precision='float32', *, data_set=None, image_size=None,
         class_conditional=False, cache_dir=None, url=None, checksum=None, progress=None,
         **options):
    """A PixelCNN with the weights of `source`, ready to use.

    Args:
      source: a run folder (its latest checkpoint), a checkpoint prefix (ours, or
        OpenAI's, e.g. 'pxpp/params_cifar.ckpt'), its .index file, or the name of a
        published model ('cifar': OpenAI's params_cifar.ckpt).
        A string that is such a name means the published model; './cifar' is a folder.
      use_ema: the Polyak-averaged weights (what the original tests and samples with),
        else the raw ones.
      precision: what the model computes in ('float32', 'tf32', 'bfloat16', 'float16');
        the weights are float32 and load in any.
      data_set, image_size: for OpenAI's checkpoints, which store no image shape: the
        data set they were trained on ('cifar', 'mnist', 'imagenet' with image_size
        32 or 64, ...), giving the shape. Ignored for ours, which store theirs.
      class_conditional: for OpenAI's checkpoints: read the number of classes from
        their conditional weights (a ValueError if they have none).
      cache_dir, url, checksum, progress: for a published model: where it is kept
        (default $PIXELCNN_CACHE_DIR, else ~/.cache/pixel_cnn_pp), where its archive
        is downloaded from, the archive's 'sha256:<hex>' or 'md5:<hex>', and a
        download display (pixel_cnn_pp/data/download.py's callback).
      **options: ModelConfig fields. For our checkpoints any given must agree with
        the stored ones; for OpenAI's they replace the original's defaults.
    Returns:
      The PixelCNN.
    Raises:
      FileNotFoundError: no checkpoint at `source`.
      ValueError: the checkpoint does not fit the options (names the first option,
        variable or shape that differs), or its files (or its stored options) are
        damaged or truncated (names the file).
      DownloadError, DataError: a published model could not be fetched or its
        archive is damaged (pixel_cnn_pp/data/pretrained.py).

    Example:
        model = load('pxpp/params_cifar.ckpt')
        bpd = bits_per_dim(model.nll(test_images).mean(), (32, 32, 3))
    """
    return load_with_prefix(
        source, use_ema, precision, data_set=data_set, image_size=image_size,
        class_conditional=class_conditional, cache_dir=cache_dir, url=url, checksum=checksum,
        progress=progress, **options)[0]


def load_with_prefix(source, use_ema=True, precision='float32', *, data_set=None,
                     image_size=None, class_conditional=False, cache_dir=None, url=None,
                     checksum=None, progress=None, **options):
    """`load`, and the prefix of the checkpoint it read: (model, prefix)."""
    cache_dir = os.path.expanduser(cache_dir or pretrained.default_cache_dir())
    name = source if is_published(source) else None
    if name:
        path = pretrained.fetch_pretrained(name, url or pretrained.default_url(), cache_dir,
                                           checksum, progress=progress)
    else:
        path = os.path.expanduser(os.fspath(source))
    prefix = resolve(path)
    hint = ('; delete %s to extract it again from the archive' % os.path.join(cache_dir, name)
            if name else '')
    try:
        if checkpoints.is_openai_checkpoint(prefix):
            options = _openai_options(prefix, options, data_set, image_size, class_conditional)
        model = _load(prefix, use_ema, precision, options)
    except checkpoints.DamagedCheckpoint as e:
        raise ValueError('%s%s' % (e, hint)) from None
    except (*checkpoints.READ_ERRORS, RuntimeError) as e:  # TensorFlow's reader, on bad files
        raise ValueError('%s%s' % (checkpoints.damaged(prefix, e), hint)) from None
    return model, prefix


def is_published(source):
    """True if `source` names a published model (a str such as 'cifar', not a path object)."""
    return isinstance(source, str) and source in pretrained.PRETRAINED


def _openai_options(prefix, options, data_set, image_size, class_conditional):
    """The ModelConfig fields of OpenAI's checkpoint: the given ones, the image shape of
    `data_set`, the number of classes its weights have with `class_conditional`."""
    options = dict(options)
    shape = pretrained.tf1_image_shape(data_set, image_size) if data_set else None
    if shape and 'image_shape' not in options:
        options['image_shape'] = shape
    if class_conditional:
        options['num_classes'] = checkpoints.openai_num_classes(prefix, "'class_conditional'")
    return options


def resolve(path):
    """A checkpoint prefix from a prefix, an .index file or a run folder (its latest).

    Raises FileNotFoundError saying what was looked for.
    """
    path = os.fspath(path)
    if path.endswith('.index'):
        path = path[:-len('.index')]
    if os.path.isdir(path):
        path = RunFolder(path).checkpoint_to_load()
    if not os.path.exists(path + '.index'):
        raise FileNotFoundError('checkpoint not found: %s (expected %s.index and its data '
                                'files)' % (path, path))
    return path


def _load(prefix, use_ema, precision, options):
    if not isinstance(use_ema, (bool, np.bool_)):
        raise ValueError("'use_ema' must be True or False; got %r" % (use_ema,))
    if checkpoints.is_openai_checkpoint(prefix):
        model = PixelCNN(ModelConfig(**options), seed=0, precision=precision)
        checkpoints.assign_openai_weights(model, prefix, use_ema)
        return model
    stored = _stored_config(prefix)
    config = stored.replace(**options)
    differences = stored.diff(config)
    if differences:
        raise ValueError('checkpoint %s was trained with %s, but %s was asked for'
                         % (prefix, ', '.join('%s=%r' % (k, v[0]) for k, v in differences.items()),
                            ', '.join('%s=%r' % (k, v[1]) for k, v in differences.items())))
    model, polyak = checkpoints.read_ours(prefix, config, precision)
    if use_ema:
        polyak.copy_to_weights()
    return model


def _stored_config(prefix):
    """The ModelConfig stored with our checkpoint `prefix`; ValueError if there is none."""
    stored = RunFolder.of_checkpoint(prefix).model_config()
    if stored is None:
        raise ValueError('%s is not an OpenAI TF1 checkpoint (no model/conv2d_0/V) and its folder '
                         'holds no model options of ours; expected a checkpoint written by '
                         'train.py' % prefix)
    return stored


def read_weights(source, model):
    """The raw weights and the Polyak averages a checkpoint holds, for `model`'s variables.

    To start training from a checkpoint (ours or OpenAI's published one) with a fresh
    optimizer: what train.py --init_checkpoint and -r on a folder holding only
    params_<data_set>.ckpt do, as the original's -r did.

    Args:
      source: a checkpoint prefix, its .index file, or a run folder (see `load`).
      model: the PixelCNN the weights are for; its options must be the checkpoint's.
    Returns:
      (prefix, raw, averages): the checkpoint prefix read and two lists of numpy
      arrays in `model.weights` order.
    Raises:
      FileNotFoundError: no checkpoint at `source`.
      ValueError: the checkpoint does not fit `model` (names the first option, variable
        or shape that differs), or its files are damaged.
    """
    prefix = resolve(os.path.expanduser(os.fspath(source)))
    try:
        if checkpoints.is_openai_checkpoint(prefix):
            return (prefix, checkpoints.openai_tensors(model, prefix, use_ema=False),
                    checkpoints.openai_tensors(model, prefix, use_ema=True))
        differences = _stored_config(prefix).diff(model.config, ignore=TRAINING_ONLY)
        if differences:
            raise ValueError('checkpoint %s does not fit the model: %s' % (prefix, '; '.join(
                '%s=%r in the checkpoint, %r here' % (k, theirs, ours)
                for k, (theirs, ours) in differences.items())))
        copy, polyak = checkpoints.read_ours(prefix, model.config)
    except checkpoints.READ_ERRORS as e:
        raise checkpoints.damaged(prefix, e) from None
    return prefix, [w.numpy() for w in copy.weights], [s.numpy() for s in polyak.shadows]
