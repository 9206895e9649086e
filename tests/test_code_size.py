"""The library's size rules: no function over 60 lines, the cached sampler its schedule only."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = os.path.join(ROOT, 'pixel_cnn_pp')


def function_lengths(source):
    """(name, first line, lines) of every function of `source`, nested ones too: from its
    `def` to its last line, without its docstring."""
    lengths = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if ast.get_docstring(node) is not None:
                lines -= node.body[0].end_lineno - node.body[0].lineno + 1
            lengths.append((node.name, node.lineno, lines))
    return lengths


def test_the_measure_counts_code_not_docstrings():
    source = 'def f():\n    """One\n    two."""\n    a = 1\n    def g():\n        return a\n' \
             '    return g\n'
    assert sorted(function_lengths(source)) == [('f', 1, 5), ('g', 5, 2)]


def test_no_function_in_the_library_is_over_60_lines():
    long = []
    for name in sorted(os.listdir(LIBRARY)):
        if name.endswith('.py'):
            with open(os.path.join(LIBRARY, name)) as f:
                long += ['%s:%d %s (%d lines)' % (name, line, function, lines)
                         for function, line, lines in function_lengths(f.read()) if lines > 60]
    assert not long, long


def test_cached_sampler_is_its_schedule_only():
    with open(os.path.join(LIBRARY, 'cached_sampler.py')) as f:
        assert len(f.read().splitlines()) <= 450
