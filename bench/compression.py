"""How small and how fast does the model code images? Bits/dim against its NLL, PNG and WebP;
encoding and decoding images/s, beside another checkout's codec in the same run.

    python3 bench/compression.py                          # trains the codec model if needed
    python3 bench/compression.py --reference ../old       # and times that checkout's codec
    python3 bench/compression.py --train_dir runs/codec --images 200 --sizes_only

The model: the latest checkpoint in --train_dir, or, when it holds none, one trained
there first by CODEC_COMMAND (16 epochs of the bundled patches,
26 minutes alone on 2 cores). On the first --images bundled test patches (-d patches,
32x32x3, never trained on) it reports, in bits/dim:

- the model's NLL (model.nll, Polyak-averaged weights),
- the .pxpp file of pixel_cnn_pp.compression (the whole file, header included), and
  its excess over the NLL,
- PNG through imageio (Pillow, compress_level 9 with optimize), one file per image
  and one file of all the images tiled edge to edge (tiled()),
- WebP lossless (Pillow, method 6, quality 100) the same two ways, if Pillow has WebP.

Then speed, warm (each process codes a first batch before timing), after checking that
the round trip is exact: the trained model on --speed_images patches, and a model of
the default size (5 x 160, 10 components, initialised on 16 training patches, not
trained) on 16; each in a fresh process per codec, this checkout's and, with
--reference DIR (a checkout of another version, e.g. `git worktree add ../old
<commit>`), that one's, alternating, --rounds times (the median is reported).

The model codes each image alone, as one PNG or WebP file per image does; a file of
all the patches tiled finds what neighbouring test patches share (they are cut on a
stride-8 grid from four photos, so they overlap), which no per-image code can.
Prints tables and ends with one JSON line, appended to bench/results.jsonl (bench/results.py).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import results  # noqa: E402

from pixel_cnn_pp import bits_per_dim, compression, loading  # noqa: E402
from pixel_cnn_pp.data import patches_data  # noqa: E402

PATCHES = patches_data.PATH  # read before --time_one puts another checkout first

CODEC_COMMAND = ['train.py', '-d', 'patches', '-q', '1', '-n', '32', '-g', '1', '-x', '16',
                 '--polyak_decay', '0.995']


def checkpoint(train_dir):
    """The latest checkpoint in train_dir, training the codec model there if there is none."""
    try:
        return loading.resolve(train_dir), None
    except FileNotFoundError:
        pass
    start = time.perf_counter()
    subprocess.run([sys.executable] + CODEC_COMMAND + ['-o', train_dir], cwd=ROOT, check=True)
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


def time_codec(code_root, prefix, count, batch):
    """(encode, decode) images/s of the codec in `code_root`, in this process (--time_one)."""
    sys.path.insert(0, code_root)
    for name in [m for m in sys.modules if m == 'pixel_cnn_pp' or m.startswith('pixel_cnn_pp.')]:
        del sys.modules[name]
    import pixel_cnn_pp
    from pixel_cnn_pp import compression as codec

    # This checkout's load, or load_checkpoint in a checkout from before it.
    load = getattr(pixel_cnn_pp, 'load', None) or pixel_cnn_pp.load_checkpoint
    model = load(prefix)
    with np.load(PATCHES) as f:
        images = f['testx'][:count]
    # Traced before timing: the encoder's functions on these images, the decoder's loop for
    # a batch (count is a multiple of batch, so there is no shorter last batch).
    codec.decompress(model, codec.compress(model, images, batch=batch)[:0] or
                     codec.compress(model, images[:batch], batch=batch))
    start = time.perf_counter()
    data = codec.compress(model, images, batch=batch)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    decoded = codec.decompress(model, data)
    decode = time.perf_counter() - start
    if not np.array_equal(decoded, images):
        raise SystemExit('%s: the round trip is not exact' % code_root)
    return count / encode, count / decode


def default_size_checkpoint(folder):
    """A default-size model (5 x 160, 10 components) initialised on 16 training patches,
    written as our checkpoint in `folder` (the speed of the codec does not need training)."""
    import pixel_cnn_pp
    from pixel_cnn_pp import checkpoints as ck
    from pixel_cnn_pp.run_folder import RunFolder

    model = pixel_cnn_pp.PixelCNN((32, 32, 3), seed=1)
    with np.load(PATCHES) as f:
        model.initialize(f['trainx'][:16])
    ck.training_checkpoint(model, pixel_cnn_pp.PolyakAverage(model.weights)).write(
        os.path.join(folder, 'ckpt-1'))
    RunFolder(folder).save_model_config(model.config)
    return os.path.join(folder, 'ckpt-1')


def speed(codecs, cases, batch, rounds):
    """{(case, codec): [(encode, decode) images/s per round]}, each a fresh process."""
    out = {}
    for _ in range(rounds):
        for case, (prefix, count) in cases.items():
            for codec, root in codecs.items():
                result = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), '--time_one', root, prefix,
                     str(count), str(batch)], capture_output=True, text=True, cwd=ROOT)
                if result.returncode:
                    raise SystemExit('%s on %s failed:\n%s' % (codec, case, result.stderr[-3000:]))
                out.setdefault((case, codec), []).append(json.loads(
                    result.stdout.strip().splitlines()[-1]))
    return out


def sizes(model, images, batch):
    """The size rows: (name, bytes), the model's NLL in nats per image, the .pxpp bytes."""
    nll = model.nll(images)
    data = compression.compress(model, images, batch=batch)
    if not np.array_equal(compression.decompress(model, data), images):
        raise SystemExit('the round trip is not exact')
    rows = [('model NLL', float(nll.sum() / np.log(2)) / 8),
            ('.pxpp file (header %d bytes)' % compression.HEADER_BYTES, len(data))]
    png = image_codec_bytes(images, '.png', compress_level=9, optimize=True)
    rows += [('PNG, one file per image', png[0]), ('PNG, all tiled in one file', png[1])]
    if webp_available():
        webp = image_codec_bytes(images, '.webp', lossless=True, quality=100, method=6)
        rows += [('WebP lossless, one file per image', webp[0]),
                 ('WebP lossless, all tiled in one file', webp[1])]
    return [(name, b) for name, b in rows if b is not None], nll, data


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--train_dir', default=os.path.join(ROOT, 'runs', 'codec'))
    parser.add_argument('--images', type=int, default=1000, help='first N test patches')
    parser.add_argument('--batch', type=int, default=compression.DEFAULT_BATCH,
                        help='images coded together')
    parser.add_argument('--speed_images', type=int, default=64,
                        help='test patches timed with the trained model (a multiple of --batch)')
    parser.add_argument('--reference', help='a checkout of another version, timed beside this')
    parser.add_argument('--rounds', type=int, default=3, help='timings of each codec')
    parser.add_argument('--sizes_only', action='store_true', help='no speed section')
    parser.add_argument('--time_one', nargs=4, metavar=('ROOT', 'CHECKPOINT', 'N', 'BATCH'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_one:
        root, prefix, count, batch = args.time_one
        print(json.dumps(time_codec(root, prefix, int(count), int(batch))))
        return

    prefix, train_seconds = checkpoint(args.train_dir)
    model = loading.load(prefix)
    with np.load(PATCHES) as f:
        images = f['testx'][:args.images]
    n, dims = len(images), images.size
    rows, nll, data = sizes(model, images, args.batch)
    nll_bits = float(nll.sum() / np.log(2))
    result = dict(
        checkpoint=prefix,
        config={k: v for k, v in vars(args).items() if k != 'time_one'},
        model=model.describe(), train_seconds=train_seconds, images=n,
        sizes={name: dict(bytes=int(round(b)), bits_per_dim=8 * b / dims) for name, b in rows},
        nll_bits_per_dim=float(bits_per_dim(nll.sum() / n, model.image_shape)),
        excess_over_nll=(8 * len(data) - nll_bits) / nll_bits,
        excess_over_nll_without_header=(8 * (len(data) - compression.HEADER_BYTES) - nll_bits)
        / nll_bits, round_trip_exact=True)
    print('%d test patches (32x32x3), %s, %s' % (n, prefix, results.cpu()[0]))
    print('%-38s %12s %10s' % ('', 'bytes', 'bits/dim'))
    for name, b in rows:
        print('%-38s %12d %10.4f' % (name, round(b), 8 * b / dims))
    print('.pxpp over the NLL: %+.3f%% (%+.3f%% without the header)'
          % (100 * result['excess_over_nll'], 100 * result['excess_over_nll_without_header']))
    if not args.sizes_only:
        result['speed'] = report_speed(args, prefix)
    results.record('compression', result)


def report_speed(args, prefix):
    """Time the codecs on both models; print the table; the figures as a dict."""
    import tempfile

    codecs = {'this checkout': ROOT}
    if args.reference:
        codecs['reference'] = os.path.abspath(args.reference)
    with tempfile.TemporaryDirectory() as folder:
        cases = {'trained 1x32, %d images' % args.speed_images: (prefix, args.speed_images),
                 'default 5x160, 16 images': (default_size_checkpoint(folder), 16)}
        timed = speed(codecs, cases, args.batch, args.rounds)
    print('\nspeed, images/s (median of %d fresh processes each; batch %d)' % (args.rounds,
                                                                            args.batch))
    print('%-28s %-14s %10s %10s' % ('model', 'codec', 'encode', 'decode'))
    out = {}
    for (case, codec), values in timed.items():
        encode, decode = np.median(np.array(values), axis=0)
        out['%s / %s' % (case, codec)] = dict(encode=float(encode), decode=float(decode),
                                               all=values)
        print('%-28s %-14s %10.2f %10.2f' % (case, codec, encode, decode))
    if args.reference:
        for case in {c for c, _ in timed}:
            mine, ref = (np.median(np.array(timed[(case, c)]), axis=0) for c in codecs)
            print('%-28s this / reference: encode %.1fx, decode %.2fx'
                  % (case, mine[0] / ref[0], mine[1] / ref[1]))
    return out


if __name__ == '__main__':
    main()
