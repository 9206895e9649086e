"""What train.py, sample.py and compress.py share around their run(): one main() for absl.app.run.

Not in flags.py (which only defines flags) nor in the library (which never reads the
command line).
"""

import contextlib
import signal
import sys

from absl import flags as absl_flags
from absl import logging


class SignalStop(Exception):
    """SIGTERM or SIGINT (`signum`) before the run could stop on its own terms."""

    def __init__(self, signum):
        super().__init__('stopped by signal %d before training began' % signum)
        self.signum = signum


def main_for(program, arguments_from_flags, run, errors=(ValueError, FileNotFoundError),
             stop_on_signals=False):
    """An absl main(argv): refuse stray arguments, quiet TF's INFO logging, run, report errors.

    An error of a class in `errors` is one line `<program>: error: <message>` and exit 1
    (no traceback: the message says what to do). With stop_on_signals, SIGTERM and
    SIGINT (Ctrl-C) during run() raise SignalStop there, so that its cleanups run
    (temporary outputs removed, locks released), then end the program with one line
    and exit 128 + the signal (130 for Ctrl-C).
    """
    def main(argv):
        if len(argv) > 1:
            print('%s: error: unexpected arguments %s (flags start with - or --)'
                  % (program, ' '.join(argv[1:])), file=sys.stderr)
            sys.exit(2)
        if not absl_flags.FLAGS['verbosity'].present:
            logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines are noise here
        try:
            args = arguments_from_flags()
            with _signals_stop(stop_on_signals):
                run(args)
        except errors as e:
            print('%s: error: %s' % (program, e), file=sys.stderr)
            sys.exit(1)
        except (SignalStop, KeyboardInterrupt) as e:
            if not stop_on_signals:
                raise
            # KeyboardInterrupt: Ctrl-C before the handlers were in place (importing TensorFlow).
            signum = getattr(e, 'signum', signal.SIGINT)
            print('%s%s: stopped by %s (signal %d); no output is left half-written'
                  % ('\n' if sys.stderr.isatty() else '',  # after a progress bar's \r
                     program, signal.Signals(signum).name, signum), file=sys.stderr)
            sys.exit(128 + signum)
    return main


def _signals_stop(enabled):
    if not enabled:
        return contextlib.nullcontext()
    from pixel_cnn_pp.signals import signals_raise  # imports TensorFlow, as run() does next

    return signals_raise(SignalStop)


def warn_about_precision(precision):
    """One warning for a --precision this machine computes slowly (float16 without a GPU,
    bfloat16 on a GPU before compute capability 8.0)."""
    from pixel_cnn_pp import precision as precisions  # first: it imports TensorFlow quietly

    warning = precisions.warning(precision, precisions.gpu_capabilities())
    if warning:
        print('warning: %s' % warning, file=sys.stderr)


def refuse_flags_of(other_program, names, program):
    """Raise ValueError if one of the flags `names` (`other_program`'s) was given.

    train.py, sample.py and compress.py share one set of absl flags; each refuses
    the others' instead of ignoring them.
    """
    given = [name for name in names if absl_flags.FLAGS[name].present]
    if given:
        raise ValueError('%s is a flag of %s, which %s does not use (python3 %s --help lists '
                         'the flags of %s)' % (spelled(given[0]), other_program, program, program,
                                               program))


def spelled(name):
    """How messages name flag `name`: with its short name if it has one (-s/--seed)."""
    flag = absl_flags.FLAGS[name]
    return '-%s/--%s' % (flag.short_name, flag.name) if flag.short_name else '--' + flag.name


def use_help(overrides):
    """Give flags this program's own help and default: {name: (help, default or None)}.

    For a flag two scripts share but one reads otherwise (sample.py's --num_samples
    counts images); call it before the command line is parsed, so --help shows it.
    """
    for name, (text, default) in overrides.items():
        absl_flags.FLAGS[name].help = text
        if default is not None:
            absl_flags.FLAGS.set_default(name, default)
