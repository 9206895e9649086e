"""Draws images from a PixelCNN++ checkpoint (ours, or OpenAI's TF1 one), and reports its test bits/dim.

    python3 sample.py -o ~/pxpp/save                         # the latest checkpoint of a training run
    python3 sample.py --checkpoint ~/pxpp/save/ckpt-12 --num_samples 100 -s 3
    python3 sample.py --pretrained cifar                      # OpenAI's published CIFAR-10 model
    python3 sample.py --pretrained cifar --eval --eval_images 1000 --num_samples 4
    python3 sample.py --checkpoint ~/pxpp/save --labels 3,3,5,5   # a class-conditional model

Writes <output>.png (the samples as one grid) and <output>.npz (`samples` uint8
(N, H, W, C), and `labels` for a class-conditional model); --output defaults to
<save_dir>/samples_seed<seed>. Here --num_samples counts images (16 when not
given; train.py's --num_samples counts batches). A class-conditional model
without --labels draws every class in turn. The same --seed gives the same
images, with --method fast (the cached sampler, the default) or naive (the
whole network once per pixel, as the original).

--pretrained cifar downloads OpenAI's pxpp.zip (656 MB; --pretrained_url or
$PIXELCNN_PRETRAINED_URL to use a mirror) into --cache_dir (default
$PIXELCNN_CACHE_DIR or ~/.cache/pixel_cnn_pp) with a progress bar, resuming an
interrupted download, renames it into place only once whole, extracts only the
checkpoint files, and checks that every variable loads with its shape. OpenAI
publishes no checksum; pass --checksum sha256:<hex> to check one. Offline, put
pxpp.zip in the cache folder by hand (the error message says exactly where).
For OpenAI's TF1 checkpoints, which do not store their options, the model flags
(-q, -n, -m, -z, -c, -ac, -nl) default to the original's; --data_set sets the
image shape (cifar 32x32x3, mnist 28x28x1, imagenet --image_size).
"""

import glob
import os
import sys
import tempfile
import time
import types
import warnings

import numpy as np
from absl import app
from absl import flags as absl_flags
from absl import logging

import flags as all_flags

FLAGS = absl_flags.FLAGS

PRETRAINED_URL = 'http://alpha.openai.com/pxpp.zip'
URL_ENV, CACHE_ENV = 'PIXELCNN_PRETRAINED_URL', 'PIXELCNN_CACHE_DIR'
DEFAULT_CACHE_DIR = '~/.cache/pixel_cnn_pp'
# --pretrained name -> (archive, checkpoint prefix inside it)
PRETRAINED = {'cifar': ('pxpp.zip', 'params_cifar.ckpt')}
DEFAULT_NUM_SAMPLES = 16
# Image shape of a TF1 checkpoint (which does not store it), by --data_set.
TF1_IMAGE_SHAPES = {'cifar': (32, 32, 3), 'mnist': (28, 28, 1), 'patches': (32, 32, 3)}
# Model flags that may be given for a TF1 checkpoint (ours store them, and any given must agree).
MODEL_FLAGS = ('nr_resnet', 'nr_filters', 'nr_logistic_mix', 'resnet_nonlinearity', 'add_coords',
               'non_local', 'nl_levels', 'energy_distance')


def arguments_from_flags():
    """Every flag as a plain namespace (the one place FLAGS is read)."""
    values = {f.name: f.value for f in FLAGS.get_flags_for_module(all_flags)}
    args = types.SimpleNamespace(**values)
    args.present = {name for name in values if FLAGS[name].present}
    args.data_dir = os.path.expanduser(args.data_dir)
    args.save_dir = os.path.expanduser(args.save_dir)
    args.nl_levels = [int(v) for v in args.nl_levels]
    if 'num_samples' not in args.present:
        args.num_samples = DEFAULT_NUM_SAMPLES
    args.pretrained_url = args.pretrained_url or os.environ.get(URL_ENV) or PRETRAINED_URL
    args.cache_dir = os.path.expanduser(args.cache_dir or os.environ.get(CACHE_ENV)
                                        or DEFAULT_CACHE_DIR)
    if args.output is None:
        args.output = os.path.join(args.save_dir, 'samples_seed%d' % args.seed)
    args.output = os.path.expanduser(args.output)
    return args


# ----------------------------------------------------------- OpenAI's checkpoint


def parse_checksum(text):
    """'sha256:<hex>' or 'md5:<hex>' -> download() keyword arguments."""
    if not text:
        return {}
    kind, _, digest = text.partition(':')
    lengths = {'sha256': 64, 'md5': 32}
    digest = digest.strip().lower()
    if kind.lower() not in lengths or len(digest) != lengths[kind.lower()] or any(
            ch not in '0123456789abcdef' for ch in digest):
        raise ValueError('--checksum must be sha256:<64 hex digits> or md5:<32 hex digits>; '
                         'got %r' % text)
    return {kind.lower(): digest}


def _checkpoint_members(names, prefix):
    """The zip members that make up checkpoint `prefix` (index, data shards; not .meta)."""
    return [name for name in names
            if not name.endswith('/') and (os.path.basename(name) == prefix or (
                os.path.basename(name).startswith(prefix + '.')
                and not name.endswith('.meta')))]


def _extracted_prefix(folder, prefix):
    found = sorted(glob.glob(os.path.join(glob.escape(folder), '**', prefix + '.index'),
                             recursive=True))
    return found[0][:-len('.index')] if found else None


def fetch_pretrained(name, url, cache_dir, checksum=None, progress=True):
    """The checkpoint prefix of OpenAI's published model `name`, downloaded once.

    Downloads the archive to <cache_dir>/<archive> (resuming <archive>.part,
    checking --checksum or else that the zip is whole, renaming it into place
    only then), and extracts only the checkpoint's files into <cache_dir>/<name>
    (through a temporary folder, so a failed extraction leaves nothing behind).
    A checkpoint extracted by an earlier run is used as it is.

    Raises:
      data.download.DownloadError: offline, or every URL failed; names the URL and
        the path to put the archive by hand.
      data.loader.DataError: the archive is corrupt or holds no such checkpoint.
    """
    import zipfile

    from data.download import download, safe_extract_zip
    from data.loader import DataError

    archive_name, prefix = PRETRAINED[name]
    folder = os.path.join(cache_dir, name)
    sums = parse_checksum(checksum)
    found = _extracted_prefix(folder, prefix)
    if found and not sums:
        return found
    archive = os.path.join(cache_dir, archive_name)
    if not sums and not os.path.exists(archive):
        print('OpenAI publishes no checksum for %s: it will be checked for being a whole zip, '
              'and the checkpoint for every variable and shape (--checksum to check one)'
              % archive_name, file=sys.stderr)
    with warnings.catch_warnings():  # said just above, in sample.py's words
        warnings.filterwarnings('ignore', message='no checksum known')
        download(url, archive, progress=progress, **sums)
    try:
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError('%s is not a whole zip archive (%s). Delete it to download it again.'
                        % (archive, e)) from None
    members = _checkpoint_members(names, prefix)
    if not any(m.endswith(prefix + '.index') for m in members):
        raise DataError('%s holds no checkpoint %s (no %s.index among %s)'
                        % (archive, prefix, prefix, ', '.join(names[:10]) or 'no files'))
    safe_extract_zip(archive, folder, members)
    return _extracted_prefix(folder, prefix)


# ------------------------------------------------------------------ the model


def _tf1_options(args, prefix):
    """PixelCNN options for a TF1 checkpoint from the flags given (the rest: the original's)."""
    import tensorflow as tf

    options = {name: getattr(args, name) for name in MODEL_FLAGS if name in args.present}
    if 'data_set' in args.present or args.eval:
        if args.data_set == 'imagenet':
            size = args.image_size or 32
            options['image_shape'] = (size, size, 3)
        elif args.data_set in TF1_IMAGE_SHAPES:
            options['image_shape'] = TF1_IMAGE_SHAPES[args.data_set]
        elif args.image_size:
            options['image_shape'] = (args.image_size, args.image_size, 3)
    if args.class_conditional:  # the number of classes is the rows of the first hw
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
        hw = shapes.get('model/conditional_weights_0/hw')
        if hw is None:
            raise ValueError('-c/--class_conditional given, but the checkpoint %s has no '
                             'conditional weights: it is unconditional' % prefix)
        options['num_classes'] = int(hw[0])
    return options


def load_model(args):
    """(model, checkpoint prefix) from --pretrained, --checkpoint or --save_dir."""
    from pixel_cnn_pp import checkpoints  # first: it imports TensorFlow quietly

    import tensorflow as tf

    if args.pretrained:
        path = fetch_pretrained(args.pretrained, args.pretrained_url, args.cache_dir,
                                args.checksum)
    else:
        path = os.path.expanduser(args.checkpoint) if args.checkpoint else args.save_dir
    prefix = checkpoints._resolve(path)
    try:
        if checkpoints.is_openai_checkpoint(prefix):
            options = _tf1_options(args, prefix)
        else:
            options = {name: getattr(args, name) for name in MODEL_FLAGS if name in args.present}
        model = checkpoints.load_checkpoint(prefix, use_ema=args.use_ema, **options)
    except (tf.errors.OpError, IndexError, RuntimeError) as e:  # TF's reader, on bad files
        hint = ('; delete %s to extract it again from the archive'
                % os.path.join(args.cache_dir, args.pretrained) if args.pretrained else '')
        raise ValueError('checkpoint %s is damaged or truncated (%s)%s'
                         % (prefix, (str(e).splitlines() or [type(e).__name__])[0], hint)) from None
    return model, prefix


# ---------------------------------------------------------------- the outputs


def choose_labels(args, model):
    """int32 (n,) labels for a conditional model (--labels, or every class in turn), or None."""
    n = args.num_samples
    if not model.num_classes:
        if args.labels:
            raise ValueError('--labels given, but the checkpoint\'s model is unconditional '
                             '(num_classes=0)')
        return None
    if not args.labels:
        return np.mod(np.arange(n), model.num_classes).astype(np.int32)  # a balanced sweep
    try:
        labels = np.array([int(v) for v in args.labels], np.int64)
    except ValueError:
        raise ValueError('--labels must be integers, comma-separated; got %s'
                         % ','.join(args.labels)) from None
    if len(labels) != n:
        raise ValueError('--labels gives %d labels for --num_samples %d images; give one per '
                         'image' % (len(labels), n))
    if labels.min() < 0 or labels.max() >= model.num_classes:
        raise ValueError('--labels must be classes 0..%d of this model; got %s'
                         % (model.num_classes - 1, ','.join(args.labels)))
    return labels.astype(np.int32)


def check_writable(output):
    """Fail now, not after sampling, if <output>.png cannot be written."""
    folder = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.sample-write-test-'):
            pass
    except OSError as e:
        raise ValueError('cannot write the samples to %s (--output / --save_dir): %s'
                         % (folder, e.strerror or e)) from None


class Progress:
    """Prints 'sampling: row 12/32, 3.1 images/s, ~40 s left' on one line of stderr."""

    def __init__(self, n, stream=sys.stderr):
        self.n, self.stream, self.start = n, stream, time.perf_counter()

    def __call__(self, rows_done, total_rows):
        elapsed = time.perf_counter() - self.start
        rate = self.n * rows_done / total_rows / max(elapsed, 1e-9)
        left = elapsed * (total_rows - rows_done) / rows_done
        self.stream.write('\rsampling: row %d/%d, %.2f images/s, ~%.0f s left '
                          % (rows_done, total_rows, rate, left))
        if rows_done == total_rows:
            self.stream.write('\n')
        self.stream.flush()


def evaluate(args, model):
    """Test bits/dim of the model on --data_set (the first --eval_images images, or all)."""
    from data.loader import get_loader
    from pixel_cnn_pp import bits_per_dim

    opts = {}
    if args.image_size is not None and args.data_set in ('imagenet', 'folder'):
        opts['image_size'] = args.image_size
    if args.data_set in ('cifar', 'mnist'):
        opts['download'] = args.download
    # Batches are made below (the last one may be short), so the loader only holds the arrays.
    test = get_loader(args.data_set, args.data_dir, 'test', 1,
                      return_labels=bool(model.num_classes), **opts)
    shape = tuple(int(d) for d in test.get_observation_size())
    if shape != tuple(model.image_shape):
        raise ValueError('--eval: the %s test images are %s, but the model takes %s'
                         % (args.data_set, 'x'.join(map(str, shape)),
                            'x'.join(map(str, model.image_shape))))
    images, labels = test.data, test.labels if model.num_classes else None
    count = len(images) if not args.eval_images else min(args.eval_images, len(images))
    nats, start = [], time.perf_counter()
    for first in range(0, count, args.batch_size):
        last = min(first + args.batch_size, count)
        nats.append(model.nll(images[first:last], None if labels is None else labels[first:last],
                              batch_size=args.batch_size))
        sys.stderr.write('\revaluating: %d/%d images, %.1f images/s '
                         % (last, count, last / (time.perf_counter() - start)))
        sys.stderr.flush()
    sys.stderr.write('\n')
    return float(bits_per_dim(np.concatenate(nats).mean(), model.image_shape)), count


def run(args):
    """Load, optionally evaluate, sample and write, from plain arguments."""
    from pixel_cnn_pp import distribute, images, sampling

    if args.num_samples < 1:
        raise ValueError('--num_samples must be at least 1 (sample.py draws that many images); '
                         'got %d' % args.num_samples)
    if args.pretrained and args.checkpoint:
        raise ValueError('give --pretrained or --checkpoint, not both')
    check_writable(args.output)
    model, prefix = load_model(args)
    print(distribute.describe_towers(distribute.sampling_devices()))
    print('loaded %s (%s%s)' % (prefix, model.describe(),
                                ', Polyak averages' if args.use_ema else ', raw weights'))
    labels = choose_labels(args, model)
    if args.eval:
        bpd, count = evaluate(args, model)
        print('test bits/dim: %.4f (%d %s test images)' % (bpd, count, args.data_set))
    start = time.perf_counter()
    samples = sampling.sample(model, args.num_samples, labels, seed=args.seed,
                              method=args.method, progress=Progress(args.num_samples),
                              jit_compile=args.jit_compile)
    seconds = time.perf_counter() - start
    images.save_image_grid(args.output + '.png', samples)
    arrays = dict(samples=samples) if labels is None else dict(samples=samples, labels=labels)
    images.save_npz(args.output + '.npz', **arrays)
    print('wrote %d samples to %s.png and %s.npz (%s sampler, %.1f s, %.2f images/s)'
          % (len(samples), args.output, args.output, args.method, seconds,
             len(samples) / seconds))
    return samples


def main(argv):
    from data.loader import DataError

    if len(argv) > 1:
        print('sample.py: error: unexpected arguments %s (flags start with - or --)'
              % ' '.join(argv[1:]), file=sys.stderr)
        sys.exit(2)
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)
    args = arguments_from_flags()
    try:
        run(args)
    except (ValueError, FileNotFoundError, DataError) as e:
        print('sample.py: error: %s' % e, file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    app.run(main)
