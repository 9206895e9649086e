"""Training as published: the original's Adam, per-step learning-rate decay, Polyak averages.

openai/pixel-cnn trains with its own Adam (`nn.adam_updates`: beta1 0.95,
beta2 0.9995, bias-corrected, step m_hat / sqrt(v_hat + 1e-8)), multiplies the
learning rate by `lr_decay` before every step, and keeps exponential moving
averages (decay 0.9995) of every weight for testing and sampling.
"""

import tensorflow as tf


def decayed_learning_rate(learning_rate, lr_decay, step):
    """The learning rate of training step `step` (1 for the first step).

    The original multiplies lr by lr_decay before every step, so step k uses
    learning_rate * lr_decay ** k.
    """
    return learning_rate * tf.pow(tf.cast(lr_decay, tf.float32), tf.cast(step, tf.float32))


class Adam(tf.Module):
    """Adam exactly as the original's `adam_updates`.

    For each weight p with gradient g, at step t (starting at 1):
        m = b1 m + (1 - b1) g            m_hat = m / (1 - b1^t)
        v = b2 v + (1 - b2) g^2          v_hat = v / (1 - b2^t)
        p = p - lr * m_hat / sqrt(v_hat + eps)
    (eps inside the square root, unlike tf.keras' Adam.)

    Args:
      variables: the weights it updates (its slots are created for these, now).
      beta1, beta2, eps: as above; the original trains with 0.95, 0.9995, 1e-8.
    """

    def __init__(self, variables, beta1=0.95, beta2=0.9995, eps=1e-8):
        super().__init__(name='adam')
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.t = tf.Variable(1.0, trainable=False, name='t')  # the original's t starts at 1
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name='m') for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name='v') for v in variables]

    def apply_gradients(self, grads, variables, learning_rate, slots=None):
        """One update of `variables` (the same list, in the same order, as at creation)."""
        t_var, m_slots, v_slots = slots or (self.t, self.m, self.v)
        if len(grads) != len(self.m):
            raise ValueError('Adam was built for %d variables, got %d gradients'
                             % (len(self.m), len(grads)))
        # The step's scalars once, not once per weight (the same float32 values: each
        # weight's update is the same operations on the same numbers). Per-weight copies
        # of them were a third of the traced update (hundreds of weights per tower), which
        # a run traces, and Grappler optimises, before its first step.
        f32 = lambda x: tf.constant(x, tf.float32)  # noqa: E731
        b1, b2, eps = f32(self.beta1), f32(self.beta2), f32(self.eps)
        one_minus_b1, one_minus_b2 = f32(1.0 - self.beta1), f32(1.0 - self.beta2)
        t = t_var.read_value()
        correction1 = 1.0 - tf.pow(b1, t)
        correction2 = 1.0 - tf.pow(b2, t)
        for p, g, m, v in zip(variables, grads, m_slots, v_slots):
            m_t = b1 * m + one_minus_b1 * g
            v_t = b2 * v + one_minus_b2 * tf.square(g)
            m_hat = m_t / correction1
            v_hat = v_t / correction2
            m.assign(m_t)
            v.assign(v_t)
            p.assign_sub(learning_rate * m_hat / tf.sqrt(v_hat + eps))
        t_var.assign_add(1.0)


class PolyakAverage(tf.Module):
    """Exponential moving averages of weights (tf.train.ExponentialMovingAverage's rule).

    shadow <- decay * shadow + (1 - decay) * weight after every step. The shadows
    start from the weights' values when created or `reset()`: create (or reset)
    it after the data-dependent init, so the averages do not start from the
    random initial weights (the original's do).

    `average(var)` is the `get` that evaluates a model with the averaged weights:
        model.forward(x, get=polyak.average)
    """

    def __init__(self, variables, decay=0.9995):
        super().__init__(name='polyak')
        if not 0 <= decay < 1:
            raise ValueError("'polyak_decay' must be in [0, 1); got %r" % (decay,))
        self.decay = decay
        self._variables = list(variables)
        self.shadows = [tf.Variable(v.read_value(), trainable=False, name='average')
                        for v in self._variables]
        # A bound dict.get, not a dict: tf.Module would try to checkpoint a dict.
        self._find = {v.ref(): s for v, s in zip(self._variables, self.shadows)}.get

    def update(self, variables=None, shadows=None):
        """Move every average towards its weight's current value."""
        rate = tf.constant(1.0 - self.decay, tf.float32)  # once, not once per weight
        for v, s in zip(variables or self._variables, shadows or self.shadows):
            s.assign_sub(rate * (s - v))

    def reset(self):
        """Restart the averages from the weights' current values."""
        for v, s in zip(self._variables, self.shadows):
            s.assign(v)

    def average(self, var):
        """The averaged value of `var` (or `var` itself if it is not averaged)."""
        return self._find(var.ref(), var)

    def copy_to_weights(self):
        """Overwrite the weights with their averages (for a model used only to evaluate)."""
        for v, s in zip(self._variables, self.shadows):
            v.assign(s)
