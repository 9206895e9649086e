"""Training as published: the original's Adam, per-step learning-rate decay, Polyak averages.

openai/pixel-cnn trains with its own Adam (`nn.adam_updates`: beta1 0.95,
beta2 0.9995, bias-corrected, step m_hat / sqrt(v_hat + 1e-8)), multiplies the
learning rate by `lr_decay` before every step, and keeps exponential moving
averages (decay 0.9995) of every weight for testing and sampling.
"""

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.config import TRAINING


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
        """One update of `variables` (the same list, in the same order, as at creation).

        grads: one gradient per variable, or all of them as one vector
          (`stack_by_shape(grads)`).
        slots: (t, m, v) to update instead of this Adam's own (a tower's copies of them).
        """
        t_var, m_slots, v_slots = slots or (self.t, self.m, self.v)
        if isinstance(grads, (list, tuple)):
            if len(grads) != len(self.m):
                raise ValueError('Adam was built for %d variables, got %d gradients'
                                 % (len(self.m), len(grads)))
            grads = stack_by_shape(grads)
        # The step's scalars once, and each group of weights of one shape updated as one
        # stacked tensor: the same operations on the same numbers as weight by weight, in
        # a fraction of the operations (hundreds of weights, a dozen operations each),
        # which a run traces, and Grappler optimises for every tower's device, before its
        # first step; and a fraction of the kernels every step.
        f32 = lambda x: tf.constant(x, tf.float32)  # noqa: E731
        b1, b2, eps = f32(self.beta1), f32(self.beta2), f32(self.eps)
        one_minus_b1, one_minus_b2 = f32(1.0 - self.beta1), f32(1.0 - self.beta2)
        t = t_var.read_value()
        correction1 = 1.0 - tf.pow(b1, t)
        correction2 = 1.0 - tf.pow(b2, t)
        for group, g in zip(same_shape_groups(variables), unstack_by_shape(grads, variables)):
            p, m, v = (tf.stack([x[k] for k in group]) for x in (variables, m_slots, v_slots))
            m_t = b1 * m + one_minus_b1 * g
            v_t = b2 * v + one_minus_b2 * tf.square(g)
            m_hat = m_t / correction1
            v_hat = v_t / correction2
            _assign(group, m_slots, m_t)
            _assign(group, v_slots, v_t)
            _assign(group, variables, p - learning_rate * m_hat / tf.sqrt(v_hat + eps))
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

    def __init__(self, variables, decay=TRAINING.polyak_decay):
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
        """Move every average towards its weight's current value (variables, shadows: a
        tower's copies to use instead). Weights of one shape at once, as Adam does."""
        variables, shadows = variables or self._variables, shadows or self.shadows
        rate = tf.constant(1.0 - self.decay, tf.float32)  # once, not once per weight
        for group in same_shape_groups(variables):
            v, s = (tf.stack([x[k] for k in group]) for x in (variables, shadows))
            _assign(group, shadows, s - rate * (s - v))

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


def same_shape_groups(variables):
    """The indices of `variables` grouped by shape, each group and group in first-seen order."""
    groups = {}
    for k, var in enumerate(variables):
        groups.setdefault(tuple(var.shape), []).append(k)
    return list(groups.values())


def stack_by_shape(tensors):
    """Tensors (one per variable) as one vector: the tensors of each `same_shape_groups` group
    stacked, flattened, and the groups concatenated."""
    return tf.concat([tf.reshape(tf.stack([tensors[k] for k in group]), [-1])
                      for group in same_shape_groups(tensors)], 0)


def unstack_by_shape(vector, variables):
    """`stack_by_shape`'s vector for `variables` as one stacked tensor per group."""
    groups = same_shape_groups(variables)
    shapes = [(len(group),) + tuple(variables[group[0]].shape) for group in groups]
    parts = tf.split(vector, [int(np.prod(shape)) for shape in shapes])
    return [tf.reshape(part, shape) for part, shape in zip(parts, shapes)]


def _assign(group, variables, stacked):
    for k, value in zip(group, tf.unstack(stacked)):
        variables[k].assign(value)
