"""Files that land whole or not at all: write to a temporary file beside the target, then rename.

A reader (or a run killed half-way) sees either the old file or the new one, never
a half-written one; the temporary file is removed if writing fails. The result gets
the mode any new file would get (mkstemp makes it private to its owner).
"""

import json
import os
import tempfile


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
