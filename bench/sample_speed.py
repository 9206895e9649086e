"""How fast is sampling? The cached sampler against the naive one and one forward pass.

For each run (a batch size at a model size), images of 32x32x3 from a model with
random weights and the data-dependent init (timing does not depend on what the
weights learned), all in one process:

- forward: one forward pass of the batch (compiled, warm). Any exact sampler
  must compute every layer at every position once, so this is its floor.
- cached: pixel_cnn_pp.cached_sampler.CachedSampler, the whole run (1,024 pixel
  steps in one compiled loop), timed twice: the first run (building the sampler,
  tracing and, with XLA, compiling included) and a second run (warm); with and
  without XLA (jit_compile).
- naive: sampling.sample_naive (one forward pass per pixel), timed for its first
  row (tracing included) and --naive_steps more steps, extrapolated to all H*W
  steps (each step after the first is the same full forward pass).

    python3 bench/sample_speed.py                      # 4 and 16 images at 2x64, 16 at 5x160
    python3 bench/sample_speed.py --runs 4@2x64 --naive_steps 128 --jit_compile on
    python3 bench/sample_speed.py --precision float32,bfloat16   # each run in both, same weights
    TF_ENABLE_ONEDNN_OPTS=0 python3 bench/sample_speed.py   # TensorFlow's own CPU kernels

Prints a table and ends with one JSON line, appended to bench/results.jsonl (bench/results.py).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import results  # noqa: E402

import tensorflow as tf  # noqa: E402

from pixel_cnn_pp import PixelCNN, sampling  # noqa: E402
from pixel_cnn_pp.cached_sampler import CachedSampler  # noqa: E402


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


class _Enough(Exception):
    """Stops sample_naive once the rows to time are done."""


def time_naive(model, n, steps, seed):
    """(first, warm, steps timed): seconds of a whole sample_naive run, extrapolated.

    Runs sample_naive itself for its first row (which traces its step function)
    and whole rows after it covering `steps` pixel steps; every step after the
    trace is the same full forward pass, so
    first run = first row + (H - 1) rows at the mean, warm run = H rows at the mean.
    """
    height, width, _ = model.image_shape
    rows = 1 + -(-steps // width)
    times = []
    last = [time.perf_counter()]

    def progress(done, _):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        if done == rows:
            raise _Enough

    try:
        sampling.sample_naive(model, n, seed=seed, progress=progress)
    except _Enough:
        pass
    row = float(np.mean(times[1:]))
    return times[0] + row * (height - 1), row * height, (rows - 1) * width


def time_fast(model, n, seed, jit_compile):
    """(first, warm) seconds of the cached sampler: building, tracing, compiling in the first."""
    gumbel, logistic = sampling.draw_uniforms(n, model.image_shape, model.nr_logistic_mix, seed)
    start = time.perf_counter()
    sampler = CachedSampler(model, n, jit_compile=jit_compile)
    first_images = sampler.run(gumbel, logistic)
    first = time.perf_counter() - start
    start = time.perf_counter()
    second_images = sampler.run(gumbel, logistic)
    second = time.perf_counter() - start
    assert np.array_equal(first_images, second_images), 'the same seed gave other images'
    return first, second


def parse_run(text):
    """'4@2x64' -> (4 images, nr_resnet 2, nr_filters 64)."""
    n, size = text.lower().split('@')
    resnet, filters = size.split('x')
    return int(n), int(resnet), int(filters)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', default='4@2x64,16@2x64,16@5x160',
                        help='images@nr_resnet x nr_filters, comma-separated (default '
                             "4@2x64,16@2x64,16@5x160: a small model and the original's size)")
    parser.add_argument('--naive_steps', default='64,64,4',
                        help='naive pixel steps measured per run (after its first, tracing, '
                             'row), comma-separated; rounded up to whole rows; 0: do not time '
                             'the naive sampler (64,64,4)')
    parser.add_argument('--jit_compile', default='both', choices=['both', 'on', 'off'],
                        help='time the cached sampler with XLA on, off, or both (both)')
    parser.add_argument('--precision', default='float32',
                        help='what the model computes in (precision.py), comma-separated to '
                             'time each with the same weights (float32)')
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precision.split(',')]
    runs = [parse_run(s) for s in args.runs.split(',')]
    naive_steps = [int(s) for s in args.naive_steps.split(',')]
    if len(naive_steps) == 1:
        naive_steps *= len(runs)
    jit_modes = {'both': [False, True], 'on': [True], 'off': [False]}[args.jit_compile]
    shape = (32, 32, 3)

    rows = []
    for (n, nr_resnet, nr_filters), steps in zip(runs, naive_steps):
        initialised = PixelCNN(shape, nr_resnet=nr_resnet, nr_filters=nr_filters, seed=args.seed)
        images = random_images(max(n, 16), shape, args.seed)
        initialised.initialize(images)  # (in float32, as every precision initialises)
        for precision in precisions:
            model = PixelCNN(shape, nr_resnet=nr_resnet, nr_filters=nr_filters, seed=args.seed,
                             precision=precision)
            for target, source in zip(model.weights, initialised.weights):
                target.assign(source)
            forward = time_forward(model, images[:n])
            naive_first, naive_warm, measured = (time_naive(model, n, steps, args.seed) if steps
                                                 else (float('nan'), float('nan'), 0))
            row = dict(num_samples=n, nr_resnet=nr_resnet, nr_filters=nr_filters,
                       precision=precision, forward_s=forward, naive_first_s=naive_first,
                       naive_warm_s=naive_warm, naive_steps_measured=measured,
                       naive_extrapolated=True)
            for jit in jit_modes:
                first, warm = time_fast(model, n, args.seed, jit)
                key = 'xla' if jit else 'graph'
                row.update({'fast_%s_first_s' % key: first, 'fast_%s_warm_s' % key: warm})
            rows.append(row)
            print('%d images at %dx%d in %s done' % (n, nr_resnet, nr_filters, precision),
                  file=sys.stderr, flush=True)

    onednn = os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')
    print('32x32x3 images on %d CPU core(s), TensorFlow %s, TF_ENABLE_ONEDNN_OPTS=%s. naive: '
          'whole run extrapolated from the measured steps (each is one full forward pass).'
          % (os.cpu_count(), tf.__version__, onednn))
    header = ('images', 'size', 'precision', 'forward', 'naive 1st', 'naive warm', 'cached', '1st run',
              'warm run', 'compile', 'speed-up', 'x forward')
    print('%-6s %-6s %-9s %8s %10s %10s %-6s %8s %8s %8s %9s %9s' % header)
    for row in rows:
        for jit in jit_modes:
            key = 'xla' if jit else 'graph'
            first, warm = row['fast_%s_first_s' % key], row['fast_%s_warm_s' % key]
            row['speedup_%s_warm' % key] = row['naive_warm_s'] / warm
            row['speedup_%s_first' % key] = row['naive_first_s'] / first
            row['x_forward_%s' % key] = warm / row['forward_s']
            print('%-6d %-6s %-9s %7.2fs %9.0fs %9.0fs %-6s %7.1fs %7.2fs %7.1fs %8.0fx %8.1fx' % (
                row['num_samples'], '%dx%d' % (row['nr_resnet'], row['nr_filters']),
                row['precision'], row['forward_s'], row['naive_first_s'], row['naive_warm_s'], key, first, warm,
                first - warm, row['speedup_%s_warm' % key], row['x_forward_%s' % key]))
    print('speed-up: naive warm / cached warm; compile: first run - warm run (building, tracing '
          'and, with XLA, compiling the loop); x forward: cached warm / one forward pass of the '
          'batch.')
    results.record('sample_speed', dict(image_shape=list(shape), cpu_count=os.cpu_count(),
                                        onednn=onednn, results=rows))


if __name__ == '__main__':
    main()
