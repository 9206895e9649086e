"""Sampling (pixel_cnn_pp/sampling.py): the cached sampler is the network, and draws what the
naive one draws.

The strongest checks: fed a fixed image pixel by pixel, the cached path gives the network's
output at every position (teacher forcing), and with the same seed the fast and the naive
sampler draw the same images.
"""

import numpy as np
import pytest

from pixel_cnn_pp import PixelCNN, PolyakAverage, sampling
from tests.conftest import random_images
from tests.test_attention import scramble_attention
from tests.test_model import TINY, tiny_model


def assert_cached_path_is_the_network(model, labels=None, n=2, get=None, **sampler_options):
    """Teacher-forced outputs of the cached sampler == one full forward pass, at every pixel."""
    images = random_images(n, model.image_shape, seed=21)
    kwargs = {} if get is None else dict(get=get)
    sampler = sampling.CachedSampler(model, n, **kwargs, **sampler_options)
    cached = sampler.teacher_forced(images, labels)
    full = model.forward(model.scale_images(images), model.one_hot(labels), **kwargs).numpy()
    assert cached.shape == full.shape
    scale = np.abs(full).max()
    error = np.abs(cached - full).max() / scale
    assert error <= 1e-4, 'cached output differs from the forward pass by %.3g of its scale' % error
    return error


@pytest.mark.parametrize('shape,options', [
    ((8, 8, 3), {}),
    ((8, 8, 1), dict(num_classes=3)),
    ((8, 8, 1), dict(non_local=True, nl_levels=(0, 1, 2))),
    ((8, 8, 3), dict(add_coords=True, non_local=True, nl_levels=(0, 2), num_classes=2)),
    ((12, 8, 3), dict(resnet_nonlinearity='elu', nr_resnet=2)),
    ((8, 16, 1), dict(resnet_nonlinearity='relu', add_coords=True)),
])
def test_cached_outputs_equal_the_forward_pass(shape, options):
    model = tiny_model(shape, **options)
    if model.nl_blocks:
        scramble_attention(model)  # a fresh block is the identity: make it attend
    labels = np.array([2, 0])[:2] % options['num_classes'] if options.get('num_classes') else None
    assert_cached_path_is_the_network(model, labels)


def test_cached_outputs_equal_the_forward_pass_with_xla():
    model = tiny_model((8, 8, 3), num_classes=2, non_local=True, nl_levels=(1,))
    scramble_attention(model)
    assert_cached_path_is_the_network(model, np.array([1, 0]), jit_compile=True)


def test_cached_outputs_use_the_polyak_averages():
    model = tiny_model((8, 8, 3))
    polyak = PolyakAverage(model.weights)
    for v in model.weights:  # move the weights away from their averages
        v.assign(v * 1.1 + 0.01)
    assert_cached_path_is_the_network(model, get=polyak.average)


def test_teacher_forcing_catches_a_misplaced_cache_entry(monkeypatch):
    # The check can fail: read the ul stream's upsampled row of the wrong parity.
    model = tiny_model((8, 8, 3))
    monkeypatch.setattr(sampling._PixelDeconv, 'at',
                        lambda self, r, c: self.rows.read(((r + 1) % 2) * self.width + c))
    with pytest.raises(AssertionError, match='differs from the forward pass'):
        assert_cached_path_is_the_network(model)


@pytest.mark.parametrize('shape,options,labels', [
    ((8, 8, 3), dict(nr_resnet=2), None),
    ((8, 8, 1), dict(num_classes=3, add_coords=True, non_local=True), [0, 1, 2, 1]),
])
def test_fast_and_naive_draw_the_same_images(shape, options, labels):
    model = tiny_model(shape, **options)
    if model.nl_blocks:
        scramble_attention(model)
    labels = None if labels is None else np.array(labels)
    fast = sampling.sample(model, 4, labels, seed=5, method='fast')
    naive = sampling.sample(model, 4, labels, seed=5, method='naive')
    # The images of a batch are drawn independently, so a float tie (a value within
    # ~1e-6 of a rounding boundary, where the two paths' last bits can differ) changes
    # one image from that pixel on. On this machine there are none; allow one image.
    same = [np.array_equal(f, n) for f, n in zip(fast, naive)]
    assert sum(same) >= 3, 'fast and naive samples differ in images %s' % np.flatnonzero(
        np.logical_not(same))


def test_same_seed_same_images_other_seed_other_images():
    model = tiny_model((8, 8, 3))
    sampler = sampling.CachedSampler(model, 3)
    a = sampler.sample(seed=7)
    b = sampler.sample(seed=7)
    c = sampler.sample(seed=8)
    assert a.dtype == np.uint8 and a.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5
    np.testing.assert_array_equal(sampling.sample(model, 3, seed=7), a)  # a fresh sampler too
    # Samples spread over the levels, not a constant image.
    assert a.min() < 64 and a.max() > 192 and len(np.unique(a)) > 50


def test_sampler_follows_the_weights_of_a_model_that_keeps_training():
    model = tiny_model((4, 4, 1))
    sampler = sampling.CachedSampler(model, 2)
    before = sampler.sample(seed=1)
    for v in model.weights:
        v.assign(v * 0.9)
    after = sampler.sample(seed=1)
    assert np.any(after != before)
    np.testing.assert_array_equal(after, sampling.CachedSampler(model, 2).sample(seed=1))


def test_class_labels_steer_the_samples():
    model = tiny_model((8, 8, 3), num_classes=2)
    for pairs in model.up_blocks + model.down_blocks:  # make the label matter a lot
        for block in (b for pair in pairs for b in pair):
            block.hw.assign(block.hw * 20.0)
    a = sampling.sample(model, 2, labels=np.array([0, 0]), seed=3)
    b = sampling.sample(model, 2, labels=np.array([1, 1]), seed=3)
    assert np.mean(a != b) > 0.5


def test_progress_reports_every_row():
    model = tiny_model((4, 4, 3))
    for method in sampling.METHODS:
        calls = []
        sampling.sample(model, 1, seed=0, method=method, progress=lambda *a: calls.append(a))
        assert calls == [(r, 4) for r in range(1, 5)]


def test_energy_distance_model_falls_back_to_the_naive_sampler(monkeypatch):
    model = PixelCNN((4, 4, 1), seed=0, energy_distance=True, **TINY)
    model.initialize(random_images(4, (4, 4, 1)))
    with pytest.raises(ValueError, match='energy-distance'):
        sampling.CachedSampler(model, 2)
    naive, seeds = sampling.sample_naive, []

    def recorded(*args, **kwargs):
        seeds.append(kwargs['seed'])
        return naive(*args, **kwargs)

    monkeypatch.setattr(sampling, 'sample_naive', recorded)
    first = sampling.sample(model, 2, seed=4)  # method 'fast' asked for
    assert seeds == [4] and first.shape == (2, 4, 4, 1) and first.dtype == np.uint8
    # The head's noise follows the seed: the same seed draws the same images, another not.
    np.testing.assert_array_equal(sampling.sample(model, 2, seed=4), first)
    assert np.any(sampling.sample(model, 2, seed=5) != first)


def test_bad_arguments_are_refused():
    unconditional = tiny_model((8, 8, 1))
    conditional = tiny_model((8, 8, 1), num_classes=2)
    with pytest.raises(ValueError, match='unconditional'):
        sampling.sample(unconditional, 2, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="'labels' are required"):
        sampling.sample(conditional, 2)
    with pytest.raises(ValueError, match=r"'labels' must be in 0\.\.1"):
        sampling.sample(conditional, 2, labels=np.array([0, 2]))
    for n in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match='positive integer'):
            sampling.sample(unconditional, n)
    with pytest.raises(ValueError, match="'method' must be one of"):
        sampling.sample(unconditional, 1, method='fastest')
    sampler = sampling.CachedSampler(unconditional, 2)
    with pytest.raises(ValueError, match='must hold 2 images'):
        sampler.teacher_forced(random_images(3, (8, 8, 1)))
