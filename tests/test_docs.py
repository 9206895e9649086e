"""The documentation is checked against the repository: benchmarks.md against the results
file, the layout table against the modules, the README's length and words. No TensorFlow."""

import copy
import json
import os
import re
import subprocess

import pytest

from bench import report, results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ['README.md'] + ['docs/' + n for n in sorted(os.listdir(os.path.join(ROOT, 'docs')))
                        if n.endswith('.md')]
LAYOUT_ROW = re.compile(r'^\| `([^`]+\.py)` \|')


def read(path):
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        return f.read()


def repository_modules():
    """Every .py file git tracks (every one below ROOT outside git) but the test files
    (tests/test_<name>.py tests <name>)."""
    try:
        listed = subprocess.run(['git', 'ls-files', '--cached', '*.py'], cwd=ROOT,
                                capture_output=True, text=True, check=True,
                                timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):  # not a git checkout: walk the folders
        listed = []
        for folder, subfolders, names in os.walk(ROOT):
            subfolders[:] = [s for s in subfolders if not s.startswith('.') and s != '__pycache__']
            listed += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names
                       if n.endswith('.py')]
    return sorted(p for p in listed
                  if os.path.exists(os.path.join(ROOT, p))
                  and not re.match(r'tests/test_\w+\.py$', p))


def layout_modules(text):
    section = text.split('\n## Layout\n', 1)[1].split('\n## ', 1)[0]
    return [m.group(1) for m in map(LAYOUT_ROW.match, section.splitlines()) if m]


def not_in_layout(text, modules):
    listed = set(layout_modules(text))
    return [m for m in modules if m not in listed]


def test_benchmarks_md_is_what_report_py_writes_from_the_committed_results():
    text = read('docs/benchmarks.md')
    assert report.render(text, results.read()) == text, (
        'docs/benchmarks.md is not current: run python3 bench/report.py')


def test_a_changed_result_changes_benchmarks_md():
    text, lines = read('docs/benchmarks.md'), results.read()
    changed = copy.deepcopy(lines)
    line = next(l for l in changed if l['bench'] == 'sample_speed')
    line['figures']['results'][0]['forward_s'] = 123.25
    new = report.render(text, changed)
    assert new != text and '| 123.25 |' in new
    more = lines + [dict(lines[0], date='2030-01-01T00:00:00Z', command='python3 bench/x.py')]
    assert '| 2030-01-01 |' in report.render(text, more)


def test_every_generated_table_row_names_its_date_machine_and_command():
    for line in results.read():
        assert re.match(r'\d{4}-\d\d-\d\d', line['date']), line
        assert line['machine'] and line['command'] and line['bench'] in {
            bench for bench, _, _ in report.TABLES.values()}, line
        assert ('imported' in line) != ('commit' in line), line
    names = re.findall(r'^<!-- bench/report\.py: (\w+) -->$', read('docs/benchmarks.md'), re.M)
    assert sorted(names) == sorted(report.TABLES)


def test_a_bench_run_appends_one_strict_json_line_naming_where_and_how(tmp_path, capsys):
    path = str(tmp_path / 'results.jsonl')
    results.record('sample_speed', {'results': [{'naive_warm_s': float('nan')}]}, path=path)
    results.record('extensions', {'results': []}, path=path)
    first, second = results.read(path)
    assert capsys.readouterr().out.splitlines()[0] == json.dumps(first)
    assert first['figures']['results'][0]['naive_warm_s'] is None
    assert first['bench'] == 'sample_speed' and second['bench'] == 'extensions'
    for key in ('date', 'machine', 'cpu_model', 'cpu_flags', 'python', 'command'):
        assert key in first, key
    assert first['command'].startswith('python3 ')


def test_a_table_marker_without_its_end_is_refused():
    with pytest.raises(ValueError, match='train_throughput'):
        report.render('<!-- bench/report.py: train_throughput -->\n', [])
    with pytest.raises(ValueError, match='no table named'):
        report.render('<!-- bench/report.py: nothing -->\n' + report.END, [])


def test_every_bench_records_its_run_in_the_results_file():
    bench = os.path.join(ROOT, 'bench')
    scripts = [n for n in os.listdir(bench) if n.endswith('.py')
               and n not in ('results.py', 'report.py')]
    assert scripts
    for name in scripts:
        assert 'results.record(' in read('bench/' + name), 'bench/%s does not call ' \
            'results.record' % name


def test_every_module_is_in_the_layout_table():
    modules = repository_modules()
    assert 'pixel_cnn_pp/model.py' in modules and 'train.py' in modules
    text = read('docs/architecture.md')
    assert not_in_layout(text, modules) == []
    stale = [m for m in layout_modules(text) if not os.path.exists(os.path.join(ROOT, m))]
    assert stale == [], 'the layout table lists modules that do not exist: %s' % stale


def test_a_module_missing_from_the_layout_table_is_found():
    text = read('docs/architecture.md')
    without = '\n'.join(l for l in text.splitlines() if not l.startswith('| `pixel_cnn_pp/nn.py`'))
    assert not_in_layout(without, repository_modules()) == ['pixel_cnn_pp/nn.py']


def test_every_test_file_is_in_the_testing_table():
    text = read('docs/testing.md').split('\n## The test files\n', 1)[1]
    listed = set(m.group(1) for m in map(LAYOUT_ROW.match, text.splitlines()) if m)
    files = set('tests/' + n for n in os.listdir(os.path.join(ROOT, 'tests'))
                if re.match(r'test_\w+\.py$', n))
    assert files - listed == set(), 'docs/testing.md does not list these test files'
    assert listed - files == set(), 'docs/testing.md lists test files that do not exist'


def test_readme_is_a_manual_of_at_most_250_lines():
    assert len(read('README.md').splitlines()) <= 250


def test_the_docs_do_not_describe_how_the_work_was_organised():
    found = [(path, n, line) for path in DOCS
             for n, line in enumerate(read(path).splitlines(), 1)
             if re.search(r'session|the issue|load average', line, re.I)]
    assert found == []


def test_the_docs_links_to_files_of_the_repository_exist():
    for path in DOCS:
        folder = os.path.dirname(os.path.join(ROOT, path))
        for target in re.findall(r'\]\(([^)#:]+)(?:#[^)]*)?\)', read(path)):
            assert os.path.exists(os.path.join(folder, target)), '%s links to %s' % (path, target)
