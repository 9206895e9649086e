"""The discretized logistic mixture likelihood."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import losses


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


def test_output_channels_rejects_two_channel_images():
    with pytest.raises(ValueError, match='3 \\(RGB\\) or 1 channel'):
        losses.output_channels(2, 10)
