"""TensorFlow imported without its start-up notices, unless TF_CPP_MIN_LOG_LEVEL says otherwise.

On a machine without a GPU, TensorFlow's C++ side writes lines such as
`E0000 ... failed call to cuInit: INTERNAL: CUDA error` and the oneDNN notice to
the process's stderr while it is imported and first looks for devices. Some are
written before its logging is set up, so TF_CPP_MIN_LOG_LEVEL does not hide them;
a user reads "E" as an error. When the user has not set TF_CPP_MIN_LOG_LEVEL,
the import and the device look-up run with file descriptor 2 captured, and every
captured line that is not one of these known notices is written back to stderr
(so nothing else is lost). Setting TF_CPP_MIN_LOG_LEVEL (to anything, 0 included)
shows TensorFlow's lines as they are.

The captured lines that say why TensorFlow found no GPU ("failed call to cuInit",
"Skipping registering GPU devices", ...) are kept in `GPU_NOTES`, without their
log prefix: distribute.py quotes them when GPUs were expected and none is seen.
"""

import os
import re
import sys
import tempfile

LEVEL_ENV = 'TF_CPP_MIN_LOG_LEVEL'

# The notices of a CPU-only start: no GPU driver, oneDNN and CPU-instruction notes,
# CUDA plug-in registration. Anything else captured is passed through.
_NOTICES = re.compile(
    r'All log messages before absl::InitializeLog|oneDNN custom operations are on'
    r'|cudart_stub|Could not find cuda drivers|failed call to cuInit|cpu_feature_guard'
    r'|To enable the following instructions|rebuild TensorFlow with the appropriate compiler'
    r'|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered'
    r'|TF-TRT Warning|cuda_executor|Skipping registering GPU devices')
# The captured lines that say why no GPU was found, and the log prefix they start with
# ("E0000 00:00:1796424601.042122    4399 cuda_platform.cc:52] ").
_GPU_REASONS = re.compile(
    r'failed call to cuInit|Could not find cuda drivers|Skipping registering GPU devices'
    r'|Cannot dlopen some GPU libraries|Could not load dynamic library|no CUDA-capable device')
_LOG_PREFIX = re.compile(r'^[IWEF]\d{4} [\d:. ]+\S+\.cc:\d+\] ')
GPU_NOTES = []  # filled by import_tensorflow when it captured the start-up lines
lines_captured = False  # whether it did (False: TensorFlow's lines went to stderr as they are)


def import_tensorflow():
    """`import tensorflow` (and a first look at the GPUs), its start-up notices left out."""
    global lines_captured
    if 'tensorflow' in sys.modules or LEVEL_ENV in os.environ:
        import tensorflow as tf
        return tf
    os.environ[LEVEL_ENV] = '2'  # TensorFlow's own INFO and WARNING lines, too, are noise here
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded): import as is
        import tensorflow as tf
        return tf
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
            text = captured.read().decode('utf-8', 'replace')
            lines = text.splitlines()
            lines_captured = True
            GPU_NOTES[:] = [_LOG_PREFIX.sub('', line).strip() for line in lines
                            if _GPU_REASONS.search(line)]
            kept = [line for line in lines if line and not _NOTICES.search(line)]
            if kept:
                sys.stderr.write('\n'.join(kept) + '\n')
                sys.stderr.flush()
    return tf
