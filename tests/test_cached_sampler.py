"""The cached sampler (pixel_cnn_pp/cached_sampler.py) is the network.

The strongest check: fed a fixed image pixel by pixel (teacher forcing), the cached
path gives the network's output at every position, for every model option, with
and without XLA.
"""

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import PixelCNN, PolyakAverage, layer_caches, mixture, sampling
from pixel_cnn_pp.cached_sampler import CachedSampler
from tests.conftest import random_images
from tests.test_attention import scramble_attention
from tests.test_model import TINY, tiny_model


class Recorder:
    """A CachedSampler `choose` hook that keeps the network's output at every pixel."""

    def __init__(self, model, n):
        height, width, channels = model.image_shape
        self.channels = channels
        k = mixture.output_channels(channels, model.nr_logistic_mix)
        self.outputs = tf.Variable(tf.zeros([height * width, n, k]), trainable=False)

    def __call__(self, pixel, out):
        self.outputs.scatter_update(tf.IndexedSlices(out[None], pixel[None]))
        return tf.zeros([tf.shape(out)[0], self.channels])  # every pixel is given: unused


def teacher_forced(model, images, labels=None, **sampler_options):
    """The cached sampler fed `images` pixel by pixel (every pixel given): the network's
    output it computes at every pixel, NumPy (n, H, W, K), and the sampler."""
    n, (height, width, _) = len(images), model.image_shape
    recorder = Recorder(model, n)
    sampler = CachedSampler(model, n, choose=recorder, **sampler_options)
    sampler.run(labels=labels, given=images, known_rows=height)
    out = np.transpose(recorder.outputs.numpy(), [1, 0, 2])  # (n, H*W, K)
    return out.reshape(n, height, width, -1), sampler


def assert_cached_path_is_the_network(model, labels=None, n=2, get=None, **sampler_options):
    """Teacher-forced outputs of the cached sampler == one full forward pass, at every pixel."""
    images = random_images(n, model.image_shape, seed=21)
    kwargs = {} if get is None else dict(get=get)
    cached, _ = teacher_forced(model, images, labels, **kwargs, **sampler_options)
    full = model.forward(model.scale_images(images), model.one_hot(labels), **kwargs).numpy()
    assert cached.shape == full.shape
    scale = np.abs(full).max()
    error = np.abs(cached - full).max() / scale
    assert error <= 1e-4, 'cached output differs from the forward pass by %.3g of its scale' % error
    return error


# Every option of the network: 1 and 3 channels, class-conditional, -ac, -nl at each
# resolution, the three nonlinearities, nr_resnet > 1, non-square images.
OPTIONS = [
    ((8, 8, 3), {}),
    ((8, 8, 1), dict(num_classes=3)),
    ((8, 8, 1), dict(non_local=True, nl_levels=(0, 1, 2))),
    ((8, 8, 3), dict(add_coords=True, non_local=True, nl_levels=(0, 2), num_classes=2)),
    ((12, 8, 3), dict(resnet_nonlinearity='elu', nr_resnet=2)),
    ((8, 16, 1), dict(resnet_nonlinearity='relu', add_coords=True)),
]


def option_model(shape, options):
    model = tiny_model(shape, **options)
    if model.nl_blocks:
        scramble_attention(model)  # a fresh block is the identity: make it attend
    labels = np.array([2, 0]) % options['num_classes'] if options.get('num_classes') else None
    return model, labels


@pytest.mark.parametrize('shape,options', OPTIONS)
def test_cached_outputs_equal_the_forward_pass(shape, options):
    assert_cached_path_is_the_network(*option_model(shape, options))


@pytest.mark.parametrize('shape,options', [OPTIONS[3], OPTIONS[4], OPTIONS[5]])
def test_cached_outputs_equal_the_forward_pass_with_xla(shape, options):
    # Between them: every option above, compiled with XLA.
    assert_cached_path_is_the_network(*option_model(shape, options), jit_compile=True)


def test_cached_outputs_use_the_polyak_averages():
    model = tiny_model((8, 8, 3))
    polyak = PolyakAverage(model.weights)
    for v in model.weights:  # move the weights away from their averages
        v.assign(v * 1.1 + 0.01)
    assert_cached_path_is_the_network(model, get=polyak.average)


def test_teacher_forcing_catches_a_misplaced_cache_entry(monkeypatch):
    # The check can fail: read the ul stream's upsampled row of the wrong parity.
    model = tiny_model((8, 8, 3))
    monkeypatch.setattr(layer_caches.PixelDeconv, 'at',
                        lambda self, r, c: self.rows.read(((r + 1) % 2) * self.width + c))
    with pytest.raises(AssertionError, match='differs from the forward pass'):
        assert_cached_path_is_the_network(model)


def _ops(function):
    """The op types of a compiled function's graph and of every function inside it (loops)."""
    graph = function.get_concrete_function(0, 8).graph
    functions = graph._functions.values()  # noqa: SLF001 - the while loops' bodies
    return {op.type for op in graph.get_operations()} | {
        node.op for f in functions for node in f.cached_definition.node_def}


def test_a_run_is_one_compiled_loop_traced_once_without_a_hook():
    model = tiny_model((8, 8, 3))
    sampler = CachedSampler(model, 2)
    gumbel, logistic = sampling.draw_uniforms(2, model.image_shape, model.nr_logistic_mix, 0)
    first = sampler.run(gumbel, logistic)
    np.testing.assert_array_equal(sampler.run(gumbel, logistic), first)
    # One trace of the loop for both runs, with no recording or coding in it.
    assert sampler._loop.experimental_get_tracing_count() == 1
    ops = _ops(sampler._loop)
    assert 'While' in ops or 'StatelessWhile' in ops
    assert not any('TensorArray' in t or 'TensorList' in t or 'PyFunc' in t for t in ops)
    # The check can fail: a hooked sampler (the codec's, through numpy_function) has one.
    coder = CachedSampler(model, 2, choose=lambda pixel, out: tf.numpy_function(
        lambda: np.zeros((2, 3), np.float32), [], tf.float32))
    assert any('PyFunc' in t for t in _ops(coder._loop))


def test_sampler_follows_the_weights_of_a_model_that_keeps_training():
    model = tiny_model((4, 4, 1))
    gumbel, logistic = sampling.draw_uniforms(2, model.image_shape, model.nr_logistic_mix, 1)
    sampler = CachedSampler(model, 2)
    before = sampler.run(gumbel, logistic)
    for v in model.weights:
        v.assign(v * 0.9)
    after = sampler.run(gumbel, logistic)
    assert np.any(after != before)
    np.testing.assert_array_equal(after, CachedSampler(model, 2).run(gumbel, logistic))


def test_energy_distance_model_and_wrong_batch_are_refused():
    model = PixelCNN((4, 4, 1), seed=0, energy_distance=True, **TINY)
    model.initialize(random_images(4, (4, 4, 1)))
    with pytest.raises(ValueError, match='energy-distance'):
        CachedSampler(model, 2)
    sampler = CachedSampler(tiny_model((8, 8, 1)), 2)
    gumbel, logistic = sampling.draw_uniforms(2, (8, 8, 1), 2, 0)
    with pytest.raises(ValueError, match="'given' must hold 2 images"):
        sampler.run(gumbel, logistic, given=random_images(3, (8, 8, 1)), known_rows=8)
    with pytest.raises(ValueError, match="'gumbel' and 'logistic' are required"):
        sampler.run()


def test_many_samplers_in_one_process_warn_nothing_about_retracing(caplog):
    # Tests, benches and notebooks build a sampler per model; each traces its loop once,
    # and TensorFlow must not warn (at 5 traces of one function within 10 calls).
    import logging

    with caplog.at_level(logging.WARNING, logger='tensorflow'):
        for seed in range(6):
            model = PixelCNN((4, 4, 1), nr_resnet=1, nr_filters=8, nr_logistic_mix=2, seed=seed)
            sampler = CachedSampler(model, 2)
            gumbel, logistic = sampling.draw_uniforms(2, model.image_shape, 2, seed=0)
            sampler.run(gumbel, logistic)
            assert sampler._loop.experimental_get_tracing_count() == 1
    assert 'retracing' not in caplog.text
