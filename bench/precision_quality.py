"""Does bfloat16 training keep the quality? float32 against bfloat16, same steps, same data.

Trains the same PixelCNN++ (train.py's Trainer on one device; nr_resnet 1, nr_filters
32 by default) on the bundled offline patches (-d patches) once per precision, from
the same seed and data order, then reports the test bits/dim of the Polyak-averaged
weights, evaluated in float32 for every precision (the Trainer's default
eval_precision), and the median step time. The goal: bfloat16 within 0.02 bits/dim
of float32.

    python3 bench/precision_quality.py --steps 300
    python3 bench/precision_quality.py --steps 300 --precisions float32,bfloat16,float16

Prints a table and ends with one JSON line, appended to bench/results.jsonl (bench/results.py).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import results  # noqa: E402

from bench.extensions import parser_with_defaults, run  # noqa: E402
from pixel_cnn_pp import distribute  # noqa: E402

GOAL = 0.02  # bits/dim between bfloat16's test figure and float32's


def main():
    parser = parser_with_defaults(__doc__.split('\n')[0])
    parser.add_argument('--precisions', default='float32,bfloat16',
                        help='comma-separated precisions to train in (float32 first: the '
                             'reference)')
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precisions.split(',')]
    strategy = distribute.make_strategy(distribute.configure_devices(1))
    rows = [run('none', {}, args, strategy, precision=p) for p in precisions]
    reference = rows[0]['test_bpd']
    print('%-10s %6s %16s %22s %12s %10s' % ('precision', 'steps', 'train bpd (50)',
                                             'test bpd (in float32)', 'difference', 's/step'))
    for r in rows:
        r['test_bpd_difference'] = r['test_bpd'] - reference
        print('%-10s %6d %16.4f %22.4f %+12.4f %10.3f'
              % (r['precision'], r['steps'], r['train_bpd_last50'], r['test_bpd'],
                 r['test_bpd_difference'], r['step_seconds']))
    within = all(abs(r['test_bpd_difference']) <= GOAL for r in rows)
    print('every precision within %.2f bits/dim of %s: %s' % (GOAL, precisions[0], within))
    results.record('precision_quality', dict(config=vars(args), goal=GOAL,
                                              within_goal=within, results=rows))


if __name__ == '__main__':
    main()
