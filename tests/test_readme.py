"""The README's commands are the ones CI runs."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ci_runs_exactly_the_readme_test_command():
    with open(os.path.join(ROOT, '.ci', 'run')) as f:
        command = [l for l in f.read().splitlines() if l.strip()][-1]
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    assert 'pytest' in command
    assert command in readme, 'README does not show the command .ci/run runs: %s' % command


def test_layout_table_lists_every_module_of_the_library():
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    layout = readme.split('\n### Layout\n', 1)[1].split('\n## ', 1)[0]
    listed = set()
    for row in layout.splitlines():
        if row.startswith('| `pixel_cnn_pp/'):
            where = row.split('|')[1]
            listed.update(name.strip(' `').split('/')[-1] for name in where.split(',')
                          if name.strip(' `').endswith('.py'))  # not pixel_cnn_pp/data/
    modules = {f for f in os.listdir(os.path.join(ROOT, 'pixel_cnn_pp')) if f.endswith('.py')}
    assert 'model.py' in listed and 'nn.py' in listed  # the table was read
    assert not modules - listed, "README's layout table misses %s" % sorted(modules - listed)
    assert not listed - modules, "README's layout table lists %s, not in pixel_cnn_pp/" % sorted(
        listed - modules)
