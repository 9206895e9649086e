"""Files that land whole or not at all, and a folder one process at a time.

`atomic_write`/`write_json`: write to a temporary file beside the target, then
rename. A reader (or a run killed half-way) sees either the old file or the new
one, never a half-written one; the temporary file is removed if writing fails. The
result gets the mode any new file would get (mkstemp makes it private to its owner).

`FolderLock`: an exclusive claim of a run's folder, so that two runs never write
into one folder (see its docstring for what is and is not guarded).
"""

import json
import os
import socket
import sys
import tempfile
import time


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Call write(temporary_path), then rename the temporary file to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '-',
                               suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, value):
    """Write `value` as indented JSON to `path`, atomically."""
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(value, f, indent=1, sort_keys=True)
    atomic_write(path, write)


def check_writable(path, what):
    """Raise ValueError naming `what` (e.g. a flag) unless a file can be created beside `path`.

    For a command to fail at once, not after its work, when its output folder cannot
    be made or written (a regular file in the way, no permission, ...).
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.write-test-'):
            pass
    except OSError as e:
        raise ValueError('cannot write to %s (%s): %s' % (folder, what, e.strerror or e)) from None


# ------------------------------------------------------------------ a folder's lock

LOCK_FILE = 'run.lock'


class FolderInUse(ValueError):
    """The folder is locked by another process (the message names its pid and host)."""


class FolderLock:
    """An exclusive claim of a folder by this process, for as long as it runs in it.

    Taking it creates the folder if needed (which also shows that it can be written),
    then `<folder>/run.lock` with an exclusive create (O_CREAT | O_EXCL: of two
    processes, one succeeds), holding this process's pid, host, start time and a
    token. A lock that exists already is:
      - refused (FolderInUse) if its process is alive on this host, naming its pid;
      - replaced if that process has ended (its pid is gone, or now belongs to a
        process started later): a stale lock, e.g. of a run that was killed;
      - refused if it was taken on another host, whose processes cannot be checked
        from here (the message says which file to delete if that run has ended).
    `release()` (or leaving the `with` block) removes the lock, and the folders the
    lock created if nothing else was written into them.

        with FolderLock(save_dir, what='--save_dir'):
            ...                     # nothing else can run in save_dir meanwhile

    Args:
      folder: the folder to claim.
      what: how messages name the folder (e.g. the flag that gave it).
      log: prints a line (the note when a stale lock is replaced).
    Raises:
      FolderInUse: another live process holds the folder.
      ValueError: the folder cannot be created or written (says why).
    """

    def __init__(self, folder, what='folder', log=print):
        self.folder, self.what, self.log = os.fspath(folder), what, log
        if not self.folder:
            raise ValueError('%s is empty: give a folder' % what)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self._created = self._make_folders()
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

    def _make_folders(self):
        """Create the folder and missing parents; the ones created, deepest first."""
        created, path = [], os.path.abspath(self.folder)
        while not os.path.exists(path) and os.path.dirname(path) != path:
            created.append(path)
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            where = ('is a file, not a folder' if path == os.path.abspath(self.folder)
                     else 'cannot be created: %s is a file, not a folder' % path)
            raise ValueError('%s %s %s' % (self.what, self.folder, where))
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as e:
            raise ValueError('%s %s cannot be created: %s'
                             % (self.what, self.folder, e.strerror or e)) from None
        return created

    def _take(self):
        for _ in range(50):  # a lock being written or replaced by another process: retry
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                text, holder = self._read()
                if text is None:
                    if os.path.exists(self.path):
                        raise ValueError('%s %s: its lock %s cannot be read'
                                         % (self.what, self.folder, self.path)) from None
                    continue  # released meanwhile
                if holder is None and time.time() - _mtime(self.path) < 10:
                    time.sleep(0.1)  # its creator is writing it right now
                    continue
                if holder is not None and not self._stale(holder):
                    raise FolderInUse(self._in_use_message(holder)) from None
                self._remove_stale(text, holder)
                continue
            except OSError as e:
                raise ValueError('%s %s is not writable: %s'
                                 % (self.what, self.folder, e.strerror or e)) from None
            with os.fdopen(fd, 'w') as f:
                json.dump(dict(pid=os.getpid(), host=socket.gethostname(),
                               started=time.strftime('%Y-%m-%d %H:%M:%S'),
                               process_start=_process_start(os.getpid()),
                               program=os.path.basename(sys.argv[0]) if sys.argv else '',
                               token=self._token), f)
                f.flush()
                os.fsync(f.fileno())
            return
        raise FolderInUse('%s %s: its lock %s keeps changing (another process is starting in it '
                          'at the same time?)' % (self.what, self.folder, self.path))

    def _read(self):
        """(the lock file's text, its holder as a dict or None if unreadable)."""
        try:
            with open(self.path) as f:
                text = f.read()
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
        """Remove a stale (or unreadable, old) lock, unless another process replaced it first."""
        aside = '%s.stale-%s' % (self.path, self._token)
        try:
            os.rename(self.path, aside)  # atomic: of two processes replacing it, one gets it
        except FileNotFoundError:
            return
        with open(aside) as f:
            moved = f.read()
        if moved != text:  # a fresh lock taken in between: put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        os.remove(aside)
        if moved == text:
            self.log('note: replaced the stale lock %s (%s)'
                     % (self.path, 'of %s, which has ended' % _holder_name(holder) if holder
                        else 'unreadable, and older than 10 s'))

    def _in_use_message(self, holder):
        if holder.get('host') != socket.gethostname():
            return ('%s %s is locked by %s, on another host than this one (%s), which cannot be '
                    'checked from here: wait for that run to end, or, if it has ended, delete %s'
                    % (self.what, self.folder, _holder_name(holder), socket.gethostname(),
                       self.path))
        return ('%s %s is in use by another run: %s; wait for it to end or pass another %s'
                % (self.what, self.folder, _holder_name(holder), self.what))

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
