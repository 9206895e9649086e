"""Training throughput: images/s of train.py's step, its FLOPs, and how close to peak it runs.

Builds the model train.py would build from the same model flags, runs its compiled
training step (towers, summed gradients, Adam, Polyak update) on random images,
and reports images/s with XLA jit_compile off and on; with --precision other than
float32, the float32 step is timed in the same run, its steps interleaved, and the
ratio printed. FLOPs per image are counted
from the forward graph (every Conv2D, transposed conv and matmul: 2 x multiply-adds);
a training step costs about 3x the forward pass (forward, and the backward pass's
two products per layer). The peak is a large tf.matmul measured here, now, in float32
and in the precision asked for.

    python3 bench/train_throughput.py -q 2 -n 64 -b 16 -g 1 --steps 20
    python3 bench/train_throughput.py --steps 3          # the original's 5 x 160 model
    python3 bench/train_throughput.py --steps 3 --jit off --precision bfloat16

Prints a table; the last line is JSON with `images_per_sec` (the faster setting)
and every measurement, appended to bench/results.jsonl (bench/results.py).
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import results  # noqa: E402

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags as absl_flags  # noqa: E402

import flags  # noqa: E402,F401  (the model flags of train.py)

absl_flags.DEFINE_integer('steps', 10, 'Timed training steps per setting.', lower_bound=1)
absl_flags.DEFINE_integer('warmup', 2, 'Untimed steps after the first (compiling) one.',
                          lower_bound=0)
absl_flags.DEFINE_enum('jit', 'both', ['both', 'off', 'on'], 'XLA jit_compile settings to time.')
absl_flags.DEFINE_integer('channels', 3, 'Image channels (3 RGB, 1 gray).')
absl_flags.DEFINE_integer('peak_size', 2048, 'n of the n x n float32 matmul that measures the '
                          'peak.', lower_bound=64)
absl_flags.DEFINE_integer('num_classes', 10, 'Classes when -c is given.', lower_bound=1)
FLAGS = absl_flags.FLAGS
FLAGS.set_default('nr_gpu', 1)  # one tower, as the published per-GPU figures


def matmul_peak_flops(n, repeats=10, precision='float32'):
    """FLOP/s of an n x n matmul in `precision`'s compute dtype (best of a few runs of
    `repeats` products)."""
    import tensorflow as tf

    from pixel_cnn_pp import precision as precisions

    dtype = precisions.compute_dtype(precision)
    precisions.apply_tf32(precision)
    a = tf.cast(tf.random.stateless_normal([n, n], seed=[1, 2]), dtype)
    b = tf.cast(tf.random.stateless_normal([n, n], seed=[3, 4]), dtype)

    @tf.function
    def products(a, b):
        c = a
        for _ in range(repeats):
            c = tf.matmul(c, b) * (1.0 / n)
        return tf.reduce_sum(c)

    products(a, b).numpy()
    best = float('inf')
    for _ in range(5):
        start = time.perf_counter()
        products(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 * repeats / best


def forward_flops(model):
    """FLOPs of one image's forward pass: 2 x multiply-adds of every conv and matmul."""
    import tensorflow as tf

    spec = tf.TensorSpec((1,) + model.image_shape, tf.float32)
    h_spec = tf.TensorSpec((1, model.num_classes), tf.float32) if model.num_classes else None
    graph = tf.function(model.forward).get_concrete_function(spec, h_spec).graph

    def dims(tensor):
        return [int(d) for d in tensor.shape]

    total = 0
    for op in graph.get_operations():
        if op.type == 'Conv2D':  # output positions x kernel volume
            total += 2 * np.prod(dims(op.outputs[0])[:-1]) * np.prod(dims(op.inputs[1]))
        elif op.type == 'Conv2DBackpropInput':  # the transposed conv: input positions x kernel
            total += 2 * np.prod(dims(op.inputs[2])[:-1]) * np.prod(dims(op.inputs[1]))
        elif op.type in ('MatMul', 'BatchMatMulV2', 'BatchMatMulV3'):
            a, b = dims(op.inputs[0]), dims(op.inputs[1])
            m = a[-1] if op.get_attr('adj_x' if 'Batch' in op.type else 'transpose_a') else a[-2]
            k = a[-2] if op.get_attr('adj_x' if 'Batch' in op.type else 'transpose_a') else a[-1]
            n = b[-2] if op.get_attr('adj_y' if 'Batch' in op.type else 'transpose_b') else b[-1]
            total += 2 * int(np.prod(a[:-2])) * m * k * n
    return int(total)


def model_config():
    """The ModelConfig train.py would build from the same flags (by field name)."""
    from pixel_cnn_pp.config import ModelConfig

    size = FLAGS.image_size or 32
    return ModelConfig.from_values(
        {name: FLAGS[name].value for name in ModelConfig.field_names() if name in FLAGS},
        image_shape=(size, size, FLAGS.channels),
        num_classes=FLAGS.num_classes if FLAGS.class_conditional else 0)


def build_trainer(devices, config, jit, precision='float32'):
    """A Trainer with the bench's model, initialised, and a random batch to train on."""
    from pixel_cnn_pp import distribute
    from pixel_cnn_pp.training import Trainer

    strategy = distribute.make_strategy(devices)
    trainer = Trainer(strategy, config, FLAGS.batch_size, seed=FLAGS.seed, jit_compile=jit,
                      focal_gamma=FLAGS.focal_gamma if FLAGS.focal_loss else 0.0,
                      precision=precision)
    rng = np.random.default_rng(FLAGS.seed)
    shape = (trainer.global_batch_size,) + trainer.image_shape
    images = rng.integers(0, 256, shape).astype(np.uint8)
    labels = (rng.integers(0, config.num_classes, shape[0]).astype(np.int32)
              if config.num_classes else None)
    trainer.initialize(images[:FLAGS.init_batch_size],
                       None if labels is None else labels[:FLAGS.init_batch_size])
    return trainer, images, labels


def step_seconds(trainer, images, labels):
    start = time.perf_counter()
    nll = trainer.train_step(images, labels)[1]
    if not np.isfinite(nll):
        raise FloatingPointError('the training loss is %s' % nll)
    return time.perf_counter() - start


def time_settings(devices, config, settings):
    """Median step time per setting, the settings' steps interleaved.

    Interleaving (one step of each setting in turn) makes the comparison fair on
    a machine whose load changes while the bench runs.
    """
    runs = []
    for precision, jit in settings:
        trainer, images, labels = build_trainer(devices, config, jit, precision)
        first = step_seconds(trainer, images, labels)
        for _ in range(FLAGS.warmup):
            step_seconds(trainer, images, labels)
        runs.append(dict(jit=jit, precision=precision, trainer=trainer, images=images,
                         labels=labels, first=first, times=[]))
    for _ in range(FLAGS.steps):
        for run in runs:
            run['times'].append(step_seconds(run['trainer'], run['images'], run['labels']))
    results = []
    for run in runs:
        median = float(np.median(run['times']))
        results.append(dict(jit_compile=run['jit'], precision=run['precision'],
                            images_per_sec=len(run['images']) / median,
                            seconds_per_step=median, best_seconds_per_step=min(run['times']),
                            first_step_seconds=run['first']))
    return results


def main(argv):
    del argv
    from pixel_cnn_pp import distribute

    devices = distribute.configure_devices(FLAGS.nr_gpu)
    from pixel_cnn_pp.model import PixelCNN

    config = model_config()
    flops = forward_flops(PixelCNN(config, seed=0))
    jits = {'both': [False, True], 'off': [False], 'on': [True]}[FLAGS.jit]
    # Another precision is timed beside float32's step (this project's float32 step runs
    # level with the original's: see docs/benchmarks.md).
    precisions = ['float32'] + ([FLAGS.precision] if FLAGS.precision != 'float32' else [])
    settings = [(p, jit) for p in precisions for jit in jits]
    peaks = {p: matmul_peak_flops(FLAGS.peak_size, precision=p) for p in precisions}
    timed = time_settings(devices, config, settings)
    for p in precisions:  # the best of before and after
        peaks[p] = max(peaks[p], matmul_peak_flops(FLAGS.peak_size, precision=p))
    peak = peaks['float32']

    described = 'nr_resnet %d, nr_filters %d, batch %d x %d tower(s), %s' % (
        config.nr_resnet, config.nr_filters, FLAGS.batch_size, FLAGS.nr_gpu,
        'x'.join(map(str, config.image_shape)))
    onednn = os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (on)')
    print('config: %s; TF_ENABLE_ONEDNN_OPTS %s' % (described, onednn))
    print('forward GFLOP/image %.3f, training ~3x = %.3f; matmul peak (%d x %d) %s'
          % (flops / 1e9, 3 * flops / 1e9, FLAGS.peak_size, FLAGS.peak_size,
             ', '.join('%s %.1f GFLOP/s' % (p, v / 1e9) for p, v in peaks.items())))
    print('%-10s %-12s %10s %10s %14s %12s %16s %12s'
          % ('precision', 'jit_compile', 'images/s', 's/step', 'first step s', 'GFLOP/s',
             'of its peak', 'vs float32'))
    float32_rate = {r['jit_compile']: r['images_per_sec'] for r in timed
                    if r['precision'] == 'float32'}
    for r in timed:
        r['achieved_flops'] = r['images_per_sec'] * 3 * flops
        r['fraction_of_peak'] = r['achieved_flops'] / peaks[r['precision']]
        r['speedup_over_float32'] = r['images_per_sec'] / float32_rate[r['jit_compile']]
        print('%-10s %-12s %10.3f %10.3f %14.1f %12.1f %15.1f%% %11.2fx'
              % (r['precision'], r['jit_compile'], r['images_per_sec'], r['seconds_per_step'],
                 r['first_step_seconds'], r['achieved_flops'] / 1e9,
                 100 * r['fraction_of_peak'], r['speedup_over_float32']))
    best = max((r for r in timed if r['precision'] == FLAGS.precision),
               key=lambda r: r['images_per_sec'])
    results.record('train_throughput', dict(
        images_per_sec=best['images_per_sec'], jit_compile=best['jit_compile'],
        precision=FLAGS.precision, speedup_over_float32=best['speedup_over_float32'],
        matmul_peaks_flops=peaks, fraction_of_peak=best['fraction_of_peak'], config=described,
        towers=FLAGS.nr_gpu, batch_size=FLAGS.batch_size, onednn=onednn,
        forward_flops_per_image=flops, train_flops_per_image=3 * flops,
        matmul_peak_flops=peak, results=timed))


if __name__ == '__main__':
    app.run(main)
