"""What the workers of a multi-worker run agree on: one run, one command, one state, one stop.

With --multi_worker every worker runs the same train.py, and each reads --save_dir and
its data on its own machine. Once TensorFlow has connected them
(distribute.make_strategy), they exchange a few numbers (an all-gather over the
cluster), so that every worker reaches the same decision at the same point:

  - `check_same_run`: every worker sees the chief's --save_dir (its run's lock: a
    folder per machine is refused with -r, which reads the checkpoints on every
    worker), was started with the chief's flags (one worker without -r beside
    workers with -r is refused), and no two workers use one GPU;
  - `align_state`: after the init or the restore, the chief's weights, Polyak
    averages and Adam state are broadcast to every worker (they start equal whatever
    each computed), and the step, learning rate, dropout seed state and data
    position are checked equal to the chief's (refused, naming the one that is not);
  - `StopAcrossWorkers`: SIGTERM or SIGINT to any worker (a scheduler sends it to
    every worker, often a few steps apart) stops them all after the same step: after
    every step the workers exchange the signal each received;
  - `collective_errors`: a collective that fails because a worker is gone
    (UnavailableError, "CollectiveReduceV2 ... aborted") becomes one line, `WorkerLost`.

    strategy = distribute.make_strategy(devices, cluster=cluster)
    check_same_run(strategy, cluster, save_dir, settings, devices)  # before anything is read
    ...                                                        # init or restore
    align_state(strategy, trainer, loader)
    with collective_errors(trainer, manager):
        train_epochs(..., stop=StopAcrossWorkers(strategy))
"""

import contextlib
import hashlib
import json
import os
import socket

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.run_folder import LOCK_FILE, RunFolder
from pixel_cnn_pp.run import StopRequest

MAX_GPUS = 16  # GPUs per worker compared for overlaps (the exchange has a fixed length)
MAX_SETTINGS = 64  # flags compared with the chief's
# Flags a worker may give otherwise: paths spelled per machine, its own patience.
PER_MACHINE = ('data_dir', 'save_dir', 'worker_timeout')


class WorkerLost(ConnectionError):
    """A collective failed: a worker of the cluster stopped or cannot be reached."""


def _number(value):
    """A stable 56-bit fingerprint of a JSON-able value (the same in every process)."""
    text = json.dumps(value, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:7], 'big')


def gatherer(strategy):
    """A function numbers -> every worker's numbers: `gather_from_workers` compiled once
    (for a call after every step)."""
    @tf.function(autograph=False)
    def gather(local):
        # tf.identity places a copy on each tower's device (all_gather sends from there).
        return strategy.run(
            lambda: tf.distribute.get_replica_context().all_gather(tf.identity(local), axis=0))

    def every_workers(numbers):
        rows = strategy.experimental_local_results(
            gather(tf.constant(np.asarray(numbers, np.int64)[None])))[0].numpy()
        return rows[::len(strategy.extended.worker_devices)]  # (replicas, len): each worker's
    return every_workers                                      # first tower


def gather_from_workers(strategy, numbers):
    """Every worker's `numbers` (the same length on each): int64 (workers, len), in the
    cluster's order (the chief first)."""
    return gatherer(strategy)(numbers)


def broadcast_from_chief(strategy, variables):
    """Set every copy of the mirrored `variables`, on every worker, to the chief's.

    An all-reduce in which only the chief's first tower contributes (adding zeros
    is exact), so the copies end bit for bit equal to the chief's.
    """
    @tf.function(autograph=False)
    def broadcast():
        def tower():
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group, 0)
            return context.all_reduce(tf.distribute.ReduceOp.SUM, [
                tf.where(first, v, tf.zeros_like(v)) for v in variables])
        for variable, value in zip(variables, strategy.run(tower)):
            variable.assign(value)

    with strategy.scope():
        broadcast()


# ------------------------------------------------------------- the same run and command

def run_id(save_dir):
    """A fingerprint of the run holding `save_dir` (its lock), 0 if there is none."""
    text = RunFolder(save_dir).lock_text()
    return 0 if text is None else _number(text)


def gpu_ids(devices, host, cuda_visible_devices=None):
    """Fingerprints of the physical GPUs behind `devices` on `host` ([] for CPU towers):
    the entries of CUDA_VISIBLE_DEVICES they map to, or their indices."""
    visible = (cuda_visible_devices or '').split(',') if cuda_visible_devices else None
    ids = []
    for device in devices:
        spec = tf.DeviceSpec.from_string(device)
        if spec.device_type == 'GPU':
            index = spec.device_index or 0
            ids.append(_number([host, visible[index] if visible and index < len(visible)
                                else str(index)]))
    return ids[:MAX_GPUS]


def _exchange_row(run, gpus, settings):
    names = sorted(settings)
    if len(names) > MAX_SETTINGS:
        raise AssertionError('more than %d settings to compare' % MAX_SETTINGS)
    padded = lambda values, n: list(values) + [0] * (n - len(values))  # noqa: E731
    return [run] + padded(gpus, MAX_GPUS) + padded([_number(settings[n]) for n in names],
                                                   MAX_SETTINGS)


def disagreement(rows, tasks, setting_names, load_params):
    """What the gathered rows (one per worker, `_exchange_row`'s) disagree on, or None.

    `load_params` is this worker's -r. Returns (message, fatal): fatal False for a
    folder that is not the chief's in a run without -r (the run goes on, but -r will
    not resume it). Every worker finds the same message.
    """
    rows = np.asarray(rows)
    chief = rows[0]
    names = sorted(setting_names)
    who = lambda w: '%s (%s)' % tasks[w]  # noqa: E731
    if 'load_params' in names:  # the chief's -r: this worker's, if the fingerprints match
        column = 1 + MAX_GPUS + names.index('load_params')
        load_params = load_params == (chief[column] == _number(load_params))
    for w in range(1, len(rows)):
        settings = rows[w, 1 + MAX_GPUS:1 + MAX_GPUS + len(names)]
        differs = [n for n, a, b in zip(names, settings, chief[1 + MAX_GPUS:]) if a != b]
        if 'load_params' in differs:
            return ('--multi_worker: %s was started %s -r and the chief, %s, %s it: start every '
                    'worker with the same command' % (who(w), 'with' if not load_params
                                                      else 'without', who(0),
                                                      'with' if load_params else 'without'),
                    True)
        if differs:
            return ('--multi_worker: %s was started with another --%s than the chief, %s: every '
                    'worker runs the same command (only --%s may differ per machine)'
                    % (who(w), differs[0], who(0), ', --'.join(PER_MACHINE)), True)
    for w in range(1, len(rows)):
        if rows[w, 0] != chief[0]:
            message = ('--multi_worker: %s does not see the chief\'s --save_dir (it finds no '
                       '%s of the chief\'s run there): every worker needs the same '
                       '--save_dir on a filesystem they share (e.g. NFS), where the chief writes '
                       'the checkpoints and -r reads them on every worker' % (who(w), LOCK_FILE))
            if load_params:
                return message, True
            return message + '; training goes on, but -r will not resume this run', False
    gpus = {}
    for w in range(len(rows)):
        for gpu in rows[w, 1:1 + MAX_GPUS]:
            if gpu and gpus.setdefault(gpu, w) != w:
                return ('--multi_worker: %s and %s use the same GPU of one host: give each worker '
                        'its own GPUs (CUDA_VISIBLE_DEVICES per worker, or one worker per host)'
                        % (who(gpus[gpu]), who(w)), True)
    return None


def check_same_run(strategy, cluster, save_dir, settings, devices, log=print):
    """Refuse (ValueError, on every worker) a cluster whose workers do not run one command
    into one shared --save_dir on their own GPUs (see the module docstring).

    Args:
      strategy: the connected MultiWorkerMirroredStrategy.
      cluster: its distribute.Cluster.
      save_dir: this worker's --save_dir (the chief holds its lock already).
      settings: {flag name: value} of this worker's command line.
      devices: this worker's towers.
    """
    compared = {name: value for name, value in settings.items() if name not in PER_MACHINE}
    compared['init_checkpoint'] = bool(compared.get('init_checkpoint'))  # a path, per machine
    # The machine by its own name (two spellings of one host in TF_CONFIG are one machine).
    row = _exchange_row(run_id(save_dir), gpu_ids(devices, socket.gethostname(), os.environ.get(
        'CUDA_VISIBLE_DEVICES')), compared)
    found = disagreement(gather_from_workers(strategy, row), cluster.tasks, list(compared),
                         bool(settings.get('load_params')))
    if found and found[1]:
        raise ValueError(found[0])
    if found:
        log('warning: ' + found[0])


# ------------------------------------------------------------------- the same state

def align_state(strategy, trainer, loader, what='the start'):
    """Give every worker the chief's model, averages and Adam state (broadcast), and check
    that the rest of the state a run continues from is the chief's (ValueError if not).

    `what` names the moment in the message ('restoring <checkpoint>').
    """
    optimizer = trainer.optimizer
    broadcast_from_chief(strategy, trainer.weights + trainer.polyak.shadows + optimizer.m
                         + optimizer.v + [optimizer.t])
    checked = [('step', trainer.step), ('learning rate', trainer.learning_rate),
               ('dropout seed state', trainer.dropout_rng.state),
               ('loss scale', trainer.loss_scale),
               ('data position (images, epoch order, position)', None)]
    values = [_number(loader.get_state()) if v is None else _number(v.numpy().tolist())
              for _, v in checked]
    rows = gather_from_workers(strategy, values)
    for w in range(1, len(rows)):
        for (name, _), a, b in zip(checked, rows[w], rows[0]):
            if a != b:
                raise ValueError('--multi_worker: after %s, worker %d\'s %s differs from the '
                                 'chief\'s: every worker must read the same data (--data_set, the '
                                 'files under --data_dir) and the same checkpoint'
                                 % (what, w, name))


# ------------------------------------------------------------------- the same stop

class StopAcrossWorkers(StopRequest):
    """SIGTERM or SIGINT to any worker stops every worker after the same step.

    `pending()` (which the training loop calls at the same points on every worker)
    gathers the signal each worker received: the first one any worker received, or
    None. One small all-gather per call.
    """

    def __init__(self, strategy):
        super().__init__()
        self._gather = gatherer(strategy)

    def pending(self):
        received = self._gather([self.signum or 0])[:, 0]
        signals = [int(s) for s in received if s]
        return signals[0] if signals else None


@contextlib.contextmanager
def collective_errors(trainer, manager):
    """TensorFlow's error when a worker is gone (a failed collective) as one WorkerLost line,
    naming the step and the last checkpoint."""
    try:
        yield
    except tf.errors.OpError as e:
        raise WorkerLost(
            '--multi_worker: the cluster lost a worker at step %d (%s: %s): the last checkpoint '
            'is %s; start every worker again with -r' % (
                int(trainer.step.numpy()), type(e).__name__, _telling_line(e),
                manager.latest_checkpoint or 'none yet')) from None


def _telling_line(error):
    """The line of a TensorFlow error that says what happened (not 'Graph execution error')."""
    lines = [line.strip() for line in str(error.message).splitlines() if line.strip()]
    for line in lines:
        if any(word in line for word in ('aborted', 'Unavailable', 'unavailable', 'Socket',
                                         'Connection', 'connect', 'heartbeat', 'peer')):
            return line
    return lines[-1] if lines else type(error).__name__
