"""Sampling (pixel_cnn_pp/sampling.py): fast and naive draw the same images, on any devices, and
complete images.

"The same images": the fast and the naive sampler compute the same mixture in different
orders of operations, so they agree to float precision, not bit for bit; a value drawn that
close to a quantisation edge (or a mixture choice that close to a tie) can go either way, and
the image differs from that pixel on. The claim tested: every image that differs first differs
at such a tie (`assert_differences_start_at_ties`), and most images are equal.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pixel_cnn_pp import PixelCNN, mixture, sampling
from pixel_cnn_pp.cached_sampler import CachedSampler
from tests.conftest import random_images
from tests.test_attention import scramble_attention
from tests.test_model import TINY, tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tie: the drawn value within this many levels of a quantisation edge, or the two
# best mixture components within this of each other. The two samplers' mixtures differ
# by ~1e-6, so real ties are far inside these; a wrong cache entry is not.
EDGE_TIE_LEVELS = 1e-2
GUMBEL_TIE = 1e-3


def tie_at(model, image, pixel, gumbel, logistic, label=None):
    """Is pixel p of `image` (its past as drawn) a float tie? (edge distance, gumbel margin)."""
    h = model.one_hot(np.array([label])) if label is not None else None
    width, channels = model.image_shape[1], model.image_shape[2]
    r, c = divmod(pixel, width)
    out = model.forward(model.scale_images(image[None]), h).numpy()[0, r, c]  # (K,)
    g, u = gumbel[r, c], logistic[r, c]
    value = mixture.draw(mixture.unpack(out[None], model.nr_logistic_mix, channels), g[None],
                         u[None]).numpy()[0]
    levels = (value + 1.0) * 127.5
    edge = float(np.min(np.abs(levels - np.floor(levels) - 0.5)))
    logits = out[:model.nr_logistic_mix] - np.log(-np.log(g))
    top = np.sort(logits)[::-1]
    return edge, float(top[0] - top[1])


def assert_differences_start_at_ties(model, a, b, seed, labels=None, min_equal=None):
    """Images a and b (same seed) are equal, or first differ at a float tie."""
    n = len(a)
    gumbel, logistic = sampling.draw_uniforms(n, model.image_shape, model.nr_logistic_mix, seed)
    channels = model.image_shape[2]
    differing = []
    for i in range(n):
        diff = np.flatnonzero(np.any(a[i].reshape(-1, channels) != b[i].reshape(-1, channels),
                                     axis=-1))
        if not len(diff):
            continue
        p = int(diff[0])
        differing.append(i)
        edge, margin = tie_at(model, a[i], p, gumbel[i], logistic[i],
                              None if labels is None else labels[i])
        assert edge < EDGE_TIE_LEVELS or margin < GUMBEL_TIE, (
            'image %d first differs at pixel %d, which is no float tie (%.3g levels from an '
            'edge, mixture margin %.3g)' % (i, p, edge, margin))
    if min_equal is not None:
        assert n - len(differing) >= min_equal, 'images %s differ' % differing
    return differing


def test_a_misdrawn_pixel_is_no_tie():
    # The check can fail: change one pixel of a correct sample.
    model = tiny_model((8, 8, 3))
    a = sampling.sample(model, 2, seed=5)
    b = a.copy()
    b[1, 3, 4, 0] = (int(b[1, 3, 4, 0]) + 40) % 256
    with pytest.raises(AssertionError, match='no float tie'):
        assert_differences_start_at_ties(model, a, b, seed=5)


@pytest.mark.parametrize('shape,options,labels,jit', [
    ((8, 8, 3), dict(nr_resnet=2), None, False),
    ((8, 8, 3), dict(nr_resnet=2), None, True),
    ((8, 8, 1), dict(num_classes=3, add_coords=True, non_local=True), [0, 1, 2, 1], False),
    ((8, 8, 1), dict(num_classes=3, add_coords=True, non_local=True), [0, 1, 2, 1], True),
])
def test_fast_and_naive_draw_the_same_images(shape, options, labels, jit):
    model = tiny_model(shape, **options)
    if model.nl_blocks:
        scramble_attention(model)
    labels = None if labels is None else np.array(labels)
    fast = sampling.sample(model, 4, labels, seed=5, method='fast', jit_compile=jit)
    naive = sampling.sample(model, 4, labels, seed=5, method='naive')
    assert_differences_start_at_ties(model, fast, naive, 5, labels, min_equal=3)


def test_same_seed_same_images_other_seed_other_images():
    model = tiny_model((8, 8, 3))
    a = sampling.sample(model, 3, seed=7)
    b = sampling.sample(model, 3, seed=7)
    c = sampling.sample(model, 3, seed=8)
    assert a.dtype == np.uint8 and a.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5
    # Samples spread over the levels, not a constant image.
    assert a.min() < 64 and a.max() > 192 and len(np.unique(a)) > 50


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
        CachedSampler(model, 2)
    naive, calls = sampling._naive, []

    def recorded(*args, **kwargs):
        calls.append(kwargs['noise_seed'])
        return naive(*args, **kwargs)

    monkeypatch.setattr(sampling, '_naive', recorded)
    first = sampling.sample(model, 2, seed=4)  # method 'fast' asked for
    assert len(calls) == 1 and first.shape == (2, 4, 4, 1) and first.dtype == np.uint8
    # The head's noise follows the seed: the same seed draws the same images, another not.
    np.testing.assert_array_equal(sampling.sample(model, 2, seed=4), first)
    assert np.any(sampling.sample(model, 2, seed=5) != first)
    completed = sampling.complete(model, random_images(2, (4, 4, 1), seed=1), 2, seed=4)
    np.testing.assert_array_equal(completed[:, :2], random_images(2, (4, 4, 1), seed=1)[:, :2])


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
    with pytest.raises(ValueError, match="'devices' must be a non-empty list"):
        sampling.sample(unconditional, 2, devices='/cpu:0')
    for seed in (-1, 'abc', 1.5, True):
        with pytest.raises(ValueError, match="'seed' must be a non-negative integer, or None"):
            unconditional.sample(1, seed=seed)
        with pytest.raises(ValueError, match="'seed' must be a non-negative integer, or None"):
            sampling.complete(unconditional, random_images(1, (8, 8, 1)), 4, seed=seed)


# ---------------------------------------------------------------- completion

def test_completion_keeps_the_known_rows_and_samples_the_rest():
    model = tiny_model((8, 8, 3))
    images = random_images(3, (8, 8, 3), seed=30)
    a = model.complete(images, 5, seed=1)
    b = model.complete(images, 5, seed=2)
    assert a.dtype == np.uint8 and a.shape == images.shape
    np.testing.assert_array_equal(a[:, :5], images[:, :5])
    np.testing.assert_array_equal(b[:, :5], images[:, :5])
    for i in range(3):  # other seeds, other completions, of every image
        assert np.mean(a[i, 5:] != b[i, 5:]) > 0.5
    np.testing.assert_array_equal(model.complete(images, 5, seed=1), a)  # and the same seed


def test_completion_depends_on_the_known_rows():
    # The known pixels are fed to the network: other known rows, other completions
    # (same seed, so the same random numbers).
    model = tiny_model((8, 8, 3))
    images = random_images(2, (8, 8, 3), seed=31)
    other = images.copy()
    other[:, :4] = 255 - other[:, :4]
    a = model.complete(images, 4, seed=3)
    b = model.complete(other, 4, seed=3)
    assert np.mean(a[:, 4] != b[:, 4]) > 0.5


def test_completion_of_no_rows_is_sampling_and_of_all_rows_the_images():
    model = tiny_model((8, 8, 1), num_classes=2)
    images = random_images(2, (8, 8, 1), seed=32)
    labels = np.array([1, 0])
    np.testing.assert_array_equal(model.complete(images, 0, labels, seed=4),
                                  model.sample(2, labels, seed=4))
    np.testing.assert_array_equal(model.complete(images, 8, labels, seed=4), images)


@pytest.mark.parametrize('jit', [False, True])
def test_fast_and_naive_completions_agree(jit):
    model = tiny_model((8, 8, 3), non_local=True, add_coords=True)
    scramble_attention(model)
    images = random_images(4, (8, 8, 3), seed=33)
    fast = sampling.complete(model, images, 3, seed=6, jit_compile=jit)
    naive = sampling.complete(model, images, 3, seed=6, method='naive')
    np.testing.assert_array_equal(naive[:, :3], images[:, :3])
    assert_differences_start_at_ties(model, fast, naive, 6, min_equal=3)


def test_completion_refuses_bad_images_and_rows():
    model = tiny_model((8, 8, 3))
    images = random_images(2, (8, 8, 3))
    with pytest.raises(ValueError, match=r"'images' must have shape \(N, 8, 8, 3\), got "
                                         r"\(2, 8, 8, 1\)"):
        model.complete(random_images(2, (8, 8, 1)), 4)
    with pytest.raises(ValueError, match=r"'images' must have shape"):
        model.complete(images[0], 4)
    with pytest.raises(ValueError, match="'images' must be uint8"):
        model.complete(images.astype(np.float32), 4)
    for k in (-1, 9, 2.5, True, '3', None):
        with pytest.raises(ValueError, match=r"'known_rows' must be an integer in 0\.\.8 \(the "
                                             r"image height\); got"):
            model.complete(images, k)


# ------------------------------------------------------------------ towers

# Logical CPU devices must exist before TensorFlow starts: a fresh process.
_TOWERS = """
    import json
    import numpy as np
    from pixel_cnn_pp import distribute
    devices = distribute.configure_devices(8)[:2]
    from pixel_cnn_pp import nn, sampling, scoring
    from tests.conftest import random_images
    from tests.test_attention import scramble_attention
    from tests.test_model import tiny_model
    from tests.test_sampling import assert_differences_start_at_ties

    model = tiny_model((8, 8, 3), num_classes=2, non_local=True, nl_levels=(1,))
    scramble_attention(model)
    labels = np.array([0, 1, 1, 0, 1])
    one = sampling.sample(model, 5, labels, seed=9)
    out = dict(devices=[str(d) for d in devices])
    runs = dict(
        fast=sampling.sample(model, 5, labels, seed=9, devices=devices),
        xla=sampling.sample(model, 5, labels, seed=9, devices=devices, jit_compile=True),
        naive=sampling.sample(model, 5, labels, seed=9, devices=devices, method='naive'))
    for name, images in runs.items():
        out[name] = assert_differences_start_at_ties(model, one, images, 9, labels)
    given = random_images(5, (8, 8, 3), seed=3)
    completed = sampling.complete(model, given, 4, labels, seed=9, devices=devices)
    out['completion_keeps_rows'] = bool(np.array_equal(completed[:, :4], given[:, :4]))
    out['completion_vs_one'] = assert_differences_start_at_ties(
        model, sampling.complete(model, given, 4, labels, seed=9), completed, 9, labels)
    # The towers' samplers (3 and 2 images), as sampling keeps them on the model.
    samplers = [model.compiled(('cached_sampler', n, nn.identity, False, device), None)
                for n, device in zip((3, 2), devices)]
    out['placed'] = sorted(s._x.var.device.split('/')[-1] for s in samplers)
    # An 8-GPU machine's default (every device) for 4 images, and for one image completed:
    # at most one device per image.
    eight = ['/cpu:%d' % i for i in range(8)]
    used = []
    real_split = distribute.split_over_devices
    distribute.split_over_devices = lambda n, devices, work: real_split(
        n, devices, lambda k, index, device: used.append((device, len(index))) or work(
            k, index, device))
    four = sampling.sample(model, 4, labels[:4], seed=9, devices=eight, method='naive')
    out['four_vs_one'] = assert_differences_start_at_ties(
        model, sampling.sample(model, 4, labels[:4], seed=9, method='naive'), four, 9, labels[:4])
    one_completed = sampling.complete(model, given[:1], 4, labels[:1], seed=9, devices=eight,
                                      method='naive')
    out['used'] = sorted(u for u in used if u[0])  # not the one-device run (None)
    distribute.split_over_devices = real_split
    out['completed_one'] = one_completed.shape[0]
    # Likelihoods spread the same way: each image's NLL as on one device.
    images = random_images(11, (8, 8, 3), seed=4)
    spread = scoring.nll_on_devices(model, images, np.arange(11) % 2, eight, batch_size=2)
    whole = model.nll(images, np.arange(11) % 2)
    out['nll_rel_error'] = float(np.abs(spread - whole).max() / np.abs(whole).max())
    print(json.dumps(out))
"""


def test_two_towers_draw_the_images_of_one_and_eight_devices_draw_four():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(_TOWERS)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out['devices'] == ['/cpu:0', '/cpu:1']
    assert out['placed'] == ['device:CPU:0', 'device:CPU:1']  # one sampler per device
    # Images differ only from a float tie on (asserted in the script); here: how many.
    for name in ('fast', 'xla', 'naive', 'completion_vs_one'):
        assert len(out[name]) <= 1, '%s: images %s differ from one tower' % (name, out[name])
    assert out['completion_keeps_rows']
    # 4 images on 8 devices: drawn on the first 4, one each, as on one device; one image
    # completed on 8 devices: one device.
    assert [tuple(u) for u in out['used']] == sorted(
        [('/cpu:%d' % i, 1) for i in range(4)] + [('/cpu:0', 1)]), out['used']
    assert len(out['four_vs_one']) <= 1 and out['completed_one'] == 1
    assert out['nll_rel_error'] < 1e-5  # float32 sums over other batches
