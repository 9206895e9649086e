"""Training as the original does it, over towers: one compiled step, checkpoints that resume.

A `Trainer` holds the model, the original's Adam, the Polyak averages and the
state a run needs to continue exactly where it stopped (step, learning rate,
the dropout seed generator, and a JSON record of the epoch, the data loader's
position and the history), all in one tf.train.Checkpoint.

One training step on a global batch of towers x batch_size images:
  1. every tower receives only its slice of the batch (tower i: images [i*b, (i+1)*b),
     as the original's np.split), on its device (`distribute` prefetches it there),
     and a dropout seed folded from the step's seed and i;
  2. it computes its summed NLL in nats and the gradients of it;
  3. the gradients are SUMMED over towers by an all-reduce (the original adds the
     towers' gradients on gpu:0; no averaging);
  4. every tower applies the same Adam update and Polyak update to its own copy of
     the weights, so the copies stay equal without being broadcast.
Bits/dim of the step = total nats / (towers * b * H * W * C * ln 2).

Precision (precision.py): the forward and backward pass run in `precision`, by
default 'tf32' (float32, with TF32 in convolutions and matmuls on GPUs that have
it, switched on during the training steps only); the gradients reach the float32
Adam and Polyak averages as float32. Test bits/dim are computed in
`eval_precision`, strict float32 by default whatever the training precision, so
that they compare with the paper's; so are the samples of a 'tf32' run. In float16, whose largest value is 65504,
the loss is scaled before the backward pass (dynamic loss scaling, written here
because the optimizer is our own): the gradients are divided by the scale again;
a step whose gradients are not all finite is skipped (weights, moments and
averages unchanged) and halves the scale; LOSS_SCALE_GROWTH good steps in a row
double it. The scale and the count of good steps are in the checkpoint.

    strategy = tf.distribute.MirroredStrategy(devices)
    trainer = Trainer(strategy, ModelConfig((32, 32, 3), nr_resnet=1, nr_filters=32),
                      batch_size=16)
    trainer.initialize(init_images)                 # data-dependent init, averages reset
    objective, nll = trainer.train_step(images)     # uint8 (towers*16, 32, 32, 3)
    for x in trainer.distribute(lambda: dataset):   # tf.data of global batches: each
        trainer.train_step(x)                       # tower receives only its 16 images
    nats, count = trainer.evaluate(test_images)     # averaged weights, dropout off

The library never reads flags or data sets: train.py does, and hands plain values in.
"""

import collections
import contextlib
import json
import os
import re

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import checkpoints, loading, optim
from pixel_cnn_pp import precision as precisions
from pixel_cnn_pp.config import TRAINING, ModelConfig, check_integer
from pixel_cnn_pp.model import PixelCNN
from pixel_cnn_pp.run_folder import RunFolder

_SUM = tf.distribute.ReduceOp.SUM
_MEAN = tf.distribute.ReduceOp.MEAN

# float16's dynamic loss scaling: the first scale and how many good steps in a row double
# it (tf.keras' LossScaleOptimizer's values), and its floor. The loss is a sum over every
# pixel of the batch, as the original's, so its weight gradients are large: the first
# steps of a run halve the scale until one fits (2^5 for an 8x8 model with 8 filters,
# after 10 skipped steps), and a large model may need a scale below 1.
INITIAL_LOSS_SCALE = 2.0 ** 15
MIN_LOSS_SCALE = 2.0 ** -14
LOSS_SCALE_GROWTH = 2000

# The towers' functions are called, not inlined into the step: their body is optimised once
# (_optimised_once) instead of as part of a step graph holding every tower's copy of it.
_NOT_INLINED = dict(autograph=False, experimental_attributes={'_noinline': True})


# What train_step brings back to the host, in one read: the summed objective and NLL in
# nats, the step number, its learning rate, and the loss scale of a skipped float16 step
# (None if it was not skipped).
StepNumbers = collections.namedtuple('StepNumbers', 'objective nll step learning_rate skipped_at')


def _check_arguments(batch_size, learning_rate, lr_decay, focal_gamma):
    """Trainer's numeric arguments checked (a ValueError names the first that is not valid);
    returns batch_size as an int."""
    batch_size = check_integer('batch_size', batch_size, meaning='images per tower')
    if not learning_rate > 0:
        raise ValueError('learning_rate must be > 0; got %r' % (learning_rate,))
    if not 0 < lr_decay <= 1:
        raise ValueError('lr_decay must be in (0, 1]; got %r' % (lr_decay,))
    if focal_gamma < 0:
        raise ValueError('focal_gamma must be >= 0; got %r' % (focal_gamma,))
    return batch_size


class Trainer:
    """The model, its optimizer and averages, and compiled train/test steps over towers.

    Create it outside `strategy.scope()`: it enters the scope itself for what must
    be mirrored on every tower (model, Adam slots, averages) and keeps the step
    counter, the seed generator and the progress record as ordinary variables.

    Args:
      strategy: a tf.distribute strategy; its replicas are the towers.
      config: the ModelConfig (or a dict of its fields) of the model to train;
        its dropout_p is the training dropout.
      batch_size: images per tower per step (the original's per-GPU --batch_size).
      learning_rate: lr of step 0; step k uses learning_rate * lr_decay ** k.
      lr_decay: per-step decay of the learning rate.
      polyak_decay: decay of the weight averages used to test and sample.
      focal_gamma: > 0 trains on the focal objective (reported bits/dim stay the NLL).
      seed: initial weights and the dropout seed stream.
      jit_compile: compile each tower's forward and backward pass with XLA.
      precision: what the training forward and backward pass compute in
        (precision.py: tf32, the default, float32, bfloat16, float16; float16 with
        loss scaling). TF32 is on during the training steps only: outside them the
        trainer leaves it off, so what else runs (evaluation, sampling) is strict.
      eval_precision: what `evaluate` computes test NLLs in (strict float32 by
        default, whatever `precision` is).
    """

    def __init__(self, strategy, config, batch_size, learning_rate=TRAINING.learning_rate,
                 lr_decay=TRAINING.lr_decay, polyak_decay=TRAINING.polyak_decay, focal_gamma=0.0,
                 seed=TRAINING.seed, jit_compile=False, precision='tf32',
                 eval_precision='float32'):
        batch_size = _check_arguments(batch_size, learning_rate, lr_decay, focal_gamma)
        self.strategy = strategy
        self.towers = strategy.num_replicas_in_sync
        self.batch_size = int(batch_size)
        self.global_batch_size = self.towers * self.batch_size
        self.base_learning_rate = float(learning_rate)
        self.lr_decay = float(lr_decay)
        self.focal_gamma = float(focal_gamma)
        self.seed = int(seed)
        self.precision = precisions.check(precision, 'precision')
        self.eval_precision = precisions.check(eval_precision, 'eval_precision')
        self.eval_dtype = precisions.compute_dtype(self.eval_precision)
        self.loss_scaling = self.precision == 'float16'

        # Plain (not mirrored) state: read and written once per step, in cross-replica context.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
        self.learning_rate = tf.Variable(self.base_learning_rate, dtype=tf.float32,
                                         trainable=False, name='learning_rate')
        self.dropout_rng = tf.random.Generator.from_seed(self.seed + 1)
        self.progress = tf.Variable('{}', dtype=tf.string, trainable=False, name='progress')
        with strategy.scope():
            config = config if isinstance(config, ModelConfig) else ModelConfig(**config)
            self.model = PixelCNN(config, seed=self.seed, precision=self.precision)
            self.weights = self.model.weights
            self.optimizer = optim.Adam(self.weights)
            self.polyak = optim.PolyakAverage(self.weights, polyak_decay)
        # Building the model set TensorFlow's TF32 switch for `precision`: off again until
        # a training step turns it on (train_step).
        precisions.apply_tf32('float32')
        self.image_shape = self.model.image_shape
        self.dropout_p = self.model.dropout_p
        # The loss scale (float16 only; 1 otherwise), the good steps since it last
        # changed, and the scale of the last step if it was skipped (else 0).
        self.loss_scale = tf.Variable(INITIAL_LOSS_SCALE if self.loss_scaling else 1.0,
                                      trainable=False, name='loss_scale')
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name='good_steps')
        self._skipped_at = tf.Variable(0.0, trainable=False, name='skipped_at')
        state = dict(optimizer=self.optimizer, step=self.step, learning_rate=self.learning_rate,
                     dropout_rng=self.dropout_rng, progress=self.progress)
        # A checkpoint without loss scaling (all but float16's) is laid out as before.
        self._checkpoint_without_scale = checkpoints.training_checkpoint(
            self.model, self.polyak, **state)
        self.checkpoint = (checkpoints.training_checkpoint(
            self.model, self.polyak, loss_scale=self.loss_scale, good_steps=self.good_steps,
            **state) if self.loss_scaling else self._checkpoint_without_scale)

        self._compile(jit_compile)
        self._averaged_model = None
        self.last_step = None  # the StepNumbers of the last train_step

    def _compile(self, jit_compile):
        # What each tower computes, traced once and called by every tower (see _shared).
        self._jit_compile = jit_compile
        self._tower_gradients = tf.function(self._tower_gradients_fn, jit_compile=jit_compile,
                                            **_NOT_INLINED)
        self._tower_update = tf.function(self._tower_update_fn, **_NOT_INLINED)
        self._tower_nll = tf.function(self._tower_nll_fn, jit_compile=jit_compile,
                                      **_NOT_INLINED)
        self._traced = {}
        self._train_fn = tf.function(self._train_step_fn, autograph=False)
        self._test_fn = tf.function(self._test_step_fn, autograph=False)
        self._finite_fn = tf.function(
            lambda: tf.reduce_all([tf.reduce_all(tf.math.is_finite(w)) for w in self.weights]))

    # ------------------------------------------------------------------ set-up

    def initialize(self, images, labels=None, progress=None):
        """The original's data-dependent init on one batch, then averages from those weights.

        progress: optional callable(blocks_done, total_blocks), as PixelCNN.initialize.
        """
        with self.strategy.scope():
            self.model.initialize(images, labels, progress=progress)
            self.polyak.reset()

    def start_from(self, path):
        """Start from a checkpoint's weights and Polyak averages (ours or OpenAI's TF1 one).

        The optimizer stays fresh (t = 1, zero moments), the step and learning rate at
        their start: fine-tuning as the original's `-r` does from `params_cifar.ckpt`.
        Returns the checkpoint prefix read. Raises ValueError naming the first option,
        variable or shape that does not fit this trainer's model.
        """
        prefix, raw, averages = loading.read_weights(path, self.model)
        with self.strategy.scope():
            for var, value in zip(self.weights, raw):
                var.assign(value)
            for shadow, value in zip(self.polyak.shadows, averages):
                shadow.assign(value)
        return prefix

    # ---------------------------------------------------------------- training

    def _read_from(self, values):
        """The model's `get` that reads weight k as values[k] (a tower's copy, passed in)."""
        index = {w.ref(): k for k, w in enumerate(self.weights)}
        return lambda var: values[index[var.ref()]]

    def _shared(self, function, *args, optimise=True):
        """Call `function` (a tf.function of this trainer) traced once for all the towers.

        Each tower's part of a step calls it. Left to itself TensorFlow traces a function
        again under every tower's device, and the step's graph then holds a copy of it per
        tower for Grappler to optimise as a whole: start-up grew with the towers (11x from 1
        to 8). Traced once here, outside the step's graph and on no device, its body has no
        device: each call runs on the device of the tower that makes it. It reads what it
        needs from its arguments (the tower's copy of the weights or averages, its
        variables), never from captured variables, so every tower can call the same one.
        optimise: Grappler optimises the body once, for the first tower's device type
        (`_optimised_once`), not again on every device it is instantiated on; with XLA
        (jit_compile) or where that is not possible, at each instantiation as before.
        """
        key = (function, str(tf.nest.map_structure(
            lambda a: None if a is None else (tuple(a.shape), a.dtype.name), args)))
        if key not in self._traced:
            specs = tf.nest.map_structure(_spec, args)
            with tf.device(None):
                traced = function.get_concrete_function(*specs)
            if optimise and not self._jit_compile:
                once = _optimised_once(traced, specs, self.strategy.extended.worker_devices[0])
                traced, optimise = (once, False) if once is not None else (traced, True)
            self._traced[key] = traced, optimise
        traced, optimise = self._traced[key]
        with _graph_optimisation(optimise):  # what the call's own instantiation runs
            return traced(*args)

    def _tower_gradients_fn(self, weights, images, labels, seed, loss_scale):
        """A tower's summed objective and NLL, and their gradients as one vector.

        weights: the tower's copy of the weights (its variables, in self.weights' order).
        """
        values = [w.read_value() for w in weights]
        x = self.model.scale_images(images)
        h = self.model.one_hot(labels) if labels is not None else None
        with tf.GradientTape() as tape:
            tape.watch(values)
            # The NLL (or focal / energy-distance objective) and the plain NLL, summed.
            objective, nll = self.model.train_objective(
                x, h, get=self._read_from(values), dropout_p=self.dropout_p, seed=seed,
                focal_gamma=self.focal_gamma)
            # float16: scaled, so that small gradients do not underflow on the way back.
            scaled = objective * loss_scale if self.loss_scaling else objective
        grads = tape.gradient(scaled, values,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        # One vector (each shape's gradients stacked, as the update takes them): one
        # all-reduce, with nothing per tower to pack and unpack.
        return optim.stack_by_shape(grads), objective, nll

    def _tower_step(self, images, labels, step_seed, loss_scale):
        ctx = tf.distribute.get_replica_context()
        # Every tower its own dropout masks, reproducible from the step's seed.
        seed = tf.random.experimental.stateless_fold_in(step_seed, ctx.replica_id_in_sync_group)
        grads, objective, nll = self._shared(self._tower_gradients, self._tower_copy(self.weights),
                                             images, labels, seed, loss_scale)
        grads = ctx.all_reduce(_SUM, grads)  # the sum over towers, on every tower
        if not self.loss_scaling:
            return grads, objective, nll, tf.constant(1.0)
        grads = grads / loss_scale
        finite = tf.reduce_all(tf.math.is_finite(grads))
        return grads, objective, nll, tf.cast(finite, tf.float32)  # 1.0 if all are finite

    def _tower_copy(self, variables):
        """This tower's copy of each of `variables` (mirrored), in a replica context.

        Passed to the tower's function, which reads them itself: the step's graph holds no
        read of them (at 8 towers 9,000 nodes fewer to trace and instantiate).
        """
        tower = tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group)
        copies = map(self.strategy.experimental_local_results, variables)  # this worker's
        return [c[tower % len(c)] for c in copies]

    def _tower_update_fn(self, weights, slots, shadows, grads, learning_rate):
        """Adam and the Polyak update of one tower's copies (weights, slots = (t, m, v) and
        shadows), from the summed gradients as one vector (optim.stack_by_shape)."""
        self.optimizer.apply_gradients(grads, weights, learning_rate, slots=slots)
        self.polyak.update(weights, shadows)
        # Nothing returned: an unused output would make Grappler copy the function per tower.

    def _apply_updates(self, grads, learning_rate, finite):
        """Every tower applies the same update to its own copies, on its own device."""
        local = self.strategy.experimental_local_results

        def copies(variables):  # per tower, its copy of each variable
            return [list(c) for c in zip(*[local(v) for v in variables])]

        for t, weights, m, v, shadows, tower_grads, tower_finite in zip(
                local(self.optimizer.t), copies(self.weights), copies(self.optimizer.m),
                copies(self.optimizer.v), copies(self.polyak.shadows), local(grads),
                local(finite)):
            args = (weights, (t, m, v), shadows, tower_grads, learning_rate)
            with tf.device(t.device):
                if not self.loss_scaling:
                    self._shared(self._tower_update, *args, optimise=False)
                else:
                    # float16: a non-finite gradient skips the step (on every tower alike:
                    # the gradients were summed over all of them).
                    tf.cond(tower_finite > 0.5, lambda a=args: self._shared(
                        self._tower_update, *a, optimise=False), lambda: None)

    def _update_loss_scale(self, finite, scale):
        """Halve the scale on a non-finite gradient, double it after enough good steps."""
        good = tf.where(finite, self.good_steps + 1, tf.zeros_like(self.good_steps))
        grow = good >= LOSS_SCALE_GROWTH
        self.loss_scale.assign(tf.where(grow, scale * 2.0, tf.where(
            finite, scale, tf.maximum(scale / 2.0, MIN_LOSS_SCALE))))
        self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))
        self._skipped_at.assign(tf.where(finite, 0.0, scale))

    def _train_step_fn(self, images, labels):
        with self.strategy.scope():
            step = self.step.assign_add(1)
            learning_rate = optim.decayed_learning_rate(self.base_learning_rate, self.lr_decay,
                                                        step)
            self.learning_rate.assign(learning_rate)
            step_seed = tf.cast(self.dropout_rng.make_seeds(1)[:, 0], tf.int32)
            loss_scale = tf.identity(self.loss_scale)  # this step's (updated below)
            grads, objective, nll, finite = self.strategy.run(
                self._tower_step, args=(images, labels, step_seed, loss_scale))
            self._apply_updates(grads, learning_rate, finite)
            if self.loss_scaling:
                self._update_loss_scale(
                    self.strategy.reduce(_MEAN, finite, axis=None) == 1.0, loss_scale)
            # All the host needs of the step, as one tensor: one read (each read waits for
            # the devices before the host can queue the next step).
            return tf.stack([tf.cast(x, tf.float64) for x in (
                self.strategy.reduce(_SUM, objective, axis=None),
                self.strategy.reduce(_SUM, nll, axis=None), step, learning_rate,
                self._skipped_at.read_value())])

    def distribute(self, batches):
        """The towers' input from `batches`: each tower receives only its own images.

        Args:
          batches: a callable giving a tf.data.Dataset of global batches, uint8 images
            (towers * batch_size, H, W, C) or (images, labels), e.g.
            `lambda: to_tf_dataset(loader)`.
        Returns:
          A tf.distribute distributed dataset (`distribute_datasets_from_function`):
          iterating it gives `train_step`'s input, one step at a time. Tower i receives
          rows [i * batch_size, (i + 1) * batch_size) of each global batch (the
          original's split), prefetched to its device; on a worker of a multi-worker run,
          the pipeline gives only that worker's towers their rows.
        """
        towers, b = self.towers, self.batch_size

        def dataset_fn(context):
            local = towers // context.num_input_pipelines  # this worker's towers
            first = context.input_pipeline_id * local

            def tower_batches(*batch):  # one global batch -> an element per local tower
                parts = tuple(tf.reshape(t, (towers, b) + tuple(t.shape[1:]))[first:first + local]
                              for t in batch)
                return tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else parts[0])

            return batches().flat_map(tower_batches)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _split(self, array):
        """A global batch (array or tensor) as the towers' input: tower i receives rows
        [i * batch_size, (i + 1) * batch_size), copied to its device, and nothing else."""
        if array is None:
            return None
        b, devices = self.batch_size, self.strategy.extended.worker_devices

        def tower_rows(context):
            i = context.replica_id_in_sync_group
            with tf.device(devices[i % len(devices)]):  # this worker's towers, in order
                return tf.identity(array[i * b:(i + 1) * b])

        return self.strategy.experimental_distribute_values_from_function(tower_rows)

    def train_step(self, images, labels=None):
        """One optimisation step; returns (objective, nll) in nats, summed over the towers.

        Args:
          images: one step of `distribute(...)`'s input, or a global batch, uint8
            (towers * batch_size, H, W, C), of which tower i trains on rows
            [i * batch_size, (i + 1) * batch_size).
          labels: likewise, int (towers * batch_size,), for a class-conditional model.
        Returns:
          (objective, nll), floats: the objective that was differentiated (the NLL, or
          the focal objective) and the plain NLL, both summed over all towers. They come
          to the host in the step's one read, with what `last_step` holds: the step
          number, its learning rate and, in float16, whether it was skipped
          (`skipped_step()`; a non-finite gradient, see the module docstring).
        """
        if not isinstance(images, tf.distribute.DistributedValues):  # a global batch
            if not isinstance(images, tf.Tensor):
                images, labels = self.model.check_inputs(images, labels)
            if len(images) != self.global_batch_size:
                raise ValueError('a training batch must hold towers x batch_size = %d x %d = %d '
                                 'images, got %d: it cannot be split evenly over the towers'
                                 % (self.towers, self.batch_size, self.global_batch_size,
                                    len(images)))
            images, labels = self._split(images), self._split(labels)
        with precisions.tf32_for(self.precision), _graph_optimisation(False):
            objective, nll, step, learning_rate, skipped_at = \
                self._train_fn(images, labels).numpy().tolist()  # the step's one read
        self.last_step = StepNumbers(objective, nll, int(step), learning_rate,
                                     skipped_at or None)
        return objective, nll

    def skipped_step(self):
        """float16: the loss scale of the last step if it was skipped (a gradient was Inf
        or NaN: the weights did not change and the scale was halved), else None."""
        return self.last_step.skipped_at if self.last_step is not None else None

    # -------------------------------------------------------------- evaluation

    def _tower_nll_fn(self, averages, images, labels, mask):
        """A tower's summed NLL of its images (mask 0: padding) with its copy of the averages."""
        x = self.model.scale_images(images)
        h = self.model.one_hot(labels) if labels is not None else None
        get = self._read_from([a.read_value() for a in averages])
        if self.model.energy_distance:
            # No likelihood: the original reports its test loss (the energy distance).
            _, loss = self.model.train_objective(x, h, get=get, dropout_p=0.0,
                                                 seed=tf.constant([0, 0], tf.int32),
                                                 compute_dtype=self.eval_dtype)
            return loss
        log_p = self.model.log_prob_per_pixel(x, h, get=get,
                                              compute_dtype=self.eval_dtype)  # (B, H, W)
        return -tf.reduce_sum(tf.reduce_sum(log_p, axis=[1, 2]) * mask)

    def _test_tower(self, images, labels, mask):
        return self._shared(self._tower_nll, self._tower_copy(self.polyak.shadows), images,
                            labels, mask)

    def _test_step_fn(self, images, labels, mask):
        with self.strategy.scope():
            nats = self.strategy.run(self._test_tower, args=(images, labels, mask))
            return self.strategy.reduce(_SUM, nats, axis=None)

    def evaluate(self, images, labels=None, progress=None):
        """NLL in nats of every image with the Polyak-averaged weights, dropout off.

        Images go through the towers in global batches; the last one is padded and
        the padding masked out, so every image counts once (the original drops the
        last partial batch). For an energy-distance model (no likelihood) the summed
        energy distance of the full batches is returned instead. `progress`, if
        given, is called as progress(images_done, images_total) after each batch.

        Returns:
          (total nats as a Python float, number of images it covers).
        """
        images, labels = self.model.check_inputs(images, labels)
        g = self.global_batch_size
        energy = self.model.energy_distance
        end = len(images) - len(images) % g if energy else len(images)
        if end == 0:
            raise ValueError('the test set has %d images, fewer than one global batch (%d) of '
                             'an energy-distance model' % (len(images), g))
        total, count = 0.0, 0
        for start in range(0, end, g):
            x = images[start:start + g]
            y = labels[start:start + g] if labels is not None else None
            n = len(x)
            mask = np.zeros(g, np.float32)
            mask[:n] = 1.0
            if n < g:
                x = np.concatenate([x, np.zeros((g - n,) + x.shape[1:], x.dtype)])
                y = None if y is None else np.concatenate([y, np.zeros(g - n, y.dtype)])
            with precisions.tf32_for(self.eval_precision), _graph_optimisation(False):
                total += float(self._test_fn(self._split(x), self._split(y),
                                             self._split(mask)))
            count += n
            if progress is not None:
                progress(start + n, end)
        return total, count

    def averaged_model(self):
        """A single-device PixelCNN holding the Polyak-averaged weights (to sample from), in
        the training precision; strict float32 for 'tf32' (TF32 is for training steps)."""
        if self._averaged_model is None:
            self._averaged_model = PixelCNN(
                self.model.config, seed=self.seed,
                precision='float32' if self.precision == 'tf32' else self.precision)
        with self.strategy.scope():
            for target, shadow in zip(self._averaged_model.weights, self.polyak.shadows):
                target.assign(shadow.read_value())
        return self._averaged_model

    # ------------------------------------------------------------- checkpoints

    def weights_are_finite(self):
        """True if every weight is finite (nothing NaN or Inf to save)."""
        with self.strategy.scope():
            return bool(self._finite_fn())

    def save(self, manager, progress):
        """Write a checkpoint with `progress` (a JSON-serialisable dict) through `manager`.

        Refuses (FloatingPointError) when a weight is NaN or Inf, so the last good
        checkpoint is never replaced by a broken one. The checkpoint's files are
        complete before the manager's state file names it (written to a temporary
        file and renamed), so a run killed at any moment leaves the previous
        checkpoint loadable. A save that fails (CheckpointWriteError, e.g. a full
        disk) removes what it had begun and leaves the state file naming the last
        good checkpoint.
        """
        if not self.weights_are_finite():
            raise FloatingPointError('the weights hold NaN or Inf at step %d: not saving (the last '
                                     'good checkpoint, %s, is kept)'
                                     % (int(self.step.numpy()), manager.latest_checkpoint))
        self.progress.assign(json.dumps(progress))
        folder = RunFolder(manager.directory)
        before = folder.entries()
        try:
            return manager.save(checkpoint_number=folder.next_checkpoint_number(manager))
        except (tf.errors.OpError, OSError) as e:  # e.g. "No space left on device"
            folder.remove_save_debris(before)
            raise CheckpointWriteError(
                'cannot write a checkpoint into %s (%s): its partial files were removed and the '
                'last good checkpoint, %s, is kept' % (folder.path, _first_line(e),
                                                       manager.latest_checkpoint or 'none yet')
            ) from None

    def restore(self, path):
        """Load a checkpoint written by `save`; returns its progress record (a dict).

        Raises ValueError if the checkpoint does not fit this model and trainer, or
        cannot be read (damaged or truncated files).
        """
        checkpoint = self.checkpoint
        if self.loss_scaling and not _holds_loss_scale(path):
            # Written in another precision: loss scaling starts afresh.
            checkpoint = self._checkpoint_without_scale
        try:
            with self.strategy.scope():
                status = checkpoint.restore(path)
        except checkpoints.READ_ERRORS as e:
            raise checkpoints.damaged(path, e) from None
        except ValueError as e:
            raise self._does_not_fit(path, e) from None
        try:
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise self._does_not_fit(path, e) from None
        if not self.loss_scaling:
            status.expect_partial()  # a float16 checkpoint's loss scale is not used here
        return json.loads(self.progress.numpy().decode('utf-8'))

    def _does_not_fit(self, path, error):
        return ValueError('checkpoint %s does not fit this model (%s): %s'
                          % (path, self.model.describe(), _first_line(error)))


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the last good one is kept."""


@contextlib.contextmanager
def _graph_optimisation(enabled):
    """TensorFlow's graph optimiser (Grappler) on or off for the functions called inside the
    block, and for the function calls traced inside it; then as it was.

    A function is optimised when it is instantiated, once per device it runs on. The
    towers' forward and backward pass, which Grappler makes faster (fused convolutions,
    common subexpressions, on GPUs the cuDNN layout), is optimised once beforehand instead
    (`_optimised_once`; with XLA, per device). The step that calls them and the update gain
    nothing from it (reads, the all-reduce, calls; elementwise Adam) but cost the most to
    optimise: the step's graph holds every tower's variables.
    """
    before = tf.config.optimizer.get_experimental_options().get('disable_meta_optimizer', False)
    tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': not enabled})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': before})


def _optimised_once(traced, specs, device):
    """The ConcreteFunction `traced` optimised by Grappler once, as TensorFlow optimises a
    function when it instantiates it on `device`, then as a function with no device, which
    every tower calls with Grappler off and runs on its own device; None where this
    TensorFlow lacks the internal APIs used (`tf_optimizer.OptimizeGraph`, a grappler
    `cluster` of named devices), and for a pass in bfloat16 or float16: then each device
    optimises it, as before.

    Optimised for `device`'s type (its nodes placed there meanwhile) so that the rewrites
    that depend on it happen: the remapper's fused convolutions, on GPUs the layout optimiser.
    specs: what `traced` was traced for (its arguments' structure, None where absent).
    """
    try:
        from tensorflow.core.protobuf import device_properties_pb2, meta_graph_pb2
        from tensorflow.python.eager import context
        from tensorflow.python.grappler import cluster, tf_optimizer
        optimise, virtual_cluster = tf_optimizer.OptimizeGraph, cluster.Cluster
    except (ImportError, AttributeError):
        return None
    if traced.captured_inputs:
        return None  # not a pure function of its arguments
    if any(t.dtype in (tf.bfloat16, tf.float16)
           for op in traced.graph.get_operations() for t in op.outputs):
        # Reduced precision: optimised away from its device, the remapper fuses ops that
        # have no kernel in that precision there (a bfloat16 _FusedConv2D on a CPU).
        return None
    graph = traced.graph.as_graph_def()
    for node in graph.node:
        node.device = device
    inputs, outputs = [t.name for t in traced.inputs], [t.name for t in traced.outputs]
    meta = meta_graph_pb2.MetaGraphDef(graph_def=graph)
    # What must be kept: the outputs, and the inputs even where unused (e.g. the loss scale).
    meta.collection_def['train_op'].node_list.value.extend(
        [name.split(':')[0] for name in inputs + outputs])
    config = context.context().config  # the options TensorFlow instantiates functions with
    config.graph_options.rewrite_options.disable_meta_optimizer = False
    kind = tf.DeviceSpec.from_string(device).device_type or 'CPU'
    named = device_properties_pb2.NamedDevice(
        name=device, properties=device_properties_pb2.DeviceProperties(
            type=kind, environment=_device_environment(kind)))
    graph = optimise(config, meta, cluster=virtual_cluster(devices=[named]))
    for node in list(graph.node) + [n for f in graph.library.function for n in f.node_def]:
        node.device = ''

    def call(*args):  # the optimised graph, its inputs replaced by the arguments
        flat = [tf.identity(a.handle) if isinstance(a, tf.Variable) else a  # its input
                for a in tf.nest.flatten(args) if a is not None]
        results = tf.graph_util.import_graph_def(
            graph, input_map=dict(zip(inputs, flat)), return_elements=outputs, name='')
        return tf.nest.pack_sequence_as(traced.structured_outputs, results)

    with tf.device(None), _graph_optimisation(False):
        return tf.function(call, **_NOT_INLINED).get_concrete_function(*specs)


def _device_environment(kind):
    """A GPU's compute capability, which Grappler's layout optimiser decides by."""
    gpus = tf.config.list_physical_devices('GPU') if kind == 'GPU' else []
    capability = gpus and tf.config.experimental.get_device_details(gpus[0]).get(
        'compute_capability')
    return {'architecture': '%d.%d' % capability} if capability else {}


def _spec(value):
    """What a function is traced for: a variable itself, a tensor's shape and dtype."""
    if value is None or isinstance(value, tf.Variable):
        return value
    return tf.TensorSpec(value.shape, value.dtype)


def _holds_loss_scale(path):
    """True if the checkpoint at `path` has float16's loss scale (False if unreadable:
    restoring then reports the damage)."""
    try:
        return any(name.startswith('loss_scale/') for name, _ in tf.train.list_variables(path))
    except checkpoints.READ_ERRORS:
        return False


def _first_line(error):
    """The error's first line in plain words: for a file error, its cause alone.

    TensorFlow's file errors read '{{function_node __wrapped__SaveV2_...}} <file>;
    No space left on device [Op:SaveV2]'; the message around this names the folder.
    """
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    line = (str(error).splitlines() or [''])[0]
    line = re.sub(r'\{\{function_node [^}]*\}\}|\[Op:\w+\]', '', line).strip()
    file, separator, cause = line.rpartition('; ')
    if separator and os.sep in file:
        line = cause
    return line or type(error).__name__
