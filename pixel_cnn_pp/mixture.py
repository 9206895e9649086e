"""The discretized logistic mixture of PixelCNN++: its parameters unpacked once, and from
them the log-likelihood, the draw, and the per-level probabilities an entropy coder needs.

Each pixel's colours are a mixture of M logistics, discretized to the 256 levels; in an RGB
pixel the green mean moves linearly with red and the blue mean with red and green
(Salimans et al. 2017, sections 2.1-2.2). A transcription of the original's
`discretized_mix_logistic_loss` and `sample_from_discretized_mix_logistic` (RGB) and of
the MNIST fork's `discretized_mix_logistic_loss_1d` (one channel), arranged so that each
piece is written once:

- `unpack`: the network's output -> a `Mixture` (logits; per channel means, log-scales,
  coupling coefficients);
- `couple`: a channel's value (its mean, or a draw) moved by the channels before it;
- `bin_edge`: a level's bin, +-1/255 around it, in a component's standard units (the lowest
  and the highest level take the tails);

and from them `log_prob` (TensorFlow: the likelihood and training objective) and `draw`
(TensorFlow: both samplers); coding.py rounds the unpacked parameters and couples them
with `couple` to make the codec's integer frequencies.

Layout of the network output l, (..., K) with M components (`output_channels` gives K):
  l[..., :M]                          mixture logits
  l[..., M:] reshaped to (C, 3M) RGB  per channel: means | log_scales | coefficients
                         (C, 2M) 1ch  per channel: means | log_scales
Values are on the model's scale: level j is (j - 127.5) / 127.5, in [-1, 1] (`to_value`;
`to_level` is the way back, the quantisation every sampler applies to its draws).
"""

import collections

import numpy as np
import tensorflow as tf

LOG_SCALE_MIN = -7.0  # log_scales are clamped here, as the original
LEVELS = 256
HALF_BIN = 1.0 / 255.0  # a level's bin is +-HALF_BIN around it (levels are 2/255 apart)
# The coupling of the channels: channel c += coeffs[j] * channel k for each (j, k) here.
_COUPLING = ((), ((0, 0),), ((1, 0), (2, 1)))


class Mixture(collections.namedtuple('Mixture', 'logits means log_scales coeffs')):
    """The mixture at some positions, as `unpack` gives it (TensorFlow or NumPy arrays).

    logits (..., M); means and log_scales (clamped at LOG_SCALE_MIN) (..., C, M) per
    channel; coeffs (..., 3, M) after tanh for RGB (coeffs[..., 0, :] green's on red,
    [..., 1, :] blue's on red, [..., 2, :] blue's on green), None for one channel.
    """


def to_value(levels):
    """Levels 0..255 (float, TensorFlow or NumPy) -> the model's scale, in [-1, 1], as the
    original scales its images: (level - 127.5) / 127.5, in the levels' dtype."""
    return (levels - 127.5) / 127.5


def to_level(x):
    """Values on the model's scale (TensorFlow) -> the nearest of the LEVELS levels, float
    0..255: what a sampler keeps of a draw (rounded half to even, as np.rint; clipped)."""
    return tf.clip_by_value(tf.round((x + 1.0) * 127.5), 0.0, LEVELS - 1.0)


def output_channels(num_channels, nr_logistic_mix):
    """Network output channels K for an image of `num_channels` (3 or 1) channels."""
    if num_channels == 3:
        return 10 * nr_logistic_mix
    if num_channels == 1:
        return 3 * nr_logistic_mix
    raise ValueError('images must have 3 (RGB) or 1 channel, got %d' % num_channels)


def unpack(l, nr_mix, num_channels):
    """The Mixture of network output l, float (..., K) (the layout above)."""
    logits = l[..., :nr_mix]
    per = 3 if num_channels == 3 else 2
    shape = tf.concat([tf.shape(l)[:-1], [num_channels, per * nr_mix]], 0)
    rest = tf.reshape(l[..., nr_mix:], shape)  # (..., C, per*M)
    means = rest[..., :nr_mix]
    log_scales = tf.maximum(rest[..., nr_mix:2 * nr_mix], LOG_SCALE_MIN)
    coeffs = tf.tanh(rest[..., 2 * nr_mix:3 * nr_mix]) if num_channels == 3 else None
    return Mixture(logits, means, log_scales, coeffs)


def couple(value, channel, coeffs, previous):
    """`value` of `channel` (its mean, or a draw around it) moved by the channels before it.

    The original's coupling: green + coeffs[0] * red, blue + coeffs[1] * red + coeffs[2]
    * green; red (and a one-channel image) unchanged. coeffs (..., 3, M), or (..., 3, 1)
    for one component; previous: the values of the channels before, each broadcasting
    against coeffs[..., j, :]. TensorFlow or NumPy.
    """
    for j, k in _COUPLING[channel]:
        value = value + coeffs[..., j, :] * previous[k]
    return value


def bin_edge(centered, inv_scale, side):
    """A level's bin edge in a component's standard units: side -1 the lower, +1 the upper.

    centered: the level's value minus the component's mean; inv_scale: exp(-log_scale).
    TensorFlow or NumPy. The lowest level's bin reaches down to -inf and the highest's up
    to +inf (the tails), which the callers apply.
    """
    return inv_scale * (centered + side * HALF_BIN)


def log_prob(mixture, x):
    """Log-probability in nats of each pixel of x (all its channels) under the mixture.

    Args:
      mixture: `unpack` of the network output (B, H, W, K).
      x: float (B, H, W, C) in [-1, 1], C = 3 or 1, values on the 256-level grid.
    Returns:
      float (B, H, W): log p(x[b, i, j, :] | the network's output there).
    """
    logits, means, log_scales, coeffs = mixture
    num_channels = x.shape[-1]
    x = x[..., None]  # (B, H, W, C, 1), broadcasts over the mixture
    if num_channels == 3:
        previous = [x[..., 0, :], x[..., 1, :]]
        means = tf.stack([couple(means[..., c, :], c, coeffs, previous) for c in range(3)],
                         axis=-2)
    centered = x - means
    inv_stdv = tf.exp(-log_scales)
    plus_in = bin_edge(centered, inv_stdv, +1)
    min_in = bin_edge(centered, inv_stdv, -1)
    cdf_delta = tf.sigmoid(plus_in) - tf.sigmoid(min_in)
    log_cdf_plus = plus_in - tf.nn.softplus(plus_in)  # level 0 takes the whole left tail
    log_one_minus_cdf_min = -tf.nn.softplus(min_in)  # level 255 takes the whole right tail
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * tf.nn.softplus(mid_in)
    # Where the bin mass underflows, use the log-density at the bin centre times
    # the bin width, as the original does; the maximum() keeps the unused branch
    # of tf.where free of log(0) and its NaN gradient.
    log_probs = tf.where(
        x < -0.999, log_cdf_plus,
        tf.where(x > 0.999, log_one_minus_cdf_min,
                 tf.where(cdf_delta > 1e-5, tf.math.log(tf.maximum(cdf_delta, 1e-12)),
                          log_pdf_mid - np.log(127.5))))
    log_probs = tf.reduce_sum(log_probs, axis=-2) + tf.nn.log_softmax(logits, axis=-1)
    return tf.reduce_logsumexp(log_probs, axis=-1)


def draw(mixture, gumbel_uniform, logistic_uniform):
    """One value per channel from the mixture, given the random numbers.

    The component by Gumbel-max over the logits, then each channel a logistic draw by its
    inverse CDF around the component's mean, coupled to the channels drawn before it and
    clipped to [-1, 1]. The random numbers are inputs so that a sampler can draw them all up
    front from a seed (reproducible runs, and the fast and naive samplers agree).

    Args:
      mixture: `unpack` of the network output (..., K) at the positions to sample.
      gumbel_uniform: float (..., M) uniforms in (0, 1) for the Gumbel-max choice.
      logistic_uniform: float (..., C) uniforms in (0, 1) for the logistic draws.
    Returns:
      float (..., C) in [-1, 1] (not yet quantised).
    """
    logits, means, log_scales, coeffs = mixture
    nr_mix = logits.shape[-1]
    g = gumbel_uniform
    sel = tf.one_hot(tf.argmax(logits - tf.math.log(-tf.math.log(g)), axis=-1), nr_mix)
    sel = sel[..., None, :]  # (..., 1, M), broadcasts over channels
    means = tf.reduce_sum(means * sel, -1, keepdims=True)  # (..., C, 1): the chosen one's
    log_scales = tf.reduce_sum(log_scales * sel, -1, keepdims=True)
    u = logistic_uniform[..., None]  # (..., C, 1)
    x = means + tf.exp(log_scales) * (tf.math.log(u) - tf.math.log(1.0 - u))
    if coeffs is not None:
        coeffs = tf.reduce_sum(coeffs * sel, -1, keepdims=True)  # (..., 3, 1)
    drawn = []
    for c in range(logistic_uniform.shape[-1]):
        drawn.append(tf.clip_by_value(couple(x[..., c, :], c, coeffs, drawn), -1.0, 1.0))
    return tf.concat(drawn, -1)


LEVEL_VALUES = (np.arange(LEVELS) - 127.5) / 127.5  # level j's value in [-1, 1], float64
