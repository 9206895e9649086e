"""The discretized logistic mixture likelihood of PixelCNN++, and sampling from it.

A transcription of the original's `discretized_mix_logistic_loss` (RGB) and the
MNIST fork's `discretized_mix_logistic_loss_1d` (one channel), returning per-pixel
log-probabilities so that callers can sum them per image, per batch, or weight
them (focal loss) without a second implementation.

Layout of the network output l, (B, H, W, K) with M mixture components:
  l[..., :M]                          mixture logits
  l[..., M:] reshaped to (C, 3M) RGB  per channel: means | log_scales | coefficients
                         (C, 2M) 1ch  per channel: means | log_scales
x is the image scaled to [-1, 1], (B, H, W, C).
"""

import numpy as np
import tensorflow as tf

LOG_SCALE_MIN = -7.0  # log_scales are clamped here, as the original


def output_channels(num_channels, nr_logistic_mix):
    """Network output channels for an image of `num_channels` (3 or 1) channels."""
    if num_channels == 3:
        return 10 * nr_logistic_mix
    if num_channels == 1:
        return 3 * nr_logistic_mix
    raise ValueError('images must have 3 (RGB) or 1 channel, got %d' % num_channels)


def _unpack(l, num_channels, nr_mix):
    """Split network output into logits (B,H,W,M) and per-channel means, log_scales, coeffs."""
    logits = l[..., :nr_mix]
    per = 3 if num_channels == 3 else 2
    shape = tf.concat([tf.shape(l)[:-1], [num_channels, per * nr_mix]], 0)
    rest = tf.reshape(l[..., nr_mix:], shape)  # (B, H, W, C, per*M)
    means = rest[..., :nr_mix]
    log_scales = tf.maximum(rest[..., nr_mix:2 * nr_mix], LOG_SCALE_MIN)
    coeffs = tf.tanh(rest[..., 2 * nr_mix:3 * nr_mix]) if num_channels == 3 else None
    return logits, means, log_scales, coeffs


def mixture_parameters(l, nr_mix, num_channels):
    """The mixture of network output l (..., K): logits (..., M) and per channel (..., C, M)
    means, log_scales (clamped at LOG_SCALE_MIN) and coefficients (tanh; None for one channel).

    The green mean is means[..., 1, :] + coeffs[..., 0, :] * red, the blue mean
    means[..., 2, :] + coeffs[..., 1, :] * red + coeffs[..., 2, :] * green, red and
    green scaled to [-1, 1] (see log_prob_per_pixel).
    """
    return _unpack(l, num_channels, nr_mix)


def log_prob_per_pixel(x, l, nr_mix):
    """Log-probability in nats of each pixel of x (all its channels) under l.

    Args:
      x: float (B, H, W, C) in [-1, 1], C = 3 or 1, values on the 256-level grid.
      l: float (B, H, W, 10M) for RGB or (B, H, W, 3M) for one channel.
      nr_mix: M, the number of logistic components.
    Returns:
      float (B, H, W): log p(x[b, i, j, :] | the network's output there).
    """
    num_channels = x.shape[-1]
    logits, means, log_scales, coeffs = _unpack(l, num_channels, nr_mix)
    x = x[..., None]  # (B, H, W, C, 1), broadcasts over the mixture
    if num_channels == 3:
        # The green mean depends linearly on red, the blue mean on red and green.
        m2 = means[..., 1, :] + coeffs[..., 0, :] * x[..., 0, :]
        m3 = means[..., 2, :] + coeffs[..., 1, :] * x[..., 0, :] + coeffs[..., 2, :] * x[..., 1, :]
        means = tf.stack([means[..., 0, :], m2, m3], axis=-2)
    centered = x - means
    inv_stdv = tf.exp(-log_scales)
    plus_in = inv_stdv * (centered + 1.0 / 255.0)
    min_in = inv_stdv * (centered - 1.0 / 255.0)
    cdf_delta = tf.sigmoid(plus_in) - tf.sigmoid(min_in)
    log_cdf_plus = plus_in - tf.nn.softplus(plus_in)  # bin 0 takes the whole left tail
    log_one_minus_cdf_min = -tf.nn.softplus(min_in)  # bin 255 takes the whole right tail
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
    log_probs = tf.reduce_sum(log_probs, axis=3) + tf.nn.log_softmax(logits, axis=-1)
    return tf.reduce_logsumexp(log_probs, axis=-1)


def focal_weight(log_p, gamma):
    """The focal factor (1 - p)^gamma of each pixel, from its log-probability (-fl).

    Lin et al. 2017, applied per pixel (the MNIST fork applied it to the whole
    batch's summed loss, where p = exp(-huge) and the factor is always 1).
    -expm1(log p) computes 1 - p without cancellation when p is near 1.
    """
    return tf.pow(tf.maximum(-tf.math.expm1(log_p), 1e-12), gamma)


def sample_from_mixture(l, nr_mix, num_channels, gumbel_uniform, logistic_uniform):
    """Draw one value per channel from the mixture, given the random numbers.

    The random numbers are inputs so that a sampler can draw them all up front
    from a seed (reproducible runs, and the fast and naive samplers agree).

    Args:
      l: float (..., K) network output at the positions to sample.
      gumbel_uniform: float (..., M) uniforms in (0, 1) for the Gumbel-max choice.
      logistic_uniform: float (..., C) uniforms in (0, 1) for the logistic draw.
    Returns:
      float (..., C) in [-1, 1] (not yet quantised).
    """
    shape = tf.shape(l)
    l4 = tf.reshape(l, [-1, 1, 1, l.shape[-1]])
    logits, means, log_scales, coeffs = _unpack(l4, num_channels, nr_mix)
    g = tf.reshape(gumbel_uniform, [-1, 1, 1, nr_mix])
    sel = tf.one_hot(tf.argmax(logits - tf.math.log(-tf.math.log(g)), axis=-1), nr_mix)
    sel = sel[..., None, :]  # (B', 1, 1, 1, M), broadcasts over channels
    means = tf.reduce_sum(means * sel, -1)
    log_scales = tf.reduce_sum(log_scales * sel, -1)
    u = tf.reshape(logistic_uniform, [-1, 1, 1, num_channels])
    x = means + tf.exp(log_scales) * (tf.math.log(u) - tf.math.log(1.0 - u))
    x0 = tf.clip_by_value(x[..., 0], -1.0, 1.0)
    if num_channels == 1:
        out = x0[..., None]
    else:
        coeffs = tf.reduce_sum(coeffs * sel, -1)
        x1 = tf.clip_by_value(x[..., 1] + coeffs[..., 0] * x0, -1.0, 1.0)
        x2 = tf.clip_by_value(x[..., 2] + coeffs[..., 1] * x0 + coeffs[..., 2] * x1, -1.0, 1.0)
        out = tf.stack([x0, x1, x2], -1)
    return tf.reshape(out, tf.concat([shape[:-1], [num_channels]], 0))


def energy_distance(x, x_samples):
    """The original's energy-distance loss (`-ed`), summed over the batch.

    2 * mean_i E|x - s_i|^1.5 - mean_{i<j} E|s_i - s_j|^1.5 with distances in 0..255
    pixel units over the channels of a pixel, as openai/pixel-cnn computes it.
    x: (B, H, W, C) in [-1, 1]; x_samples: a list of (B, H, W, C) generator outputs.
    """
    def dist(a, b):
        return tf.reduce_sum(tf.pow(1e-10 + tf.reduce_sum(tf.square(127.5 * (a - b)), 3), 0.75))
    l1 = tf.add_n([dist(x, s) for s in x_samples]) / len(x_samples)
    pairs = [(i, j) for i in range(len(x_samples)) for j in range(i + 1, len(x_samples))]
    l2 = tf.add_n([dist(x_samples[i], x_samples[j]) for i, j in pairs]) / len(pairs)
    return 2.0 * l1 - l2


def bits_per_dim(nats, image_shape):
    """Convert nats (per image, or summed over N images then divided by N) to bits/dim.

    bits/dim = nats / (H * W * C * ln 2).

    >>> bits_per_dim(np.array([2000.0]), (32, 32, 3))  # doctest: +ELLIPSIS
    array([0.939...])
    """
    shape = None if isinstance(image_shape, (str, bytes)) else np.asarray(image_shape)
    if shape is None or shape.shape != (3,) or shape.dtype.kind not in 'iu' or (shape < 1).any():
        raise ValueError("'image_shape' must be (height, width, channels), e.g. (32, 32, 3): "
                         "bits/dim divide by the H * W * C dimensions of an image; got %r"
                         % (image_shape,))
    return np.asarray(nats, dtype=np.float64) / (np.prod(shape) * np.log(2.0))
