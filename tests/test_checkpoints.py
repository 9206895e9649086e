"""Loading checkpoints: the original's TF1 golden checkpoints by name, and our own."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import pixel_cnn_pp
from pixel_cnn_pp import checkpoints, loading, run_folder
from pixel_cnn_pp.run_folder import RunFolder
from tests.conftest import random_images


def _golden(golden_dir, name):
    folder = os.path.join(golden_dir, name)
    with open(os.path.join(folder, 'config.json')) as f:
        config = json.load(f)
    options = {k: config[k] for k in ('image_shape', 'nr_resnet', 'nr_filters', 'nr_logistic_mix',
                                      'resnet_nonlinearity', 'num_classes')}
    options['add_coords'] = config.get('add_coords', False)
    return os.path.join(folder, 'params_golden.ckpt'), options, np.load(
        os.path.join(folder, 'expected.npz'))


@pytest.mark.parametrize('name', ['cifar_small', 'mnist_small', 'mnist_ac_fork'])
def test_golden_nll_matches_original(golden_dir, name):
    path, options, expected = _golden(golden_dir, name)
    ema = pixel_cnn_pp.load(path, **options)
    np.testing.assert_allclose(ema.nll(expected['images']), expected['nll_ema_nats'], rtol=1e-4)
    raw = pixel_cnn_pp.load(path, use_ema=False, **options)
    np.testing.assert_allclose(raw.nll(expected['images']), expected['nll_raw_nats'], rtol=1e-4)
    # The averaged and raw weights differ visibly (decay 0.9): the test can tell them apart.
    assert np.abs(expected['nll_ema_nats'] - expected['nll_raw_nats']).min() > 1.0


@pytest.mark.parametrize('name', ['cifar_small', 'mnist_small', 'mnist_ac_fork'])
def test_golden_network_output_matches_original(golden_dir, name):
    path, options, expected = _golden(golden_dir, name)
    model = pixel_cnn_pp.load(path, **options)
    out = model.forward(model.scale_images(expected['images'])).numpy()
    want = expected['net_out_ema']
    assert out.shape == want.shape
    assert np.abs(out - want).max() <= 1e-3 * np.abs(want).max()


def test_golden_variable_names_follow_original_order(golden_dir):
    path, options, _ = _golden(golden_dir, 'cifar_small')
    model = pixel_cnn_pp.PixelCNN(**options)
    listed = []
    with open(os.path.join(os.path.dirname(path), 'variables.txt')) as f:
        for line in f:
            name = line.split()[0]
            if name.startswith('model/') and 'ExponentialMovingAverage' not in name:
                listed.append(name[:-2])  # drop ':0'
    assert [n for n, _ in model.named_weights()] == listed


def test_wrong_options_name_first_mismatched_variable(golden_dir):
    path, options, _ = _golden(golden_dir, 'cifar_small')
    with pytest.raises(ValueError, match=r'model/conv2d_0/V/ExponentialMovingAverage has shape '
                                         r'\[2, 3, 4, 16\].*expects \[2, 3, 4, 32\]'):
        pixel_cnn_pp.load(path, **dict(options, nr_filters=32))
    with pytest.raises(ValueError, match=r'model/dense_13/V/ExponentialMovingAverage has shape '
                                         r'\[16, 30\].*expects \[16, 20\]'):
        pixel_cnn_pp.load(path, **dict(options, nr_logistic_mix=2))
    with pytest.raises(ValueError, match=r'model/conv2d_7/V/ExponentialMovingAverage has shape '
                                         r'\[2, 3, 16, 16\].*nr_resnet=2.*expects \[2, 3, 32, 16\]'):
        pixel_cnn_pp.load(path, **dict(options, nr_resnet=2))


def write_tf1_checkpoint(prefix, model, ema_offset=1.0):
    """A checkpoint in the original's TF1 layout: names, EMA beside, Variable_N slots."""
    names, tensors = [], []
    for i, (name, var) in enumerate(model.named_weights()):
        names += [name, name + '/ExponentialMovingAverage', 'Variable_%d' % (i + 1)]
        tensors += [var, var + ema_offset, tf.zeros_like(var)]
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[''] * len(names),
                      tensors=tensors)


def test_openai_layout_class_conditional_loads_by_name(tmp_path):
    shape = (8, 8, 3)
    options = dict(image_shape=shape, nr_resnet=1, nr_filters=8, nr_logistic_mix=2,
                   num_classes=3)
    source = pixel_cnn_pp.PixelCNN(seed=5, **options)
    assert any('conditional_weights_0/hw' in n for n, _ in source.named_weights())
    prefix = str(tmp_path / 'params_cond.ckpt')
    write_tf1_checkpoint(prefix, source, ema_offset=0.01)
    raw = pixel_cnn_pp.load(prefix, use_ema=False, **options)
    for a, b in zip(raw.weights, source.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    ema = pixel_cnn_pp.load(prefix, **options)
    for a, b in zip(ema.weights, source.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy() + 0.01, rtol=1e-6)
    # The unconditional model matches every shape but lacks the class weights.
    with pytest.raises(ValueError, match=r'has variable model/conditional_weights_0/hw.*does not have'):
        pixel_cnn_pp.load(prefix, **dict(options, num_classes=0))


def test_default_options_are_the_originals(golden_dir):
    path, _, _ = _golden(golden_dir, 'cifar_small')
    # The golden model has 16 filters; the defaults (160) must be what is expected.
    with pytest.raises(ValueError, match=r'expects \[2, 3, 4, 160\]'):
        pixel_cnn_pp.load(path)


def test_missing_checkpoint_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        pixel_cnn_pp.load(str(tmp_path / 'nothing.ckpt'))
    with pytest.raises(FileNotFoundError, match='no checkpoint in folder'):
        pixel_cnn_pp.load(str(tmp_path))


def _trained_tiny_model(tmp_path):
    shape = (8, 8, 3)
    model = pixel_cnn_pp.PixelCNN(shape, nr_resnet=1, nr_filters=8, nr_logistic_mix=2, seed=1)
    images = random_images(4, shape)
    model.initialize(images)
    polyak = pixel_cnn_pp.PolyakAverage(model.weights, decay=0.5)
    adam = pixel_cnn_pp.Adam(model.weights)
    x = model.scale_images(images)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = model.train_objective(x)[0]
        adam.apply_gradients(tape.gradient(loss, model.weights), model.weights, 1e-2)
        polyak.update()
    folder = tmp_path / 'run'
    checkpoints.training_checkpoint(model, polyak, adam=adam).write(str(folder / 'ckpt-1'))
    RunFolder(folder).save_model_config(model.config)
    return model, polyak, images, folder


def test_own_checkpoint_loads_without_options(tmp_path):
    model, polyak, images, folder = _trained_tiny_model(tmp_path)
    loaded = pixel_cnn_pp.load(str(folder / 'ckpt-1'))
    assert loaded.config == model.config
    np.testing.assert_allclose(loaded.nll(images), model.nll(images, averages=polyak), rtol=1e-6)
    raw = pixel_cnn_pp.load(str(folder / 'ckpt-1'), use_ema=False)
    np.testing.assert_allclose(raw.nll(images), model.nll(images), rtol=1e-6)
    assert np.abs(raw.nll(images) - loaded.nll(images)).max() > 1e-3


def test_own_checkpoint_with_conflicting_option_is_refused(tmp_path):
    _, _, _, folder = _trained_tiny_model(tmp_path)
    with pytest.raises(ValueError, match='trained with nr_filters=8, but nr_filters=16'):
        pixel_cnn_pp.load(str(folder / 'ckpt-1'), nr_filters=16)


def test_model_config_is_readable_by_others_like_the_checkpoint(tmp_path):
    # It was written through mkstemp (0600), so a colleague could read the checkpoint's
    # weights but not the options needed to load them.
    import stat
    model = pixel_cnn_pp.PixelCNN((8, 8, 1), nr_resnet=1, nr_filters=8, nr_logistic_mix=2, seed=0)
    old = os.umask(0o022)
    try:
        RunFolder(tmp_path).save_model_config(model.config)
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / run_folder.CONFIG_FILE).st_mode)
    assert mode == 0o644, oct(mode)


# A run of train.py written before the model options became one ModelConfig (issue 12):
# tests/fixtures/run_before_config, with the NLLs that code computed from it.
BEFORE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures',
                             'run_before_config')


@pytest.mark.parametrize('use_ema', [True, False])
def test_checkpoint_written_before_the_model_config_loads_with_its_nlls(use_ema):
    with open(os.path.join(BEFORE_CONFIG, 'expected.json')) as f:
        expected = json.load(f)
    model = pixel_cnn_pp.load(BEFORE_CONFIG, use_ema=use_ema)
    assert model.num_classes == 2 and model.image_shape == (8, 8, 3)
    images, labels = random_images(4, (8, 8, 3), seed=0), np.array([0, 1, 0, 1])
    want = expected['nll_ema' if use_ema else 'nll_raw']
    np.testing.assert_allclose(model.nll(images, labels), want, rtol=1e-5)


# ------------------------------------------------------------ damaged files, bad arguments

def _damage(prefix, how):
    index, data = prefix + '.index', prefix + '.data-00000-of-00001'
    if how == 'garbage_index':
        with open(index, 'wb') as f:
            f.write(b'not a checkpoint index' * 4)
    elif how == 'truncated_index':
        os.truncate(index, 40)
    elif how == 'truncated_data':
        os.truncate(data, 100)
    elif how == 'zeroed_data':
        size = os.path.getsize(data)
        with open(data, 'wb') as f:
            f.write(b'\0' * size)
    elif how == 'missing_data':
        os.remove(data)


@pytest.mark.parametrize('how', ['garbage_index', 'truncated_index', 'truncated_data',
                                 'zeroed_data', 'missing_data'])
def test_a_damaged_checkpoint_is_refused_naming_it(tmp_path, how):
    import re

    model, _, _, folder = _trained_tiny_model(tmp_path)
    prefix = str(folder / 'ckpt-1')
    checkpoints.check_intact(prefix)  # whole before the damage
    _damage(prefix, how)
    message = 'checkpoint %s is damaged or truncated' % re.escape(prefix)
    with pytest.raises(ValueError, match=message):
        pixel_cnn_pp.load(prefix)
    with pytest.raises(ValueError, match=message):
        loading.read_weights(prefix, model)
    with pytest.raises(ValueError, match=message):
        checkpoints.check_intact(prefix)


@pytest.mark.parametrize('text,message', [
    ('{"nr_filters": 8, ', 'cannot be read as JSON'),
    ('[8, 8, 3]', r'must hold a JSON object .*got a list'),
    ('{"nr_filters": "eight"}', "'nr_filters' must be a positive integer; got 'eight'"),
    ('{"image_shape": [8, "8x", 3]}', "'image_shape' must be a positive integer; got '8x'"),
    ('{"image_shape": "8x8x3"}', "'image_shape' must be a sequence of 3 integers"),
    ('{"filters": 8}', 'unknown model option'),
])
def test_a_bad_model_config_file_is_refused_naming_it(tmp_path, text, message):
    _, _, _, folder = _trained_tiny_model(tmp_path)
    (folder / run_folder.CONFIG_FILE).write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        pixel_cnn_pp.load(str(folder / 'ckpt-1'))
    assert str(folder / run_folder.CONFIG_FILE) in str(error.value)


def test_use_ema_must_be_a_bool(tmp_path):
    _, _, _, folder = _trained_tiny_model(tmp_path)
    for value in ('no', 0, None):
        with pytest.raises(ValueError, match="'use_ema' must be True or False; got %r" % value):
            pixel_cnn_pp.load(str(folder / 'ckpt-1'), use_ema=value)


def test_a_folder_whose_state_file_is_unreadable_names_its_newest_checkpoint(tmp_path):
    _, _, _, folder = _trained_tiny_model(tmp_path)
    for number in (2, 10):  # numbered, not sorted as text: ckpt-10 is the newest
        for suffix in ('.index', '.data-00000-of-00001'):
            os.link(folder / ('ckpt-1' + suffix), folder / ('ckpt-%d%s' % (number, suffix)))
    assert [n for n, _ in RunFolder(folder).checkpoints()] == [1, 2, 10]
    (folder / run_folder.STATE_FILE).write_text('garbage')
    with pytest.raises(FileNotFoundError, match=r'the "checkpoint" state file of folder .* could '
                                                r'not be read .*holds 3 checkpoints: name one, '
                                                r'e\.g\. .*ckpt-10$'):
        pixel_cnn_pp.load(str(folder))
