"""Number formats the network can compute in: `precision` of PixelCNN, Trainer and the scripts.

  float32   the default: exactly the original's arithmetic. On GPUs TensorFlow would
            otherwise run float32 convolutions and matmuls in TF32 (a 10-bit mantissa)
            on Ampere and later; float32 turns that off, so a GPU computes what the
            golden tests check.
  tf32      float32 everywhere, with TF32 allowed in convolutions and matmuls (GPUs).
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
    PixelCNN and Trainer set it when built, so the last one built decides.
    """
    tf.config.experimental.enable_tensor_float_32_execution(check(precision) == 'tf32')


def cpu_warning(precision, has_gpu):
    """A warning for float16 on a machine without a GPU, or None.

    TensorFlow has CPU kernels for float16 but no fast ones: CPUs with AVX-512 BF16
    or AMX compute bfloat16 at twice float32's rate, float16 slower than float32.
    """
    if precision == 'float16' and not has_gpu:
        return ('--precision float16 on a machine without a GPU: TensorFlow computes float16 '
                'slowly on CPUs (no fast kernels); use --precision bfloat16 on a CPU')
    return None
