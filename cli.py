"""What train.py, sample.py and compress.py share around their run(): one main() for absl.app.run.

Not in flags.py (which only defines flags) nor in the library (which never reads the
command line, and whose import changes nothing in the process). Here too: TensorFlow
imported without its start-up notices (`import_tensorflow_quietly`), as the scripts'
first step.
"""

import contextlib
import os
import pathlib
import re
import signal
import sys
import tempfile
import types

from absl import flags as absl_flags
from absl import logging

import flags as all_flags
from pixel_cnn_pp.signals import Stopped, signals_raise


def main_for(program, arguments_from_flags, run, errors=(ValueError, FileNotFoundError),
             stop_on_signals=False, flag_names=(), arguments=None):
    """An absl main(argv): refuse stray arguments, read the flags, import TensorFlow quietly
    (`import_tensorflow_quietly`; its INFO logging too), run, report errors.

    An error of a class in `errors` is one line `<program>: error: <message>` and exit 1
    (no traceback: the message says what to do), the library's arguments in it said as
    this program's flags (`in_flag_words` with `flag_names` and `arguments`). With
    stop_on_signals, SIGTERM and SIGINT (Ctrl-C) during run() raise signals.Stopped there, so
    that its cleanups run (temporary outputs removed, locks released), then end the
    program with one line and exit 128 + the signal (130 for Ctrl-C).
    """
    def main(argv):
        if len(argv) > 1:
            print('%s: error: unexpected arguments %s (flags start with - or --)'
                  % (program, ' '.join(argv[1:])), file=sys.stderr)
            sys.exit(2)
        if not absl_flags.FLAGS['verbosity'].present:
            logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines are noise here
        try:
            args = arguments_from_flags()  # imports no TensorFlow: a refused flag answers at once
            import_tensorflow_quietly()  # before anything of ours imports it
            with _signals_stop(stop_on_signals):
                run(args)
        except errors as e:
            print('%s: error: %s' % (program, in_flag_words(str(e), flag_names, arguments)),
                  file=sys.stderr)
            sys.exit(1)
        except (Stopped, KeyboardInterrupt) as e:
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
    return signals_raise(Stopped) if enabled else contextlib.nullcontext()


def warn_about_precision(precision):
    """One warning for a --precision this machine computes slowly (float16 without a GPU,
    bfloat16 on a GPU before compute capability 8.0)."""
    from pixel_cnn_pp import precision as precisions  # first: it imports TensorFlow quietly

    warning = precisions.warning(precision, precisions.gpu_capabilities())
    if warning:
        print('warning: %s' % warning, file=sys.stderr)


def read_checkpoint_flags(program, names):
    """The flags `names` of a program that loads a checkpoint (sample.py, compress.py) as a
    plain namespace (the one place they read FLAGS); train.py's other flags are refused.

    `present`: the names given on the command line; `model_options`: the model options
    given by a flag of their name (sampling has no use for dropout).
    """
    from pixel_cnn_pp.config import TRAINING_ONLY, ModelConfig

    refuse_flags_of('train.py', [n for n in all_flags.TRAIN_FLAGS if n not in names], program)
    values = {name: absl_flags.FLAGS[name].value for name in names}
    args = types.SimpleNamespace(**values)
    args.present = {name for name in values if absl_flags.FLAGS[name].present}
    args.data_dir = os.path.expanduser(args.data_dir)
    args.save_dir = os.path.expanduser(args.save_dir)
    args.model_options = {name: values[name] for name in ModelConfig.field_names()
                          if name in args.present and name not in TRAINING_ONLY}
    return args


def load_model(args, evaluating=False):
    """(model, checkpoint prefix) of --pretrained, --checkpoint or --save_dir (pixel_cnn_pp.load).

    OpenAI's TF1 checkpoints store no options: --data_set gives their image shape when it
    is given (or evaluated on, `evaluating`), -c reads their number of classes.
    """
    from pixel_cnn_pp import loading
    from pixel_cnn_pp.progress import download_display

    source = args.pretrained or pathlib.Path(args.checkpoint or args.save_dir)
    given_data_set = 'data_set' in args.present or evaluating
    return loading.load_with_prefix(
        source, args.use_ema, args.precision, data_set=args.data_set if given_data_set else None,
        image_size=args.image_size, class_conditional=args.class_conditional,
        cache_dir=args.cache_dir, url=args.pretrained_url, checksum=args.checksum,
        progress=download_display, **args.model_options)


def data_loader(args, subset, batch_size, **kwargs):
    """get_loader for `subset` of --data_set in --data_dir, with the options every script
    has (--image_size, --download, the download display); `kwargs`: rng, shuffle, ..."""
    from pixel_cnn_pp.data.loader import get_loader, loader_options
    from pixel_cnn_pp.progress import download_display

    opts = loader_options(args.data_set, args.image_size, args.download, download_display)
    return get_loader(args.data_set, args.data_dir, subset, batch_size, **opts, **kwargs)


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


def in_flag_words(message, flag_names, arguments=None):
    """`message` with each library argument it names in quotes said as the flag that gives it.

    The library's messages name its arguments quoted ("'nr_resnet': 2 in the
    checkpoint"); a program says them as its flags ("-q/--nr_resnet: 2 in the
    checkpoint"). `flag_names`: the program's flags, each giving the argument of its
    name; `arguments`: {argument: the flag that gives it, or how to say it} for the
    others (train.py's -r/--load_params gives 'resume').
    """
    arguments = arguments or {}

    def say(match):
        name = arguments.get(match.group(1), match.group(1))
        if name in flag_names:
            return spelled(name)
        return name if match.group(1) in arguments else match.group(0)

    return re.sub(r"'(\w+)'", say, message)


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



# ------------------------------------------------------------- TensorFlow's start-up lines

LEVEL_ENV = 'TF_CPP_MIN_LOG_LEVEL'
DEFAULT_LEVEL = 2  # TensorFlow's own INFO and WARNING lines are noise to a user of the scripts
# The notices of a CPU-only start (no GPU driver, oneDNN and CPU-instruction notes, CUDA
# plug-in registration): a user reads "E" as an error. Hidden unless the user set a level.
_NOTICES = re.compile(
    r'All log messages before absl::InitializeLog|oneDNN custom operations are on'
    r'|cudart_stub|Could not find cuda drivers|failed call to cuInit|cpu_feature_guard'
    r'|To enable the following instructions|rebuild TensorFlow with the appropriate compiler'
    r'|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered'
    r'|TF-TRT Warning|cuda_executor|Skipping registering GPU devices')
# TensorFlow's log prefix ("E0000 00:00:1796424601.042122    4399 cuda_platform.cc:52] "),
# whose letter is the severity on TF_CPP_MIN_LOG_LEVEL's scale: INFO 0 ... FATAL 3.
_LOG_PREFIX = re.compile(r'^([IWEF])\d{4} [\d:. ]+\S+\.cc:\d+\] ')
_SEVERITIES = 'IWEF'
# Lines without the prefix that it writes at start-up, and the severity of each.
_UNPREFIXED = ((re.compile(r'^WARNING: All log messages before absl::InitializeLog'), 1),
               (re.compile(r'^To enable the following instructions'), 0))


def startup_lines_kept(lines, level):
    """The captured start-up `lines` to pass on to stderr at TF_CPP_MIN_LOG_LEVEL `level`
    (the user's value, a string, or None if unset).

    TensorFlow writes some lines before its logging reads the variable, so it does not
    hide them itself: a line whose severity is below the level is left out here, as
    TensorFlow leaves out its later ones. Unset, the level is DEFAULT_LEVEL and the
    known notices of a CPU-only start go too (the "failed call to cuInit" error among
    them). Lines that are not TensorFlow's log lines are kept.
    """
    try:
        minimum = int(level) if level is not None else DEFAULT_LEVEL
    except ValueError:
        minimum = 0  # not a number: TensorFlow hides nothing then either
    kept = []
    for line in lines:
        match = _LOG_PREFIX.match(line)
        severity = _SEVERITIES.index(match.group(1)) if match else next(
            (s for pattern, s in _UNPREFIXED if pattern.match(line)), None)
        if line and not (severity is not None and severity < minimum) and not (
                level is None and _NOTICES.search(line)):
            kept.append(line)
    return kept


def import_tensorflow_quietly():
    """Import TensorFlow (and look for GPUs) with its start-up lines filtered by the level.

    The scripts' first step, before anything else imports TensorFlow: TF_CPP_MIN_LOG_LEVEL
    defaults to DEFAULT_LEVEL in this process, and file descriptor 2 is captured while
    TensorFlow loads, so that its early lines, which it writes whatever the variable
    says, are filtered as `startup_lines_kept` says. What they say about a missing GPU
    goes to pixel_cnn_pp.distribute, which quotes it when GPUs were expected.
    """
    if 'tensorflow' in sys.modules:
        return
    level = os.environ.get(LEVEL_ENV)
    os.environ.setdefault(LEVEL_ENV, str(DEFAULT_LEVEL))
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded): import as is
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices('GPU')  # the cuInit line comes from here
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode('utf-8', 'replace').splitlines()
            kept = startup_lines_kept(lines, level)
            if kept:
                sys.stderr.write('\n'.join(kept) + '\n')
                sys.stderr.flush()
    from pixel_cnn_pp import distribute

    distribute.note_startup_lines([_LOG_PREFIX.sub('', line).strip() for line in lines],
                                  shown=any(_LOG_PREFIX.match(line) for line in kept))
