"""pixel_cnn_pp/distribute.py and the towers of training.py: devices, and towers that add up.

Towers on a CPU-only machine are logical CPU devices, which must exist before
TensorFlow starts; tests that need two of them run a small script in a fresh
process.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from pixel_cnn_pp import distribute, signals

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(source, env=None, timeout=240):
    """Run Python `source` in a fresh process at the repo root; its last stdout line as JSON."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
    full_env.update(env or {})
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(source)], cwd=ROOT,
                            env=full_env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_more_towers_than_gpus_names_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0,1')
    with pytest.raises(ValueError, match=r'--nr_gpu 4 but only 2 GPUs visible '
                                         r'\(CUDA_VISIBLE_DEVICES=0,1\)'):
        distribute.check_tower_count(4, 2)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES')
    with pytest.raises(ValueError, match='CUDA_VISIBLE_DEVICES is not set'):
        distribute.check_tower_count(2, 1)


def test_towers_fit_visible_gpus_or_a_cpu_only_machine():
    distribute.check_tower_count(2, 2)
    distribute.check_tower_count(8, 0)  # no GPU: the CPU is split into 8 devices
    with pytest.raises(ValueError, match='positive integer'):
        distribute.check_tower_count(0, 0)


def test_more_cpu_towers_than_8_or_one_per_core_are_refused_naming_the_cores():
    with pytest.raises(ValueError, match=r'--nr_gpu 64 on a machine without GPUs .* would split '
                                         r'its 2 CPU cores into 64 logical devices.*at most '
                                         r'max\(8, cores\) = 8 are allowed; pass --nr_gpu 8'):
        distribute.check_tower_count(64, 0, cpu_cores=2)
    distribute.check_tower_count(8, 0, cpu_cores=2)  # the original's default still runs
    distribute.check_tower_count(16, 0, cpu_cores=16)
    with pytest.raises(ValueError, match='its 16 CPU cores into 17 .* = 16 are allowed'):
        distribute.check_tower_count(17, 0, cpu_cores=16)
    distribute.check_tower_count(64, 64)  # GPUs: one tower each, however many
    with pytest.raises(ValueError, match='positive integer'):
        distribute.check_tower_count(True, 0)


@pytest.mark.parametrize('visible, driver, smi, expected', [
    (None, False, None, None),                    # a CPU machine: logical CPU towers
    ('', True, '/usr/bin/nvidia-smi', None),      # the CPU asked for, on a GPU machine
    ('-1', True, None, None),
    ('0,1', False, None, 'CUDA_VISIBLE_DEVICES=0,1'),
    ('GPU-8c1f0a', False, None, 'CUDA_VISIBLE_DEVICES=GPU-8c1f0a'),
    (None, True, None, 'an NVIDIA driver is loaded (/proc/driver/nvidia/version)'),
    (None, False, '/usr/bin/nvidia-smi', 'nvidia-smi is installed (/usr/bin/nvidia-smi)'),
])
def test_gpus_are_expected_where_cuda_visible_devices_or_a_driver_says_so(visible, driver, smi,
                                                                          expected):
    assert distribute.gpu_evidence(visible, driver, smi) == expected


def test_the_reason_for_no_gpu_is_tensorflows_own():
    notes = ['Could not find cuda drivers on your machine, GPU will not be used.',
             'failed call to cuInit: INTERNAL: CUDA error (303)',
             'Could not find cuda drivers on your machine, GPU will not be used.']
    assert distribute.no_gpu_reason(notes, True, False) == (
        'TensorFlow says: Could not find cuda drivers on your machine, GPU will not be used; '
        'failed call to cuInit: INTERNAL: CUDA error (303)')
    assert 'a CPU-only build' in distribute.no_gpu_reason(notes, False, False)
    assert 'TF_CPP_MIN_LOG_LEVEL=0' in distribute.no_gpu_reason([], True, False)
    assert 'its own lines above' in distribute.no_gpu_reason([], True, True)


def test_towers_after_tensorflow_started_need_a_fresh_process():
    import tensorflow as tf

    tf.constant(1.0)  # the runtime is up now, with however many CPU devices it has
    have = len(tf.config.list_logical_devices('CPU'))
    assert distribute.configure_devices(have) == ['/cpu:%d' % i for i in range(have)]
    with pytest.raises(RuntimeError, match='fresh process'):
        distribute.configure_devices(have + 1)


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv('TF_CONFIG', raising=False)
    monkeypatch.delenv('SLURM_PROCID', raising=False)
    with pytest.raises(ValueError, match='needs the TF_CONFIG .* or to run as the tasks of a '
                                         r'Slurm job step \(srun\)'):
        distribute.make_strategy(['/cpu:0'], multi_worker=True)
    monkeypatch.setenv('TF_CONFIG', '{cluster')
    with pytest.raises(ValueError, match='not valid JSON'):
        distribute.make_strategy(['/cpu:0'], multi_worker=True)


def test_gpu_workers_ask_for_nccl_and_cpu_workers_for_tensorflows_choice(monkeypatch):
    import tensorflow as tf

    nccl = tf.distribute.experimental.CommunicationImplementation.NCCL
    auto = tf.distribute.experimental.CommunicationImplementation.AUTO
    assert distribute.communication_options(['/gpu:0', '/gpu:1']).implementation == nccl
    assert distribute.communication_options(
        ['/job:worker/replica:0/task:1/device:GPU:0']).implementation == nccl
    assert distribute.communication_options(['/cpu:0']).implementation == auto
    # make_strategy hands the options of its devices to MultiWorkerMirroredStrategy.
    made = []
    monkeypatch.setattr(tf.distribute, 'MultiWorkerMirroredStrategy',
                        lambda **kwargs: made.append(kwargs) or 'strategy')
    monkeypatch.setattr(distribute, 'wait_for_workers', lambda *args, **kwargs: None)
    monkeypatch.setenv('TF_CONFIG', _tf_config(['127.0.0.1:1', '127.0.0.1:2']))
    lines = []
    assert distribute.make_strategy(['/gpu:0', '/gpu:1'], multi_worker=True, worker_timeout=0,
                                    log=lines.append) == 'strategy'
    assert made[0]['communication_options'].implementation == nccl
    assert lines[-1].startswith('all 2 workers connected (') and 'all-reduce: NCCL' in lines[-1]


def test_multi_worker_on_cpu_is_one_tower_per_worker():
    with pytest.raises(ValueError, match='--nr_gpu 1'):
        distribute.configure_devices(2, multi_worker=True)


@pytest.mark.parametrize('nr_gpu, visible, rank, workers, cuda, expected', [
    (8, 8, 0, 1, None, list(range(8))),         # one worker: the first nr_gpu
    (2, 8, 0, 1, '0,1,2,3,4,5,6,7', [0, 1]),
    (2, 8, 1, 4, None, [2, 3]),                 # 4 workers on an 8-GPU host: 2 each
    (2, 8, 3, 4, None, [6, 7]),
    (2, 2, 1, 2, '2,3', [0, 1]),                # each given its own by CUDA_VISIBLE_DEVICES
])
def test_each_worker_on_a_host_takes_its_own_gpus(nr_gpu, visible, rank, workers, cuda,
                                                   expected):
    assert distribute.worker_gpus(nr_gpu, visible, rank, workers, cuda) == expected


@pytest.mark.parametrize('nr_gpu, visible, rank, workers, cuda', [
    (2, 2, 1, 2, None),      # both would take GPUs 0 and 1 of the host
    (4, 6, 1, 2, '0,1,2,3,4,5'),
    (2, 3, 0, 2, '0,1,2'),
])
def test_workers_that_would_share_a_gpu_are_refused(nr_gpu, visible, rank, workers, cuda):
    with pytest.raises(ValueError, match=r'%d workers on this host with --nr_gpu %d each need %d '
                                         r'GPUs, but this one \(the %s\) sees %d .*they would '
                                         r'share GPUs. Give each worker its own with '
                                         r'CUDA_VISIBLE_DEVICES \(e.g. worker 0: '
                       % (workers, nr_gpu, workers * nr_gpu, ('1st', '2nd')[rank], visible)):
        distribute.worker_gpus(nr_gpu, visible, rank, workers, cuda)


_SLURM = dict(SLURM_PROCID='3', SLURM_STEP_NUM_TASKS='4', SLURM_STEP_NODELIST='gpu[07-08]',
              SLURM_STEP_TASKS_PER_NODE='2(x2)', SLURMD_NODENAME='gpu08')


def test_under_srun_the_cluster_comes_from_slurm_without_tf_config(monkeypatch):
    """TensorFlow's SlurmClusterResolver on SLURM_* variables: 2 nodes x 2 tasks, this task the
    4th (TensorFlow 2.16-2.21 expand the node list themselves; no scontrol is called)."""
    monkeypatch.delenv('TF_CONFIG', raising=False)
    monkeypatch.setenv('PATH', '')  # nothing to call: no scontrol, no nvidia-smi
    for name, value in _SLURM.items():
        monkeypatch.setenv(name, value)
    cluster = distribute.find_cluster(worker_port=23456)
    assert cluster.source == 'Slurm'
    assert cluster.tasks == [('worker 0', 'gpu07:23456'), ('worker 1', 'gpu07:23457'),
                             ('worker 2', 'gpu08:23456'), ('worker 3', 'gpu08:23457')]
    assert cluster.me == 'worker 3' and not cluster.is_chief
    assert cluster.local_rank() == (1, 2)  # the second task of gpu08: GPUs [2, 4) of 4
    resolver = cluster.resolver(['/gpu:0', '/gpu:1'])  # what MultiWorkerMirroredStrategy takes
    assert resolver.num_accelerators() == {'GPU': 2}
    assert (resolver.task_type, resolver.task_id) == ('worker', 3)
    assert resolver.cluster_spec().as_dict() == {'worker': [a for _, a in cluster.tasks]}
    assert cluster.resolver(['/cpu:0']).num_accelerators() == {'GPU': 0}
    # TF_CONFIG, where both are set, wins.
    monkeypatch.setenv('TF_CONFIG', _tf_config(['a:1', 'b:2'], 1))
    assert distribute.find_cluster().source == 'TF_CONFIG'


@pytest.mark.parametrize('change, message', [
    (dict(SLURMD_NODENAME='gpu07'), r'this task runs on gpu07, but the cluster places it at '
                                    r'gpu08:8889 .*--distribution=block'),
    (dict(SLURM_STEP_TASKS_PER_NODE='1(x2)'), 'Requested 4 tasks but only 2 were assigned'),
    (dict(SLURM_STEP_NODELIST='gpu[07-'), 'Invalid hostlist format'),
])
def test_a_slurm_step_that_does_not_describe_this_task_is_refused(monkeypatch, change, message):
    monkeypatch.delenv('TF_CONFIG', raising=False)
    for name, value in dict(_SLURM, **change).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=r'--multi_worker under Slurm \(SLURM_PROCID=3\): .*'
                       + message):
        distribute.find_cluster()


# Trains the same 3 steps with 1 and 2 towers, dropout off, a class-conditional model
# (so labels are split too), from the same initial weights.
_ONE_VERSUS_TWO = """
    import json
    import numpy as np
    from pixel_cnn_pp import distribute
    devices = distribute.configure_devices(2)
    from pixel_cnn_pp.training import Trainer

    options = dict(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=2,
                   num_classes=3, dropout_p=0.0)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 256, (8, 8, 8, 3)).astype(np.uint8),
                rng.integers(0, 3, 8).astype(np.int32)) for _ in range(3)]
    test_x = rng.integers(0, 256, (11, 8, 8, 3)).astype(np.uint8)
    test_y = rng.integers(0, 3, 11).astype(np.int32)
    out = {}
    for towers in (1, 2):
        strategy = distribute.make_strategy(devices[:towers])
        trainer = Trainer(strategy, options, batch_size=8 // towers, seed=5)
        trainer.initialize(*batches[0])
        losses = [[float(v) for v in trainer.train_step(x, y)] for x, y in batches]
        state = trainer.weights + trainer.polyak.shadows + trainer.optimizer.m \\
            + trainer.optimizer.v
        copies = max((float(np.abs(a.numpy() - b.numpy()).max())
                      for v in state for a, b in zip(strategy.experimental_local_results(v),
                                                     strategy.experimental_local_results(v)[1:])),
                     default=0.0)
        out[towers] = dict(losses=losses, state=[v.numpy() for v in state], copies=copies,
                           test=trainer.evaluate(test_x, test_y), step=int(trainer.step.numpy()))
        if towers == 2:
            try:
                trainer.train_step(batches[0][0][:7], batches[0][1][:7])
                out['split_error'] = None
            except ValueError as e:
                out['split_error'] = str(e)
    # The largest difference of each array relative to its largest value.
    print(json.dumps(dict(
        losses_1=out[1]['losses'], losses_2=out[2]['losses'],
        state_diff=max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
                       for a, b in zip(out[1]['state'], out[2]['state'])),
        copies_2=out[2]['copies'], test_1=out[1]['test'],
        test_2=out[2]['test'], steps=[out[1]['step'], out[2]['step']],
        split_error=out['split_error'])))
"""


def test_two_towers_train_like_one_tower_on_the_same_global_batch():
    r = run_script(_ONE_VERSUS_TWO)
    # Same summed loss (objective, NLL) at every step: the towers' sums add up to the batch's.
    for (obj_1, nll_1), (obj_2, nll_2) in zip(r['losses_1'], r['losses_2']):
        assert obj_2 == pytest.approx(obj_1, rel=1e-5)
        assert nll_2 == pytest.approx(nll_1, rel=1e-5)
    # Same weights, Polyak averages and Adam moments after 3 updates, up to the order of
    # float sums (4e-5 of each array's largest value here), and both towers' copies identical.
    assert r['state_diff'] <= 2e-4, r
    assert r['copies_2'] == 0.0
    assert r['steps'] == [3, 3]
    # Evaluation over towers covers all 11 images (the last batch padded and masked).
    assert r['test_1'][1] == r['test_2'][1] == 11
    assert r['test_2'][0] == pytest.approx(r['test_1'][0], rel=1e-5)
    assert 'cannot be split evenly over the towers' in r['split_error']
    assert '2 x 4 = 8' in r['split_error']


def _free_port():
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


_WORKER = """
    import json
    import numpy as np
    from pixel_cnn_pp import distribute
    devices = distribute.configure_devices(1, multi_worker=True)
    from pixel_cnn_pp import workers
    from pixel_cnn_pp.training import Trainer

    strategy = distribute.make_strategy(devices, multi_worker=True)
    options = dict(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=2,
                   dropout_p=0.5)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (8, 8, 8, 3)).astype(np.uint8) for _ in range(2)]
    trainer = Trainer(strategy, options, batch_size=4, seed=5)
    trainer.initialize(batches[0])
    losses = [float(trainer.train_step(x)[1]) for x in batches]
    chief = distribute.is_chief(strategy)
    out = dict(losses=losses, towers=strategy.num_replicas_in_sync, chief=chief,
               weights=float(sum(np.abs(w.numpy()).sum() for w in trainer.weights)))
    # What workers.py exchanges: every worker's numbers, and the chief's weights.
    out['gathered'] = workers.gather_from_workers(strategy, [7, int(chief)]).tolist()
    if not chief:  # this worker's weights drift away from the chief's ...
        trainer.weights[0].assign(trainer.weights[0] + 1.0)
    workers.broadcast_from_chief(strategy, trainer.weights)  # ... and come back exactly
    out['after_broadcast'] = float(sum(np.abs(w.numpy()).sum() for w in trainer.weights))
    print(json.dumps(out))
"""


def test_two_workers_train_alike_and_exchange_numbers_and_weights():
    """MultiWorkerMirroredStrategy from TF_CONFIG: 2 local workers x 1 tower. (That they train
    as 2 towers on one machine, dropout included, is train.py's cluster test in
    tests/test_train.py: its run ends with the weights of the 2-tower run.)"""
    ports = [_free_port(), _free_port()]
    cluster = {'worker': ['localhost:%d' % p for p in ports]}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
    workers = []
    for index in range(2):
        worker_env = dict(env, TF_CONFIG=json.dumps(
            {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}))
        workers.append(subprocess.Popen(
            [sys.executable, '-c', textwrap.dedent(_WORKER)], cwd=ROOT, env=worker_env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [w.communicate(timeout=240) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    first, second = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert first['towers'] == second['towers'] == 2
    assert (first['chief'], second['chief']) == (True, False)
    assert second['losses'] == first['losses'] and len(first['losses']) == 2
    assert second['weights'] == first['weights']
    assert first['gathered'] == second['gathered'] == [[7, 1], [7, 0]]  # the chief first
    assert first['after_broadcast'] == second['after_broadcast'] == first['weights']


# ------------------------------------------------------- waiting for the other workers

def _tf_config(addresses, index=0):
    return json.dumps({'cluster': {'worker': addresses}, 'task': {'type': 'worker',
                                                                   'index': index}})


@pytest.mark.parametrize('config, message', [
    ({'cluster': {'worker': ['a:1']}}, '"task" must name this worker'),
    ({'cluster': {'worker': ['a:1']}, 'task': {'type': 'worker', 'index': 1}},
     '"task" must name this worker'),
    ({'cluster': {'worker': 'a:1,b:2'}, 'task': {'type': 'worker', 'index': 0}},
     'must list "host:port" addresses'),
    ({'cluster': {'worker': ['a']}, 'task': {'type': 'worker', 'index': 0}},
     'must list "host:port" addresses'),
    ([1, 2], 'must list "host:port" addresses'),
])
def test_a_tf_config_without_this_task_or_addresses_is_refused(config, message):
    with pytest.raises(ValueError, match=message):
        distribute.cluster_of_tf_config(json.dumps(config))


def test_tf_config_names_every_task_with_its_address():
    tasks, me = distribute.cluster_of_tf_config(json.dumps(
        {'cluster': {'chief': ['c:1'], 'worker': ['w:2', 'w:3'], 'evaluator': ['e:4']},
         'task': {'type': 'worker', 'index': 1}}))
    assert tasks == [('chief 0', 'c:1'), ('worker 0', 'w:2'), ('worker 1', 'w:3')]
    assert me == 'worker 1'


def test_the_wait_ends_when_the_other_worker_answers_and_listens_meanwhile():
    import socket
    import threading

    mine, theirs = '127.0.0.1:%d' % _free_port(), '127.0.0.1:%d' % _free_port()
    tasks, me = distribute.cluster_of_tf_config(_tf_config([mine, theirs]))
    seen = []

    def other_worker():  # sees this one's port open while it waits, then opens its own
        seen.append(distribute._answers(mine))
        with socket.create_server(('127.0.0.1', int(theirs.split(':')[1]))) as server:
            done.wait(30)

    done = threading.Event()
    lines = []
    thread = threading.Timer(0.5, other_worker)
    thread.start()
    try:
        distribute.wait_for_workers(tasks, me, timeout=30, log=lines.append)
    finally:
        done.set()
        thread.join()
    assert seen == [True]
    assert lines == ['waiting for workers %s (worker 1) ... (this is worker 0, %s; up to 30 s, '
                     '--worker_timeout)' % (theirs, mine)]
    assert not distribute._answers(mine)  # the listener is closed, for TensorFlow to take


def test_the_wait_times_out_naming_the_worker_that_never_started():
    mine, theirs = '127.0.0.1:%d' % _free_port(), '127.0.0.1:%d' % _free_port()
    tasks, me = distribute.cluster_of_tf_config(_tf_config([mine, theirs]))
    with pytest.raises(distribute.WorkersNotReady,
                       match=r'worker 1 \(%s\) of TF_CONFIG did not answer within '
                             r'--worker_timeout 0.5 s' % theirs):
        distribute.wait_for_workers(tasks, me, timeout=0.5, log=lambda line: None)


def test_sigterm_ends_the_wait_and_the_handlers_are_restored():
    import signal
    import threading

    mine, theirs = '127.0.0.1:%d' % _free_port(), '127.0.0.1:%d' % _free_port()
    tasks, me = distribute.cluster_of_tf_config(_tf_config([mine, theirs]))
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(signals.Stopped, match='stopped by signal 15 while waiting') as e:
        distribute.wait_for_workers(tasks, me, timeout=0, log=lambda line: None)
    timer.join()
    assert e.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


_CONNECT = """
    import os
    from pixel_cnn_pp import distribute
    devices = distribute.configure_devices(1, multi_worker=True)
    distribute.make_strategy(devices, multi_worker=True, worker_timeout=float(os.environ['WAIT']))
    print('connected')
"""


def test_a_worker_address_that_answers_but_never_joins_ends_the_process_with_a_line():
    """Another program on worker 1's port: the TCP wait passes, TensorFlow's connection
    (one C++ call no Python timeout reaches) hangs, and the watchdog process ends it."""
    import socket

    with socket.create_server(('127.0.0.1', 0)) as impostor:
        addresses = ['127.0.0.1:%d' % _free_port(), '127.0.0.1:%d' % impostor.getsockname()[1]]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT, WAIT='4',
                   TF_CONFIG=_tf_config(addresses))
        result = subprocess.run([sys.executable, '-c', textwrap.dedent(_CONNECT)], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, (result.returncode, result.stderr[-3000:])
    assert 'connected' not in result.stdout
    assert result.stdout.startswith('waiting for workers %s (worker 1)' % addresses[1])
    errors = [line for line in result.stderr.splitlines() if ': error: ' in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert 'answered, but TensorFlow could not connect them within --worker_timeout 4 s' \
        in errors[0]


# ------------------------------------------------- what the workers agree on (workers.py)

_TASKS = [('worker 0', 'a:1'), ('worker 1', 'b:1'), ('worker 2', 'c:1')]


def _rows(*workers_values):
    """Exchange rows of workers: (run id, GPU fingerprints, settings) each."""
    from pixel_cnn_pp import workers

    return [workers._exchange_row(run, gpus, settings) for run, gpus, settings in workers_values]


def test_workers_that_agree_go_on():
    from pixel_cnn_pp import workers

    settings = dict(load_params=True, batch_size=4, init_checkpoint=False)
    rows = _rows((7, [1, 2], settings), (7, [3, 4], settings), (7, [], settings))
    assert workers.disagreement(rows, _TASKS, list(settings), True) is None


def test_a_worker_without_r_beside_workers_with_r_is_refused():
    from pixel_cnn_pp import workers

    chief = dict(load_params=True, batch_size=4)
    rows = _rows((7, [], chief), (7, [], chief), (0, [], dict(chief, load_params=False)))
    # The same line on every worker: the chief and worker 1 (with -r), worker 2 (without).
    for mine in (True, False):
        message, fatal = workers.disagreement(rows, _TASKS, list(chief), mine)
        assert fatal and message == ('--multi_worker: worker 2 (c:1) was started without -r and '
                                     'the chief, worker 0 (a:1), with it: start every worker '
                                     'with the same command')
    message, fatal = workers.disagreement(_rows((7, [], chief), (7, [], dict(
        chief, batch_size=8))), _TASKS, list(chief), True)
    assert fatal and 'worker 1 (b:1) was started with another --batch_size than the chief' \
        in message


def test_a_folder_per_machine_is_refused_with_r_and_said_without():
    from pixel_cnn_pp import workers

    settings = dict(load_params=True)
    rows = _rows((7, [], settings), (0, [], settings))  # worker 1: no run.lock of the chief's
    message, fatal = workers.disagreement(rows, _TASKS, list(settings), True)
    assert fatal and message.startswith("--multi_worker: worker 1 (b:1) does not see the "
                                        "chief's --save_dir")
    assert 'on a filesystem they share' in message
    settings = dict(load_params=False)
    message, fatal = workers.disagreement(_rows((7, [], settings), (9, [], settings)), _TASKS,
                                          list(settings), False)
    assert not fatal and message.endswith('training goes on, but -r will not resume this run')


def test_two_workers_on_one_gpu_are_refused(tmp_path):
    from pixel_cnn_pp import workers

    # Both given CUDA_VISIBLE_DEVICES=3 on host h: the same physical GPU.
    same = workers.gpu_ids(['/gpu:0'], 'h', '3')
    assert same == workers.gpu_ids(['/job:worker/task:1/device:GPU:0'], 'h', '3')
    assert same != workers.gpu_ids(['/gpu:0'], 'h', '2') != workers.gpu_ids(['/gpu:0'], 'g', '3')
    assert workers.gpu_ids(['/cpu:0'], 'h') == []
    rows = _rows((7, same, {}), (7, workers.gpu_ids(['/gpu:0'], 'h', '2,3'), {}),
                 (7, same, {}))
    message, fatal = workers.disagreement(rows, _TASKS, [], True)
    assert fatal and message.startswith('--multi_worker: worker 0 (a:1) and worker 2 (c:1) use '
                                        'the same GPU of one host')
    # The run id: the lock file's fingerprint, 0 without one.
    assert workers.run_id(str(tmp_path)) == 0
    (tmp_path / 'run.lock').write_text('pid 1 host h token x')
    assert workers.run_id(str(tmp_path)) not in (0, workers.run_id(str(tmp_path / 'none')))


def test_a_failed_collective_is_one_line_naming_the_step_and_the_checkpoint():
    import types

    import tensorflow as tf

    from pixel_cnn_pp import workers

    trainer = types.SimpleNamespace(step=tf.Variable(12, dtype=tf.int64))
    manager = types.SimpleNamespace(latest_checkpoint='/runs/x/ckpt-3')
    error = tf.errors.UnavailableError(None, None, 'Graph execution error:\n\nDetected at node '
                                       'CollectiveReduceV2 defined at (most recent call last):\n'
                                       '  File "train.py", line 1\n\nCollective ops is aborted by: '
                                       'failed to connect to all addresses\n [[{{node x}}]]')
    with pytest.raises(workers.WorkerLost) as lost:
        with workers.collective_errors(trainer, manager):
            raise error
    assert str(lost.value) == (
        '--multi_worker: the cluster lost a worker at step 12 (UnavailableError: Collective ops '
        'is aborted by: failed to connect to all addresses): the last checkpoint is '
        '/runs/x/ckpt-3; start every worker again with -r')
    assert isinstance(lost.value, OSError)  # train.py's one error line, not a traceback
