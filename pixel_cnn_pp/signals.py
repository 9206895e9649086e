"""SIGTERM and SIGINT as an exception, so that `finally` and `with` exits run.

Python's default for SIGTERM ends the process at once, skipping cleanups (a lock
file would stay, a listening socket stay open). Used by train.py around a whole
run and by distribute.wait_for_workers around its wait; code inside may install
its own handlers (the training run's StopRequest saves a checkpoint first).

    with signals_raise(Stopped):     # Stopped(signum) is raised on SIGTERM/SIGINT
        ...
    with signals_raise(functools.partial(Stopped, where='while waiting')):
        ...

`Stopped` is the one exception a signal stops the project's programs with: raised by
`signals_raise`, and by the training run after it saved (pixel_cnn_pp/run.py).

`deferred` holds the two signals off for a few lines that must not be cut in two
(files.land_together renaming finished files into place).
"""

import contextlib
import signal
import threading


class Stopped(Exception):
    """SIGTERM or SIGINT (`signum`) stopped the work `where` it was ('at step 12', 'while
    waiting for the workers'); `saved`: whether a checkpoint was saved first (at `path`,
    None on a worker of a cluster that is not the chief)."""

    def __init__(self, signum, where=None, path=None, saved=False):
        super().__init__('stopped by signal %d%s%s' % (signum, ' ' + where if where else '',
                                                       ': saved %s' % path if saved else ''))
        self.signum, self.where, self.path, self.saved = signum, where, path, saved


@contextlib.contextmanager
def signals_raise(exception):
    """SIGTERM and SIGINT raise `exception(signum)` inside the block; handlers restored after.

    Only the main thread can handle signals: elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise exception(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def deferred():
    """SIGTERM and SIGINT that arrive inside the block take effect when it ends.

    The handlers in place before (signals_raise's, Python's KeyboardInterrupt, the
    default end of the process) then run as they would have. Only the main thread
    can handle signals: elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            if old is not None:  # None: not installed from Python, cannot be put back
                signal.signal(signum, old)
        if caught:
            signal.raise_signal(caught[0])
