"""Checkpoints: ours (tf.train.Checkpoint + the model's options as JSON beside it),
and OpenAI's TF1 layout, loaded by variable name.

OpenAI's published `params_cifar.ckpt` (and checkpoints of the original code in
general) hold every weight under its TF1 name, `model/conv2d_0/V` and so on, its
Polyak average beside it as `model/conv2d_0/V/ExponentialMovingAverage`, and the
optimizer's slots as unnamed `Variable_N` (ignored here). Our PixelCNN creates
its layers in the original's order and knows each one's original name
(`PixelCNN.named_weights`), so loading is a walk over that list that checks every
name and shape.
"""

import json
import os
import re

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import files
from pixel_cnn_pp.config import TRAINING_ONLY, ModelConfig
from pixel_cnn_pp.model import PixelCNN
from pixel_cnn_pp.optim import PolyakAverage

CONFIG_FILE = 'pixelcnn_config.json'
STATE_FILE = 'checkpoint'  # tf.train.CheckpointManager's list of checkpoints in a folder
CHECKPOINT_NAME = 'ckpt'  # a run's checkpoints are <CHECKPOINT_NAME>-N
_EMA_SUFFIX = '/ExponentialMovingAverage'
# What TensorFlow's checkpoint reader raises on a damaged file: an OpError (bad magic
# number, checksum mismatch, a data file missing) or, for a data file cut short,
# IndexError ("Read less bytes than requested").
READ_ERRORS = (tf.errors.OpError, IndexError)


class DamagedCheckpoint(ValueError):
    """A checkpoint whose files TensorFlow cannot read (the message names it and why)."""


def damaged(prefix, error):
    """The DamagedCheckpoint saying that the checkpoint at `prefix` cannot be read, and why."""
    reason = (str(error).splitlines() or [''])[0] or type(error).__name__
    return DamagedCheckpoint('checkpoint %s is damaged or truncated (%s): %s.index or its data '
                             'files cannot be read' % (prefix, reason, os.path.basename(prefix)))


def check_intact(prefix):
    """Read every tensor of the checkpoint at `prefix`; DamagedCheckpoint if one fails.

    Costs one read of the checkpoint; what a resume does before trusting it.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except READ_ERRORS as e:
        raise damaged(prefix, e) from None


def numbered_checkpoints(folder, name=CHECKPOINT_NAME):
    """[(N, prefix)] of every <name>-N.index in `folder`, oldest first ([] if none)."""
    pattern = re.compile(r'^%s-(\d+)\.index$' % re.escape(name))
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    found = [(int(m.group(1)), os.path.join(folder, m.group(0)[:-len('.index')]))
             for m in map(pattern.match, entries) if m]
    return sorted(found)


def resolve(path):
    """A checkpoint prefix from a prefix, an .index file or a folder of checkpoints.

    Raises FileNotFoundError saying what was looked for.
    """
    path = os.fspath(path)
    if path.endswith('.index'):
        path = path[:-len('.index')]
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            indexes = sorted(f for f in os.listdir(path) if f.endswith('.index'))
            if len(indexes) > 1 and os.path.exists(os.path.join(path, STATE_FILE)):
                newest = numbered_checkpoints(path)
                raise FileNotFoundError(
                    'the "%s" state file of folder %s could not be read (or names no checkpoint '
                    'there), and the folder holds %d checkpoints: name one, e.g. %s'
                    % (STATE_FILE, path, len(indexes),
                       newest[-1][1] if newest else os.path.join(path, indexes[-1][:-6])))
            if len(indexes) != 1:
                raise FileNotFoundError(
                    'no checkpoint in folder %s: expected a "checkpoint" file or exactly one '
                    '*.index file, found %d' % (path, len(indexes)))
            latest = os.path.join(path, indexes[0][:-len('.index')])
        path = latest
    if not os.path.exists(path + '.index'):
        raise FileNotFoundError('checkpoint not found: %s (expected %s.index and its data '
                                'files)' % (path, path))
    return path


def training_checkpoint(model, polyak, **extra):
    """The tf.train.Checkpoint layout of our checkpoints: model, polyak, anything else.

    train.py adds the optimizer, step counters and RNG state as `extra`;
    `load_checkpoint` reads back only the model and its averages.
    """
    return tf.train.Checkpoint(model=model, polyak=polyak, **extra)


def save_model_config(directory, model):
    """Write the model's ModelConfig as JSON in `directory` (atomically: write, then rename)."""
    files.write_json(os.path.join(directory, CONFIG_FILE), model.config.to_dict())


def read_model_config(prefix):
    """The ModelConfig stored beside our checkpoint `prefix`, or None if there is none.

    A file written before an option existed gives that option its default.
    """
    config_path = os.path.join(os.path.dirname(prefix), CONFIG_FILE)
    if not os.path.exists(config_path):
        return None
    try:
        with open(config_path) as f:
            values = json.load(f)
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        raise ValueError('%s (the model options of the checkpoint) cannot be read as JSON: %s'
                         % (config_path, e)) from None
    if not isinstance(values, dict):
        raise ValueError('%s (the model options of the checkpoint) must hold a JSON object '
                         '{"nr_filters": 160, ...}; got a %s'
                         % (config_path, type(values).__name__))
    try:
        return ModelConfig.from_dict(values)
    except ValueError as e:
        raise ValueError('%s: %s' % (config_path, e)) from None


def openai_num_classes(prefix, required_by=None):
    """The number of classes of a TF1 checkpoint in OpenAI's layout (0: unconditional).

    Read from the rows of its first conditional weight, which is all such a
    checkpoint says about its labels. With `required_by` (e.g. a flag), an
    unconditional checkpoint is a ValueError naming it.
    """
    shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    hw = shapes.get('model/conditional_weights_0/hw')
    if hw is None and required_by:
        raise ValueError('%s given, but the checkpoint %s has no conditional weights: it is '
                         'unconditional' % (required_by, prefix))
    return 0 if hw is None else int(hw[0])


def read_training_record(prefix):
    """The progress record a training run keeps in our checkpoint `prefix`, or None.

    A dict (pixel_cnn_pp/run.py's): 'epoch' (epochs done), 'position' (images into
    the next), 'history' (per-epoch 'epoch', 'train_bpd', 'test_bpd'), 'name' (the
    data set, in checkpoints written since it was added). None for OpenAI's
    checkpoints and any other without one.
    """
    reader = tf.train.load_checkpoint(prefix)
    key = 'progress/.ATTRIBUTES/VARIABLE_VALUE'  # Trainer's `progress` variable
    if not reader.has_tensor(key):
        return None
    try:
        record = json.loads(reader.get_tensor(key).decode('utf-8'))
    except ValueError:
        return None
    return record if isinstance(record, dict) and 'epoch' in record else None


def describe_training(prefix, name=None, test_bpd=None, test_count=None):
    """Where the run of checkpoint `prefix` stood, as short strings (for a grid's label).

    The data set (`name`, else the run's record, else the checkpoint's own name),
    the last epoch done (or how far into the next), and test bits/dim: `test_bpd`
    if given (on `test_count` images, if that is said), else the record's figure of
    that epoch.
    """
    record = read_training_record(prefix) or {}
    epochs, position = record.get('epoch', 0), record.get('position', 0)
    history = record.get('history') or {}
    parts = [name or record.get('name')
             or os.path.join(os.path.basename(os.path.dirname(prefix)), os.path.basename(prefix))]
    if epochs and not position:
        parts.append('epoch %d' % (epochs - 1))
        if test_bpd is None and (history.get('epoch') or [None])[-1] == epochs - 1:
            test_bpd = history['test_bpd'][-1]
    elif position:
        parts.append('epoch %d, %d images in' % (epochs, position))
    if test_bpd is not None:
        parts.append('test %.3f bits/dim' % test_bpd
                     + (' (%d images)' % test_count if test_count else ''))
    return parts


def is_openai_checkpoint(prefix):
    """True if the checkpoint at `prefix` is in the original's TF1 layout."""
    return 'model/conv2d_0/V' in tf.train.load_checkpoint(prefix).get_variable_to_shape_map()


def load_checkpoint(path, use_ema=True, precision='float32', **model_options):
    """A PixelCNN with the weights of a checkpoint, ours or OpenAI's TF1 one.

    Args:
      path: a checkpoint prefix (e.g. 'save/ckpt-12', 'pxpp/params_cifar.ckpt'),
        its .index file, or a folder (its latest checkpoint).
      use_ema: load the Polyak-averaged weights (what the original tests and
        samples with) instead of the raw ones.
      precision: what the model computes in (precision.py: 'float32', 'tf32',
        'bfloat16', 'float16'); checkpoints are float32 and load in any of them.
      **model_options: ModelConfig fields. For our checkpoints they are read from
        the JSON beside it and need not be given (any given must agree); for
        OpenAI's they default to the original's: image_shape (32, 32, 3),
        nr_resnet 5, nr_filters 160, nr_logistic_mix 10, concat_elu, unconditional.
    Returns:
      A PixelCNN whose weights are the checkpoint's (averaged ones if use_ema).
    Raises:
      FileNotFoundError: no checkpoint at `path`.
      ValueError: the checkpoint does not fit the options (names the first
        variable whose name or shape differs and what was expected), its files
        are damaged or truncated, or its pixelcnn_config.json is not valid
        (each names the file).

    Example:
        model = load_checkpoint('pxpp/params_cifar.ckpt')
        bpd = bits_per_dim(model.nll(test_images).mean(), (32, 32, 3))
    """
    if not isinstance(use_ema, (bool, np.bool_)):
        raise ValueError("'use_ema' must be True or False; got %r" % (use_ema,))
    prefix = resolve(path)
    try:
        return _load(prefix, use_ema, precision, model_options)
    except READ_ERRORS as e:
        raise damaged(prefix, e) from None


def _load(prefix, use_ema, precision, model_options):
    if is_openai_checkpoint(prefix):
        model = PixelCNN(ModelConfig(**model_options), seed=0, precision=precision)
        _assign_openai_weights(model, prefix, use_ema)
        return model
    stored = _our_config(prefix)
    options = stored.replace(**model_options)
    differences = stored.diff(options)
    if differences:
        raise ValueError('checkpoint %s was trained with %s, but %s was asked for'
                         % (prefix, ', '.join('%s=%r' % (k, v[0]) for k, v in differences.items()),
                            ', '.join('%s=%r' % (k, v[1]) for k, v in differences.items())))
    model, polyak = _read_ours(prefix, options, precision)
    if use_ema:
        polyak.copy_to_weights()
    return model


def _our_config(prefix):
    """The ModelConfig stored beside our checkpoint `prefix`; ValueError if there is none."""
    stored = read_model_config(prefix)
    if stored is None:
        raise ValueError('%s is not an OpenAI TF1 checkpoint (no model/conv2d_0/V) and has no %s '
                         'beside it; expected a checkpoint written by train.py'
                         % (prefix, CONFIG_FILE))
    return stored


def _read_ours(prefix, config, precision='float32'):
    """(model, its PolyakAverage) built from `config`, holding our checkpoint's values."""
    model = PixelCNN(config, seed=0, precision=precision)
    polyak = PolyakAverage(model.weights)
    try:
        status = training_checkpoint(model, polyak).read(prefix)
    except READ_ERRORS as e:
        raise damaged(prefix, e) from None
    except ValueError as e:  # a variable of another shape
        raise ValueError('checkpoint %s does not fit the model (%s): %s'
                         % (prefix, model.describe(), e)) from None
    try:
        status.expect_partial().assert_existing_objects_matched()
    except (ValueError, AssertionError) as e:
        raise ValueError('checkpoint %s does not fit the model (%s): %s'
                         % (prefix, model.describe(), e)) from None
    return model, polyak


def _openai_tensors(model, prefix, use_ema):
    """The model's weights read by name from an OpenAI TF1 checkpoint, checked on the way."""
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    expected_names, tensors = set(), []
    for name, var in model.named_weights():
        key = name + _EMA_SUFFIX if use_ema else name
        expected_names.add(name)
        if key not in shapes:
            hint = (' (it has the raw weight; load with use_ema=False)'
                    if use_ema and name in shapes else '')
            raise ValueError('checkpoint %s has no variable %s, which the model (%s) expects with '
                             'shape %s%s' % (prefix, key, model.describe(), var.shape.as_list(), hint))
        if list(shapes[key]) != var.shape.as_list():
            raise ValueError('checkpoint %s: variable %s has shape %s, but the model (%s) expects %s'
                             % (prefix, key, list(shapes[key]), model.describe(),
                                var.shape.as_list()))
        tensors.append(reader.get_tensor(key))
    extra = sorted(k for k in shapes if k.startswith('model/') and not k.endswith(_EMA_SUFFIX)
                   and k not in expected_names)
    if extra:
        raise ValueError('checkpoint %s has variable %s (shape %s), which the model (%s) does '
                         'not have: the checkpoint was trained with other options'
                         % (prefix, extra[0], list(shapes[extra[0]]), model.describe()))
    return tensors


def _assign_openai_weights(model, prefix, use_ema):
    for var, value in zip(model.weights, _openai_tensors(model, prefix, use_ema)):
        var.assign(value)


def read_weights(path, model):
    """The raw weights and the Polyak averages a checkpoint holds, for `model`'s variables.

    Used to start training from a checkpoint (ours or OpenAI's published one) with a
    fresh optimizer: what `train.py --init_checkpoint` and `-r` on a folder holding
    only `params_<data_set>.ckpt` do, as the original's `-r` did.

    Args:
      path: a checkpoint prefix, its .index file, or a folder (see `load_checkpoint`).
      model: the PixelCNN the weights are for; its options must be the checkpoint's.
    Returns:
      (prefix, raw, averages): the checkpoint prefix read and two lists of numpy
      arrays in `model.weights` order.
    Raises:
      FileNotFoundError: no checkpoint at `path`.
      ValueError: the checkpoint does not fit `model`; names the first option,
        variable or shape that differs.
    """
    prefix = resolve(path)
    try:
        return _read_weights(prefix, model)
    except READ_ERRORS as e:
        raise damaged(prefix, e) from None


def _read_weights(prefix, model):
    if is_openai_checkpoint(prefix):
        raw = _openai_tensors(model, prefix, use_ema=False)
        return prefix, raw, _openai_tensors(model, prefix, use_ema=True)
    differences = _our_config(prefix).diff(model.config, ignore=TRAINING_ONLY)
    if differences:
        raise ValueError('checkpoint %s does not fit the model: %s' % (prefix, '; '.join(
            '%s=%r in the checkpoint, %r here' % (k, theirs, ours)
            for k, (theirs, ours) in differences.items())))
    copy, polyak = _read_ours(prefix, model.config)
    return prefix, [w.numpy() for w in copy.weights], [s.numpy() for s in polyak.shadows]
