"""The causal non-local block (-nl) and the model options of issue 5 (-ac, -nl, -fl, -ed)."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import PixelCNN, attention, losses
from tests.conftest import random_images
from tests.test_model import TINY, assert_autoregressive, fit, tiny_model


def scramble_attention(model, seed=0):
    """Give every non-local block a non-zero output projection, so it does something."""
    rng = np.random.default_rng(seed)
    for block in model.nl_blocks:
        block.wo.assign(rng.normal(0, 0.1, block.wo.shape).astype(np.float32))
        block.bo.assign(rng.normal(0, 0.05, block.bo.shape).astype(np.float32))


@pytest.mark.parametrize('add_coords,non_local,conditional',
                         list(itertools.product([False, True], repeat=3)))
def test_output_ignores_future_pixels_for_every_option(add_coords, non_local, conditional):
    shape = (8, 8, 3) if conditional else (8, 8, 1)
    model = tiny_model(shape, add_coords=add_coords, non_local=non_local, nl_levels=(0, 1, 2),
                       num_classes=3 if conditional else 0)
    if non_local:
        assert len(model.nl_blocks) == 3  # a block at each of the 3 resolutions
        scramble_attention(model)
    assert_autoregressive(model, labels=np.array([1, 2]) if conditional else None,
                          positions=[0, 9, 36, 63], seed=1)


def test_unmasked_attention_fails_the_autoregressive_test(monkeypatch):
    model = tiny_model((8, 8, 1), non_local=True, nl_levels=(0,))
    scramble_attention(model)
    # Like the fork's block: every position sees every other. The test must catch it.
    monkeypatch.setattr(attention, 'causal_mask', lambda n: tf.ones([n, n], tf.bool))
    with pytest.raises(AssertionError, match='NLL before position'):
        assert_autoregressive(model, positions=[20])


def test_scrambled_attention_changes_the_likelihood():
    model = tiny_model((8, 8, 3), non_local=True, nl_levels=(1, 2))
    images = random_images(2, (8, 8, 3))
    before = model.nll(images)
    scramble_attention(model)
    assert np.all(np.abs(model.nll(images) - before) > 1e-2)


def test_fresh_non_local_model_computes_the_plain_nll():
    images = random_images(8, (8, 8, 3), seed=2)
    plain = PixelCNN((8, 8, 3), seed=11, **TINY)
    with_nl = PixelCNN((8, 8, 3), seed=11, non_local=True, nl_levels=(0, 1, 2), **TINY)
    plain.initialize(images)
    with_nl.initialize(images)
    np.testing.assert_allclose(with_nl.nll(images), plain.nll(images), rtol=1e-6)


def test_non_local_blocks_have_their_own_names_and_keep_the_originals():
    plain = PixelCNN((8, 8, 3), **TINY)
    with_nl = PixelCNN((8, 8, 3), non_local=True, nl_levels=(1,), **TINY)
    names = [n for n, _ in with_nl.named_weights()]
    assert [n for n in names if 'nonlocal' not in n] == [n for n, _ in plain.named_weights()]
    assert 'model/nonlocal_0/wq' in names


def test_non_local_too_large_for_memory_is_refused():
    with pytest.raises(ValueError, match=r'level 0 \(128x128 = 16384 positions\).*--nl_levels'):
        PixelCNN((128, 128, 3), non_local=True, nl_levels=(0,))
    PixelCNN((128, 128, 3), non_local=True, nl_levels=(2,), nr_resnet=1, nr_filters=8)


def test_bad_nl_levels_are_refused():
    with pytest.raises(ValueError, match="'nl_levels'"):
        PixelCNN((8, 8, 3), non_local=True, nl_levels=(3,))


def test_coordinates_change_the_network_but_not_its_causality():
    images = random_images(2, (8, 8, 1))
    plain = tiny_model((8, 8, 1))
    coords = tiny_model((8, 8, 1), add_coords=True)
    assert coords.u_init.V.shape[2] == plain.u_init.V.shape[2] + 2  # image, 2 coords, ones
    assert np.abs(coords.nll(images) - plain.nll(images)).max() > 1e-2


def _predicts_background_well():
    """A one-channel model trained on mostly-black images: background pixels get p near 1."""
    images = np.zeros((8, 8, 8, 1), np.uint8)
    images[:, 2:6, 2:6] = random_images(8, (4, 4, 1), seed=3)
    model, x, _ = fit(images, steps=40, learning_rate=1e-2)
    return model, x


def test_focal_loss_reweights_pixels_and_reports_plain_nll():
    model, x = _predicts_background_well()
    log_p = model.log_prob_per_pixel(x)
    factor = losses.focal_weight(log_p, 2.0).numpy()
    assert factor.min() < 0.5, 'no pixel is predicted well enough to be down-weighted'
    assert factor.max() > 0.9, 'the poorly predicted pixels keep their weight'

    with tf.GradientTape(persistent=True) as tape:
        focal, nll = model.train_objective(x, focal_gamma=2.0)
        plain, plain_nll = model.train_objective(x)
    # The reported NLL is the plain one, whatever the objective.
    np.testing.assert_allclose(float(nll), float(plain_nll), rtol=1e-6)
    np.testing.assert_allclose(float(nll), model.nll((x.numpy() * 127.5 + 127.5).round()
                                                    .astype(np.uint8)).sum(), rtol=1e-5)
    assert float(focal) < float(plain) * 0.99
    g_focal = tape.gradient(focal, model.weights)
    g_plain = tape.gradient(plain, model.weights)
    diff = sum(float(tf.reduce_sum(tf.square(a - b))) for a, b in zip(g_focal, g_plain))
    norm = sum(float(tf.reduce_sum(tf.square(b))) for b in g_plain)
    assert diff / norm > 1e-2, 'focal loss did not change the gradients'


def test_focal_gamma_zero_is_the_plain_objective():
    model = tiny_model((8, 8, 3))
    x = model.scale_images(random_images(2, (8, 8, 3)))
    objective, nll = model.train_objective(x, focal_gamma=0.0)
    assert float(objective) == float(nll)


def test_negative_focal_gamma_is_refused():
    model = tiny_model((8, 8, 3))
    x = model.scale_images(random_images(1, (8, 8, 3)))
    with pytest.raises(ValueError, match="'focal_gamma' must be >= 0"):
        model.train_objective(x, focal_gamma=-1.0)


@pytest.mark.parametrize('shape', [(8, 8, 3), (8, 8, 1)])
def test_energy_distance_trains_and_samples(shape):
    model = PixelCNN(shape, seed=0, energy_distance=True, dropout_p=0.0, **TINY)
    images = random_images(4, shape)
    model.initialize(images)
    x = model.scale_images(images)
    samples = model.forward(x, seed=tf.constant([0, 1]))
    assert len(samples) == 10 and samples[0].shape == (4,) + shape
    assert all(float(tf.reduce_max(tf.abs(s))) <= 1.0 for s in samples)
    with tf.GradientTape() as tape:
        objective, reported = model.train_objective(x, seed=tf.constant([0, 1]))
    assert np.isfinite(float(objective)) and float(objective) == float(reported)
    grads = tape.gradient(objective, model.weights)
    assert all(g is not None for g in grads)
    assert float(tf.reduce_sum(tf.abs(grads[-1]))) > 0
    out = model.sample(2, seed=0)
    assert out.shape == (2,) + shape and out.dtype == np.uint8


def test_energy_distance_output_ignores_future_pixels():
    shape = (8, 8, 3)
    model = PixelCNN(shape, seed=0, energy_distance=True, **TINY)
    images = random_images(2, shape)
    model.initialize(images)
    seed = tf.constant([3, 4])
    base = model.forward(model.scale_images(images), seed=seed)[0].numpy().reshape(2, 64, 3)
    changed = images.reshape(2, 64, 3).copy()
    changed[:, 30:] = 255 - changed[:, 30:]
    out = model.forward(model.scale_images(changed.reshape(images.shape)), seed=seed)[0]
    out = out.numpy().reshape(2, 64, 3)
    np.testing.assert_allclose(out[:, :31], base[:, :31], atol=1e-6)  # the pixel 30 output too
    assert np.abs(out[:, 31:] - base[:, 31:]).max() > 1e-4


def test_energy_distance_has_no_likelihood_and_refuses_focal():
    model = PixelCNN((8, 8, 3), energy_distance=True, **TINY)
    images = random_images(2, (8, 8, 3))
    model.initialize(images)
    with pytest.raises(ValueError, match='no likelihood'):
        model.nll(images)
    with pytest.raises(ValueError, match=r'focal loss \(-fl\)'):
        model.train_objective(model.scale_images(images), focal_gamma=2.0)
