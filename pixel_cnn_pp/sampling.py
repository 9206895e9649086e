"""Sampling from a PixelCNN: one pixel at a time, in raster order.

Two samplers of the same distribution, which draw the same images for the same
seed except where a draw lands within rounding of a bin edge (float ties, below):

- `sample_naive` runs the whole network once per pixel, as the original does:
  H*W forward passes of the whole batch (1,024 for 32x32). It is the reference.
- the cached sampler (cached_sampler.py) computes every layer's output at every
  position exactly once, as Fast PixelCNN++ does, in one compiled loop.

`sample(model, n, ...)` chooses between them (fast by default) and can spread
the images over several devices; `complete(model, images, known_rows, ...)` keeps
the top rows of given images and samples the rest. All random numbers are drawn
up front from `seed` (`draw_uniforms`), so the same seed gives either sampler,
on any number of devices, the same random numbers.

Float ties: the two samplers compute the same mixture with the same operations
in different orders (a convolution over a whole map against a product over one
window), so their outputs agree to ~1e-6, not bit for bit. A drawn value that
falls within that distance of a quantisation edge (or a Gumbel-max choice that
close to a tie) can go either way, and the image differs from that pixel on.
tests/test_sampling.py shows that every difference starts at such a tie;
bench/sampler_agreement.py counts equal images (docs/benchmarks.md).

Each sampled pixel is quantised to the 256 levels before it is fed back: the
model is a distribution over 8-bit images, and the images it returns are uint8
(the original feeds back the unquantised float; see docs/differences.md).
"""

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import distribute, mixture, nn
from pixel_cnn_pp.cached_sampler import CachedSampler
from pixel_cnn_pp.config import check_integer

_UNIFORM_EPS = 1e-5  # uniforms in (eps, 1 - eps), as the original
METHODS = ('fast', 'naive')


def draw_uniforms(n, image_shape, nr_mix, seed=None):
    """The random numbers of a whole sampling run, drawn up front.

    Returns (gumbel, logistic): float32 (n, H, W, M) and (n, H, W, C) in (eps, 1-eps),
    the uniforms behind the Gumbel draws of the components and the logistic draws of
    the levels. Image k's Gumbel uniforms do not depend on n; its logistic ones do (they
    are drawn after all n images' Gumbel ones), so a batch split over devices is drawn
    whole, once, and split: each device gets the rows of the whole batch's draw.
    """
    rng = np.random.default_rng(seed)
    h, w, c = image_shape
    gumbel = rng.uniform(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS, (n, h, w, nr_mix))
    logistic = rng.uniform(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS, (n, h, w, c))
    return gumbel.astype(np.float32), logistic.astype(np.float32)


def check_num_samples(n):
    return check_integer('n', n, meaning='the number of samples')


def check_seed(seed):
    """`seed` if it is None or a non-negative integer (what numpy's generators take)."""
    if seed is not None and (isinstance(seed, (bool, np.bool_))
                             or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError("'seed' must be a non-negative integer, or None for fresh randomness; "
                         "got %r" % (seed,))
    return seed


def _check_method(method):
    if method not in METHODS:
        raise ValueError("'method' must be one of %s; got %r" % (METHODS, method))


def check_devices(devices):
    """`devices` as a list ([None]: TensorFlow's choice), or ValueError if it is not one."""
    if devices is None:
        return [None]
    if isinstance(devices, str) or not devices:
        raise ValueError("'devices' must be a non-empty list of device names (e.g. "
                         "distribute.configure_devices(2)); got %r" % (devices,))
    return list(devices)


def sample(model, n, labels=None, seed=None, method='fast', get=nn.identity, progress=None,
           jit_compile=False, devices=None):
    """n images from `model`, drawn pixel by pixel in raster order.

    Args:
      model: a PixelCNN.
      n: number of images.
      labels: int (n,) classes 0..num_classes-1 for a class-conditional model,
        else None.
      seed: integer seed of all random numbers (None: fresh randomness). The
        same seed gives the same random numbers to either method on any devices:
        the same images, except from a float tie on (module docstring).
      method: 'fast' (the cached sampler: every layer computes each position
        once) or 'naive' (one forward pass of the whole network per pixel). An
        energy-distance model (-ed) always uses the naive sampler: its output
        head draws fresh noise per forward pass, which the cached path does not
        implement.
      get: which weights: nn.identity, or a PolyakAverage's `average`.
      progress: optional callable(rows_done, total_rows), called after each row
        (of the first device's images).
      jit_compile: compile the fast sampler's loop with XLA (see
        bench/sample_speed.py for what it costs and gains).
      devices: optional device names, e.g. distribute.configure_devices(2): the
        images are split over them in near-equal parts (towers) that sample at
        the same time, each with its own copy of the kernels and caches; at most
        one device per image (4 images on 8 devices use the first 4).
    Returns:
      uint8 (n, H, W, C).

    Example:
        images = sample(model, 16, seed=0)                  # fast
        same = sample(model, 16, seed=0, method='naive')    # the same but at ties, slowly
    """
    n = check_num_samples(n)
    return _draw(model, n, labels, seed, method, get, progress, jit_compile, devices)


def complete(model, images, known_rows, labels=None, seed=None, method='fast',
             get=nn.identity, progress=None, jit_compile=False, devices=None):
    """Keep the top `known_rows` rows of each image and sample the rest.

    The known pixels are fed to the network as they are, and every later pixel
    is drawn given them (the PixelRNN and PixelCNN papers' completions).

    Args:
      model: a PixelCNN.
      images: uint8 (N, H, W, C) of the model's image shape.
      known_rows: K in 0..H: rows 0..K-1 are kept (0 samples whole images, H
        returns the images unchanged).
      labels, seed, method, get, progress, jit_compile, devices: as `sample`.
    Returns:
      uint8 (N, H, W, C): rows < K equal `images`, the rest sampled.

    Example:
        halves = complete(model, test_images[:8], known_rows=16, seed=0)
    """
    images, labels = model.check_inputs(images, labels)
    known_rows = check_known_rows(known_rows, model.image_shape[0])
    return _draw(model, len(images), labels, seed, method, get, progress, jit_compile, devices,
                 given=images, known_rows=known_rows)


def check_known_rows(known_rows, height, what="'known_rows'"):
    """known_rows as an int, or ValueError (starting with `what`) unless it is in 0..height."""
    if isinstance(known_rows, bool) or not isinstance(known_rows, (int, np.integer)) \
            or not 0 <= known_rows <= height:
        raise ValueError('%s must be an integer in 0..%d (the image height); got %r'
                         % (what, height, known_rows))
    return int(known_rows)


def _draw(model, n, labels, seed, method, get, progress, jit_compile, devices, given=None,
          known_rows=0):
    """Both public functions: validate, draw the random numbers, split over the devices."""
    _check_method(method)
    check_seed(seed)
    labels = model.check_labels(labels, n)
    devices = check_devices(devices)
    gumbel, logistic = draw_uniforms(n, model.image_shape, model.nr_logistic_mix, seed)
    naive = method == 'naive' or model.energy_distance
    # The ED head's noise seed (-ed), derived from `seed` so that samples repeat.
    noise_seed = int(np.random.default_rng(seed).integers(2 ** 31))

    def tower(k, index, device):  # the images `index` on one device, at the same time
        part = dict(gumbel=gumbel[index], logistic=logistic[index],
                    labels=None if labels is None else labels[index],
                    given=None if given is None else given[index], known_rows=known_rows,
                    progress=progress if k == 0 else None)
        if naive:
            return _naive(model, get=get, noise_seed=noise_seed, **part)
        return _cached_sampler(model, len(index), get, jit_compile, device).run(**part)

    return distribute.split_over_devices(n, devices, tower)


def _cached_sampler(model, n, get, jit_compile, device):
    """The model's cached sampler for this batch, weights, compilation and device.

    Kept on the model, so that sampling again (every epoch of a training run)
    traces and compiles nothing new.
    """
    return model.compiled(('cached_sampler', n, get, bool(jit_compile), device),
                          lambda: CachedSampler(model, n, get, jit_compile))


def sample_naive(model, n, labels=None, seed=None, get=nn.identity, progress=None):
    """n images from `model`, one full forward pass per pixel (the reference).

    Args:
      model: a PixelCNN.
      n: number of images.
      labels: int (n,) for a class-conditional model, else None.
      seed: integer seed of all random numbers (None: fresh randomness).
      get: which weights to use (nn.identity, or a PolyakAverage's `average`).
      progress: optional callable(rows_done, total_rows), called after each row.
    Returns:
      uint8 (n, H, W, C).
    """
    return sample(model, n, labels, seed, method='naive', get=get, progress=progress)


def _naive(model, gumbel, logistic, labels=None, given=None, known_rows=0, get=nn.identity,
           progress=None, noise_seed=0):
    """The naive loop on these random numbers; rows < known_rows are taken from `given`."""
    n = len(gumbel)
    h = model.one_hot(labels) if labels is not None else None
    height, width, channels = model.image_shape
    nr_mix = model.nr_logistic_mix

    @tf.function(autograph=False)
    def pixel(x, row, col, g, u):
        """The levels (n, C) drawn at pixel (row, col) given the image x so far."""
        if model.energy_distance:  # the head's first sample is the pixel's value
            step_seed = tf.stack([noise_seed, row * width + col])
            return mixture.to_level(model.forward(x, h, get=get, seed=step_seed)[0][:, row, col])
        out = model.forward(x, h, get=get)[:, row, col]  # (n, K): only pixel (row, col)
        return mixture.to_level(mixture.draw(mixture.unpack(out, nr_mix, channels), g, u))

    images = np.zeros((n, height, width, channels), np.uint8)
    x = np.zeros((n, height, width, channels), np.float32)
    for row in range(height):
        for col in range(width):
            if row < known_rows:
                images[:, row, col] = given[:, row, col]
            else:
                level = pixel(tf.constant(x), tf.constant(row), tf.constant(col),
                              gumbel[:, row, col], logistic[:, row, col])
                images[:, row, col] = level.numpy().astype(np.uint8)
            x[:, row, col] = mixture.to_value(images[:, row, col].astype(np.float32))
        if progress is not None:
            progress(row + 1, height)
    return images
