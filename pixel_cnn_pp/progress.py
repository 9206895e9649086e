"""The one progress display: training epochs, evaluation, the init pass, sampling, downloads.

On a terminal it is a bar redrawn in place (with \\r) a few times a second; on
anything else (a log file, a pipe) it writes a plain line every `interval` seconds
and one at the end, so a log holds a readable line per interval, not one line of
carriage returns. The rate counts from the first update (a loop's first step
often includes compiling), and no time left is shown before there is a rate.

    display = Progress('epoch 3', total=4000, unit='images')
    for ...:
        display.update(done, '4.87 bits/dim')   # done: how many so far (not an increment)
    display.close()

A display is also the library's progress callback, `callback(done, total)`:
    sampling.sample(model, 16, progress=Progress('sampling', unit='rows'))

Keras's Progbar is not used: it treats every POSIX stream as a terminal and writes
\\r into pipes. No TensorFlow here: data downloads get this display as a callback.
"""

import os
import sys
import time

# Seconds between plain lines when the stream is not a terminal ($PIXELCNN_PROGRESS_SECONDS).
DEFAULT_INTERVAL = float(os.environ.get('PIXELCNN_PROGRESS_SECONDS', '30'))
_TTY_INTERVAL = 0.2
_WIDTH = 24


class Progress:
    """A progress line for `total` things (None: unknown), in `unit`s.

    Args:
      label: what is progressing, first on the line ('epoch 3', 'sampling').
      total: the count at the end, or None when it is not known.
      unit: name of what is counted ('images', 'rows', 'MiB').
      scale: counts are shown multiplied by this (2**-20 to show bytes as MiB).
      stream: where to write (default sys.stderr).
      interval: seconds between lines when `stream` is not a terminal.
      tty: force terminal (True) or log (False) behaviour; default: stream.isatty().
      clock: a time.monotonic-like function (for tests).
    """

    def __init__(self, label, total=None, unit='', scale=1.0, stream=None,
                 interval=DEFAULT_INTERVAL, tty=None, clock=time.monotonic):
        self.label, self.total, self.unit, self.scale = label, total, unit, scale
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, 'isatty', None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval = _TTY_INTERVAL if tty else interval
        self.clock = clock
        self.done, self.note = 0, ''
        self._first = None  # (time, done) of the first update: the rate counts from there
        # A terminal shows the first update at once; a log gets its first line after
        # `interval` (a short loop writes only its final line).
        self._last_draw = None if tty else clock()
        self._drawn = True  # nothing new to show yet

    def update(self, done, note=''):
        """`done` things so far (and a short note, e.g. the running loss); redraws if due."""
        now = self.clock()
        if self._first is None:
            self._first = (now, done)
        self.done, self.note, self._drawn = done, note, False
        if self._last_draw is None or now - self._last_draw >= self.interval:
            self._draw(now)

    def __call__(self, done, total=None):
        """The library's progress callback: `done` of `total` (which may change)."""
        if total is not None:
            self.total = total
        self.update(done, self.note)

    def rate(self, now=None):
        """Things per second (scaled) since the first update, or None before it is known."""
        if self._first is None:
            return None
        now = self.clock() if now is None else now
        start, first_done = self._first
        if self.done <= first_done or now <= start:
            return None
        return (self.done - first_done) * self.scale / (now - start)

    def line(self, now=None):
        """The text of the display now."""
        now = self.clock() if now is None else now
        parts = [self.label]
        unit = ' ' + self.unit if self.unit else ''
        if self.total:
            filled = min(_WIDTH, int(_WIDTH * self.done / self.total))
            parts.append('[%s%s] %.1f%% %s/%s%s' % (
                '=' * filled, ' ' * (_WIDTH - filled), 100.0 * self.done / self.total,
                self._count(self.done), self._count(self.total), unit))
        else:
            parts.append(self._count(self.done) + unit)
        rate = self.rate(now)
        if rate is not None:
            parts.append('%s %s/s' % (_number(rate), self.unit or 'it'))
        if self.note:
            parts.append(self.note)
        if rate and self.total and self.done < self.total:
            parts.append('~%s left' % _duration((self.total - self.done) * self.scale / rate))
        return '  '.join(parts)

    def close(self, note=None):
        """Show the final state (if not shown yet) and end the line."""
        if note is not None:
            self.note, self._drawn = note, False
        if not self._drawn:
            self._draw(self.clock())
        if self.tty and self._last_draw is not None:  # a line was drawn: end it
            self.stream.write('\n')
            self.stream.flush()

    def _count(self, value):
        return _number(value * self.scale) if self.scale != 1 else str(value)

    def _draw(self, now):
        self._last_draw, self._drawn = now, True
        if self.tty:
            self.stream.write('\r' + self.line(now) + '\033[K')
        else:
            self.stream.write(self.line(now) + '\n')
        self.stream.flush()


def download_display(name, total_bytes):
    """The display pixel_cnn_pp/data/download.py draws a download with (its `progress` callback)."""
    return Progress(name, total_bytes, unit='MiB', scale=2.0 ** -20)


def _number(value):
    return '%.0f' % value if abs(value) >= 100 else '%.1f' % value if abs(value) >= 1 else \
        '%.2f' % value


def _duration(seconds):
    if seconds < 90:
        return '%d s' % round(seconds)
    if seconds < 90 * 60:
        return '%d min' % round(seconds / 60)
    return '%.1f h' % (seconds / 3600)
