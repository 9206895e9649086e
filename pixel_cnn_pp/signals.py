"""SIGTERM and SIGINT as an exception, so that `finally` and `with` exits run.

Python's default for SIGTERM ends the process at once, skipping cleanups (a lock
file would stay, a listening socket stay open). Used by train.py around a whole
run and by distribute.wait_for_workers around its wait; code inside may install
its own handlers (the training run's StopRequest saves a checkpoint first).

    with signals_raise(MyStop):      # MyStop(signum) is raised on SIGTERM/SIGINT
        ...
"""

import contextlib
import signal
import threading


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
