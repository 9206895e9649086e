"""losses.py: the focal weight (-fl) and bits/dim (the mixture likelihood: test_mixture.py)."""

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import losses
from tests.conftest import random_images
from tests.test_model import fit, tiny_model


@pytest.mark.parametrize('shape,expected', [((32, 32, 3), 3072 * np.log(2)),
                                            ((28, 28, 1), 784 * np.log(2))])
def test_bits_per_dim_divides_by_dims_and_ln2(shape, expected):
    np.testing.assert_allclose(losses.bits_per_dim(np.array([expected]), shape), [1.0])


@pytest.mark.parametrize('shape', [(8, 8), (64,), (8, 8, 3, 1), (8.0, 8, 3), (8, 0, 3), '883', 64])
def test_bits_per_dim_refuses_a_shape_that_is_not_h_w_c(shape):
    with pytest.raises(ValueError, match=r"'image_shape' must be \(height, width, channels\)"):
        losses.bits_per_dim(np.array([1.0]), shape)
    assert losses.bits_per_dim(1.0, np.array([8, 8, 1])) == pytest.approx(1 / (64 * np.log(2)))


# ------------------------------------------------------------------- focal loss (-fl)


def _predicts_background_well():
    """A one-channel model trained on mostly-black images: background pixels get p near 1."""
    images = np.zeros((8, 8, 8, 1), np.uint8)
    images[:, 2:6, 2:6] = random_images(8, (4, 4, 1), seed=3)
    model, x, _ = fit(images, steps=40, learning_rate=1e-2)
    return model, x


def test_focal_weight_is_one_minus_p_to_the_gamma():
    p = np.array([1e-6, 0.25, 0.5, 0.999999], np.float32)
    weight = losses.focal_weight(tf.math.log(tf.constant(p)), 2.0).numpy()
    np.testing.assert_allclose(weight, (1 - p.astype(np.float64)) ** 2, rtol=1e-4, atol=1e-12)


def test_focal_loss_reweights_pixels_and_reports_plain_nll():
    model, x = _predicts_background_well()
    log_p = model.log_prob_per_pixel(x)
    factor = losses.focal_weight(log_p, 2.0).numpy()
    assert factor.min() < 0.5, 'no pixel is predicted well enough to be down-weighted'
    assert factor.max() > 0.9, 'the poorly predicted pixels keep their weight'

    with tf.GradientTape(persistent=True) as tape:
        focal, nll = model.train_objective(x, focal_gamma=2.0)
        plain, plain_nll = model.train_objective(x)
    # The reported NLL is the plain one, whatever the objective.
    np.testing.assert_allclose(float(nll), float(plain_nll), rtol=1e-6)
    np.testing.assert_allclose(float(nll), model.nll((x.numpy() * 127.5 + 127.5).round()
                                                    .astype(np.uint8)).sum(), rtol=1e-5)
    assert float(focal) < float(plain) * 0.99
    g_focal = tape.gradient(focal, model.weights)
    g_plain = tape.gradient(plain, model.weights)
    diff = sum(float(tf.reduce_sum(tf.square(a - b))) for a, b in zip(g_focal, g_plain))
    norm = sum(float(tf.reduce_sum(tf.square(b))) for b in g_plain)
    assert diff / norm > 1e-2, 'focal loss did not change the gradients'


def test_focal_gamma_zero_is_the_plain_objective():
    model = tiny_model((8, 8, 3))
    x = model.scale_images(random_images(2, (8, 8, 3)))
    objective, nll = model.train_objective(x, focal_gamma=0.0)
    assert float(objective) == float(nll)


def test_negative_focal_gamma_is_refused():
    model = tiny_model((8, 8, 3))
    x = model.scale_images(random_images(1, (8, 8, 3)))
    with pytest.raises(ValueError, match="'focal_gamma' must be >= 0"):
        model.train_objective(x, focal_gamma=-1.0)
