"""pixel_cnn_pp/files.py: files land whole, with a new file's usual mode; a folder's lock."""

import json
import os
import stat
import time

import pytest

from pixel_cnn_pp import files
from pixel_cnn_pp.run_folder import LOCK_FILE as LOCK


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
    lock = files.FolderLock(sys.argv[1], 'run.lock', log=lambda line: None)
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
    lock = files.FolderLock(str(folder), LOCK)
    held = json.loads((folder / LOCK).read_text())
    assert (held['pid'], held['host']) == (os.getpid(), socket.gethostname())
    lock.release()
    assert not (tmp_path / 'runs').exists()  # created by the lock, empty: removed
    with files.FolderLock(str(folder), LOCK):
        (folder / 'flags.json').write_text('{}')
    assert os.listdir(folder) == ['flags.json']  # written into: kept, the lock removed


def test_a_second_process_is_refused_naming_the_first_ones_pid(tmp_path):
    first = _holder(tmp_path)
    try:
        assert first.stdout.readline() == 'locked\n'
        with pytest.raises(files.FolderInUse, match=r'%s is in use by another run: pid %d on '
                                                    r'host ' % (tmp_path, first.pid)):
            files.FolderLock(str(tmp_path), LOCK)
    finally:
        first.stdin.close()
        first.wait(timeout=60)
    assert os.listdir(tmp_path) == []  # the first released it; the refusal wrote nothing
    files.FolderLock(str(tmp_path), LOCK).release()


def test_a_lock_whose_process_has_ended_is_replaced(tmp_path):
    import socket

    lock_file = tmp_path / LOCK
    lock_file.write_text(json.dumps(dict(pid=_ended_pid(), host=socket.gethostname())))
    notes = []
    with files.FolderLock(str(tmp_path), LOCK, log=notes.append):
        assert json.loads(lock_file.read_text())['pid'] == os.getpid()
    assert len(notes) == 1 and 'replaced the stale lock' in notes[0] and 'has ended' in notes[0]
    # This very pid, but recorded for a process that started at another time: reused, stale.
    if files._process_start(os.getpid()) is not None:
        lock_file.write_text(json.dumps(dict(pid=os.getpid(), host=socket.gethostname(),
                                             process_start=1)))
        files.FolderLock(str(tmp_path), LOCK, log=notes.append).release()
        assert len(notes) == 2
    assert os.listdir(tmp_path) == []


def test_a_lock_of_another_host_is_refused_saying_which_file_to_delete(tmp_path):
    lock_file = tmp_path / LOCK
    lock_file.write_text(json.dumps(dict(pid=_ended_pid(), host='elsewhere.example')))
    with pytest.raises(files.FolderInUse, match=r'locked by pid \d+ on host elsewhere\.example.*'
                                                r'another host.*delete %s' % lock_file):
        files.FolderLock(str(tmp_path), LOCK, what='--save_dir')


def test_an_unreadable_lock_is_replaced_only_when_old(tmp_path):
    lock_file = tmp_path / LOCK
    lock_file.write_text('{"pid": ')  # as a creator killed half-way through writing leaves it
    os.utime(lock_file, (time.time() - 60, time.time() - 60))
    notes = []
    files.FolderLock(str(tmp_path), LOCK, log=notes.append).release()
    assert 'unreadable' in notes[0] and os.listdir(tmp_path) == []


def test_of_processes_starting_together_exactly_one_takes_the_lock(tmp_path):
    import socket

    # A stale lock is there too: replacing it must not let two of them in.
    (tmp_path / LOCK).write_text(json.dumps(dict(pid=_ended_pid(),
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
        files.FolderLock(str(make(tmp_path)), LOCK, what='--save_dir')
    assert sorted(os.listdir(tmp_path)) == ['file']


def test_a_lock_file_that_is_not_ours_is_refused_at_once_saying_how_to_remove_it(tmp_path):
    lock_file = tmp_path / LOCK
    lock_file.write_text('hello, I am not a lock')
    start = time.time()
    with pytest.raises(ValueError) as refused:
        files.FolderLock(str(tmp_path), LOCK, what='--save_dir')
    message = str(refused.value)
    assert time.time() - start < 2  # no wait for "another process starting in it"
    assert message.startswith('--save_dir %s: its lock file %s cannot be read (it holds '
                              "'hello, I am not a lock', not a lock this program writes)"
                              % (tmp_path, lock_file)), message
    assert 'if no train.py, sample.py or compress.py is running there' in message
    assert 'delete it (rm %s)' % lock_file in message and 'another process' not in message
    assert lock_file.read_text() == 'hello, I am not a lock'  # left for the user to judge
    lock_file.write_text(json.dumps([1, 2]))  # whole JSON, but not a lock
    with pytest.raises(ValueError, match='cannot be read'):
        files.FolderLock(str(tmp_path), LOCK)


def test_outputs_under_a_file_are_refused_as_a_file_not_a_folder(tmp_path):
    (tmp_path / 'file').write_text('a file')
    under = tmp_path / 'file' / 'samples'
    with pytest.raises(ValueError, match='^--output %s: its folder %s is a file, not a folder$'
                                         % (under, tmp_path / 'file')):
        files.output_lock(str(under), '--output')
    with pytest.raises(ValueError, match='cannot be created: %s is a file, not a folder'
                                         % (tmp_path / 'file')):
        files.output_lock(str(tmp_path / 'file' / 'sub' / 'samples'), '--output')
    assert os.listdir(tmp_path) == ['file']


def test_an_output_lock_refuses_a_second_claim_of_the_same_outputs_only(tmp_path):
    with files.output_lock(str(tmp_path / 'samples'), '--output'):
        assert os.listdir(tmp_path) == ['samples.lock']
        with pytest.raises(files.FolderInUse, match=r'^--output %s is in use by another run: '
                                                    r'pid %d .*pass another --output$'
                                                    % (tmp_path / 'samples', os.getpid())):
            files.output_lock(str(tmp_path / 'samples'), '--output')
        files.output_lock(str(tmp_path / 'other'), '--output').release()
        files.FolderLock(str(tmp_path), LOCK).release()  # the folder itself: free for a run
    assert os.listdir(tmp_path) == []


def test_files_written_together_all_land_or_none(tmp_path):
    for name in ('a.png', 'a.npz'):
        (tmp_path / name).write_text('old ' + name)

    def write(text):
        return lambda tmp: open(tmp, 'w').write(text)

    def fail(tmp):
        open(tmp, 'w').write('half')
        raise OSError(28, 'No space left on device')

    with pytest.raises(OSError, match='No space left'):
        files.land_together([(str(tmp_path / 'a.png'), write('new')),
                             (str(tmp_path / 'a.npz'), fail)])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        'a.png': 'old a.png', 'a.npz': 'old a.npz'}  # and no temporary file
    files.land_together([(str(tmp_path / 'a.png'), write('new')),
                         (str(tmp_path / 'a.npz'), write('new too'))])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        'a.png': 'new', 'a.npz': 'new too'}
    # replace=False: an existing file is not written over; what had landed is removed.
    with pytest.raises(FileExistsError, match='a.npz exists already'):
        files.land_together([(str(tmp_path / 'b.png'), write('new')),
                             (str(tmp_path / 'a.npz'), write('newer'))], replace=False)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        'a.png': 'new', 'a.npz': 'new too'}


def test_a_new_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / 'out'
    with pytest.raises(RuntimeError):
        with files.new_folder(str(target), '--output') as folder:
            (tmp_path / folder / 'im0.png').write_text('one of two')
            assert os.path.basename(folder).startswith('.out-')  # hidden, beside the target
            raise RuntimeError('stopped half-way')
    assert os.listdir(tmp_path) == []
    target.mkdir()  # an empty folder may be filled
    with files.new_folder(str(target), '--output') as folder:
        (tmp_path / folder / 'im0.png').write_text('x')
    assert os.listdir(tmp_path) == ['out'] and os.listdir(target) == ['im0.png']
    with pytest.raises(ValueError, match=r'^--output %s is a folder that holds 1 file already '
                                         r'\(e.g. im0.png\): nothing is written over' % target):
        files.check_new_output(str(target), '--output', folder=True)
    with pytest.raises(ValueError, match='^--output %s is a file, not a folder$'
                                         % (target / 'im0.png')):
        files.check_new_output(str(target / 'im0.png'), '--output', folder=True)
    with pytest.raises(ValueError, match='^--output %s exists already: nothing is written over'
                                         % (target / 'im0.png')):
        files.check_new_output(str(target / 'im0.png'), '--output')
