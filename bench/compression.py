"""How small does the model make images? Compressed bits/dim against its NLL, PNG and WebP.

    python3 bench/compression.py                       # trains README's main model if needed
    python3 bench/compression.py --train_dir runs/patches --images 200

The model: the latest checkpoint in --train_dir, or, when it holds none, one trained
there first by README's main command (train.py -d patches -q 1 -n 32 -g 1 -x 2
--polyak_decay 0.995; a few minutes on 2 cores). On the first --images bundled test
patches (-d patches, 32x32x3, never trained on) it reports, in bits/dim:

- the model's NLL (model.nll, Polyak-averaged weights),
- the .pxpp file of pixel_cnn_pp.compression (the whole file, header included), and
  its excess over the NLL,
- PNG through imageio (Pillow, compress_level 9 with optimize), one file per image
  and one file of all the images tiled edge to edge (tiled()),
- WebP lossless (Pillow, method 6, quality 100) the same two ways, if Pillow has WebP,
- compress and decompress speed in images/s (warm: the coding loops are traced on a
  first batch beforehand), after checking that the round trip is exact.

The model codes each image alone, as one PNG or WebP file per image does; a file of
all the patches tiled finds what neighbouring test patches share (they are cut on a
stride-8 grid from four photos, so they overlap), which no per-image code can.
Prints a table and ends with one JSON line.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pixel_cnn_pp import bits_per_dim, compression, loading  # noqa: E402
from pixel_cnn_pp.data import patches_data  # noqa: E402

MAIN_COMMAND = ['train.py', '-d', 'patches', '-q', '1', '-n', '32', '-g', '1', '-x', '2',
                '--polyak_decay', '0.995']


def machine():
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        name = next(line.split(':', 1)[1].strip() for line in out.splitlines()
                    if line.startswith('Model name'))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return '%s, %d cores' % (name, os.cpu_count() or 1)


def checkpoint(train_dir):
    """The latest checkpoint in train_dir, training README's main model there if there is none."""
    try:
        return loading.resolve(train_dir), None
    except FileNotFoundError:
        pass
    start = time.perf_counter()
    subprocess.run([sys.executable] + MAIN_COMMAND + ['-o', train_dir], cwd=ROOT, check=True)
    return loading.resolve(train_dir), time.perf_counter() - start


def tiled(images):
    """All images in one, tiled edge to edge, rows x columns with columns the smallest
    divisor of N that is at least sqrt(N) (1,000 images: 25 x 40)."""
    n, h, w, c = images.shape
    columns = next(k for k in range(int(np.ceil(np.sqrt(n))), n + 1) if n % k == 0)
    grid = images.reshape(n // columns, columns, h, w, c).transpose(0, 2, 1, 3, 4)
    return grid.reshape(n // columns * h, columns * w, c)


def image_codec_bytes(images, extension, **options):
    """(bytes as one file per image, bytes as one file of all of them tiled or None), via imageio."""
    import imageio.v3 as iio

    each = sum(len(iio.imwrite('<bytes>', x, extension=extension, **options)) for x in images)
    try:
        one = len(iio.imwrite('<bytes>', tiled(images), extension=extension, **options))
    except ValueError:  # WebP: at most 16,383 pixels a side
        one = None
    return each, one


def webp_available():
    try:
        from PIL import features
        return bool(features.check('webp'))
    except ImportError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--train_dir', default=os.path.join(ROOT, 'runs', 'patches'))
    parser.add_argument('--images', type=int, default=1000, help='first N test patches')
    parser.add_argument('--batch', type=int, default=compression.DEFAULT_BATCH,
                        help='images coded together')
    args = parser.parse_args()

    prefix, train_seconds = checkpoint(args.train_dir)
    model = loading.load(prefix)
    with np.load(patches_data.PATH) as f:
        images = f['testx'][:args.images]
    n, dims = len(images), images.size
    nll = model.nll(images)

    # Trace the coding loops (a full batch and the last, shorter one) before timing.
    compression.compress(model, images[:args.batch], batch=args.batch)
    if n % args.batch:
        compression.compress(model, images[:n % args.batch], batch=args.batch)
    start = time.perf_counter()
    data = compression.compress(model, images, batch=args.batch)
    compress_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded = compression.decompress(model, data)
    decompress_seconds = time.perf_counter() - start
    if not np.array_equal(decoded, images):
        raise SystemExit('the round trip is not exact')

    nll_bits = float(nll.sum() / np.log(2))
    rows = [('model NLL', nll_bits / 8),
            ('.pxpp file (header %d bytes)' % compression.HEADER_BYTES, len(data))]
    png = image_codec_bytes(images, '.png', compress_level=9, optimize=True)
    rows += [('PNG, one file per image', png[0]), ('PNG, all tiled in one file', png[1])]
    if webp_available():
        webp = image_codec_bytes(images, '.webp', lossless=True, quality=100, method=6)
        rows += [('WebP lossless, one file per image', webp[0]),
                 ('WebP lossless, all tiled in one file', webp[1])]
    rows = [(name, b) for name, b in rows if b is not None]
    result = dict(
        benchmark='compression', machine=machine(), checkpoint=prefix, config=vars(args),
        model=model.describe(), train_seconds=train_seconds, images=n,
        sizes={name: dict(bytes=int(round(b)), bits_per_dim=8 * b / dims) for name, b in rows},
        nll_bits_per_dim=float(bits_per_dim(nll.sum() / n, model.image_shape)),
        excess_over_nll=(8 * len(data) - nll_bits) / nll_bits,
        excess_over_nll_without_header=(8 * (len(data) - compression.HEADER_BYTES) - nll_bits)
        / nll_bits,
        compress_images_per_second=n / compress_seconds,
        decompress_images_per_second=n / decompress_seconds, round_trip_exact=True)

    print('%d test patches (32x32x3), %s, %s' % (n, prefix, result['machine']))
    print('%-36s %12s %10s' % ('', 'bytes', 'bits/dim'))
    for name, b in rows:
        print('%-36s %12d %10.4f' % (name, round(b), 8 * b / dims))
    print('.pxpp over the NLL: %+.3f%% (%+.3f%% without the header)'
          % (100 * result['excess_over_nll'], 100 * result['excess_over_nll_without_header']))
    print('compress %.2f images/s, decompress %.2f images/s (batch %d), round trip exact'
          % (result['compress_images_per_second'], result['decompress_images_per_second'],
             args.batch))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
