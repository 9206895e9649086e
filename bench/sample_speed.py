"""How fast is sampling? The cached sampler against the naive one and one forward pass.

For each model size, 16 images of 32x32x3 from a model with random weights and the
data-dependent init (timing does not depend on what the weights learned):

- forward: one forward pass of the whole batch (compiled, warm). Any exact
  sampler must compute every layer at every position once, so this is its floor.
- fast: the cached sampler (pixel_cnn_pp.sampling.CachedSampler), every one of
  the 1,024 pixel steps, timed twice: the first run (tracing and compiling its
  steps included) and a second run with the same sampler (warm).
- naive: one forward pass per pixel (sampling.sample_naive's step). Measured for
  --naive_steps pixel steps after one warm-up step, and extrapolated to all
  H*W steps (each step costs the same: a full forward pass).

    python3 bench/sample_speed.py                       # default and small size
    python3 bench/sample_speed.py --sizes 2x64 --naive_steps 64
    TF_ENABLE_ONEDNN_OPTS=0 python3 bench/sample_speed.py   # TensorFlow's own CPU kernels

TensorFlow's oneDNN kernels (on by default on x86) were faster here for the big
convolutions of a forward pass, and slower for the sampler's small per-pixel
matrix products on a quiet machine; the header line says which were used.

Prints a table and ends with one JSON line.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from pixel_cnn_pp import PixelCNN, losses, sampling  # noqa: E402


def random_images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, (n,) + shape).astype(np.uint8)


def time_forward(model, images, repeats=3):
    forward = tf.function(lambda x: model.forward(x))
    x = model.scale_images(images)
    forward(x)  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(x).numpy()
        times.append(time.perf_counter() - start)
    return min(times)


def time_naive_steps(model, n, steps, seed):
    """Seconds per pixel step of sample_naive (its step function, on its inputs)."""
    height, width, channels = model.image_shape
    nr_mix = model.nr_logistic_mix
    gumbel, logistic = sampling.draw_uniforms(n, model.image_shape, nr_mix, seed)

    @tf.function
    def pixel(x, row, col, g, u):  # as sample_naive: a whole forward pass, one pixel kept
        out = model.forward(x)[:, row, col]
        return losses.sample_from_mixture(out, nr_mix, channels, g, u)

    x = np.zeros((n, height, width, channels), np.float32)
    times = []
    for k in range(steps + 1):  # step 0 traces and warms up
        row, col = divmod(k, width)
        start = time.perf_counter()
        value = pixel(tf.constant(x), tf.constant(row), tf.constant(col),
                      gumbel[:, row, col], logistic[:, row, col])
        level = sampling.quantize(value.numpy())
        x[:, row, col] = (level.astype(np.float32) - 127.5) / 127.5
        times.append(time.perf_counter() - start)
    return float(np.mean(times[1:]))


def time_fast(model, n, seed, jit_compile):
    start = time.perf_counter()
    sampler = sampling.CachedSampler(model, n, jit_compile=jit_compile)
    first_images = sampler.sample(seed=seed)
    first = time.perf_counter() - start
    start = time.perf_counter()
    second_images = sampler.sample(seed=seed)
    second = time.perf_counter() - start
    assert np.array_equal(first_images, second_images), 'the same seed gave other images'
    return first, second


def parse_size(text):
    resnet, filters = text.lower().split('x')
    return int(resnet), int(filters)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='5x160,2x64',
                        help='nr_resnet x nr_filters, comma-separated (default 5x160,2x64: the '
                             "original's size and a small one)")
    parser.add_argument('--num_samples', type=int, default=16, help='images per batch (16)')
    parser.add_argument('--naive_steps', default='4,32',
                        help='naive pixel steps to measure per size, comma-separated (4,32)')
    parser.add_argument('--jit_compile', default='both', choices=['both', 'on', 'off'],
                        help='time the cached sampler with XLA on, off, or both (both)')
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(',')]
    naive_steps = [int(s) for s in args.naive_steps.split(',')]
    if len(naive_steps) == 1:
        naive_steps *= len(sizes)
    jit_modes = {'both': [True, False], 'on': [True], 'off': [False]}[args.jit_compile]
    shape = (32, 32, 3)
    pixels = shape[0] * shape[1]
    n = args.num_samples

    rows = []
    for (nr_resnet, nr_filters), steps in zip(sizes, naive_steps):
        model = PixelCNN(shape, nr_resnet=nr_resnet, nr_filters=nr_filters, seed=args.seed)
        images = random_images(n, shape, args.seed)
        model.initialize(images)
        forward = time_forward(model, images)
        naive_step = time_naive_steps(model, n, steps, args.seed)
        naive = naive_step * pixels
        row = dict(nr_resnet=nr_resnet, nr_filters=nr_filters, num_samples=n,
                   forward_s=forward, naive_step_s=naive_step, naive_steps_measured=steps,
                   naive_s_extrapolated=naive)
        for jit in jit_modes:
            first, warm = time_fast(model, n, args.seed, jit)
            key = 'xla' if jit else 'graph'
            row.update({'fast_%s_first_s' % key: first, 'fast_%s_warm_s' % key: warm})
        rows.append(row)
        print('size %dx%d done' % (nr_resnet, nr_filters), file=sys.stderr, flush=True)

    onednn = os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')
    print('%d images of 32x32x3 on %d CPU core(s), TensorFlow %s, TF_ENABLE_ONEDNN_OPTS=%s. '
          'naive: %s pixel steps measured, extrapolated to %d.'
          % (n, os.cpu_count(), tf.__version__, onednn,
             '/'.join(str(s) for s in naive_steps[:len(sizes)]), pixels))
    print('%-8s %10s %12s %-6s %12s %10s %10s %10s' % (
        'size', 'forward', 'naive (ext.)', 'fast', 'first run', 'warm run', 'speed-up',
        'x forward'))
    for row in rows:
        for jit in jit_modes:
            key = 'xla' if jit else 'graph'
            first, warm = row['fast_%s_first_s' % key], row['fast_%s_warm_s' % key]
            print('%-8s %9.2fs %11.0fs %-6s %11.1fs %9.1fs %9.0fx %9.1fx' % (
                '%dx%d' % (row['nr_resnet'], row['nr_filters']), row['forward_s'],
                row['naive_s_extrapolated'], key, first, warm,
                row['naive_s_extrapolated'] / first, warm / row['forward_s']))
    print('speed-up: naive (extrapolated) / fast first run (compiling included); x forward: '
          'fast warm run / one batch forward pass.')
    print(json.dumps(dict(bench='sample_speed', image_shape=list(shape), cpu_count=os.cpu_count(),
                          tensorflow=tf.__version__, onednn=onednn, results=rows)))


if __name__ == '__main__':
    main()
