"""Devices and towers: one replica of the model per GPU, as the original's --nr_gpu.

The original builds one tower per GPU by hand (`with tf.device('/gpu:%d' % i)`),
adds the towers' gradients on gpu:0 and applies one update. Here the towers are
the replicas of a `tf.distribute.MirroredStrategy` over `nr_gpu` devices (or of a
`MultiWorkerMirroredStrategy` across machines, from TF_CONFIG or Slurm), and
pixel_cnn_pp/training.py sums their gradients with an all-reduce.

On a machine without a GPU the CPU is split into `nr_gpu` logical devices, so
the same tower code runs, and is tested, anywhere. That split must happen before
TensorFlow initialises its runtime: call `configure_devices` first thing.

    devices = configure_devices(2)          # ['/gpu:0', '/gpu:1'] or two logical CPUs
    strategy = make_strategy(devices)

Across machines (train.py --multi_worker) the cluster comes from TF_CONFIG or, under
Slurm's srun, from Slurm's variables (`find_cluster`); several workers on one host
each take their own GPUs (`worker_gpus`).

    cluster = find_cluster()                # before TensorFlow looks at the GPUs
    devices = configure_devices(2, cluster=cluster)
    strategy = make_strategy(devices, cluster=cluster)
"""

import contextlib
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from concurrent import futures

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.config import check_integer
from pixel_cnn_pp.signals import Stopped, signals_raise

# What TensorFlow said while it started, when a program's entry point captured it
# (cli.py does, to hide its notices): the lines saying why it found no GPU, and whether
# its lines went on to stderr. A program that captured nothing leaves these as they are:
# TensorFlow's lines went to stderr.
STARTUP = dict(gpu_notes=[], lines_shown=True)
# The start-up lines that say why no GPU was found.
_GPU_REASONS = re.compile(
    r'failed call to cuInit|Could not find cuda drivers|Skipping registering GPU devices'
    r'|Cannot dlopen some GPU libraries|Could not load dynamic library|no CUDA-capable device')


def note_startup_lines(lines, shown):
    """Keep what TensorFlow's start-up `lines` (captured by the caller, without their log
    prefix) say about GPUs, for `visible_gpus` to quote; `shown`: whether the caller
    passed TensorFlow's lines on to stderr."""
    STARTUP.update(gpu_notes=[line for line in lines if _GPU_REASONS.search(line)],
                   lines_shown=shown)


def _visible_gpus_note():
    value = os.environ.get('CUDA_VISIBLE_DEVICES')
    if value is None:
        return 'CUDA_VISIBLE_DEVICES is not set'
    return 'CUDA_VISIBLE_DEVICES=%s' % value


# Logical CPU devices allowed on a machine without GPUs: the original's default of 8
# towers, or one per core. Beyond that each tower only adds a copy of the model and its
# buffers (64 towers of the default model: 16 GB and no output for minutes).
MIN_CPU_TOWERS = 8


def max_cpu_towers(cpu_cores=None):
    """How many towers a machine without GPUs may split its CPU into: max(8, cores)."""
    return max(MIN_CPU_TOWERS, cpu_cores if cpu_cores is not None else os.cpu_count() or 1)


def check_tower_count(nr_gpu, num_gpus, cpu_cores=None):
    """Raise ValueError unless `nr_gpu` towers fit on `num_gpus` visible GPUs.

    With no GPU at all (num_gpus == 0) the CPU is split into `nr_gpu` logical
    devices, up to `max_cpu_towers(cpu_cores)` (cpu_cores: os.cpu_count()).
    """
    nr_gpu = check_integer('nr_gpu', nr_gpu, meaning='towers, one per GPU')
    cores = cpu_cores if cpu_cores is not None else os.cpu_count() or 1
    limit = max_cpu_towers(cores)
    if not num_gpus and nr_gpu > limit:
        raise ValueError('--nr_gpu %d on a machine without GPUs (%s) would split its %d CPU '
                         'core%s into %d logical devices, each holding a copy of the model: at '
                         'most max(%d, cores) = %d are allowed; pass --nr_gpu %d or fewer'
                         % (nr_gpu, _visible_gpus_note(), cores, '' if cores == 1 else 's',
                            nr_gpu, MIN_CPU_TOWERS, limit, limit))
    if num_gpus and nr_gpu > num_gpus:
        raise ValueError('--nr_gpu %d but only %d GPU%s visible (%s): pass --nr_gpu %d or '
                         'make more GPUs visible with CUDA_VISIBLE_DEVICES'
                         % (nr_gpu, num_gpus, '' if num_gpus == 1 else 's',
                            _visible_gpus_note(), num_gpus))


# Where an NVIDIA driver shows itself without CUDA: its kernel module's version file.
NVIDIA_DRIVER_FILE = '/proc/driver/nvidia/version'


def gpu_evidence(cuda_visible_devices, driver_file_exists, nvidia_smi):
    """Why this machine should have GPUs for TensorFlow, or None if nothing says so.

    Args:
      cuda_visible_devices: the CUDA_VISIBLE_DEVICES variable, None if unset. Set and
        empty, or starting with a negative index (-1, CUDA's "none"), hides every GPU:
        the user asked for the CPU.
      driver_file_exists: NVIDIA_DRIVER_FILE exists (the driver's kernel module is loaded).
      nvidia_smi: the path of nvidia-smi, or None.
    """
    if cuda_visible_devices is not None:
        first = cuda_visible_devices.split(',')[0].strip()
        if not first or first.startswith('-'):
            return None
        return 'CUDA_VISIBLE_DEVICES=%s' % cuda_visible_devices
    if driver_file_exists:
        return 'an NVIDIA driver is loaded (%s)' % NVIDIA_DRIVER_FILE
    if nvidia_smi:
        return 'nvidia-smi is installed (%s)' % nvidia_smi
    return None


def no_gpu_reason(notes, is_cuda_build, lines_shown):
    """TensorFlow's reason for seeing no GPU, in one phrase.

    Args:
      notes: its start-up lines about GPUs (STARTUP['gpu_notes']), e.g. "failed call to
        cuInit: ...".
      is_cuda_build: tf.sysconfig.get_build_info()['is_cuda_build'].
      lines_shown: TensorFlow's own lines went to stderr (nothing hid them).
    """
    if not is_cuda_build:
        return ('this TensorFlow is a CPU-only build (pip install "tensorflow[and-cuda]" '
                'installs one that uses GPUs)')
    if notes:
        return 'TensorFlow says: ' + '; '.join(dict.fromkeys(n.rstrip('.') for n in notes))
    return ('TensorFlow gave no reason%s' % (' here; its own lines above may say why'
                                            if lines_shown else
                                            ' (set TF_CPP_MIN_LOG_LEVEL=0 to see its lines)'))


def visible_gpus():
    """TensorFlow's physical GPUs; a ValueError if GPUs are expected here and it sees none.

    Expected: CUDA_VISIBLE_DEVICES names GPUs, or an NVIDIA driver is installed. Then
    a run on the CPU would be a silent fall-back (days instead of hours), so it is
    refused, with TensorFlow's reason (a CPU-only build, no driver or CUDA library).
    With CUDA_VISIBLE_DEVICES empty (or -1) the CPU is what was asked for.
    """
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
        return gpus
    evidence = gpu_evidence(os.environ.get('CUDA_VISIBLE_DEVICES'),
                            os.path.exists(NVIDIA_DRIVER_FILE), shutil.which('nvidia-smi'))
    if evidence:
        reason = no_gpu_reason(STARTUP['gpu_notes'],
                               tf.sysconfig.get_build_info().get('is_cuda_build', False),
                               STARTUP['lines_shown'])
        raise ValueError('GPUs are expected here (%s) but TensorFlow sees none: %s. Not '
                         'falling back to the CPU; to run on the CPU, set CUDA_VISIBLE_DEVICES= '
                         '(empty)' % (evidence, reason))
    return gpus


def worker_gpus(nr_gpu, visible, local_rank=0, local_workers=1, cuda_visible_devices=None):
    """Which of the `visible` GPUs (indices 0..visible-1) a worker's `nr_gpu` towers take.

    One worker on its host takes the first `nr_gpu`. Of several workers on one host
    (`local_workers`, this one the `local_rank`-th), each takes its own run of
    GPUs, worker r GPUs [r * nr_gpu, (r + 1) * nr_gpu), when that many are visible;
    a worker that was given its own GPUs with CUDA_VISIBLE_DEVICES (exactly
    `nr_gpu` visible) takes them all. Anything else would put two workers on one
    GPU (each reserving its memory): a ValueError saying what to do.
    """
    if local_workers <= 1 or visible >= local_workers * nr_gpu:
        start = local_rank * nr_gpu if local_workers > 1 else 0
        return list(range(start, start + nr_gpu))
    if cuda_visible_devices is not None and visible == nr_gpu:
        return list(range(nr_gpu))
    raise ValueError(
        '%d workers on this host with --nr_gpu %d each need %d GPUs, but this one (the %s) sees '
        '%d (%s): they would share GPUs. Give each worker its own with CUDA_VISIBLE_DEVICES '
        '(e.g. %s), or pass --nr_gpu %d'
        % (local_workers, nr_gpu, local_workers * nr_gpu, _ordinal(local_rank + 1), visible,
           'CUDA_VISIBLE_DEVICES is not set' if cuda_visible_devices is None
           else 'CUDA_VISIBLE_DEVICES=%s' % cuda_visible_devices,
           ', '.join('worker %d: %s' % (r, ','.join(str(r * nr_gpu + i) for i in range(nr_gpu)))
                     for r in range(min(local_workers, 2))),
           max(visible // local_workers, 1)))


def _ordinal(n):
    return '%d%s' % (n, {1: 'st', 2: 'nd', 3: 'rd'}.get(n if n < 20 else n % 10, 'th'))


def configure_devices(nr_gpu, multi_worker=False, cluster=None):
    """The devices of `nr_gpu` towers on this machine, creating them on a CPU-only one.

    With GPUs: the first `nr_gpu` of them (the others are hidden from TensorFlow);
    more towers than visible GPUs is a ValueError naming CUDA_VISIBLE_DEVICES.
    Without: the CPU is split into `nr_gpu` logical devices '/cpu:0', '/cpu:1', ...,
    which all share its cores (the same computation, not more speed), at most
    max(8, cores) of them (more is a ValueError naming the number of cores).

    GPUs expected but not seen are a ValueError, not a run on the CPU (`visible_gpus`).

    Must run before TensorFlow initialises its runtime (before the first op or
    variable). If the runtime is already up, existing logical CPU devices are used
    when there are enough of them; otherwise a RuntimeError says to start a fresh
    process. GPUs that can no longer be hidden then stay visible, with a warning.

    Args:
      nr_gpu: towers on this machine.
      multi_worker: for MultiWorkerMirroredStrategy, which runs one tower per GPU
        and a single tower on a CPU-only worker.
      cluster: the `Cluster` of a multi-worker run (implies multi_worker): of several
        workers on this host, this one takes its own GPUs (`worker_gpus`).
    Returns:
      A list of `nr_gpu` device names.
    """
    gpus = visible_gpus()
    check_tower_count(nr_gpu, len(gpus))
    if gpus:
        rank, count = cluster.local_rank() if cluster is not None else (0, 1)
        chosen = [gpus[i] for i in worker_gpus(nr_gpu, len(gpus), rank, count,
                                               os.environ.get('CUDA_VISIBLE_DEVICES'))]
        if chosen != gpus:
            try:
                tf.config.set_visible_devices(chosen, 'GPU')
            except RuntimeError:
                # The runtime is already up: the towers still run on the first nr_gpu
                # GPUs (the strategy names them), but TensorFlow holds memory on all.
                warnings.warn('configure_devices(%d) ran after TensorFlow started, so all %d '
                              'GPUs stay visible (%s): the towers use the first %d; call it '
                              'first thing to hide the others' % (nr_gpu, len(gpus),
                                                                  _visible_gpus_note(), nr_gpu))
        return ['/gpu:%d' % i for i in range(nr_gpu)]
    if multi_worker or cluster is not None:
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


def op_determinism():
    """True when TensorFlow runs deterministic kernels only (enable_op_determinism), read
    back from TensorFlow (it has no public getter)."""
    from tensorflow.python.framework import config  # pylint: disable=g-direct-tensorflow-import

    return config.is_op_determinism_enabled()


def sampling_devices(nr_gpu=None):
    """The devices sample.py draws on: `nr_gpu` towers (configure_devices), or by default
    every visible GPU, else the CPU. Call it before TensorFlow starts, as configure_devices.
    GPUs expected but not seen are a ValueError, as there."""
    if nr_gpu is not None:
        return configure_devices(nr_gpu)
    gpus = visible_gpus()
    return ['/gpu:%d' % i for i in range(len(gpus))] if gpus else ['/cpu:0']


def split_over_devices(n, devices, work):
    """`work(k, indices, device)` on near-equal parts of n items, one per device, at once.

    At most one device per item: n items on more devices use the first n of them
    (4 images on 8 GPUs: 4 GPUs, one image each). Each part runs in its own thread
    (TensorFlow releases the GIL inside its ops) under `tf.device(device)`; a device
    None runs where TensorFlow places it. Returns the parts' arrays concatenated in
    item order.

    Args:
      n: number of items (>= 1).
      devices: device names, e.g. configure_devices(2) or a strategy's worker_devices.
      work: callable(k, indices, device) -> array whose first axis follows `indices`
        (k: the part's number, 0 for the first device).
    """
    devices = list(devices)[:n]
    parts = np.array_split(np.arange(n), len(devices))

    def run(k):
        with tf.device(devices[k]) if devices[k] else contextlib.nullcontext():
            return work(k, parts[k], devices[k])

    if len(devices) == 1:
        return run(0)
    with futures.ThreadPoolExecutor(len(devices)) as pool:
        return np.concatenate(list(pool.map(run, range(len(devices)))))


def make_strategy(devices, multi_worker=False, worker_timeout=600, log=None, cluster=None):
    """A MirroredStrategy over `devices`, or a MultiWorkerMirroredStrategy of a cluster.

    The multi-worker strategy (multi_worker, or a `cluster` given) takes the cluster
    (every worker's address and this one's index) from `cluster`, by default
    `find_cluster()`: the TF_CONFIG environment variable, as TensorFlow documents,
    or Slurm's variables under srun; every worker runs the same command. Its towers
    are all the workers' devices. It first waits for the other workers
    (`wait_for_workers`: a line naming them, at most `worker_timeout` seconds, 0 for
    no limit; SIGTERM/SIGINT end the wait).

    Raises:
      ValueError: no cluster (neither TF_CONFIG nor srun), or not one with this task.
      WorkersNotReady: a worker did not answer within `worker_timeout`.
      signals.Stopped: SIGTERM or SIGINT arrived while waiting.
    """
    if multi_worker or cluster is not None:
        log = log or _print_now
        cluster = cluster or find_cluster()
        tasks, me = cluster.tasks, cluster.me
        start = time.monotonic()
        wait_for_workers(tasks, me, worker_timeout, log=log, source=cluster.source)
        remaining = worker_timeout - (time.monotonic() - start) if worker_timeout else 0
        options = communication_options(devices)
        with _Watchdog(max(remaining, 1.0) if worker_timeout else 0,
                       'the workers of %s (%s) answered, but TensorFlow could not connect '
                       'them within --worker_timeout %g s: is every address a worker of this '
                       'cluster, started with the same %s? Ending this process'
                       % (cluster.source, ', '.join(address for _, address in tasks),
                          worker_timeout, cluster.source)):
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                cluster_resolver=cluster.resolver(devices), communication_options=options)
        log('all %d workers connected (%.1f s; all-reduce: %s)'
            % (len(tasks), time.monotonic() - start, options.implementation.name))
        return strategy
    return tf.distribute.MirroredStrategy(devices=devices)


def communication_options(devices):
    """The all-reduce of a MultiWorkerMirroredStrategy whose workers have these `devices`.

    NCCL on GPU workers: the default (AUTO) picks the ring all-reduce, which copies
    every gradient through host memory and gRPC; NCCL moves them GPU to GPU (NVLink,
    InfiniBand). On CPU-only workers TensorFlow's own choice (AUTO: the ring).
    (A single machine's MirroredStrategy already sums GPU towers with NCCL.)
    """
    gpus = any(tf.DeviceSpec.from_string(d).device_type == 'GPU' for d in devices)
    implementation = tf.distribute.experimental.CommunicationImplementation
    return tf.distribute.experimental.CommunicationOptions(
        implementation=implementation.NCCL if gpus else implementation.AUTO)


# ---------------------------------------------------------- waiting for the workers

_TASK_JOBS = ('chief', 'worker')  # the tasks that train (an 'evaluator' does not)
_EXAMPLE_TF_CONFIG = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}\'')


DEFAULT_WORKER_PORT = 8888  # SlurmClusterResolver's port_base: task k of a node, port + k


class Cluster:
    """The training tasks of a multi-worker run and which one this process is.

    Attributes:
      tasks: [(task name, 'host:port')] of every training task ('chief 0', 'worker 0',
        ...), in TensorFlow's order.
      me: this task's name.
      source: where the cluster was read: 'TF_CONFIG' or 'Slurm' (for messages).
    """

    def __init__(self, tasks, me, source='TF_CONFIG', spec=None):
        self.tasks, self.me, self.source = list(tasks), me, source
        self._spec = spec  # the ClusterSpec dict of a cluster not read from TF_CONFIG

    @property
    def is_chief(self):
        return is_chief_task(self.tasks, self.me)

    def local_rank(self):
        """(this task's rank among the tasks on its host, how many tasks that host runs)."""
        host = _host_key(dict(self.tasks)[self.me])
        local = [name for name, address in self.tasks if _host_key(address) == host]
        return local.index(self.me), len(local)

    def resolver(self, devices):
        """The cluster resolver of MultiWorkerMirroredStrategy (None: its own, TF_CONFIG)."""
        if self._spec is None:
            return None
        job, index = self.me.split()
        gpus = sum(tf.DeviceSpec.from_string(d).device_type == 'GPU' for d in devices)
        return tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(self._spec), task_type=job, task_id=int(index),
            num_accelerators={'GPU': gpus}, rpc_layer='grpc')


def _host_key(address):
    host = _host_port(address)[0].lower()
    return 'localhost' if host in ('localhost', '127.0.0.1', '::1') else host


def find_cluster(worker_port=DEFAULT_WORKER_PORT):
    """The `Cluster` of this multi-worker run: TF_CONFIG if set, else Slurm's (srun).

    Under srun (SLURM_PROCID and SLURM_STEP_NUM_TASKS set), TensorFlow's
    SlurmClusterResolver numbers the tasks node by node, task k of a node at
    `worker_port` + k. Read before TensorFlow looks at the GPUs: nothing here
    touches them (each worker's GPUs are chosen by configure_devices).

    Raises:
      ValueError: neither is there, or what is there does not describe this task.
    """
    environ = os.environ
    if environ.get('TF_CONFIG') or not ('SLURM_PROCID' in environ
                                        and 'SLURM_STEP_NUM_TASKS' in environ):
        return Cluster(*cluster_of_tf_config(environ.get('TF_CONFIG')))
    return cluster_of_slurm(worker_port)


def cluster_of_slurm(worker_port):
    """The `Cluster` of the tasks of this Slurm job step (see `find_cluster`)."""
    environ = os.environ
    try:
        # GPUs are left to configure_devices (auto_set_gpu would set CUDA_VISIBLE_DEVICES
        # after TensorFlow has read it); the per-node count only has to be large enough.
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=worker_port, gpus_per_node=1 << 16, gpus_per_task=1, auto_set_gpu=False)
        spec = resolver.cluster_spec().as_dict()
    except (RuntimeError, ValueError) as e:
        raise ValueError('--multi_worker under Slurm (SLURM_PROCID=%s): %s'
                         % (environ.get('SLURM_PROCID'), e)) from None
    tasks = [('%s %d' % (job, i), address) for job in _TASK_JOBS
             for i, address in enumerate(spec.get(job, []))]
    me = '%s %d' % (resolver.task_type, resolver.task_id)
    node = environ.get('SLURMD_NODENAME')
    if node and _host_key(dict(tasks)[me]) != node.lower():
        raise ValueError("--multi_worker under Slurm (SLURM_PROCID=%s): this task runs on %s, but "
                         "the cluster places it at %s (tasks are numbered node by node): start "
                         "the tasks with srun's default block distribution (--distribution=block)"
                         % (environ.get('SLURM_PROCID'), node, dict(tasks)[me]))
    return Cluster(tasks, me, 'Slurm', spec)


class WorkersNotReady(TimeoutError):
    """A worker of the cluster did not answer within the time allowed."""


def cluster_of_tf_config(text):
    """([(task name, 'host:port')] of every training task, this task's name) from TF_CONFIG.

    Task names are 'worker 0', 'chief 0', ... Raises ValueError saying what is missing.
    """
    if not text:
        raise ValueError('--multi_worker needs the TF_CONFIG environment variable (the '
                         'cluster\'s workers and this one\'s task), e.g. %s, or to run as the '
                         'tasks of a Slurm job step (srun)' % _EXAMPLE_TF_CONFIG)
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError('TF_CONFIG is not valid JSON (%s): %r' % (e, text)) from None
    cluster = config.get('cluster') if isinstance(config, dict) else None
    task = config.get('task') if isinstance(config, dict) else None
    tasks = []
    for job in _TASK_JOBS:
        addresses = cluster.get(job, []) if isinstance(cluster, dict) else None
        if not isinstance(addresses, list) or not all(
                isinstance(a, str) and a.rpartition(':')[2].isdigit() for a in addresses):
            raise ValueError('TF_CONFIG\'s cluster must list "host:port" addresses under "worker" '
                             '(and "chief"), e.g. %s; got %r' % (_EXAMPLE_TF_CONFIG, text))
        tasks += [('%s %d' % (job, i), address) for i, address in enumerate(addresses)]
    me = ('%s %s' % (task.get('type'), task.get('index'))) if isinstance(task, dict) else None
    if me not in [name for name, _ in tasks]:
        raise ValueError('TF_CONFIG\'s "task" must name this worker in the cluster (type "worker" '
                         'or "chief" and its index, e.g. {"type": "worker", "index": 0}); got %r'
                         % (text,))
    return tasks, me


def is_chief_task(tasks, me):
    """True if task `me` of `tasks` (from `cluster_of_tf_config`) is the chief, as `is_chief`."""
    return me == 'chief 0' or (me == 'worker 0' and 'chief 0' not in dict(tasks))


def wait_for_workers(tasks, me, timeout, log=None, poll_seconds=0.2, source='TF_CONFIG'):
    """Wait until every other task of `tasks` accepts a TCP connection at its address.

    TensorFlow's MultiWorkerMirroredStrategy() waits for the cluster inside one C++
    call that holds the GIL and takes over SIGTERM, so neither a signal nor a timer
    thread can end it (measured: a worker whose peer never started ran for an hour).
    This wait comes first and is plain Python: it prints a line naming the workers,
    ends after `timeout` seconds (0: no limit), and ends on SIGTERM or SIGINT. While
    it waits it listens on this task's own address, so that the others' waits see
    this one too (it closes that listener before TensorFlow takes the port).

    Args:
      tasks, me: from `cluster_of_tf_config`.
      timeout: seconds to wait (0: no limit).
      log: prints a line (default: print, flushed).
      source: where the cluster was read (messages name it).
    Raises:
      WorkersNotReady: naming the workers that did not answer in time.
      signals.Stopped: on SIGTERM or SIGINT ('while waiting for the workers').
      ValueError: this task's own port is taken by another program.
    """
    log = log or _print_now
    addresses = dict(tasks)
    others = [name for name, _ in tasks if name != me]
    deadline = time.monotonic() + timeout if timeout else None
    stopped = functools.partial(Stopped, where='while waiting for the workers')
    with signals_raise(stopped), contextlib.closing(_listen(addresses[me], me, source)):
        log('waiting for workers %s ... (this is %s, %s; up to %s)'
            % (', '.join('%s (%s)' % (addresses[n], n) for n in others) or '(none)', me,
               addresses[me], '%g s, --worker_timeout' % timeout if timeout else 'no time limit'))
        while others:
            others = [n for n in others if not _answers(addresses[n])]
            if others and deadline is not None and time.monotonic() > deadline:
                raise WorkersNotReady(
                    '--multi_worker: %s of %s did not answer within --worker_timeout %g s: '
                    'start the same command with its %s on every machine of the cluster, '
                    'or wait longer (--worker_timeout 0: no limit)'
                    % (', '.join('%s (%s)' % (n, addresses[n]) for n in others), source, timeout,
                       source if source == 'TF_CONFIG' else 'srun'))
            if others:
                time.sleep(poll_seconds)


def _print_now(line):
    print(line, flush=True)  # seen at once in a log file too, not when the buffer fills


def _host_port(address):
    host, _, port = address.rpartition(':')
    return host.strip('[]'), int(port)


def _listen(address, name, source='TF_CONFIG'):
    """A listening socket on the port of this task's address (all interfaces, as TF's server)."""
    _, port = _host_port(address)
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(('', port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(('', port))
    except OSError as e:
        raise ValueError('--multi_worker: cannot listen on port %d of this worker\'s address %s '
                         '(%s in %s): %s' % (port, address, name, source, e.strerror or e)
                         ) from None


def _answers(address):
    try:
        socket.create_connection(_host_port(address), timeout=1.0).close()
        return True
    except OSError:
        return False


class _Watchdog:
    """Ends this process (SIGKILL) with a line on stderr if the block outlasts `seconds`.

    For TensorFlow's cluster connection, which no Python-level timeout, thread or
    signal handler can interrupt (see `wait_for_workers`): a separate process does
    the waiting. `seconds` 0: no watchdog.
    """

    _SCRIPT = ('import os, select, signal, sys\n'
               'signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run\n'
               'if not select.select([sys.stdin], [], [], float(sys.argv[2]))[0]:\n'
               '    sys.stderr.write(sys.argv[3] + "\\n")\n'
               '    sys.stderr.flush()\n'
               '    os.kill(int(sys.argv[1]), signal.SIGKILL)\n')

    def __init__(self, seconds, message):
        self.seconds, self.message = seconds, message
        self.process = None

    def __enter__(self):
        if self.seconds:
            program = (sys.argv or [''])[0]
            program = os.path.basename(program) if program not in ('', '-c') else 'python'
            self.process = subprocess.Popen(
                [sys.executable, '-c', self._SCRIPT, str(os.getpid()), str(self.seconds),
                 '%s: error: %s' % (program, self.message)], stdin=subprocess.PIPE)
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.stdin.close()  # readable (EOF): the watchdog ends quietly
            self.process.wait()


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
