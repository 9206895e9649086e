"""The PixelCNN network: the autoregressive property (every option), inputs, init, training,
sampling, and the energy-distance head (-ed)."""

import itertools

import logging

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import PixelCNN, Adam, bits_per_dim, nn
from tests.conftest import random_images

TINY = dict(nr_resnet=1, nr_filters=16, nr_logistic_mix=2)


def tiny_model(shape=(8, 8, 3), **options):
    opts = dict(TINY, **options)
    model = PixelCNN(shape, seed=3, **opts)
    labels = (np.arange(8) % opts['num_classes']) if opts.get('num_classes') else None
    model.initialize(random_images(8, shape, seed=4), labels)
    return model


def assert_autoregressive(model, labels=None, positions=None, seed=0):
    """Perturb pixel p and everything after it: NLLs before p unchanged, at p changed."""
    h, w, c = model.image_shape
    rng = np.random.default_rng(seed)
    images = random_images(2, model.image_shape, seed=seed + 10)
    base = model.nll(images, labels, per_pixel=True).reshape(2, -1)
    if positions is None:
        positions = sorted({0, h * w - 1, *rng.integers(1, h * w - 1, size=4).tolist()})
    for p in positions:
        changed = images.reshape(2, h * w, c).copy()
        new = rng.integers(0, 256, size=changed[:, p:].shape).astype(np.uint8)
        new[:, 0] = (changed[:, p].astype(int) + 128) % 256  # pixel p surely differs
        changed[:, p:] = new
        nll = model.nll(changed.reshape(images.shape), labels, per_pixel=True).reshape(2, -1)
        np.testing.assert_allclose(nll[:, :p], base[:, :p], rtol=0, atol=1e-5,
                                   err_msg='NLL before position %d changed' % p)
        assert np.any(np.abs(nll[:, p] - base[:, p]) > 1e-4), 'NLL at %d did not change' % p
    # The network does use the past: the output after p moves when p moves.
    out0 = model.forward(model.scale_images(images), model.one_hot(labels)).numpy()
    changed = images.copy()
    changed[:, 0, 0] = 255 - changed[:, 0, 0]
    out1 = model.forward(model.scale_images(changed), model.one_hot(labels)).numpy()
    assert np.abs(out1 - out0).reshape(2, h * w, -1)[:, 1:].max() > 1e-4


def scramble_attention(model, seed=0):
    """Give every non-local block a non-zero output projection, so it does something."""
    rng = np.random.default_rng(seed)
    for block in model.nl_blocks:
        block.wo.assign(rng.normal(0, 0.1, block.wo.shape).astype(np.float32))
        block.bo.assign(rng.normal(0, 0.05, block.bo.shape).astype(np.float32))


@pytest.mark.parametrize('shape', [(8, 8, 3), (8, 8, 1)])
def test_output_ignores_future_pixels(shape):
    assert_autoregressive(tiny_model(shape))


@pytest.mark.parametrize('shape', [(8, 8, 3), (12, 8, 1)])
def test_output_ignores_future_pixels_class_conditional(shape):
    model = tiny_model(shape, num_classes=3)
    assert_autoregressive(model, labels=np.array([0, 2]))


@pytest.mark.parametrize('nonlinearity', ['elu', 'relu'])
def test_output_ignores_future_pixels_other_nonlinearities(nonlinearity):
    model = tiny_model((8, 8, 3), resnet_nonlinearity=nonlinearity)
    assert_autoregressive(model, positions=[0, 27, 63])


@pytest.mark.parametrize('add_coords,non_local,conditional',
                         list(itertools.product([False, True], repeat=3)))
def test_output_ignores_future_pixels_for_every_option(add_coords, non_local, conditional):
    shape = (8, 8, 3) if conditional else (8, 8, 1)
    model = tiny_model(shape, add_coords=add_coords, non_local=non_local, nl_levels=(0, 1, 2),
                       num_classes=3 if conditional else 0)
    if non_local:
        assert len(model.nl_blocks) == 3  # a block at each of the 3 resolutions
        scramble_attention(model)
    assert_autoregressive(model, labels=np.array([1, 2]) if conditional else None,
                          positions=[0, 9, 36, 63], seed=1)


def test_network_gives_each_layer_once_by_resolution():
    model = tiny_model((8, 8, 3), nr_resnet=2, non_local=True, nl_levels=(0, 2))
    net = model.network
    assert len(net.levels) == 3
    assert [level.attention is not None for level in net.levels] == [True, False, True]
    assert net.levels[0].upsample is None and net.levels[-1].downsample is None
    # The original's down pass has a block more than the up pass at the finer levels: the
    # up pass's strided convs leave one more u and ul on the stacks to consume there.
    assert [(len(level.up), len(level.down)) for level in net.levels] == [(2, 3), (2, 3),
                                                                        (2, 2)]
    listed = [net.u_init, net.ul_init_down, net.ul_init_right, net.out]
    for level in net.levels:
        listed += [block for pair in level.up + level.down for block in (pair.u, pair.ul)]
        listed += [level.attention] + list(level.downsample or ()) + list(level.upsample or ())
    listed = [layer for layer in listed if layer is not None]
    assert len({id(layer) for layer in listed}) == len(listed)
    # Every weight of the model is in exactly one of them.
    weights = [id(v) for layer in listed for v in layer.trainable_variables]
    assert sorted(weights) == sorted(id(v) for v in model.weights)


def test_compiled_builds_once_per_key():
    model = tiny_model((4, 4, 1))
    built = []
    for key in ('a', 'a', 'b'):
        model.compiled(('test', key), lambda key=key: built.append(key) or len(built))
    assert built == ['a', 'b'] and model.compiled(('test', 'a'), None) == 1


def test_class_label_changes_the_likelihood():
    model = tiny_model((8, 8, 3), num_classes=3)
    images = random_images(2, (8, 8, 3))
    a = model.nll(images, np.array([0, 0]))
    b = model.nll(images, np.array([1, 1]))
    assert np.all(np.abs(a - b) > 1e-3)


def test_nll_per_image_is_sum_of_per_pixel():
    model = tiny_model()
    images = random_images(3, (8, 8, 3))
    per_pixel = model.nll(images, per_pixel=True)
    assert per_pixel.shape == (3, 8, 8)
    np.testing.assert_allclose(model.nll(images), per_pixel.sum((1, 2)), rtol=1e-6)
    # batching does not change the answer
    np.testing.assert_allclose(model.nll(images, batch_size=1), model.nll(images), rtol=1e-5)


def test_init_gives_unit_preactivations():
    shape = (8, 8, 3)
    model = PixelCNN(shape, seed=0, **TINY)
    images = random_images(16, shape, seed=5)
    model.initialize(images)
    recorded = []
    # Each layer's `apply` (its convolution or product, before a deconv's crop): the
    # original takes the init statistics there.
    originals = {cls: cls.apply for cls in (nn.Conv2d, nn.Deconv2d, nn.Dense)}

    def recorder(cls):
        def call(self, x, kernel, *args, **kwargs):
            out = originals[cls](self, x, kernel, *args, **kwargs)
            recorded.append((self, out))
            return out
        return call

    try:
        for cls in originals:
            cls.apply = recorder(cls)
        model.forward(model.scale_images(images))
    finally:
        for cls, fn in originals.items():
            cls.apply = fn
    assert len(recorded) == len(model.weights) // 3
    for layer, out in recorded:
        out = out.numpy().reshape(-1, out.shape[-1])
        np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4 * layer.init_scale + 1e-5)
        np.testing.assert_allclose(out.std(0), layer.init_scale, rtol=1e-3)
    assert {layer.init_scale for layer, _ in recorded} == {0.1, 1.0}


def test_init_leaves_constant_channels_unscaled_at_a_one_row_resolution():
    # 4x4 images: the coarsest resolution is 1x1, where the u stream (which sees only
    # rows above) is the same for every image. Scaling such a channel by
    # init_scale / sqrt(0 + eps), as the original would, made the outputs ~1e24.
    shape = (4, 4, 3)
    model = PixelCNN(shape, seed=3, **TINY)
    images = random_images(8, shape, seed=4)
    model.initialize(images)
    out = model.forward(model.scale_images(images)).numpy()
    assert np.all(np.isfinite(out)) and np.abs(out).max() < 100, np.abs(out).max()
    assert max(float(np.abs(v.numpy()).max()) for v in model.weights) < 1e3
    bpd = bits_per_dim(model.nll(images), shape)
    assert np.all(bpd < 16), bpd


def fit(images, steps, learning_rate, shape=None, **options):
    """A dropout-free tiny model trained on one fixed batch; returns (model, x, losses)."""
    model = PixelCNN(shape or images.shape[1:], seed=0, dropout_p=0.0, **dict(TINY, **options))
    model.initialize(images)
    adam = Adam(model.weights)
    x = model.scale_images(images)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = model.train_objective(x)[0]
        adam.apply_gradients(tape.gradient(loss, model.weights), model.weights, learning_rate)
        return loss

    return model, x, [float(step()) for _ in range(steps)]


def test_training_step_decreases_loss_on_fixed_batch():
    _, _, losses = fit(random_images(8, (8, 8, 3), seed=6), steps=15, learning_rate=2e-3)
    assert losses[-1] < losses[0] * 0.97, losses


def test_dropout_is_seeded_and_changes_output():
    model = tiny_model()
    x = model.scale_images(random_images(2, (8, 8, 3)))
    a = model.train_objective(x, dropout_p=0.5, seed=tf.constant([1, 2]))[0]
    b = model.train_objective(x, dropout_p=0.5, seed=tf.constant([1, 2]))[0]
    c = model.train_objective(x, dropout_p=0.5, seed=tf.constant([1, 3]))[0]
    assert float(a) == float(b)
    assert float(a) != float(c)


def test_sample_is_uint8_reproducible_and_seed_dependent():
    model = tiny_model((4, 4, 3))
    a = model.sample(2, seed=7)
    b = model.sample(2, seed=7)
    c = model.sample(2, seed=8)
    assert a.dtype == np.uint8 and a.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


def test_sample_is_fast_by_default_and_naive_draws_the_same_images(monkeypatch):
    from pixel_cnn_pp import sampling
    model = tiny_model((4, 4, 3))
    naive = model.sample(2, seed=3, method='naive')

    def refuse(*args, **kwargs):
        raise AssertionError('the default sampler ran the naive one')

    monkeypatch.setattr(sampling, 'sample_naive', refuse)
    np.testing.assert_array_equal(model.sample(2, seed=3), naive)
    with pytest.raises(ValueError, match="'method' must be one of"):
        model.sample(2, seed=3, method='slow')


def test_conditional_sample_needs_labels():
    model = tiny_model((4, 4, 1), num_classes=2)
    x = model.sample(2, labels=np.array([0, 1]), seed=0)
    assert x.shape == (2, 4, 4, 1) and x.dtype == np.uint8
    with pytest.raises(ValueError, match="'labels' are required"):
        model.sample(2, seed=0)
    with pytest.raises(ValueError, match='positive integer'):
        model.sample(0, labels=np.array([], np.int64))


@pytest.mark.parametrize('bad,message', [
    (np.zeros((2, 8, 8, 3), np.float32), 'must be uint8'),
    (np.zeros((2, 8, 8, 1), np.uint8), r'shape \(N, 8, 8, 3\)'),
    (np.zeros((8, 8, 3), np.uint8), r'shape \(N, 8, 8, 3\)'),
    (np.zeros((0, 8, 8, 3), np.uint8), 'empty'),
])
def test_bad_images_are_refused(bad, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        model.nll(bad)


@pytest.mark.parametrize('arguments,message', [
    (dict(batch_size=0), "'batch_size' must be a positive integer .*got 0"),
    (dict(batch_size=-1), "'batch_size' must be a positive integer .*got -1"),
    (dict(batch_size=2.5), "'batch_size' must be a positive integer .*got 2.5"),
    (dict(batch_size=True), "'batch_size' must be a positive integer .*got True"),
    (dict(per_pixel='yes'), "'per_pixel' must be True or False; got 'yes'"),
    (dict(per_pixel=1), "'per_pixel' must be True or False; got 1"),
])
def test_bad_nll_arguments_are_refused_naming_them(arguments, message):
    model = PixelCNN((4, 4, 1), nr_resnet=1, nr_filters=8, nr_logistic_mix=1, seed=0)
    with pytest.raises(ValueError, match=message):
        model.nll(random_images(2, (4, 4, 1)), **arguments)
    assert model.nll(random_images(2, (4, 4, 1)), batch_size=np.int64(1),
                     per_pixel=np.bool_(True)).shape == (2, 4, 4)


@pytest.mark.parametrize('config', ['32x32', b'32', 32, 32.0])
def test_a_config_that_is_neither_a_model_config_nor_a_shape_is_refused(config):
    with pytest.raises(ValueError, match="PixelCNN's first argument 'config' must be a "
                                         "ModelConfig or an image shape"):
        PixelCNN(config)


def test_bad_labels_are_refused():
    unconditional = tiny_model()
    images = random_images(2, (8, 8, 3))
    with pytest.raises(ValueError, match='unconditional'):
        unconditional.nll(images, np.array([0, 1]))
    conditional = tiny_model(num_classes=3)
    with pytest.raises(ValueError, match="'labels' are required"):
        conditional.nll(images)
    with pytest.raises(ValueError, match=r'in 0\.\.2, got values from 0 to 3'):
        conditional.nll(images, np.array([0, 3]))
    with pytest.raises(ValueError, match=r'shape \(2,\)'):
        conditional.nll(images, np.array([0]))


@pytest.mark.parametrize('options,message', [
    (dict(image_shape=(8, 8)), 'length 3'),
    (dict(image_shape=(10, 8, 3)), 'multiples of 4'),
    (dict(image_shape=(8, 8, 2)), '3 \\(RGB\\) or 1'),
    (dict(nr_filters=0), "'nr_filters' must be a positive integer"),
    (dict(resnet_nonlinearity='tanh'), "'resnet_nonlinearity' must be one of"),
    (dict(num_classes=-1), "'num_classes'"),
    (dict(dropout_p=1.0), "'dropout_p'"),
])
def test_bad_options_are_refused(options, message):
    kwargs = dict(dict(image_shape=(8, 8, 3)), **options)
    with pytest.raises(ValueError, match=message):
        PixelCNN(**kwargs)


def test_nll_in_a_loop_compiles_once_per_model_and_warns_nothing(caplog):
    # The golden checks load a model per data set and call nll once on each; a script may
    # call one model's nll in a loop. Neither may make TensorFlow warn that the compiled
    # function is "retracing": each model traces once per input signature.
    images = random_images(4, (8, 8, 3))
    options = dict(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=2)
    with caplog.at_level(logging.WARNING, logger='tensorflow'):
        model = PixelCNN(**options)
        for _ in range(10):
            model.nll(images)
        assert model._compiled_per_pixel(nn.identity).experimental_get_tracing_count() == 1
        for _ in range(6):  # TensorFlow warns at 5 traces within 10 calls
            PixelCNN(**options).nll(images)
    assert 'retracing' not in caplog.text


# ---------------------------------------------------------------- energy distance (-ed)


@pytest.mark.parametrize('shape', [(8, 8, 3), (8, 8, 1)])
def test_energy_distance_trains_and_samples(shape):
    model = PixelCNN(shape, seed=0, energy_distance=True, dropout_p=0.0, **TINY)
    images = random_images(4, shape)
    model.initialize(images)
    x = model.scale_images(images)
    samples = model.forward(x, seed=tf.constant([0, 1]))
    assert len(samples) == 10 and samples[0].shape == (4,) + shape
    assert all(float(tf.reduce_max(tf.abs(s))) <= 1.0 for s in samples)
    with tf.GradientTape() as tape:
        objective, reported = model.train_objective(x, seed=tf.constant([0, 1]))
    assert np.isfinite(float(objective)) and float(objective) == float(reported)
    grads = tape.gradient(objective, model.weights)
    assert all(g is not None for g in grads)
    assert float(tf.reduce_sum(tf.abs(grads[-1]))) > 0
    out = model.sample(2, seed=0)
    assert out.shape == (2,) + shape and out.dtype == np.uint8


def test_energy_distance_output_ignores_future_pixels():
    shape = (8, 8, 3)
    model = PixelCNN(shape, seed=0, energy_distance=True, **TINY)
    images = random_images(2, shape)
    model.initialize(images)
    seed = tf.constant([3, 4])
    base = model.forward(model.scale_images(images), seed=seed)[0].numpy().reshape(2, 64, 3)
    changed = images.reshape(2, 64, 3).copy()
    changed[:, 30:] = 255 - changed[:, 30:]
    out = model.forward(model.scale_images(changed.reshape(images.shape)), seed=seed)[0]
    out = out.numpy().reshape(2, 64, 3)
    np.testing.assert_allclose(out[:, :31], base[:, :31], atol=1e-6)  # the pixel 30 output too
    assert np.abs(out[:, 31:] - base[:, 31:]).max() > 1e-4


def test_energy_distance_has_no_likelihood_and_refuses_focal():
    model = PixelCNN((8, 8, 3), energy_distance=True, **TINY)
    images = random_images(2, (8, 8, 3))
    model.initialize(images)
    with pytest.raises(ValueError, match='no likelihood'):
        model.nll(images)
    with pytest.raises(ValueError, match=r'focal loss \(-fl\)'):
        model.train_objective(model.scale_images(images), focal_gamma=2.0)
