"""pixel_cnn_pp/files.py: files land whole, with a new file's usual mode; a folder's lock."""

import json
import os
import stat
import time

import pytest

from pixel_cnn_pp import files


def test_written_json_is_whole_and_readable_as_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / 'sub' / 'config.json'
        files.write_json(str(path), {'b': 1, 'a': [2, 3]})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {'a': [2, 3], 'b': 1}
    # mkstemp creates 0600 files; other users of a shared machine must be able to read it.
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(path.parent) == ['config.json']


def test_unserialisable_json_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'flags.json'
    files.write_json(str(path), {'ok': True})
    with pytest.raises(TypeError):
        files.write_json(str(path), {'bad': object()})
    assert json.loads(path.read_text()) == {'ok': True}
    assert os.listdir(tmp_path) == ['flags.json']


# ------------------------------------------------------------------------ FolderLock

FILES_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'pixel_cnn_pp', 'files.py')
# Takes the lock on argv[1] in a fresh process (files.py alone: no TensorFlow to start),
# says so, and holds it until its stdin closes.
_HOLDER = '''
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('files', %r)
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
if len(sys.argv) > 2:
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together with the others
try:
    lock = files.FolderLock(sys.argv[1], log=lambda line: None)
except files.FolderInUse as e:
    print('refused:', e, flush=True)
    sys.exit(3)
print('locked', flush=True)
sys.stdin.read()
lock.release()
''' % FILES_PY


def _holder(folder, start_at=None):
    import subprocess
    import sys

    argv = [sys.executable, '-c', _HOLDER, str(folder)] + ([str(start_at)] if start_at else [])
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _ended_pid():
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, '-c', 'pass'])
    process.wait()
    return process.pid


def test_the_lock_holds_pid_and_host_and_leaves_nothing_when_released(tmp_path):
    import socket

    folder = tmp_path / 'runs' / 'a'
    lock = files.FolderLock(str(folder))
    held = json.loads((folder / files.LOCK_FILE).read_text())
    assert (held['pid'], held['host']) == (os.getpid(), socket.gethostname())
    lock.release()
    assert not (tmp_path / 'runs').exists()  # created by the lock, empty: removed
    with files.FolderLock(str(folder)):
        (folder / 'flags.json').write_text('{}')
    assert os.listdir(folder) == ['flags.json']  # written into: kept, the lock removed


def test_a_second_process_is_refused_naming_the_first_ones_pid(tmp_path):
    first = _holder(tmp_path)
    try:
        assert first.stdout.readline() == 'locked\n'
        with pytest.raises(files.FolderInUse, match=r'%s is in use by another run: pid %d on '
                                                    r'host ' % (tmp_path, first.pid)):
            files.FolderLock(str(tmp_path))
    finally:
        first.stdin.close()
        first.wait(timeout=60)
    assert os.listdir(tmp_path) == []  # the first released it; the refusal wrote nothing
    files.FolderLock(str(tmp_path)).release()


def test_a_lock_whose_process_has_ended_is_replaced(tmp_path):
    import socket

    lock_file = tmp_path / files.LOCK_FILE
    lock_file.write_text(json.dumps(dict(pid=_ended_pid(), host=socket.gethostname())))
    notes = []
    with files.FolderLock(str(tmp_path), log=notes.append):
        assert json.loads(lock_file.read_text())['pid'] == os.getpid()
    assert len(notes) == 1 and 'replaced the stale lock' in notes[0] and 'has ended' in notes[0]
    # This very pid, but recorded for a process that started at another time: reused, stale.
    if files._process_start(os.getpid()) is not None:
        lock_file.write_text(json.dumps(dict(pid=os.getpid(), host=socket.gethostname(),
                                             process_start=1)))
        files.FolderLock(str(tmp_path), log=notes.append).release()
        assert len(notes) == 2
    assert os.listdir(tmp_path) == []


def test_a_lock_of_another_host_is_refused_saying_which_file_to_delete(tmp_path):
    lock_file = tmp_path / files.LOCK_FILE
    lock_file.write_text(json.dumps(dict(pid=_ended_pid(), host='elsewhere.example')))
    with pytest.raises(files.FolderInUse, match=r'locked by pid \d+ on host elsewhere\.example.*'
                                                r'another host.*delete %s' % lock_file):
        files.FolderLock(str(tmp_path), what='--save_dir')


def test_an_unreadable_lock_is_replaced_only_when_old(tmp_path):
    lock_file = tmp_path / files.LOCK_FILE
    lock_file.write_text('{"pid": ')  # as a creator killed half-way through writing leaves it
    os.utime(lock_file, (time.time() - 60, time.time() - 60))
    notes = []
    files.FolderLock(str(tmp_path), log=notes.append).release()
    assert 'unreadable' in notes[0] and os.listdir(tmp_path) == []


def test_of_processes_starting_together_exactly_one_takes_the_lock(tmp_path):
    import socket

    # A stale lock is there too: replacing it must not let two of them in.
    (tmp_path / files.LOCK_FILE).write_text(json.dumps(dict(pid=_ended_pid(),
                                                            host=socket.gethostname())))
    start = time.time() + 1.5
    holders = [_holder(tmp_path, start_at=start) for _ in range(4)]
    try:
        answers = [h.stdout.readline() for h in holders]
    finally:
        for h in holders:
            h.stdin.close()
            h.wait(timeout=60)
    assert answers.count('locked\n') == 1, answers
    assert all(a.startswith('refused: ') and 'in use by another run' in a
               for a in answers if a != 'locked\n'), answers
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('make, message', [
    (lambda root: root / 'file', 'is a file, not a folder'),
    (lambda root: root / 'file' / 'sub', 'cannot be created: .*file is a file, not a folder'),
    (lambda root: '', 'is empty: give a folder'),
])
def test_a_folder_that_cannot_be_made_is_refused_at_once(tmp_path, make, message):
    (tmp_path / 'file').write_text('a file')
    with pytest.raises(ValueError, match='--save_dir .*' + message if make(tmp_path) else
                       '--save_dir ' + message):
        files.FolderLock(str(make(tmp_path)), what='--save_dir')
    assert sorted(os.listdir(tmp_path)) == ['file']
