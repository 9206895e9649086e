"""The discretized logistic mixture likelihood, the focal weight (-fl), bits/dim."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import losses
from tests.conftest import random_images
from tests.test_model import fit, tiny_model


def _levels():
    return (np.arange(256, dtype=np.float32) - 127.5) / 127.5


def test_one_channel_probabilities_sum_to_one():
    rng = np.random.default_rng(0)
    m = 3
    l = rng.normal(size=(1, 1, 1, 3 * m)).astype(np.float32)
    l[..., 2 * m:] -= 2.0  # small log-scales: mass concentrated, tails in the edge bins
    x = _levels().reshape(256, 1, 1, 1)
    logp = losses.log_prob_per_pixel(tf.constant(x), tf.constant(np.repeat(l, 256, 0)), m)
    assert logp.shape == (256, 1, 1)
    np.testing.assert_allclose(np.exp(logp.numpy()).sum(), 1.0, rtol=1e-4)


def test_rgb_probabilities_sum_to_one():
    rng = np.random.default_rng(1)
    m = 2
    l = rng.normal(size=(1, 1, 1, 10 * m)).astype(np.float32) * 0.5
    levels = _levels()
    gb = np.array(list(itertools.product(levels, levels)), np.float32)  # (65536, 2)
    fn = tf.function(lambda x: losses.log_prob_per_pixel(x, tf.repeat(l, 65536, 0), m))
    total = 0.0
    for red in levels:
        x = np.concatenate([np.full((65536, 1), red, np.float32), gb], 1).reshape(65536, 1, 1, 3)
        total += np.exp(fn(tf.constant(x)).numpy().astype(np.float64)).sum()
    np.testing.assert_allclose(total, 1.0, rtol=1e-3)


def test_green_mean_depends_on_red_through_coefficient():
    m = 1
    l = np.zeros((2, 1, 1, 10), np.float32)
    # after the logit, per channel c: mean, log_scale, coefficient at 1 + 3c + (0, 1, 2)
    l[..., [2, 5, 8]] = -3.0  # small scales
    l[..., 3] = 5.0  # coefficient c0 (green on red) large: tanh ~ 1
    x = np.zeros((2, 1, 1, 3), np.float32)
    x[0, ..., 0] = -0.5
    x[1, ..., 0] = 0.5
    x[..., 1] = 0.5  # green equal to the second image's red: likelier there
    logp = losses.log_prob_per_pixel(tf.constant(x), tf.constant(l), m).numpy()
    assert logp[1, 0, 0] > logp[0, 0, 0] + 1.0


def test_sample_from_mixture_is_in_range_and_follows_the_mean():
    rng = np.random.default_rng(2)
    m, n = 3, 500
    per_channel = np.zeros((n, 3, 3 * m), np.float32)  # means | log_scales | coefficients
    per_channel[:, :, :m] = 0.3
    per_channel[:, :, m:2 * m] = -4.0
    l = np.concatenate([np.zeros((n, m), np.float32), per_channel.reshape(n, 9 * m)], 1)
    g = rng.uniform(1e-5, 1 - 1e-5, (n, m)).astype(np.float32)
    u = rng.uniform(1e-5, 1 - 1e-5, (n, 3)).astype(np.float32)
    x = losses.sample_from_mixture(tf.constant(l), m, 3, g, u).numpy()
    assert x.shape == (n, 3)
    assert np.all(x >= -1) and np.all(x <= 1)
    np.testing.assert_allclose(np.median(x, 0), 0.3, atol=0.01)


@pytest.mark.parametrize('shape,expected', [((32, 32, 3), 3072 * np.log(2)),
                                            ((28, 28, 1), 784 * np.log(2))])
def test_bits_per_dim_divides_by_dims_and_ln2(shape, expected):
    np.testing.assert_allclose(losses.bits_per_dim(np.array([expected]), shape), [1.0])


@pytest.mark.parametrize('shape', [(8, 8), (64,), (8, 8, 3, 1), (8.0, 8, 3), (8, 0, 3), '883', 64])
def test_bits_per_dim_refuses_a_shape_that_is_not_h_w_c(shape):
    with pytest.raises(ValueError, match=r"'image_shape' must be \(height, width, channels\)"):
        losses.bits_per_dim(np.array([1.0]), shape)
    assert losses.bits_per_dim(1.0, np.array([8, 8, 1])) == pytest.approx(1 / (64 * np.log(2)))


def test_output_channels_rejects_two_channel_images():
    with pytest.raises(ValueError, match='3 \\(RGB\\) or 1 channel'):
        losses.output_channels(2, 10)


# ------------------------------------------------------------------- focal loss (-fl)


def _predicts_background_well():
    """A one-channel model trained on mostly-black images: background pixels get p near 1."""
    images = np.zeros((8, 8, 8, 1), np.uint8)
    images[:, 2:6, 2:6] = random_images(8, (4, 4, 1), seed=3)
    model, x, _ = fit(images, steps=40, learning_rate=1e-2)
    return model, x


def test_focal_weight_is_one_minus_p_to_the_gamma():
    p = np.array([1e-6, 0.25, 0.5, 0.999999], np.float32)
    weight = losses.focal_weight(tf.math.log(tf.constant(p)), 2.0).numpy()
    np.testing.assert_allclose(weight, (1 - p.astype(np.float64)) ** 2, rtol=1e-4, atol=1e-12)


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
