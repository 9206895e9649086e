"""The layers in the original's vocabulary: shifts, weight normalisation, causal convolutions."""

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import nn


def _rng(seed=0):
    return tf.random.Generator.from_seed(seed)


def _images(shape=(2, 6, 6, 3), seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def test_shifts_move_by_one_with_zeros_entering():
    x = tf.reshape(tf.range(1.0, 10.0), [1, 3, 3, 1])
    np.testing.assert_array_equal(nn.down_shift(x).numpy()[0, :, :, 0],
                                  [[0, 0, 0], [1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(nn.right_shift(x).numpy()[0, :, :, 0],
                                  [[0, 1, 2], [0, 4, 5], [0, 7, 8]])


def test_namer_counts_each_kind_separately_per_model():
    namer = nn.Namer()
    assert [namer('conv2d'), namer('dense'), namer('conv2d')] == ['conv2d_0', 'dense_0',
                                                                  'conv2d_1']
    assert nn.Namer()('conv2d') == 'conv2d_0'  # a second model starts again: no global counter


def test_conv_kernel_is_g_times_v_over_its_norm():
    layer = nn.Conv2d(nn.Namer(), 3, 4, (2, 2), rng=_rng())
    layer.g.assign([1.0, 2.0, 3.0, 4.0])
    x = _images((1, 2, 2, 3))
    V = layer.V.numpy()
    W = layer.g.numpy() * V / np.sqrt((V ** 2).sum(axis=(0, 1, 2)))
    want = np.einsum('hwi,hwio->o', x.numpy()[0], W)
    np.testing.assert_allclose(layer(x).numpy()[0, 0, 0], want, rtol=1e-5)


@pytest.mark.parametrize('init_scale', [1.0, 0.1])
def test_init_gives_zero_mean_and_init_scale_std(init_scale):
    layer = nn.Conv2d(nn.Namer(), 3, 8, (2, 2), init_scale=init_scale, rng=_rng())
    x = _images((4, 6, 6, 3)) * 3.0 + 1.0
    out = layer(x, init=True).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), init_scale, rtol=1e-3)
    np.testing.assert_allclose(layer(x).numpy(), out, rtol=1e-4, atol=1e-5)  # what it now computes


@pytest.mark.parametrize('cls,size', [(nn.DownShiftedConv2d, (2, 3)),
                                      (nn.DownRightShiftedConv2d, (2, 2))])
def test_shifted_convs_keep_the_size_and_see_no_later_row_or_column(cls, size):
    layer = cls(nn.Namer(), 2, 4, size, rng=_rng())
    x = _images((1, 6, 6, 2))
    base = layer(x).numpy()
    assert base.shape == (1, 6, 6, 4)
    changed = x.numpy().copy()
    changed[:, 3:] += 1.0  # rows 3 and below
    out = layer(tf.constant(changed)).numpy()
    np.testing.assert_allclose(out[:, :3], base[:, :3], atol=1e-6)
    assert np.abs(out[:, 3:] - base[:, 3:]).max() > 1e-3
    if cls is nn.DownRightShiftedConv2d:  # and nothing to the right within a row
        changed = x.numpy().copy()
        changed[:, :, 4:] += 1.0
        out = layer(tf.constant(changed)).numpy()
        np.testing.assert_allclose(out[:, :, :4], base[:, :, :4], atol=1e-6)


@pytest.mark.parametrize('cls', [nn.DownShiftedDeconv2d, nn.DownRightShiftedDeconv2d])
def test_strided_deconvs_double_the_size(cls):
    layer = cls(nn.Namer(), 4, 3, stride=(2, 2), rng=_rng())
    assert layer(_images((2, 3, 5, 4))).shape == (2, 6, 10, 3)


def test_gated_resnet_is_residual_and_creates_layers_in_the_originals_order():
    namer = nn.Namer()
    block = nn.GatedResnet(namer, 4, nn.DownShiftedConv2d, 'concat_elu', aux_channels=4,
                           num_classes=2, rng=_rng())
    assert [layer.scope for layer in block.layers] == ['conv2d_0', 'dense_0', 'conv2d_1']
    assert block.hw.shape == (2, 8)
    x, a = _images((2, 4, 4, 4)), _images((2, 4, 4, 4), seed=1)
    h = tf.one_hot([0, 1], 2)
    for v in block.layers[-1].weights:  # the gate's conv outputs zero: the block is identity
        v[1].assign(tf.zeros_like(v[1]))
    block.hw.assign(tf.zeros_like(block.hw))
    np.testing.assert_allclose(block(x, a, h).numpy(), x.numpy())


def test_every_configurable_nonlinearity_is_implemented():
    from pixel_cnn_pp.config import NONLINEARITIES

    assert sorted(nn.NONLINEARITIES) == sorted(NONLINEARITIES)


# ---- each layer's incremental form (what the cached sampler computes) against its full form


def test_shifts_one_row_or_position_at_a_time_are_the_full_shifts():
    x = _images((2, 4, 5, 3))
    down, right = nn.down_shift(x).numpy(), nn.right_shift(x).numpy()
    for i in range(4):
        np.testing.assert_array_equal(nn.down_shift_row(x[:, i - 1], i).numpy(), down[:, i])
        for j in range(5):
            np.testing.assert_array_equal(nn.right_shift_at(x[:, i, j - 1], j).numpy(),
                                          right[:, i, j])


@pytest.mark.parametrize('size,stride', [((2, 3), 1), ((2, 3), 2), ((1, 3), 1)])
def test_down_shifted_conv_a_row_at_a_time_is_the_full_conv(size, stride):
    layer = nn.DownShiftedConv2d(nn.Namer(), 3, 4, size, stride=(stride, stride), rng=_rng())
    x = _images((2, 6, 8, 3))
    full = layer(x).numpy()
    kh, kernel = size[0], layer.kernel()
    # The input rows padded as the layer pads columns, below kh - 1 rows of zeros.
    rows = tf.stack([layer.pad_row(x[:, r]) for r in range(6)], 1)
    rows = tf.pad(rows, [[0, 0], [kh - 1, 0], [0, 0], [0, 0]])
    for i in range(full.shape[1]):
        r = stride * i + kh - 1  # input row stride * i, in the padded rows
        out = layer.row(rows[:, r - kh + 1:r] if kh > 1 else None, rows[:, r], kernel)
        np.testing.assert_allclose(out.numpy(), full[:, i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('size,stride', [((2, 2), 1), ((2, 2), 2), ((2, 1), 1)])
def test_down_right_shifted_conv_at_one_position_is_the_full_conv(size, stride):
    layer = nn.DownRightShiftedConv2d(nn.Namer(), 3, 4, size, stride=(stride, stride),
                                      rng=_rng())
    x = _images((2, 6, 6, 3))
    full = layer(x).numpy()
    padded, (kh, kw) = layer.pad(x), size
    rows, b = layer.kernel_rows()
    assert len(rows) == kh and rows[0].shape == (kw * 3, 4)
    for i in range(full.shape[1]):
        for j in range(full.shape[2]):
            window = padded[:, stride * i:stride * i + kh, stride * j:stride * j + kw]
            whole = layer.at(tf.reshape(window, [2, -1]), tf.concat(rows, 0), b)
            # By rows: the rows above (known first, no bias), then the current row.
            above = layer.at(tf.reshape(window[:, :-1], [2, -1]), tf.concat(rows[:-1], 0))
            split = above + layer.at(tf.reshape(window[:, -1], [2, -1]), rows[-1], b)
            for out in (whole, split):
                np.testing.assert_allclose(out.numpy(), full[:, i, j], rtol=1e-5, atol=1e-6)


def test_strided_deconvs_from_one_row_or_position_are_the_full_deconvs():
    x = _images((2, 3, 4, 5))
    u_layer = nn.DownShiftedDeconv2d(nn.Namer(), 5, 3, stride=(2, 2), rng=_rng())
    full = u_layer(x).numpy()
    for i in range(3):  # input row i makes output rows 2i and 2i + 1
        np.testing.assert_allclose(u_layer.rows_from(x[:, i], u_layer.kernel()).numpy(),
                                   full[:, 2 * i:2 * i + 2], rtol=1e-5, atol=1e-6)
    ul_layer = nn.DownRightShiftedDeconv2d(nn.Namer(), 5, 3, stride=(2, 2), rng=_rng(1))
    full = ul_layer(x).numpy()
    for i in range(3):  # input (i, j) makes outputs (2i + a, 2j + c), taps (a, c) row-major
        for j in range(4):
            taps = ul_layer.taps(x[:, i, j], ul_layer.tap_kernel()).numpy()
            want = full[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, 4, 3)
            np.testing.assert_allclose(taps, want, rtol=1e-5, atol=1e-6)


def test_incremental_forms_refuse_kernels_they_do_not_cover():
    deconv = nn.DownShiftedDeconv2d(nn.Namer(), 4, 3, (3, 3), stride=(2, 2), rng=_rng())
    with pytest.raises(NotImplementedError, match='kernel height = stride'):
        deconv.rows_from(_images((1, 2, 2, 4))[:, 0], deconv.kernel())


def test_gated_resnet_composes_the_convolutions_it_is_given():
    block = nn.GatedResnet(nn.Namer(), 4, nn.DownRightShiftedConv2d, 'elu', aux_channels=4,
                           rng=_rng())
    x, a = _images((2, 4, 4, 4)), _images((2, 4, 4, 4), seed=1)
    convs = (lambda z: block.conv1(z), lambda z: block.conv2(z))
    aux = block.aux_term(a, block.nin_a)
    np.testing.assert_allclose(block.compose(x, *convs, aux).numpy(), block(x, a).numpy())
    # Other convolutions, other output: the block uses the ones given (here p = 1, q = 0).
    ones = block.compose(x, lambda z: z, lambda z: tf.concat([tf.ones_like(z), 0 * z], -1))
    np.testing.assert_allclose(ones.numpy(), x.numpy() + 0.5, rtol=1e-6)
