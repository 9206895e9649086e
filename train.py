"""Trains a PixelCNN++ on CIFAR-10, Small ImageNet, MNIST, your images, or the bundled patches.

One tower per GPU, as the original (--nr_gpu); on a machine without a GPU, one
tower per logical CPU device. Across machines with --multi_worker and TF_CONFIG.

    python3 train.py --nr_gpu 8 -ac -nl                       # CIFAR-10 on 8 GPUs
    CUDA_VISIBLE_DEVICES=0,1 python3 train.py --nr_gpu 2
    python3 train.py -d patches -q 1 -n 32 -g 1 -x 2 -o /tmp/pxpp/patches   # a few CPU minutes
    python3 train.py -r -o /tmp/pxpp/patches -d patches -q 1 -n 32 -g 1 -x 4  # continue it

Writes into --save_dir: flags.json, pixelcnn_config.json, checkpoints ckpt-N (after
every epoch, every --save_steps steps, and on SIGTERM/SIGINT), test_bpd_<data_set>.npz,
<data_set>_sample<epoch>.png/.npz every --save_interval epochs, TensorBoard events in tb/.
`-r` continues the latest checkpoint exactly: the same batches, dropout masks and
updates as if the run had never stopped.
"""

import json
import math
import os
import signal
import sys
import time
import types

import numpy as np
from absl import app
from absl import flags as absl_flags
from absl import logging

import flags as train_flags
from data.loader import DataError, get_loader, to_tf_dataset

# TensorFlow and the library that needs it are imported in the functions that use
# them, after the flags are parsed: a bad flag or --help answers at once, without
# TensorFlow's start-up lines.

FLAGS = absl_flags.FLAGS

# Model options and the flags that set them, for messages.
_OPTION_FLAGS = {
    'image_shape': '--data_set/--image_size (image shape)', 'nr_resnet': '-q/--nr_resnet',
    'nr_filters': '-n/--nr_filters', 'nr_logistic_mix': '-m/--nr_logistic_mix',
    'resnet_nonlinearity': '-z/--resnet_nonlinearity',
    'num_classes': '-c/--class_conditional (number of classes)', 'add_coords': '-ac/--add_coords',
    'non_local': '-nl/--non_local', 'nl_levels': '--nl_levels',
    'energy_distance': '-ed/--energy_distance',
}
# Flags that change the course of training but not the network: a resumed run may
# change them, with a note.
_TRAINING_FLAGS = ('data_set', 'learning_rate', 'lr_decay', 'batch_size', 'nr_gpu', 'dropout_p',
                   'polyak_decay', 'focal_loss', 'focal_gamma', 'seed')


def _train_flags():
    """The flags of flags.py that train.py uses (not sample.py's own)."""
    return [FLAGS[name] for name in train_flags.TRAIN_FLAGS]


for _flag in _train_flags():
    absl_flags.declare_key_flag(_flag.name)  # listed by --helpshort


def arguments_from_flags():
    """Every flag of train.py as a plain namespace (the one place FLAGS is read)."""
    values = {f.name: f.value for f in _train_flags()}
    args = types.SimpleNamespace(**values)
    args.flag_values = values
    args.data_dir = os.path.expanduser(args.data_dir)
    args.save_dir = os.path.expanduser(args.save_dir)
    args.nl_levels = [int(v) for v in args.nl_levels]
    args.focal_gamma = args.focal_gamma if args.focal_loss else 0.0
    return args


# ------------------------------------------------------------------ set-up


def _loader_options(args):
    opts = {}
    if args.image_size is not None:
        if args.data_set not in ('imagenet', 'folder'):
            raise ValueError('--image_size applies to --data_set imagenet (32 or 64) and folder '
                             '(resize), not to %s' % args.data_set)
        opts['image_size'] = args.image_size
    if args.data_set in ('cifar', 'mnist'):
        opts['download'] = args.download
    return opts


def load_data(args, towers):
    """The train loader (shuffled, global batches) and the test loader (all images)."""
    opts = _loader_options(args)
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
    return train, test


def model_options(args, train):
    """PixelCNN options from the flags and the data's image shape."""
    return dict(image_shape=tuple(int(d) for d in train.get_observation_size()),
                nr_resnet=args.nr_resnet, nr_filters=args.nr_filters,
                nr_logistic_mix=args.nr_logistic_mix,
                resnet_nonlinearity=args.resnet_nonlinearity,
                num_classes=int(train.get_num_labels()) if args.class_conditional else 0,
                dropout_p=args.dropout_p, add_coords=args.add_coords, non_local=args.non_local,
                nl_levels=args.nl_levels, energy_distance=args.energy_distance)


def check_resumable(checkpoint, options):
    """Raise ValueError if the checkpoint was trained with other model options."""
    from pixel_cnn_pp import checkpoints
    from pixel_cnn_pp.model import DEFAULTS

    stored = checkpoints.read_model_config(checkpoint)
    if stored is None:
        return  # Trainer.restore still checks every variable

    def plain(value):  # JSON keeps lists; the model keeps nl_levels sorted
        return list(value) if isinstance(value, (list, tuple)) else value

    differences = []
    for key, flag in _OPTION_FLAGS.items():
        ours, theirs = plain(options[key]), plain(stored.get(key, DEFAULTS.get(key)))
        if key == 'nl_levels':
            if not (options['non_local'] or stored.get('non_local')):
                continue  # unused
            ours = sorted(set(ours))
        if ours != theirs:
            differences.append('%s: %r in the checkpoint, %r now' % (flag, theirs, ours))
    if differences:
        raise ValueError('-r/--load_params: the checkpoint %s was trained with another model '
                         'configuration (%s); resume with the same options, or start a new run '
                         'in another --save_dir' % (checkpoint, '; '.join(differences)))


def note_changed_flags(save_dir, values):
    """Print a note for each training flag that differs from the run's flags.json."""
    path = os.path.join(save_dir, 'flags.json')
    try:
        with open(path) as f:
            before = json.load(f)
    except (OSError, ValueError):
        return
    for name in _TRAINING_FLAGS:
        if name in before and before[name] != values.get(name):
            print('note: resuming with --%s %s (the run so far used %s)'
                  % (name, values.get(name), before[name]))


# ------------------------------------------------------------ the run loop


class ProgressBar:
    """One line per epoch: steps done, images/s, running bits/dim; redrawn in place on a TTY."""

    def __init__(self, epoch, total_steps, images_per_step, done_steps=0, unit='bits/dim',
                 stream=sys.stderr):
        self.epoch, self.total, self.images_per_step = epoch, total_steps, images_per_step
        self.unit = unit
        self.done, self.stream = done_steps, stream
        self.tty = stream.isatty()
        self.first_time = None  # after the first step (which includes compiling)
        self.first_done = done_steps
        self.last_draw = 0.0

    def update(self, running_bpd):
        self.done += 1
        now = time.time()
        if self.first_time is None:
            self.first_time, self.first_done = now, self.done
        interval = 0.2 if self.tty else 60.0
        if now - self.last_draw >= interval or self.done == self.total:
            self.last_draw = now
            self._draw(now, running_bpd)

    def images_per_sec(self, now=None):
        """Images/s since the first step of this epoch (None before the second step)."""
        steps = self.done - self.first_done
        if not steps:
            return None
        return steps * self.images_per_step / ((now or time.time()) - self.first_time)

    def _draw(self, now, running_bpd):
        rate = self.images_per_sec(now)
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        eta = (self.total - self.done) * self.images_per_step / rate if rate else 0
        line = ('epoch %d %s %d/%d  %s images/s  %.4f %s  eta %ds'
                % (self.epoch, '[' + '=' * filled + ' ' * (width - filled) + ']', self.done,
                   self.total, '%.1f' % rate if rate else '-', running_bpd, self.unit, eta))
        if self.tty:
            self.stream.write('\r' + line + '\033[K')
        else:
            self.stream.write(line + '\n')
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write('\n')
            self.stream.flush()


class StopRequest:
    """SIGTERM or SIGINT: finish the step, save a checkpoint, exit. A second SIGINT aborts."""

    def __init__(self):
        self.signum = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signum = signum


def fresh_progress():
    """The JSON record kept in every checkpoint: where the run is, and its history."""
    return dict(epoch=0, position=0, loader=None, epoch_bpd_sum=0.0, epoch_steps=0,
                history=dict(epoch=[], train_bpd=[], test_bpd=[]))


class Outputs:
    """What a run writes into --save_dir: checkpoints, summaries, samples, test_bpd_<set>.npz.

    Only the chief worker writes; the others keep nothing (the chief's files are
    the run's).
    """

    def __init__(self, args, trainer, chief):
        import tensorflow as tf

        from pixel_cnn_pp import checkpoints, files

        self.args, self.trainer, self.chief = args, trainer, chief
        if chief:
            os.makedirs(args.save_dir, exist_ok=True)
            files.write_json(os.path.join(args.save_dir, 'flags.json'), args.flag_values)
            checkpoints.save_model_config(args.save_dir, trainer.model)
            self.writer = tf.summary.create_file_writer(os.path.join(args.save_dir, 'tb'))
        else:
            self.writer = tf.summary.create_noop_writer()
        self.manager = tf.train.CheckpointManager(trainer.checkpoint, args.save_dir,
                                                  args.keep_checkpoints, checkpoint_name='ckpt')

    def save(self, progress):
        """A checkpoint with `progress`; its path (None on a worker that is not the chief)."""
        return self.trainer.save(self.manager, progress) if self.chief else None

    def scalars(self, step, **values):
        from pixel_cnn_pp.training import summary_scalar

        with self.writer.as_default():
            for name, value in values.items():
                summary_scalar(name.replace('__', '/'), value, step)

    def samples(self, epoch):
        """num_samples batches from the averaged weights: PNG grid, .npz, TensorBoard image."""
        from pixel_cnn_pp import images, sampling
        from pixel_cnn_pp.training import summary_image

        if not self.chief:
            return
        args, trainer = self.args, self.trainer
        n = args.num_samples * trainer.global_batch_size
        model = trainer.averaged_model()
        labels = (np.mod(np.arange(n), model.num_classes).astype(np.int32)
                  if model.num_classes else None)  # every class in turn, as the original
        start = time.time()
        samples = sampling.sample(model, n, labels=labels, seed=args.seed + epoch)
        name = os.path.join(args.save_dir, '%s_sample%d' % (args.data_set, epoch))
        images.save_image_grid(name + '.png', samples)
        arrays = dict(samples=samples) if labels is None else dict(samples=samples, labels=labels)
        images.save_npz(name + '.npz', **arrays)
        with self.writer.as_default():
            summary_image('samples', images.tile_images(samples[:100]),
                          int(trainer.step.numpy()))
        print('wrote %d samples to %s.png/.npz (%.0fs)' % (n, name, time.time() - start))

    def history(self, history):
        from pixel_cnn_pp import images

        if self.chief:
            images.save_npz(os.path.join(self.args.save_dir,
                                         'test_bpd_%s.npz' % self.args.data_set),
                            test_bpd=np.array(history['test_bpd']),
                            train_bpd=np.array(history['train_bpd']),
                            epoch=np.array(history['epoch']))


def resume_point(args):
    """(our checkpoint to continue, or None; a checkpoint to start from, or None).

    -r continues our latest checkpoint in --save_dir; with none there but OpenAI's
    params_<data_set>.ckpt, it starts from that one's weights, as the original's -r.
    --init_checkpoint starts a new run from any checkpoint.
    """
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(args.save_dir) if os.path.isdir(args.save_dir) else None
    if args.init_checkpoint and args.load_params:
        raise ValueError('--init_checkpoint starts a new run and -r/--load_params continues one '
                         'in --save_dir: pass one of them')
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
        return None, os.path.expanduser(args.init_checkpoint)
    return latest, None


def run(args):
    """Train as the original train.py does, from plain arguments."""
    from pixel_cnn_pp import distribute  # first: it imports TensorFlow quietly
    from pixel_cnn_pp.training import Trainer

    # First, before TensorFlow starts (importing it does not): logical CPU devices
    # can only be made then.
    devices = distribute.configure_devices(args.nr_gpu, args.multi_worker)
    latest, start_from = resume_point(args)

    strategy = distribute.make_strategy(devices, args.multi_worker)
    towers = strategy.num_replicas_in_sync
    train, test = load_data(args, towers)
    options = model_options(args, train)
    if latest:
        check_resumable(latest, options)
    trainer = Trainer(strategy, options, args.batch_size, learning_rate=args.learning_rate,
                      lr_decay=args.lr_decay, polyak_decay=args.polyak_decay,
                      focal_gamma=args.focal_gamma, seed=args.seed, jit_compile=args.jit_compile)
    print('%s; %d images per step (%d per tower); model: %s'
          % (distribute.describe_towers(devices, args.multi_worker), trainer.global_batch_size,
             args.batch_size, trainer.model.describe()))

    if latest:
        progress = trainer.restore(latest)
        if progress.get('loader') is not None:
            train.set_state(progress['loader'])
        print('resuming from %s: epoch %d, step %d, %d images into the epoch'
              % (latest, progress['epoch'], int(trainer.step.numpy()), progress['position']))
        note_changed_flags(args.save_dir, args.flag_values)
    elif start_from:
        # Checked against the flags' model (every option, name and shape) before any step.
        prefix = trainer.start_from(start_from)
        progress = fresh_progress()
        print('starting from the weights and averages of %s (fresh Adam, epoch 0, learning rate '
              '%g)' % (prefix, args.learning_rate))
    else:
        progress = fresh_progress()
        print('initializing the model on %d images...' % args.init_batch_size)
        batch = train.next(args.init_batch_size)
        train.reset()  # rewind the iterator back to 0 to do one full epoch
        x, y = batch if args.class_conditional else (batch, None)
        trainer.initialize(x, y)
    train_epochs(args, trainer, train, test, progress,
                 Outputs(args, trainer, distribute.is_chief(strategy)))


def train_epochs(args, trainer, train, test, progress, out):
    """The original's loop: epochs of steps, test bits/dim, samples, checkpoints."""
    from pixel_cnn_pp.training import bits_per_dim_of

    stop = StopRequest()
    global_batch, image_shape = trainer.global_batch_size, trainer.image_shape
    history = progress['history']
    # An energy-distance model has no likelihood: the original prints its loss, scaled
    # the same way, as bits_per_dim; here it is named for what it is.
    measure = 'energy_distance_per_dim' if args.energy_distance else 'bits_per_dim'

    def stop_now(where):
        path = out.save(progress)
        print('\nstopped by signal %d %s: saved %s; continue with -r'
              % (stop.signum, where, path or '(not the chief worker)'))
        sys.exit(128 + stop.signum)

    if progress['epoch'] >= args.max_epochs:
        print('nothing to do: the run has done %d epochs, --max_epochs is %d'
              % (progress['epoch'], args.max_epochs))
    for epoch in range(progress['epoch'], args.max_epochs):
        begin = time.time()
        bar = ProgressBar(epoch, len(train), global_batch, progress['epoch_steps'],
                          unit=measure.replace('_per_', '/'))
        for batch in to_tf_dataset(train):
            x, y = batch if args.class_conditional else (batch, None)
            objective, nll = (float(v) for v in trainer.train_step(x, y))
            step = int(trainer.step.numpy())
            if not (math.isfinite(nll) and math.isfinite(objective)):
                raise FloatingPointError(
                    'the training loss is %s at step %d (epoch %d): stopping without saving; the '
                    'last good checkpoint (%s) is kept. Try a lower --learning_rate'
                    % (objective if math.isfinite(nll) else nll, step, epoch,
                       out.manager.latest_checkpoint or 'none yet'))
            bpd = bits_per_dim_of(nll, global_batch, image_shape)
            progress['position'] += global_batch
            progress['epoch_bpd_sum'] += bpd
            progress['epoch_steps'] += 1
            bar.update(progress['epoch_bpd_sum'] / progress['epoch_steps'])
            if step % 10 == 0 or step == 1:
                out.scalars(step, **{'train__' + measure: bpd,
                                     'train__learning_rate': trainer.learning_rate.numpy()})
            last_step = progress['epoch_steps'] == len(train)  # the epoch's save follows
            if stop.signum is not None or (args.save_steps and step % args.save_steps == 0
                                           and not last_step):
                # The loader runs ahead (prefetch): record the images actually used.
                progress['loader'] = train.get_state(position=progress['position'])
                if stop.signum is not None:
                    stop_now('at step %d' % step)
                out.save(progress)
        bar.close()

        train_bpd = progress['epoch_bpd_sum'] / max(progress['epoch_steps'], 1)
        nats, count = trainer.evaluate(test.data,
                                       test.labels if args.class_conditional else None)
        test_bpd = bits_per_dim_of(nats, count, image_shape)
        history['epoch'].append(epoch)
        history['train_bpd'].append(train_bpd)
        history['test_bpd'].append(test_bpd)
        print('Iteration %d, time = %ds, train %s = %.4f, test %s = %.4f'
              % (epoch, time.time() - begin, measure, train_bpd, measure, test_bpd))
        sys.stdout.flush()
        scalars = {'train__epoch_' + measure: train_bpd, 'test__' + measure: test_bpd}
        if bar.images_per_sec():
            scalars['train__images_per_sec'] = bar.images_per_sec()
        out.scalars(int(trainer.step.numpy()), **scalars)

        if args.num_samples and (epoch % args.save_interval == 0 or epoch == args.max_epochs - 1):
            out.samples(epoch)
        progress.update(epoch=epoch + 1, position=0, epoch_bpd_sum=0.0, epoch_steps=0,
                        loader=train.get_state())
        path = out.save(progress)
        out.history(history)
        if path:
            print('saved %s' % path)
        if stop.signum is not None:
            stop_now('after epoch %d' % epoch)
    out.writer.close()


def main(argv):
    if len(argv) > 1:
        print('train.py: error: unexpected arguments %s (flags start with - or --)'
              % ' '.join(argv[1:]), file=sys.stderr)
        sys.exit(2)
    if not FLAGS['verbosity'].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines are noise here
    args = arguments_from_flags()
    try:
        run(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print('train.py: error: %s' % e, file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    app.run(main)
