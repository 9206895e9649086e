"""How often do the cached and the naive sampler draw the same image for the same seed?

Both samplers draw from the same distribution with the same random numbers, but
compute the mixture in a different order (a convolution over the whole map against
a product over one window), so their outputs differ by ~1e-6. A draw that lands
that close to a quantisation edge (or a mixture choice that close to a tie) goes
either way, and the image differs from that pixel on (pixel_cnn_pp/sampling.py;
tests/test_sampling.py checks that every difference starts at such a tie). This
counts the images that are equal, and for the others where they first differ and
how many values differ.

Models: the golden `cifar_small` checkpoint in tests/golden (trained by the
original code: nr_resnet 1, nr_filters 16, 3 mixtures, 32x32x3) and, with
--checkpoint, any other (e.g. the README's main run).

    python3 bench/sampler_agreement.py                        # 16 images, seeds 0 and 1
    python3 bench/sampler_agreement.py --seeds 0,1,2,3 --checkpoint runs/patches

Prints a table and ends with one JSON line, appended to bench/results.jsonl (bench/results.py).
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import results  # noqa: E402

import pixel_cnn_pp  # noqa: E402

GOLDEN = os.path.join(ROOT, 'tests', 'golden', 'cifar_small', 'params_golden.ckpt')


def compare(fast, naive):
    """(equal images, [(image, first differing pixel in raster order, values differing)])."""
    differing = []
    for k, (a, b) in enumerate(zip(fast, naive)):
        if np.array_equal(a, b):
            continue
        pixels = np.flatnonzero((a != b).any(axis=-1))
        differing.append((k, int(pixels[0]), int((a != b).sum())))
    return len(fast) - len(differing), differing


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=16)
    parser.add_argument('--seeds', default='0,1', help='comma-separated seeds')
    parser.add_argument('--checkpoint', default=None, help='also this checkpoint (ours)')
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(',')]
    models = [('golden cifar_small (1x16, 3 mix)',
               pixel_cnn_pp.load(GOLDEN, nr_resnet=1, nr_filters=16, nr_logistic_mix=3))]
    if args.checkpoint:
        models.append((args.checkpoint, pixel_cnn_pp.load(args.checkpoint)))
    rows, total_equal, total = [], 0, 0
    print('| model | seed | images | equal | differing: (image, first pixel, values) | naive s |')
    print('| --- | --- | --- | --- | --- | --- |')
    for name, model in models:
        labels = model.every_class(args.images)
        for seed in seeds:
            fast = model.sample(args.images, labels, seed=seed)
            start = time.perf_counter()
            naive = model.sample(args.images, labels, seed=seed, method='naive')
            seconds = time.perf_counter() - start
            equal, differing = compare(fast, naive)
            total_equal, total = total_equal + equal, total + args.images
            rows.append(dict(model=name, seed=seed, images=args.images, equal=equal,
                             differing=differing, naive_seconds=round(seconds, 1)))
            print('| %s | %d | %d | %d | %s | %.0f |' % (
                name, seed, args.images, equal,
                ', '.join('(%d, %d, %d)' % d for d in differing) or '-', seconds))
    print('equal images: %d of %d (%.0f%%); each value of an image counts, of %d per image'
          % (total_equal, total, 100.0 * total_equal / total, int(np.prod(model.image_shape))))
    results.record('sampler_agreement', dict(images_equal=total_equal, images=total,
                                             runs=rows))


if __name__ == '__main__':
    main()
