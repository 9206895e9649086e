"""coding.py: integer coding distributions that every machine computes alike."""

import numpy as np
import pytest

from pixel_cnn_pp import coding


def random_params(p, m=5, channels=3, seed=0, spread=1.0):
    """Mixture parameters as a network gives them: logits, means, log-scales, coefficients."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2 * spread, (p, m))
    means = rng.uniform(-1.2, 1.2, (p, channels, m))
    log_scales = rng.uniform(-7.5, 0.5, (p, channels, m))
    coeffs = np.tanh(rng.normal(0, 1, (p, channels, m))) if channels == 3 else None
    return logits, means, log_scales, coeffs


MARGIN = coding.default_margin(1)


def tables_of(params, mode, levels, margin=MARGIN):
    """Every channel's two decoder tables (P, C, 2, 16): the groups, and the places in the
    level's group; fed the given levels."""
    out = []

    def code(c, channel):
        group = levels[:, c] // coding.GROUP
        out.append(np.stack([channel.group_table(), channel.place_table(group)], 1))
        return levels[:, c]

    _, doubt = coding.code_pixels(params, mode, margin, code)
    return np.stack(out, 1), doubt


def cumulative(freq):
    return np.concatenate([np.ones(freq.shape[:-1] + (1,), np.int64),
                           1 + np.cumsum(freq, -1)], -1)


@pytest.mark.parametrize('channels', [3, 1])
def test_every_step_has_a_frequency_and_the_tables_sum_to_2_to_the_24(channels):
    p = 600
    params = random_params(p, channels=channels)
    levels = np.random.default_rng(1).integers(0, 256, (p, channels))
    levels[:50] = 0
    levels[50:100] = 255
    mode = np.arange(p) % 3  # FINE, COARSE, UNIFORM
    freq, _ = tables_of(params, mode, levels)
    assert freq.dtype == np.int64 and freq.min() >= 1
    # One unit is left below the first symbol and one above the last (the encoder's three).
    np.testing.assert_array_equal(freq.sum(-1), coding.TOTAL - 2)
    uniform = freq[mode == coding.UNIFORM]
    assert (uniform.max(-1) - uniform.min(-1) <= 1).all()


def test_the_encoders_intervals_are_the_decoders_tables():
    p = 800
    params = random_params(p, seed=2)
    levels = np.random.default_rng(3).integers(0, 256, (p, 3))
    mode, intervals = coding.encode(params, levels, MARGIN)
    freq, _ = tables_of(params, mode, levels)
    cum = cumulative(freq)  # (P, C, 2, 17)
    rows, channels = np.arange(p)[:, None], np.arange(3)
    for step, symbol in enumerate([levels // coding.GROUP, levels % coding.GROUP]):
        np.testing.assert_array_equal(cum[rows, channels, step, symbol], intervals[..., step, 0])
        np.testing.assert_array_equal(cum[rows, channels, step, symbol + 1],
                                      intervals[..., step, 1])


def test_parameters_that_differ_by_less_than_half_the_margin_give_the_same_tables():
    # The guarantee: what a decoder with other floats computes at every pixel the encoder
    # did not put in doubt. The margin is made large so that doubt is common here.
    p, margin = 3000, 1e-5
    params = random_params(p, seed=4)
    levels = np.random.default_rng(5).integers(0, 256, (p, 3))
    mode, _ = coding.encode(params, levels, margin)
    assert 0.01 < np.mean(mode != coding.FINE) < 0.9  # doubt occurs, and is resolved
    rng = np.random.default_rng(6)
    moved = tuple(None if a is None else
                  a + rng.uniform(-0.45, 0.45, a.shape) * margin * np.maximum(1, np.abs(a))
                  for a in params)
    want, _ = tables_of(params, mode, levels, margin)
    got, doubt = tables_of(moved, mode, levels, margin)
    np.testing.assert_array_equal(got, want)
    assert doubt.min() >= 0.5  # the decoder is sure: no pixel near an edge for it
    # Without the modes (every pixel FINE) the same move changes some tables: the test
    # can fail, and the modes are what keeps the tables equal.
    fine = np.zeros(p, np.int64)
    assert (tables_of(moved, fine, levels, margin)[0] !=
            tables_of(params, fine, levels, margin)[0]).any()


def test_a_parameter_on_a_rounding_edge_puts_its_pixel_in_doubt():
    logits, means, log_scales, coeffs = random_params(1, m=1, seed=7)
    log_scales = np.full_like(log_scales, -3.0 + coding.GRIDS[coding.FINE].log_scale / 2)
    levels = np.array([[128, 128, 128]])
    mode, _ = coding.encode((logits, means, log_scales, coeffs), levels, 1e-6)
    assert mode[0] == coding.COARSE


def test_the_tables_are_exact_numbers():
    weight, inv_scale, q_min, _, sigmoid = coding._tables()
    assert weight[0, 0] == 1 << 18 and weight[0, 4] == round(2 ** 18 * np.exp(-1.0))  # step 1/4
    n = len(sigmoid) - 1
    assert sigmoid[n // 2] == 1 << 29  # sigmoid(0) = 1/2
    assert sigmoid[0] == 2 and sigmoid[-1] == (1 << 30) - 2  # sigmoid(-+20) in 2**-30
    assert (np.diff(sigmoid) >= 0).all()
    assert inv_scale[0, -q_min[0]] == round(2 ** 24 / 255)  # scale 1


def test_coding_costs_little_more_than_the_mixtures_own_probabilities():
    # Levels drawn from the mixture; the bits of their intervals against -log2 of the
    # float mixture's probabilities. Scales as a trained model's (1 to 30 levels).
    p = 4000
    logits, means, _, coeffs = random_params(p, seed=8, spread=0.5)
    rng = np.random.default_rng(9)
    log_scales = rng.uniform(-4.5, -1.5, means.shape)
    params = logits, means, log_scales, coeffs
    levels = draw(params, rng)
    mode, intervals = coding.encode(params, levels, MARGIN)
    bits = -np.log2((intervals[..., 1] - intervals[..., 0]) / coding.TOTAL).sum()
    modes = -np.log2(coding.mode_frequencies(mode)[mode] / coding.TOTAL).sum()
    want = float_mixture_bits(params, levels)
    assert want < bits + modes <= 1.01 * want, (bits / want, modes / want)


def draw(params, rng):
    """Levels drawn from the mixture: a component, then each channel's logistic, coupled."""
    logits, means, log_scales, coeffs = params
    p = len(logits)
    k = (np.cumsum(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), -1) <
         rng.random((p, 1))).sum(-1)
    x = np.zeros((p, means.shape[1]))
    for c in range(means.shape[1]):
        mean = means[np.arange(p), c, k]
        if c == 1:
            mean = mean + coeffs[np.arange(p), 0, k] * x[:, 0]
        elif c == 2:
            mean = mean + coeffs[np.arange(p), 1, k] * x[:, 0] + coeffs[np.arange(p), 2, k] * x[:, 1]
        u = rng.uniform(1e-5, 1 - 1e-5, p)
        value = mean + np.exp(log_scales[np.arange(p), c, k]) * np.log(u / (1 - u))
        x[:, c] = np.clip(np.round(value * 127.5 + 127.5), 0, 255) / 127.5 - 1
    return np.round((x + 1) * 127.5).astype(np.int64)


def test_intervals_and_tables_code_the_same_stream():
    # The encoder codes each step as the middle of three symbols; the decoder decodes
    # pixel by pixel, channel by channel, step by step, from whole tables: the same levels.
    import constriction

    p = 300
    params = random_params(p, seed=10)
    levels = np.random.default_rng(11).integers(0, 256, (p, 3))
    mode, intervals = coding.encode(params, levels, MARGIN)
    family = constriction.stream.model.Categorical(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(np.ones(6 * p, np.int32), family, coding.interval_weights(
        intervals[..., 0], intervals[..., 1]).reshape(-1, 3).astype(np.float32))
    decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())

    def decode(c, channel):
        def step(freq):
            return decoder.decode(family, coding.table_weights(freq).astype(np.float32)) - 1
        group = step(channel.group_table())
        return coding.GROUP * group + step(channel.place_table(group))

    decoded = np.stack([coding.code_pixels(tuple(None if a is None else a[i:i + 1]
                                                 for a in params), mode[i:i + 1],
                                           MARGIN, decode)[0][0] for i in range(p)])
    np.testing.assert_array_equal(decoded, levels)


def float_mixture_bits(params, levels):
    """-log2 of the mixture's probability of each pixel's levels, summed: mixture.log_prob,
    the likelihood the model reports, on float32 parameters."""
    import tensorflow as tf

    from pixel_cnn_pp import mixture

    mix = mixture.Mixture(*(None if a is None else tf.constant(a, tf.float32) for a in params))
    x = tf.constant((levels - 127.5) / 127.5, tf.float32)
    return -np.sum(mixture.log_prob(mix, x).numpy().astype(np.float64)) / np.log(2)
