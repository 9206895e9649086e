"""A training run: epochs of steps, test bits/dim, samples, checkpoints, summaries, signals.

The original's train.py loop, from plain arguments and callbacks (no flags, no data
sets: the caller hands in a DataLoader and a function giving its batches). What a
run writes goes through a `RunOutputs`; the loop decides when.

    trainer = Trainer(strategy, config, batch_size=16)
    outputs = RunOutputs(RunFolder(save_dir), trainer, name='cifar', sample_batches=1, seed=1)
    record = begin(trainer, loader, resume_from=None, init_batch_size=16)
    train_epochs(trainer, loader, lambda: to_tf_dataset(loader), test_images, test_labels,
                 record, outputs, max_epochs=10, stop=StopRequest())

Per epoch: every step of the loader's epoch (a NaN or Inf loss stops the run without
saving), a scalar summary every 10 steps, a checkpoint every `save_steps` steps and
when a stop is requested, then the test bits/dim with the Polyak averages, samples
every `sample_interval` epochs (and after the first and last), a checkpoint, and the
history of bits/dim. A checkpoint holds the progress record (epoch, position in it,
the loader's state, the history), so `begin(..., resume_from=path)` continues exactly.
"""

import contextlib
import math
import os
import signal
import sys
import time

import numpy as np

from pixel_cnn_pp import images, progress as progress_display, sampling, scoring
from pixel_cnn_pp.losses import bits_per_dim
from pixel_cnn_pp.run_folder import RunFolder
from pixel_cnn_pp.signals import Stopped
from pixel_cnn_pp.summaries import Summaries
from pixel_cnn_pp.training import MIN_LOSS_SCALE

SUMMARY_EVERY = 10  # steps between scalar summaries (and at step 1)


def fresh_record():
    """The JSON record kept in every checkpoint: where the run is, and its history."""
    return dict(epoch=0, position=0, loader=None, epoch_bpd_sum=0.0, epoch_steps=0,
                epoch_bpd_steps=0,
                history=dict(epoch=[], train_bpd=[], test_bpd=[]))


class StopRequest:
    """SIGTERM or SIGINT: finish the step, save a checkpoint, stop. A second SIGINT aborts.

    Making one installs the handlers; `signum` is the signal received, or None, and
    `pending()` the signal to stop on now (the loop asks after every step; a cluster's
    workers agree on it: workers.StopAcrossWorkers).
    """

    def __init__(self):
        self.signum = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def pending(self):
        return self.signum

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signum = signum


class RunOutputs:
    """What a run writes into its folder: checkpoints, summaries, samples, history, journal.

    Only the chief worker writes (`chief=False`: a worker of a multi-worker run whose
    files would duplicate the chief's); every worker still takes part in saving.

    Args:
      folder: the run's RunFolder (or its path).
      trainer: the Trainer being run.
      name: what the sample and history files are named after (the data set).
      sample_batches: samples drawn per sampling, in global batches (0: none).
      seed: samples of epoch e are drawn with seed + e.
      keep_checkpoints: how many recent checkpoints to keep.
      settings: a JSON-ready dict (the command line of the run) recorded in the folder's
        journal as one more invocation of the run; `recording_outcome` adds how it ended.
    """

    def __init__(self, folder, trainer, name, sample_batches=1, seed=1, keep_checkpoints=3,
                 chief=True, settings=None):
        self.folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
        self.trainer, self.name, self.chief = trainer, name, chief
        # Samples and their bits are spread over this worker's towers, as training is.
        self.devices = list(trainer.strategy.extended.worker_devices)
        self.sample_batches, self.seed = sample_batches, seed
        self._invocation = None
        if chief:
            os.makedirs(self.folder.path, exist_ok=True)
            if settings is not None:
                self._invocation = self.folder.record_invocation(settings)
            self.folder.save_model_config(trainer.model.config)
        self.summaries = Summaries(self.folder.summaries_dir() if chief else None)
        self.manager = self.folder.checkpoint_manager(trainer.checkpoint, keep_checkpoints)

    def save(self, record):
        """A checkpoint holding `record` (and the run's name, for sample.py's label); its path
        (None on a worker that is not the chief)."""
        return self.trainer.save(self.manager, dict(record, name=self.name)) if self.chief \
            else None

    def scalars(self, step, values):
        self.summaries.scalars(step, values)

    def samples(self, epoch, log=print, caption=()):
        """sample_batches global batches from the averaged weights: PNG, .npz, TensorBoard.

        Drawn with seed + epoch, over this worker's towers (each draws its share). The
        PNG is upscaled to a viewable size and labelled with the data set, the epoch,
        `caption` (e.g. the test bits/dim) and the seed.
        """
        if not self.chief or not self.sample_batches:
            return
        trainer = self.trainer
        n = self.sample_batches * trainer.global_batch_size
        model = trainer.averaged_model()
        labels = model.every_class(n)
        start = time.time()
        samples = sampling.sample(model, n, labels=labels, seed=self.seed + epoch,
                                  devices=self.devices)
        path = self.folder.samples_prefix(self.name, epoch)
        label = [self.name, 'epoch %d' % epoch, *caption, 'seed %d' % (self.seed + epoch)]
        images.save_image_grid(path + '.png', samples, label=label,
                               scale=images.viewing_scale(samples.shape[1:3]))
        arrays = dict(samples=samples) if labels is None else dict(samples=samples, labels=labels)
        images.save_npz(path + '.npz', **arrays)
        if not model.energy_distance:  # and where the samples' own bits go (one colour scale)
            bits = scoring.nll_on_devices(model, samples[:100],
                                          None if labels is None else labels[:100],
                                          self.devices, per_pixel=True) / math.log(2)
            images.save_png(path + '_bits.png', scoring.heatmap_grid(samples[:100], bits)[0])
        self.summaries.image('samples', images.tile_images(samples[:100]),
                             int(trainer.step.numpy()))
        log('wrote %d samples to %s.png/.npz%s (%.0fs)' % (
            n, path, '' if model.energy_distance else ', their bits per pixel to %s_bits.png'
            % path, time.time() - start))

    def history(self, history):
        if self.chief:
            images.save_npz(self.folder.history_file(self.name),
                            test_bpd=np.array(history['test_bpd']),
                            train_bpd=np.array(history['train_bpd']),
                            epoch=np.array(history['epoch']))

    def close(self):
        self.summaries.close()

    @contextlib.contextmanager
    def recording_outcome(self):
        """Record in the journal how the block ended: finished, stopped by a signal, or failed."""
        try:
            yield
        except Stopped as e:
            self._finish(str(e))
            raise
        except BaseException as e:
            self._finish('failed: %s' % ((str(e).splitlines() or [''])[0] or type(e).__name__))
            raise
        self._finish('finished')

    def _finish(self, outcome):
        if self._invocation is not None:
            try:
                self.folder.record_outcome(self._invocation, outcome)
            except OSError as e:  # e.g. the disk is full: the error being reported matters more
                print('warning: could not record the outcome in %s: %s'
                      % (self.folder.journal_file(), e), file=sys.stderr)


def begin(trainer, loader, resume_from=None, init_batch_size=16, start_from=None, log=print):
    """The progress record to start from: a checkpoint's, or a fresh one.

    With `resume_from` (our checkpoint prefix) the trainer and the loader continue where
    that checkpoint stopped. With `start_from` (a checkpoint of ours or OpenAI's) a new
    run starts from its weights and averages (Trainer.start_from: fresh Adam, epoch 0).
    Otherwise the data-dependent init runs on the loader's first `init_batch_size`
    images, and the loader is rewound for a full first epoch.
    """
    if resume_from is not None:
        record = trainer.restore(resume_from)
        if record.get('loader') is not None:
            loader.set_state(record['loader'])
        log('resuming from %s: epoch %d, step %d, %d images into the epoch'
            % (resume_from, record['epoch'], int(trainer.step.numpy()), record['position']))
        return record
    if start_from is not None:
        # Checked against the trainer's model (every option, name and shape) before any step.
        prefix = trainer.start_from(start_from)
        log('starting from the weights and averages of %s (fresh Adam, epoch 0, learning rate '
            '%g)' % (prefix, trainer.base_learning_rate))
        return fresh_record()
    batch = loader.next(init_batch_size)
    loader.reset()  # rewind the iterator back to 0 to do one full epoch
    x, y = batch if trainer.model.num_classes else (batch, None)
    display = progress_display.Progress('initializing on %d images' % init_batch_size,
                                        unit='blocks')
    trainer.initialize(x, y, progress=display)
    display.close()
    return fresh_record()


def train_epochs(trainer, loader, batches, test_images, test_labels, record, outputs,
                 max_epochs, save_steps=0, sample_interval=20, stop=None, log=print):
    """Train until `max_epochs` epochs are done (see the module docstring).

    Args:
      trainer: a Trainer, initialised or restored (see `begin`).
      loader: the train DataLoader (len() steps per epoch; get_state for checkpoints).
      batches: callable giving a tf.data.Dataset of one epoch of the loader's (global)
        batches, e.g. `lambda: to_tf_dataset(loader)` (Trainer.distribute gives each tower
        its share).
      test_images, test_labels: the test set (labels None if unconditional).
      record: the progress record (`begin`'s); updated in place.
      outputs: a RunOutputs, or anything with its methods.
      save_steps: also save every this many steps (0: only after each epoch).
      sample_interval: draw samples after every this many epochs.
      stop: a StopRequest (or anything with its `pending()`), asked after every step
        and every epoch, at the same points on every worker.
      log: prints a line.
    Raises:
      FloatingPointError: the loss is NaN or Inf (nothing is saved).
      signals.Stopped: a signal stopped the run after saving (`saved`, `path`).
    """
    # An energy-distance model has no likelihood: the original prints its loss, scaled
    # the same way, as bits_per_dim; here it is named for what it is.
    measure = 'energy_distance_per_dim' if trainer.model.energy_distance else 'bits_per_dim'
    if record['epoch'] >= max_epochs:
        log('nothing to do: the run has done %d epochs, max_epochs is %d'
            % (record['epoch'], max_epochs))
    for epoch in range(record['epoch'], max_epochs):
        begun = time.time()
        rate = _train_one_epoch(trainer, loader, batches, record, outputs, epoch, measure,
                                save_steps, stop)
        train_bpd = record['epoch_bpd_sum'] / max(record['epoch_bpd_steps'], 1)
        display = progress_display.Progress('evaluating', len(test_images), unit='images')
        nats, count = trainer.evaluate(test_images, test_labels, progress=display)
        display.close()
        test_bpd = float(bits_per_dim(nats / count, trainer.image_shape))
        for key, value in (('epoch', epoch), ('train_bpd', train_bpd), ('test_bpd', test_bpd)):
            record['history'][key].append(value)
        log('Iteration %d, time = %ds, train %s = %.4f, test %s = %.4f'
            % (epoch, time.time() - begun, measure, train_bpd, measure, test_bpd))
        scalars = {'train/epoch_' + measure: train_bpd, 'test/' + measure: test_bpd}
        if rate:
            scalars['train/images_per_sec'] = rate
        outputs.scalars(int(trainer.step.numpy()), scalars)
        if epoch % sample_interval == 0 or epoch == max_epochs - 1:
            outputs.samples(epoch, log=log, caption=['test %.3f %s' % (
                test_bpd, measure.replace('_per_', '/').replace('_', ' '))])
        record.update(epoch=epoch + 1, position=0, epoch_bpd_sum=0.0, epoch_steps=0,
                      epoch_bpd_steps=0,
                      loader=loader.get_state())
        path = outputs.save(record)
        outputs.history(record['history'])
        if path:
            log('saved %s' % path)
        signum = stop.pending() if stop is not None else None
        if signum is not None:
            raise Stopped(signum, 'after epoch %d' % epoch, path, saved=True)
    outputs.close()


def _train_one_epoch(trainer, loader, batches, record, outputs, epoch, measure, save_steps,
                     stop):
    """The steps of one epoch (from where `record` says it is); returns images/s or None."""
    global_batch, conditional = trainer.global_batch_size, bool(trainer.model.num_classes)
    # The steps in the epoch's mean bits/dim: all but float16's skipped steps whose loss is
    # not finite (a record written before these were counted apart has all of them).
    record.setdefault('epoch_bpd_steps', record['epoch_steps'])
    display = progress_display.Progress('epoch %d' % epoch, len(loader) * global_batch,
                                        unit='images')
    for batch in trainer.distribute(batches):  # each tower receives only its own images
        x, y = batch if conditional else (batch, None)
        objective, nll = trainer.train_step(x, y)  # the step's one read from the devices
        step = trainer.last_step.step
        finite = math.isfinite(nll) and math.isfinite(objective)
        # float16's loss scaling skips a step with a non-finite gradient and halves the
        # scale: not a NaN stop (its loss, if not finite, is left out of the mean), unless
        # the scale was already at its floor.
        skipped_at = trainer.skipped_step()
        if skipped_at is not None and skipped_at <= MIN_LOSS_SCALE:
            raise FloatingPointError(
                'the gradients are Inf or NaN at step %d (epoch %d) even with the float16 loss '
                'scale at %g: stopping without saving; the last good checkpoint (%s) is kept. '
                'Try --precision bfloat16 or float32'
                % (step, epoch, skipped_at, outputs.manager.latest_checkpoint or 'none yet'))
        if not finite and skipped_at is None:
            raise FloatingPointError(
                'the training loss is %s at step %d (epoch %d): stopping without saving; the '
                'last good checkpoint (%s) is kept. Try a lower learning rate'
                % (objective if math.isfinite(nll) else nll, step, epoch,
                   outputs.manager.latest_checkpoint or 'none yet'))
        record['position'] += global_batch
        record['epoch_steps'] += 1
        bpd = float(bits_per_dim(nll / global_batch, trainer.image_shape)) if finite else 0.0
        if finite:
            record['epoch_bpd_sum'] += bpd
            record['epoch_bpd_steps'] += 1
        running = record['epoch_bpd_sum'] / max(record['epoch_bpd_steps'], 1)
        display.update(record['epoch_steps'] * global_batch,
                       '%.4f %s' % (running, measure.replace('_per_', '/')))
        if step % SUMMARY_EVERY == 0 or step == 1:
            outputs.scalars(step, {'train/' + measure: bpd,
                                   'train/learning_rate': trainer.last_step.learning_rate})
        signum = stop.pending() if stop is not None else None
        last_step = record['epoch_steps'] == len(loader)  # the epoch's save follows
        if signum is not None or (save_steps and step % save_steps == 0 and not last_step):
            # The loader runs ahead (prefetch): record the images actually used.
            record['loader'] = loader.get_state(position=record['position'])
            path = outputs.save(record)
            if signum is not None:
                display.close()
                raise Stopped(signum, 'at step %d' % step, path, saved=True)
    display.close()
    return display.rate()
