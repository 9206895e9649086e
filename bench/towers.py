"""Towers: what this machine runs, and training's start-up and speed at 1, 2, 4 and 8 towers.

Prints TensorFlow's version and the CUDA and cuDNN it was built with, the devices
(GPUs with their compute capability), whether TF32, bfloat16 and float16 are in
use, the all-reduce the step runs, then for 1, 2, 4 and 8 towers (as many as there
are GPUs; on a machine without GPUs, logical CPU devices, which share the CPU's
cores: not GPU figures, and it says so) the time to the first training step (the
step traced, optimised and run) and the steady images/s of train.py's step with
its input, and the scaling efficiency: images/s at N towers / (N x images/s at 1).

Each measurement is a fresh process (towers on a CPU are logical devices, made
before TensorFlow starts). `--before DIR` also measures the code of another
checkout (e.g. one of main, to compare today's behaviour with a change) in the
same run: the two are measured in turn, tower count by tower count, `--repeats`
times, and the table gives the medians, so that a shared machine's changing load
falls on both alike.

    python3 bench/towers.py                               # the default model, 5 x 160 at 32x32
    python3 bench/towers.py --small --before ../main --repeats 3
    python3 bench/towers.py --towers 1,2 -ac -nl --precision bfloat16

--small is nr_resnet 5, nr_filters 8, 8x8 images, 2 per tower (start-up dominates).
The last line is JSON with every measurement and the medians, appended to
bench/results.jsonl (bench/results.py).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--towers', default='1,2,4,8', help='tower counts (those beyond the GPUs '
                   'there are, or 8 on a CPU, are left out)')
    p.add_argument('--small', action='store_true', help='nr_resnet 5, nr_filters 8, 8x8, '
                   'batch 2 per tower')
    p.add_argument('--before', help='a checkout of the code to measure too (e.g. main)')
    p.add_argument('--repeats', type=int, default=1, help='measurements of each')
    p.add_argument('--steps', type=int, default=None, help='timed steady steps (default 20 '
                   'with --small, else 5)')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps after the first')
    p.add_argument('--precision', default='tf32', help="train.py's --precision (default tf32)")
    p.add_argument('--jit_compile', action='store_true')
    p.add_argument('-ac', '--add_coords', action='store_true')
    p.add_argument('-nl', '--non_local', action='store_true')
    p.add_argument('--child', type=int, help=argparse.SUPPRESS)  # towers, in a child process
    p.add_argument('--code', default=ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 20 if args.small else 5
    return args


def model_options(args):
    size, options = (8, dict(nr_resnet=5, nr_filters=8)) if args.small else \
        (32, dict(nr_resnet=5, nr_filters=160))
    options.update(image_shape=(size, size, 3), add_coords=args.add_coords,
                   non_local=args.non_local)
    return options, 2 if args.small else 16


# ---------------------------------------------------------------- one measurement

def child(args):
    """Train at `args.child` towers with the code in `args.code`; print one JSON line."""
    started = time.perf_counter()
    sys.path.insert(0, args.code)
    from pixel_cnn_pp import distribute

    devices = distribute.configure_devices(args.child)
    import tensorflow as tf

    from pixel_cnn_pp.training import Trainer

    options, batch = model_options(args)
    trainer = Trainer(distribute.make_strategy(devices), options, batch,
                      jit_compile=args.jit_compile, precision=args.precision)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (trainer.global_batch_size,) + trainer.image_shape,
                          dtype=np.uint8)
    trainer.initialize(images[:batch])
    built = time.perf_counter()
    # train.py's input: a prefetched tf.data pipeline of global batches, given to each
    # tower as its own share where the code does that (Trainer.distribute).
    dataset = tf.data.Dataset.from_tensors(images).repeat().prefetch(2)
    distribute_input = getattr(trainer, 'distribute', None)
    batches = iter(distribute_input(lambda: dataset) if distribute_input else dataset)

    def step():
        begun = time.perf_counter()
        nll = float(trainer.train_step(next(batches))[1])  # the read waits for the step
        if not np.isfinite(nll):
            raise FloatingPointError('the training loss is %s' % nll)
        return time.perf_counter() - begun

    first = step()
    for _ in range(args.warmup):
        step()
    times = [step() for _ in range(args.steps)]
    print(json.dumps(dict(
        towers=args.child, first_step_s=first, start_to_first_step_s=built - started + first,
        step_s=float(np.median(times)),
        images_per_s=trainer.global_batch_size / float(np.median(times)),
        all_reduce=_all_reduce_ops(trainer))))


def _all_reduce_ops(trainer):
    """The all-reduce ops of the compiled step and how they communicate, e.g.
    {'CollectiveReduceV2': 'auto'}, read from its graph ({} with one tower)."""
    found = {}
    for function in trainer._train_fn._list_all_concrete_functions():  # noqa: SLF001
        for op in function.graph.get_operations():
            if op.type.startswith('Collective') and 'Reduce' in op.type:
                found[op.type] = op.get_attr('communication_hint').decode()
            elif op.type.startswith('Nccl'):
                found[op.type] = 'nccl'
    return found


def measure(args, towers, code):
    command = [sys.executable, os.path.abspath(__file__), '--child', str(towers),
               '--code', code] + [a for a in sys.argv[1:] if not a.startswith('--before')
                                  and a != args.before]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit('%d towers with %s failed:\n%s' % (towers, code, result.stderr[-3000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------- the machine

def describe_machine(precision):
    """Lines saying what TensorFlow and the devices are, and what the step computes in."""
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    lines = ['TensorFlow %s, built with CUDA %s, cuDNN %s' % (
        tf.__version__, build.get('cuda_version', 'none'), build.get('cudnn_version', 'none'))]
    gpus = tf.config.list_physical_devices('GPU')
    capabilities = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get('compute_capability')
        capabilities.append(capability)
        lines.append('%s: %s, compute capability %s' % (
            gpu.name, details.get('device_name', '?'),
            '.'.join(map(str, capability)) if capability else 'unknown'))
    if not gpus:
        lines.append('no GPU: the towers are logical CPU devices sharing %d cores (%s); these '
                     'are not GPU figures' % (os.cpu_count() or 1, platform.processor() or
                                                 platform.machine()))
    ampere = bool(capabilities) and all(c and c >= (8, 0) for c in capabilities)
    lines.append('precision %s: TF32 %s; bfloat16 %s; float16 %s' % (
        precision,
        'in use (GPUs of compute capability 8.0+)' if precision == 'tf32' and ampere else
        'not in use' + (' (no GPU of compute capability 8.0+)' if precision == 'tf32' else ''),
        'in use' if precision == 'bfloat16' else 'not in use',
        'in use, with loss scaling' if precision == 'float16' else 'not in use'))
    return lines, dict(tensorflow=tf.__version__, cuda=build.get('cuda_version'),
                       cudnn=build.get('cudnn_version'), gpus=len(gpus),
                       compute_capabilities=capabilities)


def tower_counts(args, gpus):
    wanted = [int(n) for n in args.towers.split(',')]
    return [n for n in wanted if n <= (gpus or 8)]


# ---------------------------------------------------------------------- report

def medians(runs, key):
    return float(np.median([r[key] for r in runs]))


def report(args, results, counts, variants):
    summary = {}
    for name, _ in variants:
        rows = summary[name] = {}
        for n in counts:
            runs = results[name][n]
            rows[n] = dict(first_step_s=medians(runs, 'first_step_s'),
                           start_to_first_step_s=medians(runs, 'start_to_first_step_s'),
                           images_per_s=medians(runs, 'images_per_s'))
        base = rows[counts[0]]
        for n in counts:
            rows[n]['first_step_vs_1_tower'] = rows[n]['first_step_s'] / base['first_step_s']
            rows[n]['scaling_efficiency'] = rows[n]['images_per_s'] / (
                n / counts[0] * base['images_per_s'])
    print('%-7s %-7s %14s %11s %16s %10s %11s' % ('code', 'towers', 'first step s',
                                                  'vs 1 tower', 'start to first s',
                                                  'images/s', 'efficiency'))
    for name, _ in variants:
        for n in counts:
            r = summary[name][n]
            print('%-7s %-7d %14.1f %10.2fx %16.1f %10.2f %10.0f%%' % (
                name, n, r['first_step_s'], r['first_step_vs_1_tower'],
                r['start_to_first_step_s'], r['images_per_s'], 100 * r['scaling_efficiency']))
    if len(variants) == 2:
        print('after vs before: ' + ', '.join(
            '%d towers first step %.2fx, images/s %.2fx' % (
                n, summary['after'][n]['first_step_s'] / summary['before'][n]['first_step_s'],
                summary['after'][n]['images_per_s'] / summary['before'][n]['images_per_s'])
            for n in counts))
    return summary


def main():
    args = parse_args()
    if args.child:
        return child(args)
    lines, machine = describe_machine(args.precision)
    options, batch = model_options(args)
    lines.append('model %s, %d images per tower%s; %d steady steps after %d' % (
        ', '.join('%s=%s' % kv for kv in sorted(options.items())), batch,
        ', jit_compile' if args.jit_compile else '', args.steps, args.warmup))
    variants = [('after', ROOT)] + ([('before', os.path.abspath(args.before))]
                                    if args.before else [])
    counts = tower_counts(args, machine['gpus'])
    runs = {name: {n: [] for n in counts} for name, _ in variants}
    for repeat in range(args.repeats):
        for n in counts:
            # Before and after in turn (and which goes first alternating), so that the
            # machine's load falls on both alike.
            order = variants if repeat % 2 == 0 else variants[::-1]
            for name, code in order:
                runs[name][n].append(measure(args, n, code))
                print('  %s, %d tower(s), run %d: first step %.1f s, %.2f images/s'
                      % (name, n, repeat + 1, runs[name][n][-1]['first_step_s'],
                         runs[name][n][-1]['images_per_s']), flush=True)
    for line in lines:
        print(line)
    all_reduce = runs['after'][counts[-1]][-1]['all_reduce']
    print('all-reduce at %d towers: %s' % (counts[-1], ', '.join(
        '%s (communication %s)' % kv for kv in all_reduce.items()) or 'none (one tower)'))
    summary = report(args, runs, counts, variants)
    sys.path.insert(0, ROOT)  # here, not at the top: a child imports only --code's modules
    from bench import results
    results.record('towers', dict(setup=machine, all_reduce=all_reduce, small=args.small,
                                  precision=args.precision, towers=counts, medians=summary,
                                  runs=runs, before=args.before))


if __name__ == '__main__':
    main()
