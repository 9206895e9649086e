"""Checkpoints: what ours and OpenAI's hold, and reading them into a model.

Ours are tf.train.Checkpoint's (`training_checkpoint`: the model, its Polyak
averages, and the training state), their model options stored in their run folder
(pixel_cnn_pp/run_folder.py). OpenAI's are TF1 checkpoints, read by variable name.
pixel_cnn_pp/loading.py puts these together into `pixel_cnn_pp.load`.

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

import tensorflow as tf

from pixel_cnn_pp.model import PixelCNN
from pixel_cnn_pp.optim import PolyakAverage

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


def training_checkpoint(model, polyak, **extra):
    """The tf.train.Checkpoint layout of our checkpoints: model, polyak, anything else.

    train.py adds the optimizer, step counters and RNG state as `extra`;
    `pixel_cnn_pp.load` reads back only the model and its averages.
    """
    return tf.train.Checkpoint(model=model, polyak=polyak, **extra)


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


def read_ours(prefix, config, precision='float32'):
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


def openai_tensors(model, prefix, use_ema):
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


def assign_openai_weights(model, prefix, use_ema):
    """Set `model`'s weights to an OpenAI TF1 checkpoint's (its Polyak averages if use_ema)."""
    for var, value in zip(model.weights, openai_tensors(model, prefix, use_ema)):
        var.assign(value)

