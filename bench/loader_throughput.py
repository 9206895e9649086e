"""Loader throughput: images per second of each data format, through the DataLoader and
through to_tf_dataset.

Builds fixture data sets of every on-disk format (CIFAR pickles, MNIST IDX, the three Small
ImageNet layouts, an image folder) in a temporary folder, with the same writers the tests
use, plus the bundled patches. For each it times constructing the loader (reading the
files), one shuffled epoch through the loader, and one epoch through the prefetching
tf.data pipeline (after a warm-up pass). Prints a table, then one JSON line, appended to
bench/results.jsonl (bench/results.py).

    python bench/loader_throughput.py [--images 10000] [--batch_size 64]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import results  # noqa: E402

from pixel_cnn_pp.data.loader import get_loader, to_tf_dataset  # noqa: E402
# Kept: each format's writer lives beside the test that checks its reader against it; the
# bench (run from a checkout) borrows them rather than keep a second copy that could drift.
from tests.test_data_cifar import write_cifar  # noqa: E402
from tests.test_data_folder import write_folder  # noqa: E402
from tests.test_data_imagenet import (write_imagenet_batches, write_imagenet_npz,  # noqa: E402
                                      write_imagenet_pngs)
from tests.test_data_mnist import write_mnist  # noqa: E402


def formats(n):
    """name -> (data set, options, writer(data_dir)) for `n` training images each."""
    return {
        'cifar (pickle batches)': ('cifar', {'download': False},
                                   lambda d: write_cifar(d, per_batch=n // 5, n_test=10)),
        'mnist (IDX .gz)': ('mnist', {'download': False},
                            lambda d: write_mnist(d, n_train=n, n_test=10)),
        'imagenet32 (npz batches)': ('imagenet', {},
                                     lambda d: write_imagenet_batches(d, per_batch=n // 10,
                                                                      n_val=10)),
        'imagenet64 (npz batches)': ('imagenet', {'image_size': 64},
                                     lambda d: write_imagenet_batches(d, size=64, per_batch=n // 10,
                                                                      n_val=10)),
        'imagenet32 (imgnet npz)': ('imagenet', {},
                                    lambda d: write_imagenet_npz(d, n_train=n, n_test=10)),
        'imagenet32 (PNG folders)': ('imagenet', {},
                                     lambda d: write_imagenet_pngs(d, n_train=n, n_test=10)),
        'folder (PNG, 10 classes)': ('folder', {},
                                     lambda d: write_folder(d, classes=[f'c{i}' for i in range(10)],
                                                            n_train=n // 10, n_test=1)),
        'patches (bundled)': ('patches', {}, lambda d: None),
    }


def measure(data_set, options, write, batch_size, data_dir):
    os.makedirs(data_dir)
    t0 = time.perf_counter()
    write(data_dir)
    t1 = time.perf_counter()
    loader = get_loader(data_set, data_dir, 'train', batch_size, rng=np.random.RandomState(1),
                        shuffle=True, **options)
    t2 = time.perf_counter()
    count = sum(len(x) for x in loader)
    t3 = time.perf_counter()
    dataset = to_tf_dataset(loader)
    for _ in dataset:  # warm-up pass: graph building, thread start
        pass
    t4 = time.perf_counter()
    tf_count = sum(int(x.shape[0]) for x in dataset)
    t5 = time.perf_counter()
    assert tf_count == count, (tf_count, count)
    return {'images': count, 'shape': list(loader.get_observation_size()),
            'build_s': round(t1 - t0, 3), 'load_s': round(t2 - t1, 3),
            'loader_images_per_s': round(count / (t3 - t2)),
            'tf_data_images_per_s': round(tf_count / (t5 - t4))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=10000,
                        help='training images per format (default 10000)')
    parser.add_argument('--batch_size', type=int, default=64, help='batch size (default 64)')
    args = parser.parse_args()
    measured = {}
    with tempfile.TemporaryDirectory() as root:
        for i, (name, (data_set, options, write)) in enumerate(formats(args.images).items()):
            measured[name] = measure(data_set, options, write, args.batch_size,
                                    os.path.join(root, f'format_{i}'))
    header = (f'{"format":<26} {"images":>7} {"HxWxC":>9} {"build s":>8} {"load s":>7} '
              f'{"loader img/s":>13} {"tf.data img/s":>14}')
    print(header)
    print('-' * len(header))
    for name, r in measured.items():
        print(f'{name:<26} {r["images"]:>7} {"x".join(map(str, r["shape"])):>9} '
              f'{r["build_s"]:>8.2f} {r["load_s"]:>7.2f} {r["loader_images_per_s"]:>13,} '
              f'{r["tf_data_images_per_s"]:>14,}')
    results.record('loader_throughput', {'batch_size': args.batch_size,
                                         'images_per_format': args.images, 'results': measured})


if __name__ == '__main__':
    main()
