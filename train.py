"""Trains a PixelCNN++ on CIFAR-10, Small ImageNet, MNIST, your images, or the bundled patches.

One tower per GPU, as the original (--nr_gpu); on a machine without a GPU, one
tower per logical CPU device. Across machines with --multi_worker and TF_CONFIG.

    python3 train.py --nr_gpu 8 -ac -nl                       # CIFAR-10 on 8 GPUs
    CUDA_VISIBLE_DEVICES=0,1 python3 train.py --nr_gpu 2
    python3 train.py -d patches -q 1 -n 32 -g 1 -x 2 -o /tmp/pxpp/patches   # a few CPU minutes
    python3 train.py -r -o /tmp/pxpp/patches -d patches -q 1 -n 32 -g 1 -x 4  # continue it

Writes into --save_dir (locked by run.lock while it runs: one run per folder):
flags.json (every invocation's flags and outcome), pixelcnn_config.json, checkpoints ckpt-N (after
every epoch, every --save_steps steps, and on SIGTERM/SIGINT), test_bpd_<data_set>.npz,
<data_set>_sample<epoch>.png/.npz every --save_interval epochs, TensorBoard events in tb/.
`-r` continues the latest checkpoint exactly: the same batches, dropout masks and
updates as if the run had never stopped.
"""

import contextlib
import os
import sys
import types

import numpy as np
from absl import app
from absl import flags as absl_flags

import cli
import flags as train_flags
from data.loader import DataError, get_loader, loader_options, to_tf_dataset

# The library (which imports TensorFlow) is imported in the functions that use it,
# after the flags are parsed: a bad flag or --help answers at once.

FLAGS = absl_flags.FLAGS

# Options not set by a flag of their own name, and the flags that set them, for messages.
_OPTION_FLAGS = {'image_shape': '--data_set/--image_size (image shape)',
                 'num_classes': '-c/--class_conditional (number of classes)'}
# Flags that change the course of training but not the network: a resumed run may
# change them, with a note.
_TRAINING_FLAGS = ('data_set', 'learning_rate', 'lr_decay', 'batch_size', 'nr_gpu', 'dropout_p',
                   'polyak_decay', 'focal_loss', 'focal_gamma', 'seed', 'precision',
                   'eval_precision')


def _train_flags():
    """The flags of flags.py that train.py uses (not sample.py's own)."""
    return [FLAGS[name] for name in train_flags.TRAIN_FLAGS]


for _flag in _train_flags():
    absl_flags.declare_key_flag(_flag.name)  # listed by --helpshort


def arguments_from_flags():
    """Every flag of train.py as a plain namespace (the one place FLAGS is read)."""
    cli.refuse_flags_of('sample.py', [n for n in train_flags.sample_flags()
                                      if n not in train_flags.TRAIN_FLAGS], 'train.py')
    from pixel_cnn_pp.config import ModelConfig

    values = {f.name: f.value for f in _train_flags()}
    # As used (and written to flags.json): paths with ~ expanded, levels as numbers.
    for name in ('data_dir', 'save_dir', 'init_checkpoint'):
        values[name] = values[name] and os.path.expanduser(values[name])
    values['nl_levels'] = [int(level) for level in values['nl_levels']]
    args = types.SimpleNamespace(**values)
    args.flag_values = values
    args.focal_gamma = args.focal_gamma if args.focal_loss else 0.0
    args.option_flags = {name: _OPTION_FLAGS.get(name) or '%s--%s' % (
        '-%s/' % FLAGS[name].short_name if FLAGS[name].short_name else '', name)
        for name in ModelConfig.field_names()}
    return args


def load_data(args, towers):
    """The train loader (shuffled, global batches) and the test loader (all images)."""
    from pixel_cnn_pp.progress import download_display

    opts = loader_options(args.data_set, args.image_size, args.download, download_display)
    global_batch = args.batch_size * towers
    rng = np.random.RandomState(args.seed)  # the shuffling order, as the original
    try:
        train = get_loader(args.data_set, args.data_dir, 'train', global_batch, rng=rng,
                           shuffle=True, return_labels=args.class_conditional, **opts)
    except DataError:
        raise  # a data problem: its own message names the file and what to do
    except ValueError as e:  # e.g. fewer images than one batch
        raise ValueError('--batch_size %d x %d towers = %d images per step: %s'
                         % (args.batch_size, towers, global_batch, e)) from None
    # Every test image is evaluated (Trainer.evaluate pads the last batch), so the
    # test loader only holds the arrays.
    test = get_loader(args.data_set, args.data_dir, 'test', 1, shuffle=False,
                      return_labels=args.class_conditional, **opts)
    if args.init_batch_size > len(train.data):
        raise ValueError('--init_batch_size %d is larger than the train set (%d images)'
                         % (args.init_batch_size, len(train.data)))
    check_splits(args, train, test)
    return train, test


def _split(args, subset):
    """How messages name a subset: its folder for -d folder, else the set and --data_dir."""
    if args.data_set == 'folder':
        return 'the %s images in %s' % (subset, os.path.join(args.data_dir, subset))
    return 'the %s set of -d %s (in %s)' % (subset, args.data_set, args.data_dir)


def _size_hint(args):
    if args.data_set == 'folder':
        return '; pass --image_size N to resize every image to N x N'
    if args.data_set == 'imagenet':
        return '; --image_size picks Small ImageNet 32 or 64'
    return ''


def check_splits(args, train, test):
    """Refuse, before any training, a test set that the model of the train set cannot take."""
    train_shape = tuple(int(d) for d in train.get_observation_size())
    test_shape = tuple(int(d) for d in test.get_observation_size())
    if test_shape != train_shape:
        raise DataError('%s are %s, but %s are %s: both must be one size and channels%s'
                        % (_split(args, 'test'), 'x'.join(map(str, test_shape)),
                           _split(args, 'train'), 'x'.join(map(str, train_shape)),
                           _size_hint(args)))
    if args.class_conditional:
        classes = train.get_num_labels()
        if test.get_num_labels() != classes or (len(test.labels) and test.labels.max() >= classes):
            raise DataError('-c/--class_conditional: %s have %s classes, but %s have %s: both '
                            'must have the same classes'
                            % (_split(args, 'test'), test.get_num_labels(),
                               _split(args, 'train'), classes))


def model_config(args, train):
    """The ModelConfig of the flags (by field name) and the data's image shape and classes."""
    from pixel_cnn_pp.config import ModelConfig

    shape = tuple(int(d) for d in train.get_observation_size())
    try:
        return ModelConfig.from_values(
            args.flag_values, image_shape=shape,
            num_classes=int(train.get_num_labels()) if args.class_conditional else 0)
    except ValueError as e:
        if not str(e).startswith("'image_shape'"):
            raise
        h, w = shape[:2]
        sizes = sorted({max(4, n - n % 4) for n in (h, w)} | {n + -n % 4 for n in (h, w)})
        raise DataError('%s are %s, which the network cannot take (%s)%s%s'
                        % (_split(args, 'train'), 'x'.join(map(str, shape)), e,
                           _size_hint(args), ', e.g. --image_size %s' % ' or '.join(
                               map(str, sizes)) if args.data_set == 'folder' else '')) from None


def check_resumable(checkpoint, config, option_flags):
    """Raise ValueError if the checkpoint was trained with another network."""
    from pixel_cnn_pp import checkpoints
    from pixel_cnn_pp.config import TRAINING_ONLY

    stored = checkpoints.read_model_config(checkpoint)
    if stored is None:
        return  # Trainer.restore still checks every variable
    differences = ['%s: %r in the checkpoint, %r now' % (option_flags[name], theirs, ours)
                   for name, (theirs, ours) in stored.diff(config, ignore=TRAINING_ONLY).items()]
    if differences:
        raise ValueError('-r/--load_params: the checkpoint %s was trained with another model '
                         'configuration (%s); resume with the same options, or start a new run '
                         'in another --save_dir' % (checkpoint, '; '.join(differences)))


def note_changed_flags(save_dir, values):
    """Print a note for each training flag that differs from the run's last invocation."""
    from pixel_cnn_pp import run as training_run

    invocations = training_run.read_invocations(save_dir)
    before = invocations[-1].get('flags') if invocations else None
    if not isinstance(before, dict):
        return
    for name in _TRAINING_FLAGS:
        if name in before and before[name] != values.get(name):
            print('note: resuming with --%s %s (the run so far used %s)'
                  % (name, values.get(name), before[name]))


def resume_point(args):
    """(our checkpoint to continue, or None; a checkpoint to start from, or None).

    -r continues our latest checkpoint in --save_dir; with none there but OpenAI's
    params_<data_set>.ckpt, it starts from that one's weights, as the original's -r.
    --init_checkpoint starts a new run from any checkpoint.
    """
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(args.save_dir) if os.path.isdir(args.save_dir) else None
    if latest is None:
        latest = _newest_without_state_file(args)
    if args.load_params and latest is None:
        openai = os.path.join(args.save_dir, 'params_%s.ckpt' % args.data_set)
        if os.path.exists(openai + '.index'):
            return None, openai
        raise FileNotFoundError('-r/--load_params: no checkpoint to resume in --save_dir %s (it '
                                'has no "checkpoint" file written by train.py, nor OpenAI\'s %s); '
                                'run without -r to start training'
                                % (args.save_dir, os.path.basename(openai) + '.index'))
    if not args.load_params and latest is not None:
        raise ValueError('--save_dir %s already holds a training run (%s): resume it with -r, '
                         'or pass another --save_dir' % (args.save_dir, os.path.basename(latest)))
    if args.init_checkpoint:
        return None, args.init_checkpoint
    return latest, None


def _newest_without_state_file(args):
    """Our newest checkpoint when the "checkpoint" state file is unreadable or missing, or None.

    The state file (written by tf.train.CheckpointManager) is what finds a run's
    checkpoints; when it is damaged they are still there, and a new run must never
    be started over them. -r resumes from the newest one if it reads whole;
    otherwise it says which files to move away (an older checkpoint is never taken
    silently: that would drop the epochs after it).
    """
    from pixel_cnn_pp import checkpoints

    ours = checkpoints.numbered_checkpoints(args.save_dir)
    if not ours:
        return None
    newest = ours[-1][1]
    state = '"%s" state file' % checkpoints.STATE_FILE
    problem = ('could not be read (or names no checkpoint there)'
               if os.path.exists(os.path.join(args.save_dir, checkpoints.STATE_FILE))
               else 'is missing')
    if not args.load_params:
        raise ValueError('--save_dir %s holds a training run (%s), but its %s %s: resume it with '
                         '-r (from %s), or pass another --save_dir'
                         % (args.save_dir, ', '.join(os.path.basename(p) for _, p in ours),
                            state, problem, os.path.basename(newest)))
    try:
        checkpoints.check_intact(newest)
    except ValueError as e:
        older = (' to resume from %s, the newest before it' % os.path.basename(ours[-2][1])
                 if len(ours) > 1 else '')
        raise ValueError('-r/--load_params: the %s of --save_dir %s %s, and %s; move %s.* out '
                         'of the folder%s' % (state, args.save_dir, problem, e,
                                              os.path.basename(newest), older)) from None
    print('note: the %s of --save_dir %s %s; resuming from the newest checkpoint, %s (the state '
          'file is written anew at the next save)'
          % (state, args.save_dir, problem, os.path.basename(newest)))
    return newest


def _writes_save_dir(args):
    """False on a worker of a multi-worker run that is not the chief (it writes nothing)."""
    from pixel_cnn_pp import distribute

    if not args.multi_worker:
        return True
    return distribute.is_chief_task(*distribute.cluster_of_tf_config(os.environ.get('TF_CONFIG')))


def run(args):
    """Train as the original train.py does, from plain arguments."""
    from pixel_cnn_pp import distribute  # first: it imports TensorFlow quietly
    from pixel_cnn_pp import files

    # First, before TensorFlow starts (importing it does not): logical CPU devices
    # can only be made then. Too many towers for this machine are refused here, at once.
    devices = distribute.configure_devices(args.nr_gpu, args.multi_worker)
    cli.warn_about_precision(args.precision)
    if args.init_checkpoint and args.load_params:
        raise ValueError('--init_checkpoint starts a new run and -r/--load_params continues one '
                         'in --save_dir: pass one of them')
    # Before anything is read or written: --save_dir is ours alone (and can be written)
    # until this process ends; a signal now ends it with the lock released.
    with cli.signals_end_the_program(), contextlib.ExitStack() as stack:
        if _writes_save_dir(args):
            stack.enter_context(files.FolderLock(args.save_dir, what='--save_dir'))
        try:
            train_in_save_dir(args, devices)
        except (distribute.WaitStopped, cli.SignalStop) as e:
            print('train.py: %s; no checkpoint was written' % e, file=sys.stderr)
            sys.exit(128 + e.signum)


def train_in_save_dir(args, devices):
    """The run, once --save_dir is locked."""
    from pixel_cnn_pp import distribute
    from pixel_cnn_pp import run as training_run
    from pixel_cnn_pp.training import Trainer

    latest, start_from = resume_point(args)
    strategy = distribute.make_strategy(devices, args.multi_worker, args.worker_timeout)
    towers = strategy.num_replicas_in_sync
    train, test = load_data(args, towers)
    config = model_config(args, train)
    if latest:
        check_resumable(latest, config, args.option_flags)
    trainer = Trainer(strategy, config, args.batch_size, learning_rate=args.learning_rate,
                      lr_decay=args.lr_decay, polyak_decay=args.polyak_decay,
                      focal_gamma=args.focal_gamma, seed=args.seed, jit_compile=args.jit_compile,
                      precision=args.precision, eval_precision=args.eval_precision)
    print('%s; %d images per step (%d per tower); model: %s'
          % (distribute.describe_towers(devices, args.multi_worker), trainer.global_batch_size,
             args.batch_size, trainer.model.describe()))
    record = training_run.begin(trainer, train, latest, args.init_batch_size,
                                start_from=start_from)
    if latest:
        note_changed_flags(args.save_dir, args.flag_values)
    outputs = training_run.RunOutputs(
        args.save_dir, trainer, args.data_set, sample_batches=args.num_samples, seed=args.seed,
        keep_checkpoints=args.keep_checkpoints, chief=distribute.is_chief(strategy),
        settings=args.flag_values)
    try:
        with outputs.recording_outcome():
            training_run.train_epochs(
                trainer, train, lambda: to_tf_dataset(train), test.data,
                test.labels if args.class_conditional else None, record, outputs,
                args.max_epochs, save_steps=args.save_steps, sample_interval=args.save_interval,
                stop=training_run.StopRequest())
    except training_run.Stopped as e:
        print('\nstopped by signal %d %s: saved %s; continue with -r'
              % (e.signum, e.where, e.path or '(not the chief worker)'))
        sys.exit(128 + e.signum)


# OSError: a file that cannot be written (a full disk names the file or folder), and
# the time-out of --multi_worker's wait (TimeoutError).
main = cli.main_for('train.py', arguments_from_flags, run,
                    errors=(ValueError, OSError, FloatingPointError))

if __name__ == '__main__':
    app.run(main)
