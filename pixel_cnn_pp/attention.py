"""The causal non-local block (`-nl`): self-attention on hidden features, masked in raster order.

The MNIST fork of the original applies an unmasked non-local block to the raw
image, so every position sees the pixel it predicts and the reported bits/dim is
not a likelihood. This block instead works on the network's hidden streams:

  queries from ul (what is above and to the left of each position),
  keys and values from [u, ul] at every position at or before it in raster order,
  softmax attention, and a residual output ul + proj(attention) whose projection
  starts at zero, so a freshly built block is the identity.

Why it stays causal: at every resolution ul at position k and u at position k
depend only on image pixels before k's pixel (the shifted convolutions see to
that), so mixing in keys at positions <= q adds nothing from q's pixel or later.
"""

import numpy as np
import tensorflow as tf

# The largest map (positions per image) a block may attend over: the attention
# map is positions^2 floats per image (4096 positions: 64 MiB in float32).
MAX_POSITIONS = 64 * 64


def check_fits(height, width, level):
    """Refuse a block whose (H*W)^2 attention map would not fit in memory."""
    n = height * width
    if n > MAX_POSITIONS:
        raise ValueError(
            'non-local block at level %d (%dx%d = %d positions) needs a %d x %d attention map '
            'per image (%.1f GiB in float32), more than the %d-position limit; put the blocks at '
            'lower resolutions (--nl_levels, level 0 is full resolution, 1 half, 2 quarter)'
            % (level, height, width, n, n, n, n * n * 4 / 2 ** 30, MAX_POSITIONS))


def causal_mask(n):
    """bool (n, n): query i may attend to key j iff j <= i (raster order)."""
    return tf.linalg.band_part(tf.ones([n, n], tf.bool), -1, 0)


class CausalSelfAttention(tf.Module):
    """ul <- ul + proj(softmax(q k^T / sqrt(d) masked) v), q from ul, k and v from [u, ul].

    Args:
      scope: name, e.g. 'nonlocal_0'.
      num_filters: F, channels of u and ul.
      key_dim: d, channels of queries and keys.
      rng: tf.random.Generator for the initial weights.
    """

    def __init__(self, scope, num_filters, key_dim, rng):
        super().__init__(name=scope)
        self.scope = scope
        F, d = num_filters, key_dim
        self.wq = tf.Variable(rng.normal([F, d], 0.0, 1.0 / np.sqrt(F)), name='wq')
        self.wk = tf.Variable(rng.normal([2 * F, d], 0.0, 1.0 / np.sqrt(2 * F)), name='wk')
        self.wv = tf.Variable(rng.normal([2 * F, F], 0.0, 1.0 / np.sqrt(2 * F)), name='wv')
        # Zero projection: a fresh block adds nothing (the network is unchanged).
        self.wo = tf.Variable(tf.zeros([F, F]), name='wo')
        self.bo = tf.Variable(tf.zeros([F]), name='bo')

    @property
    def weights(self):
        return [('wq', self.wq), ('wk', self.wk), ('wv', self.wv), ('wo', self.wo),
                ('bo', self.bo)]

    # The block's arithmetic in parts, for the forward pass (every position at once)
    # and the cached sampler (one query at a time against the keys so far).

    def query(self, ul, get=lambda v: v):
        """(..., F) -> (..., d)."""
        return ul @ tf.cast(get(self.wq), ul.dtype)

    def key_value(self, u, ul, get=lambda v: v):
        """Keys (..., d) and values (..., F) of positions holding u and ul (..., F)."""
        kv_in = tf.concat([u, ul], -1)  # (..., 2F)
        dtype = kv_in.dtype  # the compute dtype (precision.py); the weights are float32
        return kv_in @ tf.cast(get(self.wk), dtype), kv_in @ tf.cast(get(self.wv), dtype)

    @staticmethod
    def attend(q, k, v, visible):
        """softmax(q k^T / sqrt(d)) v over the visible keys.

        q (B, m, d), k (B, n, d), v (B, n, F), visible bool broadcasting to (B, m, n).
        """
        logits = tf.matmul(q, k, transpose_b=True) / np.sqrt(float(q.shape[-1]))  # (B, m, n)
        # Masked keys get a logit exp() sends to 0 (-1e30, or float16's lowest value).
        masked = tf.fill(tf.shape(logits), tf.constant(max(-1e30, logits.dtype.min), logits.dtype))
        logits = tf.where(visible, logits, masked)
        return tf.nn.softmax(logits, axis=-1) @ v  # (B, m, F)

    def output(self, ul, attended, get=lambda v: v):
        """The residual: ul + attended . wo + bo."""
        return ul + (attended @ tf.cast(get(self.wo), ul.dtype) + tf.cast(get(self.bo), ul.dtype))

    def __call__(self, ul, u, get=lambda v: v):
        shape = tf.shape(ul)
        h, w, f = ul.shape[1], ul.shape[2], ul.shape[3]
        n = h * w
        q = self.query(tf.reshape(ul, [-1, n, f]), get)  # (B, n, d)
        k, v = self.key_value(tf.reshape(u, [-1, n, f]), tf.reshape(ul, [-1, n, f]), get)
        attended = self.attend(q, k, v, causal_mask(n))  # (B, n, F)
        return self.output(ul, tf.reshape(attended, shape), get)
