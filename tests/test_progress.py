"""The progress display: a bar redrawn in place on a terminal, plain timed lines in a log."""

import io

from pixel_cnn_pp.progress import Progress, download_display


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_log_gets_a_plain_line_per_interval_and_one_at_the_end():
    stream, clock = io.StringIO(), Clock()
    display = Progress('epoch 0', total=100, unit='images', stream=stream, interval=10,
                       tty=False, clock=clock)
    for done in range(4, 101, 4):  # 25 updates, one per second
        clock.now += 1
        display.update(done, '4.5000 bits/dim')
    display.close()
    text = stream.getvalue()
    assert '\r' not in text
    lines = text.splitlines()
    assert len(lines) == 3  # after 10 s, after 20 s, and the end
    assert lines[-1].startswith('epoch 0  [========================] 100.0% 100/100 images')
    assert '4.5000 bits/dim' in lines[-1] and '4.0 images/s' in lines[-1]
    assert 'left' not in lines[-1] and '~15 s left' in lines[0]


def test_a_terminal_gets_one_line_redrawn_with_carriage_returns():
    stream, clock = io.StringIO(), Clock()
    display = Progress('sampling', total=4, unit='rows', stream=stream, tty=True, clock=clock)
    for done in range(1, 5):
        clock.now += 1
        display.update(done)
    display.close()
    text = stream.getvalue()
    assert text.count('\r') == 4 and text.endswith('\n') and text.count('\n') == 1


def test_no_time_left_before_there_is_a_rate_and_the_rate_excludes_the_first_step():
    stream, clock = io.StringIO(), Clock()
    display = Progress('epoch 0', total=10, unit='images', stream=stream, tty=True, clock=clock)
    clock.now += 30  # the first step compiles
    display.update(1)
    assert 'left' not in display.line() and '/s' not in display.line()
    clock.now += 2
    display.update(3)
    assert display.rate() == 1.0  # 2 images in 2 s since the first update, not 3 in 32 s
    assert '1.0 images/s' in display.line() and '~7 s left' in display.line()


def test_an_unknown_total_shows_the_count_and_the_callback_form_sets_it():
    stream, clock = io.StringIO(), Clock()
    display = Progress('initializing', unit='blocks', stream=stream, tty=False, clock=clock)
    display(3)
    assert display.line().startswith('initializing  3 blocks')
    display(4, 8)
    assert '4/8 blocks' in display.line()


def test_nothing_is_written_for_a_display_never_updated():
    stream = io.StringIO()
    Progress('evaluating', 5, stream=stream, tty=True).close()
    Progress('evaluating', 5, stream=stream, tty=False).close()
    assert stream.getvalue() == ''


def test_the_download_display_counts_mebibytes(capsys):
    display = download_display('cifar-10-python.tar.gz', 3 * 2 ** 20)
    display.update(3 * 2 ** 20)
    display.close()
    err = capsys.readouterr().err
    assert 'cifar-10-python.tar.gz' in err and '3.0/3.0 MiB' in err and '100.0%' in err
