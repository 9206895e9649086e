"""Layers of PixelCNN++ in the original's vocabulary.

Weight-normalised conv, deconv and dense ("nin") layers with data-dependent
initialisation (Salimans & Kingma 2016), the shifted convolutions and shifts that
make the network causal without masks, and the gated resnet block. Names and
computations follow openai/pixel-cnn `pixel_cnn_pp/nn.py`, so that a TF1
checkpoint of the original maps onto these variables by a rule:
`model/<kind>_<k>/<V|g|b>`, k counting each kind in creation order.

Every layer's forward takes `get`, a function from a variable to the tensor to
use for it: the identity for the raw weights, or a Polyak average's lookup (the
original's `get_var_maybe_avg`). Passing `init=True` runs the data-dependent
initialisation of that layer on the batch instead (eagerly, once).

Each layer in two forms, written here once for both users: the full form (a layer
called on whole maps, `apply(pad(x), kernel(get))`, what the forward pass uses) and the
incremental form beside it (the output at one row or one position from the inputs its
window needs, what the cached sampler (cached_sampler.py) uses, with kernels it computes
once per run): `DownShiftedConv2d.row`, `Conv2d.at` with `kernel_rows`,
`DownShiftedDeconv2d.rows_from`, `DownRightShiftedDeconv2d.taps`, `down_shift_row`,
`right_shift_at`. tests/test_nn.py holds each to its full form. The gated resnet's
composition is written once too (`GatedResnet.compose`), taking its convolutions as
functions of either form.

Precision (precision.py): a layer computes in the dtype of its input. The
variables and the weight normalisation stay float32; `apply` casts the float32
kernel to the input's dtype (a no-op in float32), so a network fed bfloat16
activations convolves, multiplies and gates in bfloat16.
"""

import tensorflow as tf

# Standard deviation of the random normal initialisation of V, as the original.
_INIT_STDDEV = 0.05
# Added to the variance in the data-dependent init, as the original.
_INIT_EPS = 1e-10


def cast(value, dtype):
    """A tensor, or each tensor of a kernel tuple, in `dtype`; no copy if it is already."""
    if isinstance(value, (tuple, list)):
        return tuple(tf.cast(t, dtype) for t in value)
    return tf.cast(value, dtype)


def identity(var):
    """The default `get`: use a variable's own (raw) value."""
    return var


class Namer:
    """Numbers layers per kind in creation order: conv2d_0, conv2d_1, dense_0, ...

    Lives inside the model that is being built (no module-level counter), so two
    models in one process get the same names.
    """

    def __init__(self):
        self._counts = {}

    def __call__(self, kind):
        k = self._counts.get(kind, 0)
        self._counts[kind] = k + 1
        return '%s_%d' % (kind, k)


def concat_elu(x):
    """ELU of x and of -x, concatenated on channels (doubles the channels)."""
    return tf.nn.elu(tf.concat([x, -x], axis=-1))


NONLINEARITIES = {
    'concat_elu': (concat_elu, 2),  # (function, channel multiplier)
    'elu': (tf.nn.elu, 1),
    'relu': (tf.nn.relu, 1),
}


def _dropout(x, rate, seed):
    """Stateless dropout whose mask is float32's in every precision (the same seed drops
    the same units in bfloat16: its random numbers would otherwise be drawn in bfloat16)."""
    if x.dtype == tf.float32:
        return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)
    kept = tf.nn.experimental.stateless_dropout(tf.ones(tf.shape(x)), rate=rate, seed=seed)
    return x * tf.cast(kept, x.dtype)  # kept: 0 or 1 / (1 - rate)


def down_shift(x):
    """Move a map down by one row, zeros entering at the top. (B,H,W,C) -> same."""
    return tf.pad(x[:, :-1], [[0, 0], [1, 0], [0, 0], [0, 0]])


def right_shift(x):
    """Move a map right by one column, zeros entering at the left."""
    return tf.pad(x[:, :, :-1], [[0, 0], [0, 0], [1, 0], [0, 0]])


def down_shift_row(above, i):
    """Incremental down_shift: its row i from its input's row i - 1, `above` (B, W, C)
    (anything at i = 0, where zeros enter)."""
    return above * tf.cast(i > 0, above.dtype)


def right_shift_at(left, j):
    """Incremental right_shift: its position (i, j) from its input's (i, j - 1), `left`
    (B, C) (anything at j = 0, where zeros enter)."""
    return left * tf.cast(j > 0, left.dtype)


class _WeightNorm(tf.Module):
    """Shared parts of a weight-normalised layer: V, g, b and the data-dependent init."""

    def __init__(self, scope, v_shape, num_units, init_scale, rng):
        super().__init__(name=scope)
        self.scope = scope  # e.g. 'conv2d_7': the original's variable scope
        self.init_scale = init_scale
        self.V = tf.Variable(rng.normal(v_shape, 0.0, _INIT_STDDEV), name='V')
        self.g = tf.Variable(tf.ones([num_units]), name='g')
        self.b = tf.Variable(tf.zeros([num_units]), name='b')

    @property
    def weights(self):
        """(name, variable) pairs in the original's order: V, g, b."""
        return [('V', self.V), ('g', self.g), ('b', self.b)]

    def _initialize(self, pre_activation, axes):
        # Normalise the pre-activation on the init batch: mean 0, std init_scale.
        # g <- g*s and b <- s*(b - m) make the layer compute exactly s*(out - m),
        # which is what we pass on, so every later layer is initialised on the
        # values it will really see (see docs/differences.md: the original's last version
        # passes on l2_normalize(out) instead).
        m, v = tf.nn.moments(pre_activation, axes)
        # A channel that does not vary over the batch (the u stream's first row sees
        # no pixel, so at a one-row resolution, as in 4x4 images, it is a constant)
        # keeps scale 1: the original's init_scale / sqrt(0 + eps) would multiply it,
        # and every layer after it, by 1e5. Channels that vary are scaled as the original.
        s = tf.where(v > _INIT_EPS, self.init_scale / tf.sqrt(v + _INIT_EPS), 1.0)
        self.g.assign(self.g * s)
        self.b.assign(s * (self.b - m))
        return s * (pre_activation - m)


class Conv2d(_WeightNorm):
    """Weight-normalised conv: W = g * V / ||V|| over (kh, kw, in); VALID padding.

    Padding is the caller's (the shifted convolutions pad so that nothing below
    or to the right leaks in).
    """

    def __init__(self, namer, in_channels, num_filters, filter_size, stride=(1, 1),
                 init_scale=1.0, rng=None):
        super().__init__(namer('conv2d'), list(filter_size) + [in_channels, num_filters],
                         num_filters, init_scale, rng)
        self.stride = [1, stride[0], stride[1], 1]

    def kernel(self, get=identity):
        """(W, b): the weight-normalised kernel (kh, kw, in, F) and the bias (F,)."""
        return get(self.g) * tf.nn.l2_normalize(get(self.V), [0, 1, 2]), get(self.b)

    def apply(self, x, kernel):
        """The VALID convolution of an already padded x with kernel = (W, b), in x's dtype."""
        W, b = cast(kernel, x.dtype)
        return tf.nn.bias_add(tf.nn.conv2d(x, W, self.stride, 'VALID'), b)

    def pad(self, x):
        """What the layer does to its input before the VALID convolution (none here)."""
        return x

    def __call__(self, x, get=identity, init=False):
        out = self.apply(self.pad(x), self.kernel(get))
        return self._initialize(out, [0, 1, 2]) if init else out

    def kernel_rows(self, get=identity):
        """([W_0, ..., W_kh-1], b): the kernel by kernel row, W_k (kw * in, F), for `at`."""
        W, b = self.kernel(get)
        return [tf.reshape(W[k], [-1, W.shape[-1]]) for k in range(W.shape[0])], b

    def at(self, window, W, b=None):
        """Incremental form: the output at one position, (..., F), from its window.

        window (..., k * kw * in): k rows of the position's (padded) input window, each row's
        kw positions side by side; W: the matching kernel rows of `kernel_rows`, stacked
        ((k * kw * in, F)). An output is a sum over its window's rows, so rows known early
        may be multiplied early and the rest added later (b, the bias, only once).
        """
        # `@`, not tf.matmul: the two name the op differently, and TensorFlow's graph
        # optimisation of the cached sampler then differs in the last bit; `@` keeps it.
        out = window @ cast(W, window.dtype)
        return out if b is None else out + cast(b, window.dtype)


class Deconv2d(_WeightNorm):
    """Weight-normalised transposed conv, VALID: (B,H,W,in) -> (B, H*s+kh-1, W*s+kw-1, F).

    V has shape [kh, kw, F, in] and is normalised over (kh, kw, in), as the original.
    """

    def __init__(self, namer, in_channels, num_filters, filter_size, stride=(1, 1),
                 init_scale=1.0, rng=None):
        super().__init__(namer('deconv2d'), list(filter_size) + [num_filters, in_channels],
                         num_filters, init_scale, rng)
        self.filter_size = list(filter_size)
        self.num_filters = num_filters
        self.stride = [1, stride[0], stride[1], 1]

    def kernel(self, get=identity):
        """(W, b): the weight-normalised kernel (kh, kw, F, in) and the bias (F,)."""
        W = get(self.g)[None, None, :, None] * tf.nn.l2_normalize(get(self.V), [0, 1, 3])
        return W, get(self.b)

    def apply(self, x, kernel):
        """The VALID transposed convolution of x with kernel = (W, b), before any crop."""
        W, b = cast(kernel, x.dtype)
        shape = tf.shape(x)
        out_shape = [shape[0],
                     x.shape[1] * self.stride[1] + self.filter_size[0] - 1,
                     x.shape[2] * self.stride[2] + self.filter_size[1] - 1,
                     self.num_filters]
        return tf.nn.bias_add(
            tf.nn.conv2d_transpose(x, W, out_shape, self.stride, padding='VALID'), b)

    def crop(self, out):
        """What the layer keeps of the VALID output (all of it here)."""
        return out

    def __call__(self, x, get=identity, init=False):
        out = self.apply(x, self.kernel(get))
        if init:
            out = self._initialize(out, [0, 1, 2])
        return self.crop(out)


class Dense(_WeightNorm):
    """Weight-normalised dense layer applied on the last axis ("nin" on a map).

    out = (x . V) * g / ||V|| (over the input axis) + b.
    """

    def __init__(self, namer, in_units, num_units, init_scale=1.0, rng=None):
        super().__init__(namer('dense'), [in_units, num_units], num_units, init_scale, rng)
        self.num_units = num_units

    def kernel(self, get=identity):
        """(V, scale, b): the layer computes (x . V) * scale + b, scale = g / ||V|| (per unit)."""
        V = get(self.V)
        return V, get(self.g) / tf.sqrt(tf.reduce_sum(tf.square(V), [0])), get(self.b)

    def apply(self, x, kernel, init=False):
        """x (..., in) -> (..., units) with kernel = (V, scale, b), in x's dtype."""
        V, scale, b = cast(kernel, x.dtype)
        shape = tf.shape(x)
        flat = tf.reshape(x, [-1, x.shape[-1]])  # (B*H*W, in): a 1x1 conv as a matmul
        out = tf.matmul(flat, V) * scale + b
        if init:
            out = self._initialize(out, [0])
        return tf.reshape(out, tf.concat([shape[:-1], [self.num_units]], 0))

    def __call__(self, x, get=identity, init=False):
        return self.apply(x, self.kernel(get), init)


class DownShiftedConv2d(Conv2d):
    """Conv that sees only rows above and the current row (default kernel [2, 3]).

    Pads kh-1 rows on top and (kw-1)/2 columns each side: an output position sees
    its own row and the kh-1 rows above, centred horizontally.
    """

    def __init__(self, namer, in_channels, num_filters, filter_size=(2, 3), stride=(1, 1),
                 init_scale=1.0, rng=None):
        super().__init__(namer, in_channels, num_filters, filter_size, stride, init_scale, rng)
        kh, kw = filter_size
        self.padding = [[0, 0], [kh - 1, 0], [(kw - 1) // 2, (kw - 1) // 2], [0, 0]]

    def pad(self, x):
        return tf.pad(x, self.padding)

    def pad_row(self, row):
        """One input row (B, W, C) padded as `pad` pads its columns: (B, W + kw - 1, C)."""
        return tf.pad(row, [[0, 0], self.padding[2], [0, 0]])

    def row(self, above, row, kernel):
        """Incremental form: output row i, (B, W / stride, F), from the input rows it sees.

        above: the kh - 1 input rows before row stride * i, (B, kh - 1, W + kw - 1, C),
        zeros above the map (None for kh = 1); row: input row stride * i, (B, W + kw - 1, C);
        both padded by `pad_row`. kernel: `kernel(get)`.
        """
        rows = row[:, None] if above is None else tf.concat([above, row[:, None]], 1)
        return self.apply(rows, kernel)[:, 0]


class DownRightShiftedConv2d(Conv2d):
    """Conv that sees only rows above and columns to the left (default kernel [2, 2])."""

    def __init__(self, namer, in_channels, num_filters, filter_size=(2, 2), stride=(1, 1),
                 init_scale=1.0, rng=None):
        super().__init__(namer, in_channels, num_filters, filter_size, stride, init_scale, rng)
        kh, kw = filter_size
        self.padding = [[0, 0], [kh - 1, 0], [kw - 1, 0], [0, 0]]

    def pad(self, x):
        return tf.pad(x, self.padding)


class DownShiftedDeconv2d(Deconv2d):
    """Upsampling counterpart of DownShiftedConv2d (default kernel [2, 3]).

    Crops the VALID output to H*s rows (the last kh-1 rows would see below) and
    drops (kw-1)/2 columns on each side.
    """

    def __init__(self, namer, in_channels, num_filters, filter_size=(2, 3), stride=(1, 1),
                 init_scale=1.0, rng=None):
        super().__init__(namer, in_channels, num_filters, filter_size, stride, init_scale, rng)

    def crop(self, out):
        kh, kw = self.filter_size
        side = (kw - 1) // 2
        return out[:, :out.shape[1] - kh + 1, side:out.shape[2] - side]

    def rows_from(self, row, kernel):
        """Incremental form: the output rows s*i .. s*i + s - 1, (B, s, W * s, F), from input
        row i (B, W, C). With kernel height = stride s no other input row reaches them."""
        if self.filter_size[0] != self.stride[1]:
            raise NotImplementedError('rows_from needs kernel height = stride')
        return self.crop(self.apply(row[:, None], kernel))


class DownRightShiftedDeconv2d(Deconv2d):
    """Upsampling counterpart of DownRightShiftedConv2d (default kernel [2, 2]).

    Crops the last kh-1 rows and the last kw-1 columns, which would see below or
    to the right.
    """

    def __init__(self, namer, in_channels, num_filters, filter_size=(2, 2), stride=(1, 1),
                 init_scale=1.0, rng=None):
        super().__init__(namer, in_channels, num_filters, filter_size, stride, init_scale, rng)

    def crop(self, out):
        kh, kw = self.filter_size
        return out[:, :out.shape[1] - kh + 1, :out.shape[2] - kw + 1]

    def tap_kernel(self, get=identity):
        """(W, b) for `taps`: the kernel (kh, kw, F, in) as (in, kh * kw * F), taps row-major."""
        W, b = self.kernel(get)
        return tf.reshape(tf.transpose(W, [3, 0, 1, 2]), [W.shape[3], -1]), b

    def taps(self, value, kernel):
        """Incremental form: what input position (i, j), value (B, in), gives the outputs
        (s*i + a, s*j + c), one per kernel tap (a, c): (B, kh * kw, F), taps row-major. With
        the kernel the size of the stride s, no other input reaches them. kernel: tap_kernel."""
        if self.filter_size != self.stride[1:3]:
            raise NotImplementedError('taps needs a kernel the size of the stride')
        W, b = cast(kernel, value.dtype)
        return tf.reshape(tf.matmul(value, W), [-1, W.shape[1] // self.num_filters,
                                                self.num_filters]) + b


class GatedResnet(tf.Module):
    """The gated resnet block: x + p * sigmoid(q), (p, q) = split(conv(f(conv(f(x)) + nin(f(a))))).

    conv is DownShiftedConv2d for the u stream and DownRightShiftedConv2d for the
    ul stream. `a` is the auxiliary input (the other stream or the skip
    connection), `h` the one-hot class (conditional_weights hw, no weight norm).
    Layers are created in the original's order: conv, nin, conv, hw.
    """

    def __init__(self, namer, num_filters, conv, nonlinearity='concat_elu', aux_channels=0,
                 num_classes=0, rng=None):
        super().__init__()
        self.nonlinearity, mult = NONLINEARITIES[nonlinearity]
        self.conv1 = conv(namer, mult * num_filters, num_filters, rng=rng)
        self.nin_a = (Dense(namer, mult * aux_channels, num_filters, rng=rng)
                      if aux_channels else None)
        self.conv2 = conv(namer, mult * num_filters, 2 * num_filters, init_scale=0.1, rng=rng)
        if num_classes:
            self.hw_scope = namer('conditional_weights')
            self.hw = tf.Variable(rng.normal([num_classes, 2 * num_filters], 0.0, _INIT_STDDEV),
                                  name='hw')
        else:
            self.hw = None

    @property
    def layers(self):
        return [l for l in (self.conv1, self.nin_a, self.conv2) if l is not None]

    def __call__(self, x, a=None, h=None, get=identity, init=False, dropout_p=0.0,
                 dropout_seed=None):
        aux = None if a is None else self.aux_term(a, lambda z: self.nin_a(z, get, init))
        dropout = (lambda c: _dropout(c, dropout_p, dropout_seed)) if dropout_p > 0 else None
        return self.compose(x, lambda z: self.conv1(z, get, init),
                            lambda z: self.conv2(z, get, init), aux, self.label_bias(h, get),
                            dropout)

    def compose(self, x, conv1, conv2, aux=None, label_bias=None, dropout=None):
        """The block's output from x and its convolutions given as functions, in either form.

        conv1, conv2: the block's convs as functions of their input (the layers on whole
        maps, or a row's or a position's incremental form); aux: the auxiliary input's term
        `aux_term(a, ...)`, or None; label_bias: `label_bias(h)`, or None; dropout: a
        function applied after the first conv's nonlinearity (training), or None.
        """
        f = self.nonlinearity
        c1 = conv1(f(x))
        if aux is not None:
            c1 += aux
        c1 = f(c1)
        if dropout is not None:
            c1 = dropout(c1)
        return self.gate(x, conv2(c1), label_bias)

    def aux_term(self, a, nin):
        """The auxiliary input a's term of the first conv, nin(f(a)); `nin` is the layer
        nin_a as a function (either form)."""
        return nin(self.nonlinearity(a))

    def label_bias(self, h, get=identity):
        """h . hw, (B, 2F), the class's term of the second conv; None if unconditional."""
        return tf.matmul(h, get(self.hw)) if self.hw is not None else None

    @staticmethod
    def gate(x, c2, label_bias=None):
        """The block's output from its input x (..., F) and second conv's output c2 (..., 2F).

        c2 (plus label_bias (B, 2F), broadcast over positions) splits into (p, q):
        x + p * sigmoid(q). x and c2 may be maps (B, H, W, .), rows (B, W, .) or
        positions (B, .).
        """
        if label_bias is not None:
            label_bias = tf.cast(label_bias, c2.dtype)
            c2 += tf.reshape(label_bias, [-1] + [1] * (c2.shape.rank - 2) + [c2.shape[-1]])
        p, q = tf.split(c2, 2, axis=-1)
        return x + p * tf.sigmoid(q)
