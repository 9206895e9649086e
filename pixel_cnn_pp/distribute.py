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

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import warnings

import tensorflow as tf

from pixel_cnn_pp.signals import signals_raise


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
    if isinstance(nr_gpu, bool) or int(nr_gpu) != nr_gpu or nr_gpu < 1:
        raise ValueError('--nr_gpu must be a positive integer (towers, one per GPU); got %r'
                         % (nr_gpu,))
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


def configure_devices(nr_gpu, multi_worker=False):
    """The devices of `nr_gpu` towers on this machine, creating them on a CPU-only one.

    With GPUs: the first `nr_gpu` of them (the others are hidden from TensorFlow);
    more towers than visible GPUs is a ValueError naming CUDA_VISIBLE_DEVICES.
    Without: the CPU is split into `nr_gpu` logical devices '/cpu:0', '/cpu:1', ...,
    which all share its cores (the same computation, not more speed), at most
    max(8, cores) of them (more is a ValueError naming the number of cores).

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


def op_determinism():
    """True when TensorFlow runs deterministic kernels only (enable_op_determinism), read
    back from TensorFlow (it has no public getter)."""
    from tensorflow.python.framework import config  # pylint: disable=g-direct-tensorflow-import

    return config.is_op_determinism_enabled()


def sampling_devices(nr_gpu=None):
    """The devices sample.py draws on: `nr_gpu` towers (configure_devices), or by default
    every visible GPU, else the CPU. Call it before TensorFlow starts, as configure_devices."""
    if nr_gpu is not None:
        return configure_devices(nr_gpu)
    gpus = tf.config.list_physical_devices('GPU')
    return ['/gpu:%d' % i for i in range(len(gpus))] if gpus else ['/cpu:0']


def make_strategy(devices, multi_worker=False, worker_timeout=600, log=None):
    """A MirroredStrategy over `devices`, or a MultiWorkerMirroredStrategy from TF_CONFIG.

    The multi-worker strategy takes the cluster (every worker's address and this
    one's index) from the TF_CONFIG environment variable, as TensorFlow documents;
    every worker runs the same command. Its towers are all the workers' devices.
    It first waits for the other workers (`wait_for_workers`: a line naming them,
    at most `worker_timeout` seconds, 0 for no limit; SIGTERM/SIGINT end the wait).

    Raises:
      ValueError: TF_CONFIG is missing or not a cluster with this task in it.
      WorkersNotReady: a worker did not answer within `worker_timeout`.
      WaitStopped: SIGTERM or SIGINT arrived while waiting.
    """
    if multi_worker:
        log = log or _print_now
        tasks, me = cluster_of_tf_config(os.environ.get('TF_CONFIG'))
        start = time.monotonic()
        wait_for_workers(tasks, me, worker_timeout, log=log)
        remaining = worker_timeout - (time.monotonic() - start) if worker_timeout else 0
        with _Watchdog(max(remaining, 1.0) if worker_timeout else 0,
                       'the workers of TF_CONFIG (%s) answered, but TensorFlow could not connect '
                       'them within --worker_timeout %g s: is every address a worker of this '
                       'cluster, started with the same TF_CONFIG? Ending this process'
                       % (', '.join(address for _, address in tasks), worker_timeout)):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        log('all %d workers connected (%.1f s)' % (len(tasks), time.monotonic() - start))
        return strategy
    return tf.distribute.MirroredStrategy(devices=devices)


# ---------------------------------------------------------- waiting for the workers

_TASK_JOBS = ('chief', 'worker')  # the tasks that train (an 'evaluator' does not)
_EXAMPLE_TF_CONFIG = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}\'')


class WorkersNotReady(TimeoutError):
    """A worker of the cluster did not answer within the time allowed."""


class WaitStopped(Exception):
    """SIGTERM or SIGINT (`signum`) ended the wait for the workers."""

    def __init__(self, signum):
        super().__init__('stopped by signal %d while waiting for the workers' % signum)
        self.signum = signum


def cluster_of_tf_config(text):
    """([(task name, 'host:port')] of every training task, this task's name) from TF_CONFIG.

    Task names are 'worker 0', 'chief 0', ... Raises ValueError saying what is missing.
    """
    if not text:
        raise ValueError('--multi_worker needs the TF_CONFIG environment variable (the '
                         'cluster\'s workers and this one\'s task), e.g. ' + _EXAMPLE_TF_CONFIG)
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


def wait_for_workers(tasks, me, timeout, log=None, poll_seconds=0.2):
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
    Raises:
      WorkersNotReady: naming the workers that did not answer in time.
      WaitStopped: on SIGTERM or SIGINT.
      ValueError: this task's own port is taken by another program.
    """
    log = log or _print_now
    addresses = dict(tasks)
    others = [name for name, _ in tasks if name != me]
    deadline = time.monotonic() + timeout if timeout else None
    with signals_raise(WaitStopped), contextlib.closing(_listen(addresses[me], me)):
        log('waiting for workers %s ... (this is %s, %s; up to %s)'
            % (', '.join('%s (%s)' % (addresses[n], n) for n in others) or '(none)', me,
               addresses[me], '%g s, --worker_timeout' % timeout if timeout else 'no time limit'))
        while others:
            others = [n for n in others if not _answers(addresses[n])]
            if others and deadline is not None and time.monotonic() > deadline:
                raise WorkersNotReady(
                    '--multi_worker: %s of TF_CONFIG did not answer within --worker_timeout %g s: '
                    'start the same command with its TF_CONFIG on every machine of the cluster, '
                    'or wait longer (--worker_timeout 0: no limit)'
                    % (', '.join('%s (%s)' % (n, addresses[n]) for n in others), timeout))
            if others:
                time.sleep(poll_seconds)


def _print_now(line):
    print(line, flush=True)  # seen at once in a log file too, not when the buffer fills


def _host_port(address):
    host, _, port = address.rpartition(':')
    return host.strip('[]'), int(port)


def _listen(address, name):
    """A listening socket on the port of this task's address (all interfaces, as TF's server)."""
    _, port = _host_port(address)
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(('', port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(('', port))
    except OSError as e:
        raise ValueError('--multi_worker: cannot listen on port %d of this worker\'s address %s '
                         '(%s in TF_CONFIG): %s' % (port, address, name, e.strerror or e)) from None


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
