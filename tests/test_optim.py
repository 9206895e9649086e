"""The original's Adam, its per-step learning-rate decay, and the Polyak averages."""

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import optim


def test_adam_follows_the_originals_update_with_eps_inside_the_root():
    w0 = np.array([0.5, -1.0, 2.0], np.float32)
    grads = [np.array([0.1, -0.2, 0.3], np.float32), np.array([-0.3, 0.1, 0.0], np.float32),
             np.array([0.2, 0.2, -0.1], np.float32)]
    w = tf.Variable(w0)
    adam = optim.Adam([w])
    for g in grads:
        adam.apply_gradients([tf.constant(g)], [w], 0.01)
    # The original's adam_updates, written out in NumPy.
    p, m, v = w0.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        m = 0.95 * m + 0.05 * g
        v = 0.9995 * v + 0.0005 * g ** 2
        p = p - 0.01 * (m / (1 - 0.95 ** t)) / np.sqrt(v / (1 - 0.9995 ** t) + 1e-8)
    np.testing.assert_allclose(w.numpy(), p, rtol=1e-5)
    assert float(adam.t.numpy()) == 4.0  # the original's t starts at 1


def test_adam_refuses_gradients_for_other_variables():
    adam = optim.Adam([tf.Variable([1.0])])
    with pytest.raises(ValueError, match='built for 1 variables, got 2 gradients'):
        adam.apply_gradients([tf.constant([1.0])] * 2, [tf.Variable([1.0])] * 2, 0.1)


def test_learning_rate_is_decayed_before_every_step():
    lr = optim.decayed_learning_rate(1e-3, 0.5, tf.constant(3, tf.int64))
    np.testing.assert_allclose(float(lr), 1e-3 * 0.5 ** 3, rtol=1e-6)


def test_polyak_average_moves_towards_the_weights_and_restarts_from_them():
    w = tf.Variable([0.0, 10.0])
    polyak = optim.PolyakAverage([w], decay=0.9)
    w.assign([1.0, 0.0])
    polyak.update()
    np.testing.assert_allclose(polyak.average(w).numpy(), [0.1, 9.0], rtol=1e-6)
    other = tf.Variable([5.0])
    assert polyak.average(other) is other  # not averaged: itself
    polyak.reset()
    np.testing.assert_allclose(polyak.average(w).numpy(), [1.0, 0.0])
    w.assign([3.0, 3.0])
    polyak.copy_to_weights()
    np.testing.assert_allclose(w.numpy(), [1.0, 0.0])


def test_polyak_decay_out_of_range_is_refused():
    with pytest.raises(ValueError, match="'polyak_decay' must be in"):
        optim.PolyakAverage([tf.Variable([1.0])], decay=1.0)
