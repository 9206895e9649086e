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

import os
import tempfile
import time
import types

import numpy as np
from absl import app
from absl import flags as absl_flags

import cli
import flags as all_flags
from data import pretrained
from data.loader import DataError, get_loader, loader_options

FLAGS = absl_flags.FLAGS

DEFAULT_NUM_SAMPLES = 16
# Image shape of a TF1 checkpoint (which does not store it), by --data_set.
TF1_IMAGE_SHAPES = {'cifar': (32, 32, 3), 'mnist': (28, 28, 1), 'patches': (32, 32, 3)}


def arguments_from_flags():
    """Every flag as a plain namespace (the one place FLAGS is read)."""
    from pixel_cnn_pp.config import TRAINING_ONLY, ModelConfig

    values = {f.name: f.value for f in FLAGS.get_flags_for_module(all_flags)}
    args = types.SimpleNamespace(**values)
    args.present = {name for name in values if FLAGS[name].present}
    args.data_dir = os.path.expanduser(args.data_dir)
    args.save_dir = os.path.expanduser(args.save_dir)
    if 'num_samples' not in args.present:
        args.num_samples = DEFAULT_NUM_SAMPLES
    args.pretrained_url = (args.pretrained_url or os.environ.get(pretrained.URL_ENV)
                           or pretrained.PRETRAINED_URL)
    args.cache_dir = os.path.expanduser(args.cache_dir or os.environ.get(pretrained.CACHE_ENV)
                                        or pretrained.DEFAULT_CACHE_DIR)
    if args.output is None:
        args.output = os.path.join(args.save_dir, 'samples_seed%d' % args.seed)
    args.output = os.path.expanduser(args.output)
    # The model options given by a flag of their name (sampling has no use for dropout).
    args.model_options = {name: values[name] for name in ModelConfig.field_names()
                          if name in args.present and name not in TRAINING_ONLY}
    return args


# ------------------------------------------------------------------ the model


def _tf1_options(args, prefix):
    """ModelConfig fields for a TF1 checkpoint from the flags given (the rest: the original's)."""
    from pixel_cnn_pp import checkpoints

    options = dict(args.model_options)
    if 'data_set' in args.present or args.eval:
        if args.data_set == 'imagenet':
            size = args.image_size or 32
            options['image_shape'] = (size, size, 3)
        elif args.data_set in TF1_IMAGE_SHAPES:
            options['image_shape'] = TF1_IMAGE_SHAPES[args.data_set]
        elif args.image_size:
            options['image_shape'] = (args.image_size, args.image_size, 3)
    if args.class_conditional:
        options['num_classes'] = checkpoints.openai_num_classes(prefix)
        if not options['num_classes']:
            raise ValueError('-c/--class_conditional given, but the checkpoint %s has no '
                             'conditional weights: it is unconditional' % prefix)
    return options


def load_model(args):
    """(model, checkpoint prefix) from --pretrained, --checkpoint or --save_dir."""
    from pixel_cnn_pp import checkpoints  # first: it imports TensorFlow quietly

    import tensorflow as tf

    from pixel_cnn_pp.progress import download_display

    if args.pretrained:
        path = pretrained.fetch_pretrained(args.pretrained, args.pretrained_url, args.cache_dir,
                                           args.checksum, progress=download_display)
    else:
        path = os.path.expanduser(args.checkpoint) if args.checkpoint else args.save_dir
    prefix = checkpoints.resolve(path)
    hint = ('; delete %s to extract it again from the archive'
            % os.path.join(args.cache_dir, args.pretrained) if args.pretrained else '')
    try:
        options = (_tf1_options(args, prefix) if checkpoints.is_openai_checkpoint(prefix)
                   else args.model_options)
        model = checkpoints.load_checkpoint(prefix, use_ema=args.use_ema, **options)
    except checkpoints.DamagedCheckpoint as e:
        raise ValueError('%s%s' % (e, hint)) from None
    except (tf.errors.OpError, IndexError, RuntimeError) as e:  # TF's reader, on bad files
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
        return model.every_class(n)
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


def evaluate(args, model):
    """Test bits/dim of the model on --data_set (the first --eval_images images, or all)."""
    from pixel_cnn_pp import bits_per_dim
    from pixel_cnn_pp.progress import Progress, download_display

    opts = loader_options(args.data_set, args.image_size, args.download, download_display)
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
    nats, display = [], Progress('evaluating', count, unit='images')
    for first in range(0, count, args.batch_size):
        last = min(first + args.batch_size, count)
        nats.append(model.nll(images[first:last], None if labels is None else labels[first:last],
                              batch_size=args.batch_size))
        display.update(last)
    display.close()
    return float(bits_per_dim(np.concatenate(nats).mean(), model.image_shape)), count


def run(args):
    """Load, optionally evaluate, sample and write, from plain arguments."""
    from pixel_cnn_pp import distribute, images, sampling
    from pixel_cnn_pp.progress import Progress

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
    start, display = time.perf_counter(), Progress('sampling', unit='rows')
    samples = sampling.sample(model, args.num_samples, labels, seed=args.seed,
                              method=args.method, progress=display, jit_compile=args.jit_compile)
    display.close()
    seconds = time.perf_counter() - start
    images.save_image_grid(args.output + '.png', samples)
    arrays = dict(samples=samples) if labels is None else dict(samples=samples, labels=labels)
    images.save_npz(args.output + '.npz', **arrays)
    print('wrote %d samples to %s.png and %s.npz (%s sampler, %.1f s, %.2f images/s)'
          % (len(samples), args.output, args.output, args.method, seconds,
             len(samples) / seconds))
    return samples


main = cli.main_for('sample.py', arguments_from_flags, run,
                    errors=(ValueError, FileNotFoundError, DataError))

if __name__ == '__main__':
    app.run(main)
