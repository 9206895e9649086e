"""Files that land whole or not at all, and a folder one process at a time.

`atomic_write`/`write_json`: write to a temporary file beside the target, then
rename. A reader (or a run killed half-way) sees either the old file or the new
one, never a half-written one; the temporary file is removed if writing fails. The
result gets the mode any new file would get (mkstemp makes it private to its owner).
`land_together` does this for files that belong together (a grid and its .npz):
all of them land, or none; `new_folder` for a folder of files (it appears whole,
under its name, or not at all).

`FolderLock`: an exclusive claim of a run's folder, so that two runs never write
into one folder (see its docstring for what is and is not guarded); `output_lock`
the same claim of one program's outputs (`<prefix>.lock` beside them).
"""

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time


def give_usual_mode(path, folder=False):
    """Give a file (or folder) made by mkstemp (mkdtemp), which are private to their owner,
    the mode any new file (folder) gets here: readable by whoever may read its folder."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if folder else 0o666) & ~mask)


def atomic_write(path, write, replace=True):
    """Call write(temporary_path), then rename the temporary file to `path`.

    replace=False: never replace an existing `path`, even one another process
    created meanwhile (FileExistsError, and nothing is left).
    """
    land_together([(path, write)], replace)


def land_together(writes, replace=True):
    """Write files that belong together so that all of them land, or none.

    Args:
      writes: (path, write) pairs; write(temporary_path) fills a temporary file
        beside `path` (e.g. images.png_writer(grid)).
      replace: False: refuse to replace an existing file (FileExistsError; the
        files of this call that had landed are removed again: they were new).
    Every file is written first; only then are they renamed into place, with
    SIGTERM and SIGINT held off until the last one is (signals.deferred). On any
    failure the temporary files are removed.
    """
    from pixel_cnn_pp import signals  # lazily: this module also runs alone (tests/test_files.py)

    temporaries, landed = [], []
    try:
        for path, write in writes:
            temporaries.append(_temporary_beside(path))
            write(temporaries[-1])
            give_usual_mode(temporaries[-1])
        with signals.deferred():
            for tmp, (path, _) in zip(temporaries, writes):
                _rename(tmp, path, replace)
                landed.append(path)
    except BaseException:
        for tmp in temporaries:
            if os.path.exists(tmp):
                os.remove(tmp)
        for path in landed if not replace else ():
            os.remove(path)
        raise


def _temporary_beside(path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '-',
                               suffix=os.path.splitext(path)[1])
    os.close(fd)
    return tmp


def _rename(tmp, path, replace):
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if `path` exists, whoever made it and when
    except FileExistsError:
        raise FileExistsError('%s exists already (written meanwhile by another process?): not '
                              'replaced' % path) from None
    except OSError:  # a filesystem without hard links: check, then rename
        if os.path.lexists(path):
            raise FileExistsError('%s exists already: not replaced' % path) from None
        os.rename(tmp, path)
        return
    os.remove(tmp)


@contextlib.contextmanager
def new_folder(path, what='folder'):
    """A folder that appears at `path` whole, or not at all.

    Yields a temporary folder beside `path` (hidden: `.<name>-<random>.partial`) to
    fill; when the block ends without error it is renamed to `path`, else removed.
    `path` must be new or an empty folder (check_new_output; `what` names it in
    messages); a folder that appeared there meanwhile is not written into.
    """
    from pixel_cnn_pp import signals

    check_new_output(path, what, folder=True)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix='.%s-' % os.path.basename(os.path.abspath(path)),
                           suffix='.partial')
    try:
        yield tmp
        give_usual_mode(tmp, folder=True)
        with signals.deferred():
            try:
                os.rename(tmp, path)  # onto an empty folder: replaces it; else fails
            except OSError:
                raise FileExistsError('%s %s was created meanwhile (by another process?): not '
                                      'written into' % (what, path)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_new_output(path, what, folder=False):
    """Raise ValueError naming `what` (e.g. a flag) and `path` if writing it would replace anything.

    A file must not exist (of any kind); a folder must not exist, or be empty, and
    must not be a file. For a command to refuse before its work, not after.
    """
    if folder and os.path.isdir(path):
        entries = os.listdir(path)
        if entries:
            raise ValueError('%s %s is a folder that holds %d file%s already (e.g. %s): nothing '
                             'is written over; give a new or empty folder'
                             % (what, path, len(entries), '' if len(entries) == 1 else 's',
                                sorted(entries)[0]))
    elif folder and os.path.lexists(path):
        raise ValueError('%s %s is a file, not a folder' % (what, path))
    elif os.path.lexists(path):
        raise ValueError('%s %s exists already: nothing is written over; remove it or give '
                         'another name' % (what, path))


def write_json(path, value):
    """Write `value` as indented JSON to `path`, atomically."""
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(value, f, indent=1, sort_keys=True)
    atomic_write(path, write)


# ------------------------------------------------------------------ a folder's lock

_LOCK_START = '{"pid": '  # how every lock this module writes begins (json.dump of its dict)


class FolderInUse(ValueError):
    """The folder is locked by another process (the message names its pid and host)."""


class FolderLock:
    """An exclusive claim of a folder by this process, for as long as it runs in it.

    Taking it creates the folder if needed (which also shows that it can be written),
    then `<folder>/<lock_name>` with an exclusive create (O_CREAT | O_EXCL: of two
    processes, one succeeds), holding this process's pid, host, start time and a
    token. A lock that exists already is:
      - refused (FolderInUse) if its process is alive on this host, naming its pid;
      - replaced if that process has ended (its pid is gone, or now belongs to a
        process started later): a stale lock, e.g. of a run that was killed;
      - refused if it was taken on another host, whose processes cannot be checked
        from here (the message says which file to delete if that run has ended);
      - waited for while it is half-written (its creator is writing it), and
        replaced as stale once it is 10 s old (a creator killed while writing);
      - refused if it is something else (not a lock this module wrote: the message
        says how to remove it safely).
    `release()` (or leaving the `with` block) removes the lock, and the folders the
    lock created if nothing else was written into them.

        with FolderLock(save_dir, 'train.lock', what='--save_dir'):
            ...                     # nothing else can run in save_dir meanwhile

    Args:
      folder: the folder to claim.
      lock_name: the lock file's name in the folder (a run folder's: RunFolder.lock;
        output_lock's claims outputs).
      what: how messages name the folder (e.g. the flag that gave it).
      log: prints a line (the note when a stale lock is replaced).
      claims: what messages say is claimed (default: the folder).
    Raises:
      FolderInUse: another live process holds the folder.
      ValueError: the folder cannot be created or written, or its lock file is not
        one of ours (says why).
    """

    def __init__(self, folder, lock_name, what='folder', log=print, claims=None):
        self.folder, self.what, self.log = os.fspath(folder), what, log
        if not self.folder:
            raise ValueError('%s is empty: give a folder' % what)
        self.subject = '%s %s' % (what, self.folder if claims is None else claims)
        # How messages about the folder itself start ('--save_dir runs/a is a file, ...').
        self._folder_subject = what if claims is None else '%s: its folder' % self.subject
        self.path = os.path.join(self.folder, lock_name)
        self._created = _make_folders(self.folder, self._folder_subject)
        self._token = '%d-%s' % (os.getpid(), os.urandom(8).hex())
        try:
            self._take()
        except BaseException:
            self._remove_created_folders()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    # ------------------------------------------------------------------ taking it

    def _take(self):
        for _ in range(150):  # a lock being written or replaced by another process: retry
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                text, holder = self._read()
                if text is None:
                    if os.path.exists(self.path):
                        raise ValueError(self._not_a_lock('it cannot be opened')) from None
                    continue  # released meanwhile
                if holder is None and not _half_written(text):
                    raise ValueError(self._not_a_lock(
                        'it holds %r, not a lock this program writes' % _clip(text))) from None
                if holder is None and time.time() - _mtime(self.path) < 10:
                    time.sleep(0.1)  # its creator is writing it right now
                    continue
                if holder is not None and not self._stale(holder):
                    raise FolderInUse(self._in_use_message(holder)) from None
                self._remove_stale(text, holder)
                continue
            except OSError as e:
                raise ValueError('%s %s is not writable: %s'
                                 % (self._folder_subject, self.folder, e.strerror or e)) from None
            with os.fdopen(fd, 'w') as f:
                json.dump(dict(pid=os.getpid(), host=socket.gethostname(),
                               started=time.strftime('%Y-%m-%d %H:%M:%S'),
                               process_start=_process_start(os.getpid()),
                               program=os.path.basename(sys.argv[0]) if sys.argv else '',
                               token=self._token), f)
                f.flush()
                os.fsync(f.fileno())
            return
        raise FolderInUse('%s: its lock %s keeps changing (another process is starting in it '
                          'at the same time?)' % (self.subject, self.path))

    def _not_a_lock(self, why):
        return ('%s: its lock file %s cannot be read (%s); if no train.py, sample.py or '
                'compress.py is running there (ps -ef | grep python), delete it (rm %s) and '
                'start again' % (self.subject, self.path, why, self.path))

    def _read(self):
        """(the lock file's text, its holder as a dict or None if unreadable)."""
        try:
            text = _read_text(self.path)
        except OSError:
            return None, None
        try:
            holder = json.loads(text)
        except ValueError:
            return text, None
        if not isinstance(holder, dict) or not isinstance(holder.get('pid'), int):
            return text, None
        return text, holder

    def _stale(self, holder):
        """True if the holder's process has ended (on this host; another host: unknown)."""
        if holder.get('host') != socket.gethostname():
            return False
        pid = holder['pid']
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
        start = _process_start(pid)
        return start is not None and holder.get('process_start') not in (None, start)

    def _remove_stale(self, text, holder):
        """Remove a stale (or half-written, old) lock, unless another process replaced it first."""
        aside = '%s.stale-%s' % (self.path, self._token)
        try:
            os.rename(self.path, aside)  # atomic: of two processes replacing it, one gets it
        except FileNotFoundError:
            return
        moved = _read_text(aside)
        if moved != text:  # a fresh lock taken in between: put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        os.remove(aside)
        if moved == text:
            self.log('note: replaced the stale lock %s (%s)'
                     % (self.path, 'of %s, which has ended' % _holder_name(holder) if holder
                        else 'half-written, and older than 10 s'))

    def _in_use_message(self, holder):
        if holder.get('host') != socket.gethostname():
            return ('%s is locked by %s, on another host than this one (%s), which cannot be '
                    'checked from here: wait for that run to end, or, if it has ended, delete %s'
                    % (self.subject, _holder_name(holder), socket.gethostname(), self.path))
        return ('%s is in use by another run: %s; wait for it to end or pass another %s'
                % (self.subject, _holder_name(holder), self.what))

    # ---------------------------------------------------------------- releasing it

    def release(self):
        """Remove the lock (if still ours) and the folders it created (if still empty)."""
        _, holder = self._read()
        if holder is not None and holder.get('token') == self._token:
            try:
                os.remove(self.path)
            except OSError:
                pass
        self._remove_created_folders()

    def _remove_created_folders(self):
        for path in self._created:  # deepest first; stops at one something was written into
            try:
                os.rmdir(path)
            except OSError:
                break
        self._created = []


def output_lock(prefix, what):
    """A FolderLock on one program's outputs: `<prefix>.lock` beside them.

    For outputs named by a flag (sample.py's --output prefix, compress.py's file or
    folder): a second process writing the same outputs is refused while the first
    runs, and other programs may still use the folder (a training run writing its
    own files there). Messages name `what` and `prefix`.
    """
    prefix = os.fspath(prefix)
    folder, name = os.path.split(os.path.abspath(prefix))
    return FolderLock(folder, name + '.lock', what, claims=prefix)


def _make_folders(folder, subject):
    """Create `folder` and its missing parents; returns the ones created, deepest first.

    Raises ValueError starting with `subject` and the folder (e.g. '--save_dir' gives
    '--save_dir runs/a is a file, not a folder'): a file in the way, or a folder that
    cannot be created.
    """
    created, path = [], os.path.abspath(folder)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        created.append(path)
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        where = ('is a file, not a folder' if path == os.path.abspath(folder)
                 else 'cannot be created: %s is a file, not a folder' % path)
        raise ValueError('%s %s %s' % (subject, folder, where))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError('%s %s cannot be created: %s' % (subject, folder, e.strerror or e)) \
            from None
    return created


def _half_written(text):
    """True if `text` can be the start of a lock being written (not yet whole JSON)."""
    try:
        json.loads(text)
    except ValueError:
        return text.startswith(_LOCK_START) or _LOCK_START.startswith(text)
    return False  # whole JSON, but not a lock of ours


def _read_text(path):
    with open(path, 'rb') as f:
        return f.read().decode('utf-8', 'replace')


def _clip(text, length=40):
    return text if len(text) <= length else text[:length] + '...'


def _holder_name(holder):
    return 'pid %s on host %s%s%s' % (
        holder.get('pid'), holder.get('host'),
        ' (%s)' % holder['program'] if holder.get('program') else '',
        ', since %s' % holder['started'] if holder.get('started') else '')


def _mtime(path):
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def _process_start(pid):
    """When process `pid` started, in clock ticks since boot (Linux /proc), or None."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); the part after ')' starts at field 3
    except (OSError, IndexError, ValueError):
        return None
