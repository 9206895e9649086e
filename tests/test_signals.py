"""SIGTERM and SIGINT as an exception inside a block (pixel_cnn_pp/signals.py)."""

import os
import signal
import threading

import pytest

from pixel_cnn_pp.signals import signals_raise


class Stop(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_block_raises_and_the_handlers_come_back(signum):
    before = signal.getsignal(signum)
    cleaned = []
    with pytest.raises(Stop) as stopped:
        with signals_raise(Stop):
            try:
                os.kill(os.getpid(), signum)  # delivered before the next line
            finally:
                cleaned.append(True)
    assert stopped.value.signum == signum and cleaned == [True]
    assert signal.getsignal(signum) is before


def test_outside_the_main_thread_the_block_runs_unchanged():
    seen = []

    def body():
        with signals_raise(Stop):
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_deferred_signal_takes_effect_when_the_block_ends(signum):
    from pixel_cnn_pp.signals import deferred

    done = []
    with pytest.raises(Stop) as stopped:
        with signals_raise(Stop):
            with deferred():
                os.kill(os.getpid(), signum)
                done.append('the rest of the block')
            done.append('after it')  # not reached: the signal is raised first
    assert done == ['the rest of the block'] and stopped.value.signum == signum
