"""Does -ac / -nl pay? Equal-sized models, same steps, same data: test bits/dim and step time.

Trains a PixelCNN++ (train.py's Trainer on one device) with no extension, with
CoordConv (-ac), with causal non-local blocks (-nl) and with both, on the bundled offline patches (-d patches), each for
the same number of steps from the same seed and data order, then reports the test
bits/dim with the Polyak-averaged weights and the mean time of a training step.

    python3 bench/extensions.py --steps 300

Prints a table and ends with one JSON line, appended to bench/results.jsonl (bench/results.py).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import results  # noqa: E402

from pixel_cnn_pp.data.loader import get_loader  # noqa: E402
from pixel_cnn_pp import ModelConfig, bits_per_dim, distribute  # noqa: E402

VARIANTS = [('none', {}), ('-ac', dict(add_coords=True)), ('-nl', dict(non_local=True)),
            ('-ac -nl', dict(add_coords=True, non_local=True))]


def run(name, options, args, strategy, precision='float32'):
    """Train one variant with train.py's Trainer; its test bits/dim (in float32) and step
    time. `precision`: what the training step computes in (bench/precision_quality.py)."""
    from pixel_cnn_pp.training import Trainer

    rng = np.random.RandomState(args.seed)
    train = get_loader('patches', None, 'train', args.batch_size, rng=rng, shuffle=True)
    test = get_loader('patches', None, 'test', 100)
    config = ModelConfig(train.get_observation_size(), nr_resnet=args.nr_resnet,
                         nr_filters=args.nr_filters, nr_logistic_mix=args.nr_logistic_mix,
                         dropout_p=args.dropout_p, **options)
    trainer = Trainer(strategy, config, args.batch_size, learning_rate=args.learning_rate,
                      lr_decay=args.lr_decay, polyak_decay=args.polyak_decay, seed=args.seed,
                      precision=precision)
    trainer.initialize(train.next(args.batch_size))
    train.reset()
    times, train_nats = [], []
    while len(times) < args.steps:
        for x in train:
            start = time.perf_counter()
            train_nats.append(float(trainer.train_step(x)[1]))
            times.append(time.perf_counter() - start)
            if len(times) == args.steps:
                break
    nats, count = trainer.evaluate(test.data)
    shape = config.image_shape
    return dict(variant=name, precision=precision, params=int(sum(np.prod(v.shape) for v in trainer.weights)),
                steps=args.steps,
                train_bpd_last50=float(bits_per_dim(np.mean(train_nats[-50:]) / args.batch_size,
                                                    shape)),
                test_bpd=float(bits_per_dim(nats / count, shape)),
                step_seconds=float(np.median(times[1:])))


def parser_with_defaults(description):
    """The bench's options (model, training), shared with bench/precision_quality.py."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--steps', type=int, default=300)
    parser.add_argument('--batch_size', type=int, default=16)
    parser.add_argument('--nr_resnet', type=int, default=1)
    parser.add_argument('--nr_filters', type=int, default=32)
    parser.add_argument('--nr_logistic_mix', type=int, default=5)
    parser.add_argument('--dropout_p', type=float, default=0.5)
    parser.add_argument('--learning_rate', type=float, default=2e-3)
    parser.add_argument('--lr_decay', type=float, default=0.999995)
    parser.add_argument('--polyak_decay', type=float, default=0.995)
    parser.add_argument('--seed', type=int, default=1)
    return parser


def main():
    parser = parser_with_defaults(__doc__.split('\n')[0])
    parser.add_argument('--variants', default=','.join(n for n, _ in VARIANTS),
                        help='comma-separated subset of: ' + ', '.join(n for n, _ in VARIANTS))
    args = parser.parse_args()
    wanted = [v.strip() for v in args.variants.split(',')]
    strategy = distribute.make_strategy(distribute.configure_devices(1))
    rows = [run(name, options, args, strategy) for name, options in VARIANTS if name in wanted]
    print('%-8s %9s %6s %16s %9s %10s' % ('flags', 'params', 'steps', 'train bpd (50)',
                                          'test bpd', 's/step'))
    for r in rows:
        print('%-8s %9d %6d %16.3f %9.3f %10.3f' % (r['variant'], r['params'], r['steps'],
                                                    r['train_bpd_last50'], r['test_bpd'],
                                                    r['step_seconds']))
    results.record('extensions', dict(config=vars(args), results=rows))


if __name__ == '__main__':
    main()
