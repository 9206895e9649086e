"""Sampling from a PixelCNN: one pixel at a time, in raster order.

`sample_naive` runs the whole network once per pixel, as the original does (the
reference every faster sampler must agree with). All random numbers are drawn
up front from `seed`, so the same seed gives the same images.

Each sampled pixel is quantised to the 256 levels before it is fed back: the
model is a distribution over 8-bit images, and the images it returns are uint8
(the original feeds back the unquantised float; see README).
"""

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import losses, nn

_UNIFORM_EPS = 1e-5  # uniforms in (eps, 1 - eps), as the original


def draw_uniforms(n, image_shape, nr_mix, seed=None):
    """The random numbers of a whole sampling run, drawn up front.

    Returns (gumbel, logistic): float32 (n, H, W, M) and (n, H, W, C) in (eps, 1-eps).
    """
    rng = np.random.default_rng(seed)
    h, w, c = image_shape
    gumbel = rng.uniform(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS, (n, h, w, nr_mix))
    logistic = rng.uniform(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS, (n, h, w, c))
    return gumbel.astype(np.float32), logistic.astype(np.float32)


def quantize(x):
    """float in [-1, 1] -> uint8 0..255 (nearest level)."""
    return np.clip(np.rint((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def check_num_samples(n):
    if int(n) != n or n < 1:
        raise ValueError("the number of samples must be a positive integer; got %r" % (n,))
    return int(n)


def sample_naive(model, n, labels=None, seed=None, get=nn.identity):
    """n images from `model`, one full forward pass per pixel.

    Args:
      model: a PixelCNN.
      n: number of images.
      labels: int (n,) for a class-conditional model, else None.
      seed: integer seed of all random numbers (None: fresh randomness).
      get: which weights to use (nn.identity, or a PolyakAverage's `average`).
    Returns:
      uint8 (n, H, W, C).
    """
    n = check_num_samples(n)
    labels = model.check_labels(labels, n)
    h = model.one_hot(labels) if labels is not None else None
    height, width, channels = model.image_shape
    nr_mix = model.nr_logistic_mix
    gumbel, logistic = draw_uniforms(n, model.image_shape, nr_mix, seed)
    # Seed of the energy-distance head's noise (-ed), varied per pixel below.
    noise_seed = int(np.random.default_rng(seed).integers(2 ** 31))

    @tf.function
    def pixel(x, row, col, g, u):
        if model.energy_distance:  # the head's first sample is the pixel's value
            step_seed = tf.stack([noise_seed, row * width + col])
            return model.forward(x, h, get=get, seed=step_seed)[0][:, row, col]
        out = model.forward(x, h, get=get)[:, row, col]  # (n, K): only pixel (row, col)
        return losses.sample_from_mixture(out, nr_mix, channels, g, u)

    images = np.zeros((n, height, width, channels), np.uint8)
    x = np.zeros((n, height, width, channels), np.float32)
    for row in range(height):
        for col in range(width):
            value = pixel(tf.constant(x), tf.constant(row), tf.constant(col),
                          gumbel[:, row, col], logistic[:, row, col])
            images[:, row, col] = quantize(value.numpy())
            x[:, row, col] = (images[:, row, col].astype(np.float32) - 127.5) / 127.5
    return images
