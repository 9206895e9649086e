"""The benches' results file: one JSON line per run, appended to bench/results.jsonl.

Every bench ends with `results.record(name, figures)`: it prints the run's line (the bench's
last line of output) and appends it to the committed results file, which `bench/report.py`
turns into the tables of docs/benchmarks.md. A line holds where and how the figures were
measured, so a table never needs a date or a machine typed by hand:

    {"bench": "sample_speed", "date": "2026-12-05T02:40:11Z", "machine": "AMD EPYC, 2 cores,
     24 GiB", "cpu_model": "AMD EPYC", "cpu_flags": ["avx2", ...], "tensorflow": "2.21.0",
     "python": "3.11.2", "command": "python3 bench/sample_speed.py --runs 4@2x64",
     "commit": "7d209cb", "figures": {...}}

Lines carried over from figures measured before this file existed have "imported" (where
they were written down) instead of "commit", and may have a "note" (shown beside the
command in the tables) and "conditions" (kept in the file only).

This module imports no TensorFlow (the version is read from the installed package's
metadata), so report.py and the tests can read the file without it.
"""

import datetime
import json
import math
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'bench', 'results.jsonl')

# The CPU flags that decide which kernels TensorFlow's CPU build runs (the rest of
# /proc/cpuinfo's list says nothing about these benches).
KERNEL_FLAGS = ('sse4_2', 'avx', 'avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16',
                'avx512_fp16', 'amx_tile', 'amx_bf16', 'amx_int8')


def cpu():
    """(model name, the flags of KERNEL_FLAGS it has), from /proc/cpuinfo where there is one."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    name = value.strip()
                elif key.strip() == 'flags':
                    flags = set(value.split())
    except OSError:
        pass
    return name, [f for f in KERNEL_FLAGS if f in flags]


def memory_gib():
    try:
        return round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30)
    except (ValueError, OSError, AttributeError):
        return None


def package_version(name):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:  # not installed, or no metadata
        return None


def commit():
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ('+changes' if dirty.stdout.strip() else '')


def command_line(argv=None):
    argv = sys.argv if argv is None else argv
    script = os.path.relpath(os.path.abspath(argv[0]), ROOT)
    return ' '.join(['python3', script] + [_quoted(a) for a in argv[1:]])


def _quoted(arg):
    return arg if arg and all(c.isalnum() or c in '-_=.,@/:+' for c in arg) else json.dumps(arg)


def describe_run(bench, figures, argv=None, now=None):
    """The results line of one run of `bench` that measured `figures` (a JSON-able dict)."""
    name, flags = cpu()
    gib = memory_gib()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return dict(
        bench=bench, date=now.strftime('%Y-%m-%dT%H:%M:%SZ'),
        machine='%s, %d cores%s' % (name, os.cpu_count() or 1,
                                    ', %d GiB' % gib if gib else ''),
        cpu_model=name, cpu_flags=flags, tensorflow=package_version('tensorflow'),
        python=platform.python_version(), command=command_line(argv), commit=commit(),
        figures=figures)


def _finite(value):
    """`value` with NaN and infinities as None (null), so that every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def record(bench, figures, path=RESULTS):
    """Print the run's line and append it to the results file; returns the line (a dict).
    A figure that is NaN (not measured) is written as null."""
    line = _finite(describe_run(bench, figures))
    text = json.dumps(line, allow_nan=False)
    print(text, flush=True)
    with open(path, 'a', encoding='utf-8') as f:
        f.write(text + '\n')
    return line


def read(path=RESULTS):
    """Every line of the results file, oldest first; a line that is not JSON is a ValueError."""
    lines = []
    with open(path, encoding='utf-8') as f:
        for number, text in enumerate(f, 1):
            if text.strip():
                try:
                    lines.append(json.loads(text))
                except ValueError as e:
                    raise ValueError('%s line %d is not JSON (%s)' % (path, number, e)) from None
    return lines
