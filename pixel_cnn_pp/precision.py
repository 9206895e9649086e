"""Number formats the network can compute in: `precision` of PixelCNN, Trainer and the scripts.

  float32   strict float32: exactly the original's arithmetic. On GPUs TensorFlow would
            otherwise run float32 convolutions and matmuls in TF32 (a 10-bit mantissa)
            on Ampere and later; float32 turns that off, so a GPU computes what the
            golden tests check. PixelCNN's default, and what every reported bits/dim,
            score and code is computed in.
  tf32      float32 everywhere, with TF32 allowed in convolutions and matmuls on GPUs
            that have it (compute capability 8.0+: several times faster); the same as
            float32 elsewhere. The default of training (Trainer, train.py), which turns
            it on during its training steps only (`tf32_for`).
  bfloat16  convolutions, dense layers, nonlinearities, the gate and the attention
            in bfloat16 (float32's range, an 8-bit mantissa).
  float16   the same in float16 (older GPUs); its narrow range needs loss scaling in
            training (training.py).

In every precision the variables, the weight-norm division, the optimizer's state,
the Polyak averages, the output layer (the mixture parameters) and the whole
likelihood stay float32: the layers cast their float32 kernel and their input to
the compute dtype at their boundary (nn.py, attention.py), and the network casts
back to float32 before its output layer (model.py). Checkpoints are float32 and
load in any precision.
"""

import contextlib

import tensorflow as tf

PRECISIONS = ('float32', 'tf32', 'bfloat16', 'float16')

_COMPUTE_DTYPES = {'float32': tf.float32, 'tf32': tf.float32, 'bfloat16': tf.bfloat16,
                   'float16': tf.float16}


def check(precision, name='precision'):
    """The precision if it is one of PRECISIONS, else ValueError naming `name`."""
    if precision not in PRECISIONS:
        raise ValueError("'%s' must be one of %s; got %r" % (name, ', '.join(PRECISIONS),
                                                              precision))
    return precision


def compute_dtype(precision):
    """The dtype the layers compute in: float32 for float32 and tf32, else bfloat16 or float16."""
    return _COMPUTE_DTYPES[check(precision)]


def apply_tf32(precision):
    """Allow TF32 in float32 convolutions and matmuls for 'tf32', forbid it otherwise.

    A process-wide TensorFlow switch (it matters on Ampere and later GPUs only):
    PixelCNN sets it when built, so the last one built decides (sample.py, compress.py
    and scoring build one); a Trainer sets it off after building its model and turns it
    on around its training steps only (`tf32_for`).
    """
    tf.config.experimental.enable_tensor_float_32_execution(check(precision) == 'tf32')


@contextlib.contextmanager
def tf32_for(precision):
    """TF32 allowed while the block runs if `precision` is 'tf32', forbidden otherwise;
    then TensorFlow's switch is set back as it was.

    The switch is process-wide and a kernel reads it when it runs (an XLA function when
    it is compiled, at its first call), so what runs inside the block computes in
    `precision` whatever else the process runs before or after: Trainer's training
    steps in TF32, its evaluation in strict float32.
    """
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(check(precision) == 'tf32')
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


def gpu_capabilities():
    """The compute capability (major, minor) of each GPU TensorFlow sees; [] without one."""
    return [tuple(tf.config.experimental.get_device_details(gpu).get('compute_capability')
                  or (0, 0)) for gpu in tf.config.list_physical_devices('GPU')]


def warning(precision, capabilities):
    """A warning for a precision this machine computes slowly, or None.

    capabilities: each GPU's compute capability, (major, minor) ([] without a GPU), as
    `gpu_capabilities()` gives them.

    TensorFlow has CPU kernels for float16 but no fast ones: CPUs with AVX-512 BF16 or
    AMX compute bfloat16 at twice float32's rate, float16 slower than float32. GPUs
    before compute capability 8.0 (V100 7.0, T4 7.5) have no bfloat16 arithmetic:
    TensorFlow runs float32 kernels behind casts, slower than float32 itself.
    """
    if precision == 'float16' and not capabilities:
        return ('--precision float16 on a machine without a GPU: TensorFlow computes float16 '
                'slowly on CPUs (no fast kernels); use --precision bfloat16 on a CPU')
    older = sorted({c for c in capabilities if tuple(c) < (8, 0)})
    if precision == 'bfloat16' and older:
        return ('--precision bfloat16 on a GPU of compute capability %s: bfloat16 needs 8.0 or '
                'later (A100, H100); before it TensorFlow computes in float32 behind casts, '
                'slower than float32 itself; use --precision float16 (loss-scaled) or float32'
                % ', '.join('%d.%d' % tuple(c) for c in older))
    return None
