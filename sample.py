"""Draws images from a PixelCNN++ checkpoint (ours, or OpenAI's TF1 one), and reports its test bits/dim.

    python3 sample.py -o ~/pxpp/save                         # the latest checkpoint of a training run
    python3 sample.py --checkpoint ~/pxpp/save/ckpt-12 --num_samples 100 -s 3
    python3 sample.py --pretrained cifar --eval --eval_images 1000   # OpenAI's CIFAR-10 model
    python3 sample.py -o ~/pxpp/save --labels 3,3,5,5 --complete photos/ --known_rows 16
    python3 sample.py -o ~/pxpp/save --score photos/     # bits/dim per image (CSV) and heatmaps

Writes <output>.png (a grid, upscaled and labelled: data set, epoch, test bits/dim,
seed) and <output>.npz (`samples`, `labels` of a class-conditional model, and with
--complete `originals` and `known_rows`); default <save_dir>/samples_seed<seed> or
completions_seed<seed>; the two land together or not at all (SIGTERM or Ctrl-C: one
line, nothing new written), and <output>.lock, held while the run writes, refuses a
second run with the same --output. Flags this run would ignore (--known_rows without
--complete, --seed with --score, ...) are refused by name. --num_samples counts
images here (16; with --complete, 4 completions per image); a conditional model
without --labels draws every class in turn. --method fast (cached) and naive draw
the same distribution with the same random numbers: the same images except where a
draw lands within rounding of a bin edge. OpenAI's TF1 checkpoints store no options:
the model flags default to the original's and --data_set sets the image shape.
`--help` lists every flag.
"""

import os
import time

import numpy as np
from absl import app
from absl import flags as absl_flags

import cli
import flags as all_flags
from pixel_cnn_pp.data.loader import DataError

DEFAULT_NUM_SAMPLES = 16
DEFAULT_COMPLETIONS = 4  # per image, with --complete


for _name in all_flags.sample_flags():
    absl_flags.declare_key_flag(_name)  # listed by --help and --helpshort


def arguments_from_flags():
    """Every flag of sample.py as a plain namespace; flags it would ignore are refused by name."""
    cli.refuse_flags_of('compress.py', all_flags.COMPRESS_FLAGS, 'sample.py')
    args = cli.read_checkpoint_flags('sample.py', all_flags.sample_flags())
    if 'num_samples' not in args.present:
        args.num_samples = DEFAULT_COMPLETIONS if args.complete else DEFAULT_NUM_SAMPLES
    if args.output is None:
        args.output = os.path.join(args.save_dir, 'scores' if args.score else '%s_seed%d' % (
            'completions' if args.complete else 'samples', args.seed))
    args.output = os.path.expanduser(args.output)
    refuse_ignored_flags(args)
    return args


# Flags that only some modes read, and what they are for (for the message refusing them).
_EVAL_ONLY = {'eval_images': 'how many test images --eval uses',
              'data_dir': 'where --eval finds the test set',
              'download': 'whether --eval may download the test set'}
_SAMPLING_ONLY = ('num_samples', 'method', 'seed', 'jit_compile', 'nr_gpu', 'eval',
                  'eval_images')


def refuse_ignored_flags(args):
    """Raise ValueError naming a flag that contradicts another, or that this run would ignore."""
    given = args.present
    if args.score and args.complete:
        raise ValueError('--score and --complete: give one (--score scores the images as they '
                         'are, --complete redraws their lower rows)')
    if 'known_rows' in given and not args.complete:
        raise ValueError('--known_rows is for --complete (the rows kept of each image): give '
                         '--complete IMAGES, or leave --known_rows out')
    unused = [n for n in _SAMPLING_ONLY if n in given] if args.score else []
    if unused:
        raise ValueError('%s does nothing with --score (it scores the images; nothing is sampled '
                         'or evaluated): leave it out' % cli.spelled(unused[0]))
    unused = [n for n in _EVAL_ONLY if n in given] if not args.eval else []
    if unused:
        raise ValueError('%s is %s: give --eval, or leave it out'
                         % (cli.spelled(unused[0]), _EVAL_ONLY[unused[0]]))


# ---------------------------------------------------------------- the outputs


def choose_labels(args, model, n):
    """int32 (n,) labels for a conditional model (--labels, or every class in turn), or None."""
    from pixel_cnn_pp import image_input

    if not args.labels:
        return model.every_class(n)
    return image_input.read_labels(args.labels, n, model.num_classes)


def grid_label(args, prefix, test_bpd=None, test_count=None):
    """The grid's label: data set, epoch, test bits/dim (--eval's first), seed."""
    from pixel_cnn_pp import checkpoints

    name = args.data_set if args.eval else args.pretrained
    return checkpoints.describe_training(prefix, name, test_bpd, test_count if args.eval_images
                                         else None) + ['seed %d' % args.seed]


def evaluate(args, model, devices):
    """Test bits/dim of the model on --data_set (the first --eval_images images, or all),
    the images split over `devices`."""
    from pixel_cnn_pp import bits_per_dim, scoring
    from pixel_cnn_pp.progress import Progress

    # Batches are made below (the last one may be short), so the loader only holds the arrays.
    test = cli.data_loader(args, 'test', 1, return_labels=bool(model.num_classes))
    shape = tuple(int(d) for d in test.get_observation_size())
    if shape != tuple(model.image_shape):
        raise ValueError('--eval: the %s test images are %s, but the model takes %s'
                         % (args.data_set, 'x'.join(map(str, shape)),
                            'x'.join(map(str, model.image_shape))))
    images, labels = test.data, test.labels if model.num_classes else None
    count = len(images) if not args.eval_images else min(args.eval_images, len(images))
    display = Progress('evaluating', count, unit='images')
    nats = scoring.nll_on_devices(model, images[:count],
                                  None if labels is None else labels[:count], devices,
                                  batch_size=args.batch_size,
                                  progress=lambda done, _: display.update(done))
    display.close()
    return float(bits_per_dim(nats.mean(), model.image_shape)), count


def read_completion_inputs(args, model):
    """--complete's images (checked against the model) and --known_rows (default: half)."""
    from pixel_cnn_pp import image_input, sampling

    given = image_input.read_images(args.complete, model.image_shape, '--complete')[0]
    height = model.image_shape[0]
    known_rows = height // 2 if args.known_rows is None else args.known_rows
    return given, sampling.check_known_rows(known_rows, height, '--known_rows')


def run(args):
    """Check the flags and --output (locked while this run writes there), then draw and write."""
    from pixel_cnn_pp import files

    if args.num_samples < 1:
        raise ValueError('--num_samples must be at least 1 (sample.py draws that many images, '
                         'or completions per image with --complete); got %d' % args.num_samples)
    if args.pretrained and args.checkpoint:
        raise ValueError('give --pretrained or --checkpoint, not both')
    # One run at a time writes these outputs: a second with the same --output is refused.
    with files.output_lock(args.output, '--output'):
        return _load_and_draw(args)


def _load_and_draw(args):
    """Load, optionally evaluate, sample (or complete --complete's images, or score) and write."""
    from pixel_cnn_pp import distribute, files, images, sampling, scoring
    from pixel_cnn_pp.progress import Progress

    # Towers first: logical CPU devices can only be made before TensorFlow starts.
    devices = distribute.sampling_devices(args.nr_gpu if 'nr_gpu' in args.present else None)
    cli.warn_about_precision(args.precision)
    model, prefix = cli.load_model(args, args.eval)
    print(distribute.describe_towers(devices))
    print('loaded %s (%s%s)' % (prefix, model.describe(),
                                ', Polyak averages' if args.use_ema else ', raw weights'))
    if args.score:  # bits/dim per image and heatmaps, not samples (pixel_cnn_pp/scoring.py)
        return scoring.score_files(model, args.score, args.output, args.labels, args.batch_size,
                                   devices=devices)
    per_image, bpd, count = args.num_samples, None, None
    if args.complete:
        originals, known_rows = read_completion_inputs(args, model)
        labels = choose_labels(args, model, len(originals))
        # Each image (and label) k times in a row: image i's completions are i*k .. i*k+k-1.
        given = np.repeat(originals, per_image, axis=0)
        labels = None if labels is None else np.repeat(labels, per_image)
    else:
        labels = choose_labels(args, model, per_image)
    if args.eval:
        bpd, count = evaluate(args, model, devices)
        print('test bits/dim: %.4f (%d %s test images)' % (bpd, count, args.data_set))
    start, display = time.perf_counter(), Progress('sampling', unit='rows')
    common = dict(labels=labels, seed=args.seed, method=args.method, progress=display,
                  jit_compile=args.jit_compile, devices=devices)
    if args.complete:
        samples = sampling.complete(model, given, known_rows, **common)
    else:
        samples = sampling.sample(model, per_image, **common)
    display.close()
    seconds = time.perf_counter() - start
    arrays = dict(samples=samples) if labels is None else dict(samples=samples, labels=labels)
    look = dict(label=grid_label(args, prefix, bpd, count),
                scale=images.viewing_scale(samples.shape[1:3]))
    if args.complete:  # each row of the grid: the original, then its completions
        arrays.update(originals=originals, known_rows=known_rows)
        grid = images.completion_grid(originals, samples, **look)
    else:
        grid = images.image_grid(samples, **look)
    files.land_together([(args.output + '.png', images.png_writer(grid)),
                         (args.output + '.npz', images.npz_writer(**arrays))])  # both, or neither
    print('wrote %d %s to %s.png and %s.npz (%s sampler, %.1f s, %.2f images/s)'
          % (len(samples), 'completions' if args.complete else 'samples', args.output,
             args.output, args.method, seconds, len(samples) / seconds))
    return samples


# OSError: a file that cannot be written (a full disk names it), an output that appeared
# meanwhile (FileExistsError).
main = cli.main_for('sample.py', arguments_from_flags, run,
                    errors=(ValueError, OSError, DataError), stop_on_signals=True,
                    flag_names=all_flags.sample_flags())

if __name__ == '__main__':
    cli.use_help(all_flags.SAMPLE_PY_HELP)  # before parsing, so that --help shows it
    app.run(main)
