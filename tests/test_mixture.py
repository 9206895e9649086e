"""The discretized logistic mixture (pixel_cnn_pp/mixture.py): one unpacking, and the
likelihood, the draw and the codec's per-level probabilities agreeing with each other."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import mixture

LEVELS = mixture.LEVEL_VALUES.astype(np.float32)  # level j's value in [-1, 1]


def network_output(n, channels, m, log_scale, seed):
    """A random network output (n, K) in the mixture's layout, log-scales near `log_scale`."""
    rng = np.random.default_rng(seed)
    per = 3 if channels == 3 else 2
    logits = rng.normal(size=(n, m))
    rest = rng.normal(size=(n, channels, per * m))
    rest[..., :m] *= 0.5  # means inside [-1, 1], some near the edges
    rest[..., m:2 * m] = log_scale + 0.5 * rest[..., m:2 * m]
    return np.concatenate([logits, rest.reshape(n, -1)], -1).astype(np.float32)


def log_p(l, x, m):
    """mixture.log_prob of pixels x (n, C) under outputs l (n, K), as (n,) float64."""
    x = tf.constant(x[:, None, None], tf.float32)
    mix = mixture.unpack(tf.constant(l[:, None, None]), m, x.shape[-1])
    return mixture.log_prob(mix, x).numpy()[:, 0, 0].astype(np.float64)


def test_unpack_reads_the_originals_layout():
    m = 2
    l = np.arange(10 * m, dtype=np.float32)[None] / 100.0  # (1, 20)
    l[0, 4] = -9.0  # red's first log-scale, below the clamp
    mix = mixture.unpack(tf.constant(l), m, 3)
    np.testing.assert_array_equal(mix.logits.numpy(), l[:, :m])
    per_channel = l[0, m:].reshape(3, 3 * m)  # means | log_scales | coefficients
    np.testing.assert_array_equal(mix.means.numpy()[0], per_channel[:, :m])
    assert mix.log_scales.numpy()[0, 0, 0] == mixture.LOG_SCALE_MIN
    np.testing.assert_array_equal(mix.log_scales.numpy()[0, 1:], per_channel[1:, m:2 * m])
    np.testing.assert_allclose(mix.coeffs.numpy()[0], np.tanh(per_channel[:, 2 * m:]),
                               rtol=1e-6)
    assert mixture.unpack(tf.constant(l[:, :3 * m]), m, 1).coeffs is None


def test_output_channels_rejects_two_channel_images():
    assert (mixture.output_channels(3, 10), mixture.output_channels(1, 10)) == (100, 30)
    with pytest.raises(ValueError, match='3 \\(RGB\\) or 1 channel'):
        mixture.output_channels(2, 10)


def test_one_channel_log_likelihood_sums_over_the_levels_to_one():
    m = 3
    l = np.repeat(network_output(1, 1, m, -3.0, seed=0), 256, 0)
    p = np.exp(log_p(l, LEVELS[:, None], m))
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-4)


def test_rgb_log_likelihood_sums_over_the_levels_to_one():
    m = 2
    l = network_output(1, 3, m, -1.5, seed=1)
    gb = np.array(list(itertools.product(LEVELS, LEVELS)), np.float32)  # (65536, 2)
    x = tf.Variable(tf.zeros((65536, 1, 1, 3)))
    mix = mixture.unpack(tf.constant(np.repeat(l, 65536, 0)[:, None, None]), m, 3)
    fn = tf.function(lambda: mixture.log_prob(mix, x), autograph=False)
    total = 0.0
    for red in LEVELS:
        x.assign(np.concatenate([np.full((65536, 1), red, np.float32), gb], 1)[:, None, None])
        total += np.exp(fn().numpy().astype(np.float64)).sum()
    np.testing.assert_allclose(total, 1.0, rtol=1e-3)


def test_green_mean_is_coupled_to_red():
    m = 1
    l = np.zeros((2, 10), np.float32)
    # after the logit, per channel c: mean, log_scale, coefficient at 1 + 3c + (0, 1, 2)
    l[:, [2, 5, 8]] = -3.0  # small scales
    l[:, 3] = 5.0  # coefficient 0 (green on red) large: tanh ~ 1
    x = np.zeros((2, 3), np.float32)
    x[0, 0], x[1, 0] = -0.5, 0.5
    x[:, 1] = 0.5  # green equal to the second image's red: likelier there
    logp = log_p(l, x, m)
    assert logp[1] > logp[0] + 1.0
    mean = mixture.couple(np.zeros((1, 1)), 1, np.tanh(l[:1, [3, 6, 9], None]), [0.5])
    np.testing.assert_allclose(mean, 0.5 * np.tanh(5.0), rtol=1e-6)


def test_draws_are_in_range_and_follow_the_mean():
    rng = np.random.default_rng(2)
    m, n = 3, 500
    per_channel = np.zeros((n, 3, 3 * m), np.float32)  # means | log_scales | coefficients
    per_channel[:, :, :m] = 0.3
    per_channel[:, :, m:2 * m] = -4.0
    l = np.concatenate([np.zeros((n, m), np.float32), per_channel.reshape(n, 9 * m)], 1)
    g = rng.uniform(1e-5, 1 - 1e-5, (n, m)).astype(np.float32)
    u = rng.uniform(1e-5, 1 - 1e-5, (n, 3)).astype(np.float32)
    x = mixture.draw(mixture.unpack(tf.constant(l), m, 3), g, u).numpy()
    assert x.shape == (n, 3)
    assert np.all(x >= -1) and np.all(x <= 1)
    np.testing.assert_allclose(np.median(x, 0), 0.3, atol=0.01)


def _draw_levels(l, m, channels, n, seed):
    """n quantised draws (n, C) from the one pixel's mixture l (1, K), as the samplers draw."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(1e-5, 1 - 1e-5, (n, m)).astype(np.float32)
    u = rng.uniform(1e-5, 1 - 1e-5, (n, channels)).astype(np.float32)
    x = mixture.draw(mixture.unpack(tf.constant(np.repeat(l, n, 0)), m, channels), g, u)
    return mixture.to_level(x).numpy().astype(np.int64)


def _assert_frequencies_match(counts, p, n):
    """Counts of n draws within 5 standard deviations (+1 draw) of n * p, every one."""
    sigma = np.sqrt(n * p * (1 - p))
    worst = np.max((np.abs(counts - n * p) - 1.0) / np.maximum(sigma, 1e-9))
    assert worst <= 5.0, 'a count is %.1f standard deviations from its probability' % worst


def test_one_channel_draw_frequencies_match_the_probabilities():
    m, n = 3, 40000
    l = network_output(1, 1, m, -3.0, seed=3)
    l[0, m:2 * m] = [-0.98, 0.0, 0.97]  # components near both edges: their tails count too
    levels = _draw_levels(l, m, 1, n, seed=4)
    counts = np.bincount(levels[:, 0], minlength=256)
    p = np.exp(log_p(np.repeat(l, 256, 0), LEVELS[:, None], m))
    assert counts[0] > 0 and counts[255] > 0
    _assert_frequencies_match(counts, p, n)


def test_rgb_draw_frequencies_match_the_probabilities():
    m, n = 2, 40000
    l = network_output(1, 3, m, -3.5, seed=5)
    levels = _draw_levels(l, m, 3, n, seed=6)
    triples, counts = np.unique(levels, axis=0, return_counts=True)
    common = np.argsort(counts)[::-1][:30]  # the likeliest pixels, and the red marginal
    p = np.exp(log_p(np.repeat(l, len(common), 0), LEVELS[triples[common]], m))
    _assert_frequencies_match(counts[common], p, n)


def test_levels_and_values_convert_both_ways_rounding_as_np_rint():
    levels = np.arange(256, dtype=np.float32)
    values = mixture.to_value(levels)
    np.testing.assert_array_equal(values, mixture.LEVEL_VALUES.astype(np.float32))
    np.testing.assert_array_equal(mixture.to_level(tf.constant(values)).numpy(), levels)
    # The nearest level as np.rint finds it (half to even), clipped beyond [-1, 1].
    x = np.random.default_rng(0).uniform(-1.1, 1.1, 10000).astype(np.float32)
    want = np.clip(np.rint((x + np.float32(1.0)) * np.float32(127.5)), 0, 255)
    assert want.min() == 0 and want.max() == 255
    np.testing.assert_array_equal(mixture.to_level(tf.constant(x)).numpy(), want)
