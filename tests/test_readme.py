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

