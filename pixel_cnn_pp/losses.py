"""What training minimises besides the plain likelihood, and the unit it is reported in.

The likelihood itself, the discretized logistic mixture, is mixture.py (its per-pixel
log-probability, which the focal weight below reweights); here: the focal factor (-fl),
the original's energy distance (-ed), and nats to bits/dim.
"""

import numpy as np
import tensorflow as tf


def focal_weight(log_p, gamma):
    """The focal factor (1 - p)^gamma of each pixel, from its log-probability (-fl).

    Lin et al. 2017, applied per pixel (the MNIST fork applied it to the whole
    batch's summed loss, where p = exp(-huge) and the factor is always 1).
    -expm1(log p) computes 1 - p without cancellation when p is near 1.
    """
    return tf.pow(tf.maximum(-tf.math.expm1(log_p), 1e-12), gamma)


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
