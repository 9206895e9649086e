"""Write the tables of docs/benchmarks.md from bench/results.jsonl.

    python3 bench/report.py            # rewrites the tables in docs/benchmarks.md
    python3 bench/report.py --check    # exit 1 (saying which file) if they are not current

docs/benchmarks.md is prose with generated tables. Each table sits between a marker line
`<!-- bench/report.py: NAME -->` and `<!-- end of generated table -->`; everything between
them is rewritten from the results file (every line of bench NAME, oldest first), and the
prose around them is left as it is. The output depends only on the two files, so the same
results give the same bytes (tests/test_docs.py checks the committed file is current).
Every row names the date, the machine and the command of the run it comes from.
"""

import argparse
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import results  # noqa: E402

DOC = os.path.join(results.ROOT, 'docs', 'benchmarks.md')
BEGIN = re.compile(r'^<!-- bench/report\.py: (\w+) -->$')
END = '<!-- end of generated table -->'
MISSING = '–'


def number(value, decimals=2, suffix=''):
    """`value` rounded to `decimals`, thousands separated, trailing zeros dropped but one
    (12.40 as 12.4, 1.00 as 1.0: figures carried over from prose keep their own digits)."""
    if value is None or isinstance(value, bool) or (isinstance(value, float)
                                                     and math.isnan(value)):
        return MISSING
    if isinstance(value, str):
        return value + suffix
    text = '{:,.{}f}'.format(value, decimals)
    if '.' in text:
        text = text.rstrip('0')
        text += '0' if text.endswith('.') else ''
    return text + suffix


def percent(value):
    return MISSING if value is None else number(100 * value, 0, '%')


def duration(seconds):
    if seconds is None:
        return MISSING
    minutes, rest = divmod(int(round(seconds)), 60)
    return '%d min %d s' % (minutes, rest) if minutes else '%d s' % rest


def run_cells(line):
    """The date, machine and command of a results line, as table cells."""
    machine = line.get('machine', MISSING)
    if line.get('tensorflow'):
        machine += ', TensorFlow ' + line['tensorflow']
    if line.get('imported'):
        machine += ' (imported)'
    command = '`%s`' % line['command']
    if line.get('note'):
        command += ' (%s)' % line['note']
    return [line['date'][:10], machine, command]


def train_throughput(line):
    figures = line['figures']
    for i, r in enumerate(figures['results']):
        yield [figures.get('config', MISSING) if i == 0 else '', r.get('run', ''), r['precision'],
               'on' if r['jit_compile'] else 'off', number(r['images_per_sec'], 3),
               percent(r.get('fraction_of_peak')),
               number(r.get('speedup_over_float32'), 2, '×'),
               number(r.get('original_images_per_sec'), 3)]


def precision_quality(line):
    for r in line['figures']['results']:
        yield [r['precision'], number(r['steps'], 0), number(r['train_bpd_last50'], 3),
               number(r['test_bpd'], 3), number(r['test_bpd_difference'], 3),
               number(r['step_seconds'], 3)]


def sample_speed(line):
    for r in line['figures']['results']:
        for mode in ('graph', 'xla'):
            if 'fast_%s_warm_s' % mode not in r:
                continue
            yield ['%d' % r['num_samples'], '%dx%d' % (r['nr_resnet'], r['nr_filters']),
                   r['precision'], number(r.get('forward_s'), 2),
                   number(r.get('naive_warm_s'), 0), {'graph': 'graph', 'xla': 'XLA'}[mode],
                   number(r.get('fast_%s_first_s' % mode), 1),
                   number(r['fast_%s_warm_s' % mode], 2),
                   number(r.get('speedup_%s_warm' % mode), 0, '×'),
                   number(r.get('x_forward_%s' % mode), 2, '×')]


def extensions(line):
    for r in line['figures']['results']:
        yield [r['variant'], number(r['params'], 0), number(r['train_bpd_last50'], 3),
               number(r['test_bpd'], 3), number(r['step_seconds'], 3)]


def loader_throughput(line):
    for name, r in line['figures']['results'].items():
        yield [name, number(r['images'], 0), number(r['load_s'], 2),
               number(r['loader_images_per_s'], 0), number(r['tf_data_images_per_s'], 0)]


def compression_sizes(line):
    for name, r in line['figures']['sizes'].items():
        yield [name, number(r['bytes'], 0), number(r['bits_per_dim'], 4)]


def compression_speed(line):
    for name, r in line['figures'].get('speed', {}).items():
        yield [name, number(r['encode'], 2), number(r['decode'], 2)]


def towers(line):
    """A row per checkout and tower count; the ratios as the line holds them, else computed
    from the medians as the bench computes them (first step / first step at the fewest
    towers; images/s / (N/N0 x images/s at N0))."""
    figures = line['figures']
    names = {'after': 'this checkout', 'before': '`--before`'}
    for code, rows in figures['medians'].items():
        counts = sorted(rows, key=int)
        base = rows[counts[0]]
        for n in counts:
            r = rows[n]
            yield [names.get(code, code), n, number(r['first_step_s'], 1),
                   number(r.get('first_step_vs_1_tower',
                                r['first_step_s'] / base['first_step_s']), 2, '×'),
                   number(r['images_per_s'], 2),
                   percent(r.get('scaling_efficiency', r['images_per_s'] / (
                       int(n) / int(counts[0]) * base['images_per_s'])))]


def sampler_agreement(line):
    for r in line['figures']['runs']:
        yield [r['model'], '%d' % r['seed'], '%d' % r['images'], '%d' % r['equal']]


def main_command(line):
    figures = line['figures']
    for i, r in enumerate(figures['epochs']):
        took = duration(figures['seconds']) if i == 0 else ''
        if i == 0 and figures.get('install_included'):
            took += ', the install included'
        yield ['%d' % r['epoch'], number(r['train_bpd'], 4), number(r['test_bpd'], 4),
               duration(r.get('seconds')), took]


def test_suite(line):
    figures = line['figures']
    yield [number(figures.get('passed'), 0), number(figures.get('skipped'), 0),
           duration(figures['suite_seconds']), duration(figures.get('ci_seconds'))]


# name -> (the bench whose lines it shows, its figure columns, rows of one line)
TABLES = {
    'train_throughput': ('train_throughput', [
        'model', 'run', 'precision', 'XLA', 'images/s', 'of its matmul peak', '÷ float32',
        "the original's images/s"], train_throughput),
    'precision_quality': ('precision_quality', [
        'precision', 'steps', 'train bits/dim (last 50 steps)', 'test bits/dim (in float32)',
        '− float32', 's/step'], precision_quality),
    'sample_speed': ('sample_speed', [
        'images', 'model', 'precision', 'one forward pass, s', 'naive, s (extrapolated)',
        'cached', 'cached first run, s', 'cached warm, s', 'speed-up (warm)',
        'cached warm ÷ forward'], sample_speed),
    'extensions': ('extensions', [
        'flags', 'parameters', 'train bits/dim (last 50 steps)', 'test bits/dim', 's/step'],
        extensions),
    'loader_throughput': ('loader_throughput', [
        'format', 'images', 'read files, s', 'DataLoader, images/s', 'tf.data, images/s'],
        loader_throughput),
    'compression_sizes': ('compression', ['', 'bytes', 'bits/dim'], compression_sizes),
    'compression_speed': ('compression', ['model / codec', 'encode, images/s',
                                          'decode, images/s'], compression_speed),
    'towers': ('towers', ['code', 'towers', 'first step, s', '÷ fewest towers', 'images/s',
                          'scaling efficiency'], towers),
    'sampler_agreement': ('sampler_agreement', ['model', 'seed', 'images', 'equal'],
                          sampler_agreement),
    'main_command': ('main_command', ['epoch', 'train bits/dim', 'test bits/dim', 'epoch took',
                                      'run took'], main_command),
    'test_suite': ('test_suite', ['passed', 'skipped', 'tests took', '.ci/run took'],
                   test_suite),
}


def table(name, lines):
    """The markdown table NAME: a row per figure row of each line of its bench."""
    bench, columns, rows_of = TABLES[name]
    header = ['date', 'machine', 'command'] + columns
    out = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    for line in (l for l in lines if l['bench'] == bench):
        for i, row in enumerate(rows_of(line)):
            cells = run_cells(line) if i == 0 else ['', '', '']
            out.append('| ' + ' | '.join(c.replace('|', '\\|') for c in cells + row) + ' |')
    return out


def render(text, lines):
    """`text` (docs/benchmarks.md) with every generated table rewritten from `lines`."""
    out, name = [], None
    for number_, line in enumerate(text.split('\n'), 1):
        if name is None:
            out.append(line)
            match = BEGIN.match(line)
            if match:
                name = match.group(1)
                if name not in TABLES:
                    raise ValueError('docs/benchmarks.md line %d: no table named %r (known: %s)'
                                     % (number_, name, ', '.join(sorted(TABLES))))
                out.extend(table(name, lines))
        elif line == END:
            out.append(line)
            name = None
    if name is not None:
        raise ValueError('docs/benchmarks.md: the table %r has no %r line' % (name, END))
    return '\n'.join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='only say whether docs/benchmarks.md is current (exit 1 if not)')
    args = parser.parse_args()
    with open(DOC, encoding='utf-8') as f:
        text = f.read()
    try:
        new = render(text, results.read())
    except ValueError as e:
        sys.exit('report.py: %s' % e)
    if args.check:
        if new != text:
            sys.exit('report.py: docs/benchmarks.md is not what bench/results.jsonl gives: '
                     'run python3 bench/report.py')
        print('docs/benchmarks.md is current')
        return
    if new != text:
        from pixel_cnn_pp import files

        def write(path):
            with open(path, 'w', encoding='utf-8') as f:
                f.write(new)
        files.atomic_write(DOC, write)
    print('docs/benchmarks.md: %d tables from %d results' % (
        sum(1 for l in new.split('\n') if BEGIN.match(l)), len(results.read())))


if __name__ == '__main__':
    main()
