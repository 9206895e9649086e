"""Devices and towers: one replica of the model per GPU, as the original's --nr_gpu.

The original builds one tower per GPU by hand (`with tf.device('/gpu:%d' % i)`),
adds the towers' gradients on gpu:0 and applies one update. Here the towers are
the replicas of a `tf.distribute.MirroredStrategy` over `nr_gpu` devices (or of a
`MultiWorkerMirroredStrategy` across machines, configured by TF_CONFIG), and
pixel_cnn_pp/training.py sums their gradients with an all-reduce.

On a machine without a GPU the CPU is split into `nr_gpu` logical devices, so
the same tower code runs, and is tested, anywhere. That split must happen before
TensorFlow initialises its runtime: call `configure_devices` first thing.

    devices = configure_devices(2)          # ['/gpu:0', '/gpu:1'] or two logical CPUs
    strategy = make_strategy(devices)
"""

import json
import os
import warnings

import tensorflow as tf


def _visible_gpus_note():
    value = os.environ.get('CUDA_VISIBLE_DEVICES')
    if value is None:
        return 'CUDA_VISIBLE_DEVICES is not set'
    return 'CUDA_VISIBLE_DEVICES=%s' % value


def check_tower_count(nr_gpu, num_gpus):
    """Raise ValueError unless `nr_gpu` towers fit on `num_gpus` visible GPUs.

    With no GPU at all (num_gpus == 0) any number fits: the CPU is split.
    """
    if int(nr_gpu) != nr_gpu or nr_gpu < 1:
        raise ValueError('--nr_gpu must be a positive integer (towers, one per GPU); got %r'
                         % (nr_gpu,))
    if num_gpus and nr_gpu > num_gpus:
        raise ValueError('--nr_gpu %d but only %d GPU%s visible (%s): pass --nr_gpu %d or '
                         'make more GPUs visible with CUDA_VISIBLE_DEVICES'
                         % (nr_gpu, num_gpus, '' if num_gpus == 1 else 's',
                            _visible_gpus_note(), num_gpus))


def configure_devices(nr_gpu, multi_worker=False):
    """The devices of `nr_gpu` towers on this machine, creating them on a CPU-only one.

    With GPUs: the first `nr_gpu` of them (the others are hidden from TensorFlow);
    more towers than visible GPUs is a ValueError naming CUDA_VISIBLE_DEVICES.
    Without: the CPU is split into `nr_gpu` logical devices '/cpu:0', '/cpu:1', ...,
    which all share its cores (the same computation, not more speed).

    Must run before TensorFlow initialises its runtime (before the first op or
    variable). If the runtime is already up, existing logical CPU devices are used
    when there are enough of them; otherwise a RuntimeError says to start a fresh
    process. GPUs that can no longer be hidden then stay visible, with a warning.

    Args:
      nr_gpu: towers on this machine.
      multi_worker: for MultiWorkerMirroredStrategy, which runs one tower per GPU
        and a single tower on a CPU-only worker.
    Returns:
      A list of `nr_gpu` device names.
    """
    gpus = tf.config.list_physical_devices('GPU')
    check_tower_count(nr_gpu, len(gpus))
    if gpus:
        if nr_gpu < len(gpus):
            try:
                tf.config.set_visible_devices(gpus[:nr_gpu], 'GPU')
            except RuntimeError:
                # The runtime is already up: the towers still run on the first nr_gpu
                # GPUs (the strategy names them), but TensorFlow holds memory on all.
                warnings.warn('configure_devices(%d) ran after TensorFlow started, so all %d '
                              'GPUs stay visible (%s): the towers use the first %d; call it '
                              'first thing to hide the others' % (nr_gpu, len(gpus),
                                                                  _visible_gpus_note(), nr_gpu))
        return ['/gpu:%d' % i for i in range(nr_gpu)]
    if multi_worker:
        if nr_gpu != 1:
            raise ValueError('--nr_gpu %d with --multi_worker on a machine without GPUs (%s): a '
                             'CPU-only worker runs a single tower; pass --nr_gpu 1 and start one '
                             'worker per tower' % (nr_gpu, _visible_gpus_note()))
        return ['/cpu:0']
    cpu = tf.config.list_physical_devices('CPU')[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(nr_gpu)])
    except RuntimeError:
        # TensorFlow is already initialised; its logical devices cannot change now.
        existing = len(tf.config.list_logical_devices('CPU'))
        if existing < nr_gpu:
            raise RuntimeError(
                '%d towers need %d logical CPU devices, but TensorFlow was already initialised '
                'with %d; call configure_devices(%d) before any TensorFlow op, in a fresh process'
                % (nr_gpu, nr_gpu, existing, nr_gpu)) from None
    return ['/cpu:%d' % i for i in range(nr_gpu)]


def describe_towers(devices, multi_worker=False):
    """Where the towers run, in one line: 'no GPU visible: 1 tower on the CPU', ..."""
    n = len(devices)
    towers = '%d tower%s' % (n, '' if n == 1 else 's')
    worker = ' of this worker' if multi_worker else ''
    if devices and devices[0].startswith('/gpu'):
        return '%s%s on GPU%s %s (%s)' % (towers, worker, '' if n == 1 else 's',
                                          ', '.join(devices), _visible_gpus_note())
    if n == 1:
        return 'no GPU visible: %s%s on the CPU' % (towers, worker)
    return ('no GPU visible: %s%s on %d logical CPU devices (they share the CPU\'s %d cores)'
            % (towers, worker, n, os.cpu_count() or 1))


def sampling_devices(nr_gpu=None):
    """The devices sample.py draws on: `nr_gpu` towers (configure_devices), or by default
    every visible GPU, else the CPU. Call it before TensorFlow starts, as configure_devices."""
    if nr_gpu is not None:
        return configure_devices(nr_gpu)
    gpus = tf.config.list_physical_devices('GPU')
    return ['/gpu:%d' % i for i in range(len(gpus))] if gpus else ['/cpu:0']


def make_strategy(devices, multi_worker=False):
    """A MirroredStrategy over `devices`, or a MultiWorkerMirroredStrategy from TF_CONFIG.

    The multi-worker strategy takes the cluster (every worker's address and this
    one's index) from the TF_CONFIG environment variable, as TensorFlow documents;
    every worker runs the same command. Its towers are all the workers' devices.
    """
    if multi_worker:
        config = os.environ.get('TF_CONFIG')
        if not config:
            raise ValueError('--multi_worker needs the TF_CONFIG environment variable (the '
                             'cluster\'s workers and this one\'s task), e.g. TF_CONFIG=\''
                             '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                             '"task": {"type": "worker", "index": 0}}\'')
        try:
            json.loads(config)
        except ValueError as e:
            raise ValueError('TF_CONFIG is not valid JSON (%s): %r' % (e, config)) from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(devices=devices)


def is_chief(strategy):
    """True on the worker that writes checkpoints, samples and summaries.

    Single-machine strategies have one (chief) worker; in a multi-worker cluster it
    is the 'chief' task, or worker 0 when there is none.
    """
    resolver = getattr(strategy, 'cluster_resolver', None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == 'chief':
        return True
    return task_type == 'worker' and task_id == 0 and 'chief' not in resolver.cluster_spec().jobs
