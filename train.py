"""Trains a PixelCNN++ on CIFAR-10, Small ImageNet, MNIST, your images, or the bundled patches.

One tower per GPU, as the original (--nr_gpu); on a machine without a GPU, one
tower per logical CPU device. Across machines with --multi_worker and TF_CONFIG, or
as the tasks of a Slurm job step (srun; see the README's sbatch script).

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
import functools
import os
import sys
import types

import numpy as np
from absl import app
from absl import flags as absl_flags

import cli
import flags as train_flags
from pixel_cnn_pp.data.loader import (DataError, check_splits, describe_split, size_hint,
                                      to_tf_dataset)

# The library (which imports TensorFlow) is imported in the functions that use it,
# after the flags are parsed: a bad flag or --help answers at once.

FLAGS = absl_flags.FLAGS

# The library's arguments not given by a flag of their own name: the flag that gives each,
# or how messages say it (cli.in_flag_words).
ARGUMENTS = {'image_shape': '--data_set/--image_size (image shape)',
             'num_classes': '-c/--class_conditional (number of classes)',
             'resume': 'load_params', 'start_from': 'init_checkpoint'}
# Settings that change the course of training but not the network: a resumed run may
# change them, with a note.
TRAINING_SETTINGS = ('data_set', 'learning_rate', 'lr_decay', 'batch_size', 'nr_gpu',
                     'dropout_p', 'polyak_decay', 'focal_loss', 'focal_gamma', 'seed',
                     'precision', 'eval_precision', 'deterministic')
# Settings a resumed run keeps from the run so far unless its command line sets them:
# on GPUs, -r continues exactly only with deterministic kernels, as the run began.
KEPT_SETTINGS = ('deterministic',)


def _train_flags():
    """The flags of flags.py that train.py uses (not sample.py's own)."""
    return [FLAGS[name] for name in train_flags.TRAIN_FLAGS]


for _flag in _train_flags():
    absl_flags.declare_key_flag(_flag.name)  # listed by --helpshort


def arguments_from_flags():
    """Every flag of train.py as a plain namespace (the one place FLAGS is read)."""
    cli.refuse_flags_of('sample.py', [n for n in train_flags.sample_flags()
                                      if n not in train_flags.TRAIN_FLAGS], 'train.py')
    cli.refuse_flags_of('compress.py', train_flags.COMPRESS_FLAGS, 'train.py')
    values = {f.name: f.value for f in _train_flags()}
    # As used (and written to flags.json): paths with ~ expanded, levels as numbers.
    for name in ('data_dir', 'save_dir', 'init_checkpoint'):
        values[name] = values[name] and os.path.expanduser(values[name])
    values['nl_levels'] = [int(level) for level in values['nl_levels']]
    args = types.SimpleNamespace(**values)
    args.flag_values = values
    args.given = {f.name for f in _train_flags() if f.present}  # on this command line
    args.focal_gamma = args.focal_gamma if args.focal_loss else 0.0
    return args


def load_data(args, towers):
    """The train loader (shuffled, global batches) and the test loader (all images)."""
    global_batch = args.batch_size * towers
    rng = np.random.RandomState(args.seed)  # the shuffling order, as the original
    try:
        train = cli.data_loader(args, 'train', global_batch, rng=rng, shuffle=True,
                                return_labels=args.class_conditional)
    except DataError:
        raise  # a data problem: its own message names the file and what to do
    except ValueError as e:  # e.g. fewer images than one batch
        raise ValueError('--batch_size %d x %d towers = %d images per step: %s'
                         % (args.batch_size, towers, global_batch, e)) from None
    # Every test image is evaluated (Trainer.evaluate pads the last batch), so the
    # test loader only holds the arrays.
    test = cli.data_loader(args, 'test', 1, shuffle=False, return_labels=args.class_conditional)
    if args.init_batch_size > len(train.data):
        raise ValueError('--init_batch_size %d is larger than the train set (%d images)'
                         % (args.init_batch_size, len(train.data)))
    check_splits(train, test, args.data_set, args.data_dir, args.class_conditional)
    return train, test


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
        example = (', e.g. --image_size %s' % ' or '.join(map(str, sizes))
                   if args.data_set == 'folder' else '')
        raise DataError('%s are %s, which the network cannot take (%s)%s%s'
                        % (describe_split(args.data_set, args.data_dir, 'train'),
                           'x'.join(map(str, shape)), e, size_hint(args.data_set),
                           example)) from None


def run(args):
    """Train as the original train.py does, from plain arguments."""
    from pixel_cnn_pp import distribute
    from pixel_cnn_pp.run_folder import RunFolder
    from pixel_cnn_pp.signals import Stopped, signals_raise

    # First, before TensorFlow starts (importing it does not): logical CPU devices
    # can only be made then. Too many towers for this machine are refused here, at once.
    # A cluster's workers (TF_CONFIG or srun) on one host each take their own GPUs.
    cluster = distribute.find_cluster(args.worker_port) if args.multi_worker else None
    devices = distribute.configure_devices(args.nr_gpu, cluster=cluster)
    cli.warn_about_precision(args.precision)
    if args.init_checkpoint and args.load_params:
        raise ValueError('--init_checkpoint starts a new run and -r/--load_params continues one '
                         'in --save_dir: pass one of them')
    # Before anything is read or written: --save_dir is ours alone (and can be written)
    # until this process ends; a signal now ends it with the lock released.
    stopped = functools.partial(Stopped, where='before training began')
    with signals_raise(stopped), contextlib.ExitStack() as stack:
        if cluster is None or cluster.is_chief:  # the other workers write nothing there
            stack.enter_context(RunFolder(args.save_dir).lock(log=say))
        try:
            train_in_save_dir(args, devices, cluster)
        except Stopped as e:  # before training began, or while waiting for the workers
            print('train.py: %s; no checkpoint was written' % e, file=sys.stderr)
            sys.exit(128 + e.signum)


def train_in_save_dir(args, devices, cluster=None):
    """The run, once --save_dir is locked (by the chief of a cluster)."""
    from pixel_cnn_pp import distribute, workers
    from pixel_cnn_pp import run as training_run
    from pixel_cnn_pp.run_folder import RunFolder
    from pixel_cnn_pp.signals import Stopped
    from pixel_cnn_pp.training import Trainer

    strategy = distribute.make_strategy(devices, worker_timeout=args.worker_timeout,
                                        cluster=cluster)
    if cluster is not None:  # one shared --save_dir, one command, own GPUs; or all refuse
        workers.check_same_run(strategy, cluster, args.save_dir, args.flag_values, devices)
    folder = RunFolder(args.save_dir)
    latest, start_from = folder.resume_point(args.load_params, args.data_set,
                                             args.init_checkpoint, log=say)
    if latest:  # -r keeps --deterministic unless this command line says otherwise
        kept = folder.kept_settings(KEPT_SETTINGS, args.given)
        args.flag_values.update(kept)
        vars(args).update(kept)
    if args.deterministic:  # before the model's first op
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    towers = strategy.num_replicas_in_sync
    train, test = load_data(args, towers)
    config = model_config(args, train)
    if latest:
        folder.check_resumable(latest, config)
    trainer = Trainer(strategy, config, args.batch_size, learning_rate=args.learning_rate,
                      lr_decay=args.lr_decay, polyak_decay=args.polyak_decay,
                      focal_gamma=args.focal_gamma, seed=args.seed, jit_compile=args.jit_compile,
                      precision=args.precision, eval_precision=args.eval_precision)
    print('%s; %d images per step (%d per tower)%s; model: %s'
          % (distribute.describe_towers(devices, args.multi_worker), trainer.global_batch_size,
             args.batch_size, '; deterministic kernels' if distribute.op_determinism() else '',
             trainer.model.describe()))
    record = training_run.begin(trainer, train, latest, args.init_batch_size,
                                start_from=start_from)
    if cluster is not None:  # the chief's weights everywhere; the rest checked equal
        workers.align_state(strategy, trainer, train, 'restoring %s' % latest if latest
                            else 'the initialisation')
    for name, before, now in folder.changed_settings(args.flag_values, TRAINING_SETTINGS) \
            if latest else ():
        print('note: resuming with --%s %s (the run so far used %s)' % (name, now, before))
    outputs = training_run.RunOutputs(
        folder, trainer, args.data_set, sample_batches=args.num_samples, seed=args.seed,
        keep_checkpoints=args.keep_checkpoints, chief=distribute.is_chief(strategy),
        settings=args.flag_values)
    # A signal to one worker of a cluster stops them all after the same step.
    stop = workers.StopAcrossWorkers(strategy) if cluster else training_run.StopRequest()
    try:
        with outputs.recording_outcome(), (workers.collective_errors(trainer, outputs.manager)
                                           if cluster else contextlib.nullcontext()):
            training_run.train_epochs(
                trainer, train, lambda: to_tf_dataset(train), test.data,
                test.labels if args.class_conditional else None, record, outputs,
                args.max_epochs, save_steps=args.save_steps, sample_interval=args.save_interval,
                stop=stop)
    except Stopped as e:
        if not e.saved:
            raise
        print('\nstopped by signal %d %s: saved %s; continue with -r'
              % (e.signum, e.where, e.path or '(not the chief worker)'))
        sys.exit(128 + e.signum)


# OSError: a file that cannot be written (a full disk names the file or folder), the
# time-out of --multi_worker's wait (TimeoutError) and a lost worker (ConnectionError).
main = cli.main_for('train.py', arguments_from_flags, run,
                    errors=(ValueError, OSError, FloatingPointError),
                    flag_names=train_flags.TRAIN_FLAGS, arguments=ARGUMENTS)


def say(line):
    """Print a note of the library, its arguments said as train.py's flags."""
    print(cli.in_flag_words(line, train_flags.TRAIN_FLAGS, ARGUMENTS))

if __name__ == '__main__':
    cli.use_help(train_flags.TRAIN_PY_HELP)  # before parsing, so that --help shows it
    app.run(main)
