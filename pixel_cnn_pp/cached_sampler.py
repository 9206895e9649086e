"""The cached sampler: every layer computes each position once (Fast PixelCNN++).

Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models"
(ICLR 2017 workshop): each layer keeps a small cache of the inputs its kernel
still needs, and a generation step computes only the positions that the new
pixel makes computable. This file owns that schedule and those caches only; the
arithmetic of every layer (weight normalisation, the gate, the attention) is the
model's own, from nn.py and attention.py: a layer's `kernel(get)` is computed
once per run and `apply`-ed to the positions a step computes.

The whole run is one compiled loop: rows and pixels are `tf.while_loop`s inside
one `tf.function` (optionally XLA-compiled), the caches are `tf.Variable`s.

The schedule, for a network at three resolutions (level 0: HxW, level 1:
H/2 x W/2, level 2: H/4 x W/4); level l is "active" at image row r if r is a
multiple of 2^l, and at pixel (r, c) if both r and c are:

  for each image row r (all pixels of rows < r are known):
      u stream, whole rows: the level-0 row r, and the level-l row r / 2^l of
      every active level, up pass (levels 0..L) then down pass (L..0), every
      layer once. The u stream sees only rows above, so a row at a time is exact.
      The ul stream's first term (a [1, 3] conv of image row r - 1) is a whole row
      too, and is computed here.
      for each column c (all pixels before (r, c) are known):
          ul stream, one position per active level: level-l position
          (r / 2^l, c / 2^l), up pass then down pass, then the output layer at
          (r, c), the mixture draw, and the new pixel written into the input
          (or, where the pixel is known, as in image completion, the known one).

Why that is exact: u at level-0 row r depends only on image rows < r, ul at
(r, c) only on pixels before (r, c). A stride-2 conv's output (i, j) reads its
input at rows 2i-1..2i (and columns up to 2j, or 2j+1 for the [2, 3] kernel of
the u stream, which is a whole row anyway), which are ready at row 2i or
pixel (2i, 2j). A stride-2 deconv with kernel height 2 maps input row i to
output rows 2i and 2i+1 only (and, for the ul stream's [2, 2] kernel, input
column j to output columns 2j, 2j+1): computed at the input's step, written to
a two-row buffer, read at the output's steps, all of which come later. Up and
down pass of a level meet at the same step, so skip connections need no cache.

Caches, each sized by its layer's kernel and resolution: every [2, k] conv of
the u stream keeps the previous row of its (padded) input; every [2, 2] conv of
the ul stream keeps the last two rows of its (left-padded) input, by the parity
of the row; each deconv keeps the two output rows it produced; the causal
non-local block (-nl) keeps the keys and values of every position so far; the
input keeps the image sampled so far.

Precision: the kernels and the caches of activations are in the model's compute
dtype (precision.py), as the forward pass computes; the output layer, the
mixture draw, the random numbers and the images are float32.

Caches read or written one position at a time are laid out positions first,
(P, B, C), and accessed only by gather and scatter: a sliced assignment to a
variable that is also read copies the whole variable.
"""

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import mixture, nn


class _State:
    """The sampler's variables: the layers' kernels (refreshed every run) and caches (zeroed)."""

    def __init__(self, get, dtype):
        self.get = get
        self.dtype = dtype  # the model's compute dtype: of kernels and caches unless told
        self._weights = []  # (variables, function of `get` giving their values)
        self._caches = []

    def weights(self, compute, dtype=None):
        """Variables holding compute(get), a tensor or a tuple of tensors, cast to `dtype`
        (default: the compute dtype)."""
        dtype = dtype or self.dtype
        cast = lambda get: nn.cast(compute(get), dtype)  # noqa: E731  (computed in float32)
        value = cast(self.get)
        single = not isinstance(value, (tuple, list))
        variables = [tf.Variable(v, trainable=False) for v in ([value] if single else value)]
        self._weights.append((variables, cast))
        return variables[0] if single else tuple(variables)

    def copies(self, variables):
        """A `get` for the given model variables that reads their copies (refreshed every run)."""
        table = {v.ref(): self.weights(lambda get, v=v: tf.identity(get(v))) for v in variables}
        return lambda v: table[v.ref()]

    def cache(self, shape, dtype=None):
        var = tf.Variable(tf.zeros(shape, dtype or self.dtype), trainable=False)
        self._caches.append(var)
        return var

    def positions(self, count, batch, channels, dtype=None):
        return _Positions(self.cache([count, batch, channels], dtype))

    def reset(self):
        for variables, compute in self._weights:
            value = compute(self.get)
            for var, v in zip(variables, value if len(variables) > 1 else [value]):
                var.assign(v)
        for var in self._caches:
            var.assign(tf.zeros_like(var))


class _Positions:
    """A cache of (B, C) vectors at P positions, variable (P, B, C), by gather and scatter."""

    def __init__(self, var):
        self.var = var

    def write(self, index, value):
        """value (B, C) at position `index` (scalar tensor)."""
        tf.raw_ops.ResourceScatterUpdate(resource=self.var.handle, indices=index, updates=value)

    def write_many(self, indices, values):
        """values (k, B, C) at positions `indices` (k,)."""
        self.var.scatter_update(tf.IndexedSlices(values, indices))

    def read(self, index):
        """(B, C) at position `index`."""
        return tf.gather(self.var, index)

    def read_many(self, indices):
        """(B, k, C) at positions `indices` (k,)."""
        return tf.transpose(tf.gather(self.var, indices), [1, 0, 2])

    def read_positions(self, indices):
        """(k, B, C) at positions `indices` (k,), positions first."""
        return tf.gather(self.var, indices)

    def assign_positions(self, values):
        """Replace every position by values (P, B, C), positions first."""
        self.var.assign(values)

    def read_side_by_side(self, indices):
        """(B, k*C): the vectors at positions `indices` (k,), k static, side by side.

        As read_many(indices) reshaped to (B, k*C), without its transpose (for small
        reads, oneDNN's transpose costs more than the gathers and the concatenation).
        """
        return tf.concat([tf.gather(self.var, indices[k]) for k in range(indices.shape[0])], -1)

    def batch_major(self):
        """All positions, (B, P, C)."""
        return tf.transpose(self.var, [1, 0, 2])

    def assign_row(self, row):
        """Replace every position by a whole row (B, P, C)."""
        self.var.assign(tf.transpose(row, [1, 0, 2]))


def _flat_kernel(layer):
    """A conv's kernel (kh, kw, in, F) as (kh*kw*in, F), for a window flattened row-major."""
    def compute(get):
        W, b = layer.kernel(get)
        return tf.reshape(W, [-1, W.shape[-1]]), b
    return compute


class _RowConv:
    """An nn.DownShiftedConv2d ([2, kw], stride 1 or 2) computed a whole row at a time.

    Cache: the previous row of its input, padded as the layer pads columns,
    (B, W + kw - 1, C). At level row i the window is rows i-1 and i.
    """

    def __init__(self, state, layer, batch, width):
        kh, kw, cin, _ = layer.V.shape
        if kh != 2:
            raise NotImplementedError('the cached sampler expects kernel height 2, got %d' % kh)
        self.layer = layer
        self.kernel = state.weights(layer.kernel)
        self.prev = state.cache([batch, width + kw - 1, cin])

    def _pad(self, row):
        return tf.pad(row, [[0, 0], self.layer.padding[2], [0, 0]])

    def __call__(self, row):
        """Output row (B, W / stride, F) from this input row (B, W, C); remembers it."""
        cur = self._pad(row)
        window = tf.stack([self.prev, cur], axis=1)  # (B, 2, W + kw - 1, C)
        out = self.layer.apply(window, self.kernel)  # (B, 1, W', F)
        self.prev.assign(cur)
        return out[:, 0]

    def remember(self, row):
        """Only keep this input row (a stride-2 conv at a row that produces no output)."""
        self.prev.assign(self._pad(row))


class _Where:
    """Position (i, j) of a level of width W, in the caches of its [2, 2] convs.

    Those caches hold the last two rows of their input, left-padded by one
    column: 2(W + 1) positions, row i in the half i % 2. The window of output
    (i, j) is rows i-1..i, columns j-1..j; the stride-2 conv's output (i', j') is
    the window of the finer level's position (2i', 2j'). Computed once per level
    and step, shared by every conv of the level.
    """

    def __init__(self, i, j, width):
        self.i, self.j, self.width = i, j, width
        here = (i % 2) * (width + 1) + j + 1
        above = ((i + 1) % 2) * (width + 1) + j + 1  # row i - 1
        self.slot = here
        self.window = tf.stack([above - 1, above, here - 1, here])
        self.raster = i * width + j


class _PixelConv:
    """An nn.DownRightShiftedConv2d ([2, 2], stride 1 or 2) computed one position at a time.

    The convolution at one position is the product of its flattened 2x2 window
    with the flattened kernel, split by kernel row: the window's upper half (the
    row above) is known for a whole row before the row starts, so `start_row`
    computes it for every position of the row in one product (B*W rows, not B),
    and `at` adds the lower half, the current row's two positions. Caches: the
    last two rows of its input (see _Where) and the upper halves of this row.
    """

    def __init__(self, state, layer, batch, width_in, stride=1):
        kh, kw, cin, cout = layer.V.shape
        if (kh, kw) != (2, 2) or layer.stride[1:3] != [stride, stride]:
            raise NotImplementedError('the cached sampler expects a [2, 2] kernel, got [%d, %d]'
                                      % (kh, kw))

        def halves(get):
            W, b = _flat_kernel(layer)(get)  # (4C, F): rows of taps (0, 0), (0, 1), (1, 0), (1, 1)
            return W[:2 * cin], W[2 * cin:], b
        self.W_above, self.W_here, self.b = state.weights(halves)
        self.batch, self.stride, self.width_in = batch, stride, width_in
        self.rows = state.positions(2 * (width_in + 1), batch, cin)
        self.above = state.positions(width_in // stride, batch, cout)

    def write(self, where, value):
        """Store the input (B, C) at position `where` (a _Where of the input's level)."""
        self.rows.write(where.slot, value)

    def start_row(self, i):
        """The upper halves of every window of output row i (its input's row stride*i - 1)."""
        w = self.width_in
        half = ((self.stride * i - 1) % 2) * (w + 1)  # that row's half of the cache
        # Positions first throughout (no transposes): (W + 1, B, C), column -1 first.
        row = self.rows.read_positions(half + tf.range(w + 1))
        s = self.stride  # window of output j: input columns s*j - 1 and s*j (slots s*j, s*j + 1)
        window = tf.concat([row[0:w:s], row[1:w + 1:s]], -1)  # (W / s, B, 2C)
        flat = tf.reshape(window, [-1, window.shape[-1]])  # one product of (W / s * B) rows
        self.above.assign_positions(tf.reshape(tf.matmul(flat, self.W_above),
                                               [w // s, self.batch, -1]))

    def at(self, where):
        """Output (B, F) whose window ends at input position `where`."""
        here = self.rows.read_side_by_side(where.window[2:])  # (B, 2C)
        return self.above.read(where.j // self.stride) + (here @ self.W_here + self.b)

    def __call__(self, where, value):
        self.write(where, value)
        return self.at(where)


class _RowDeconv:
    """An nn.DownShiftedDeconv2d ([2, kw], stride 2) from a level row to the two rows it makes.

    With kernel height = stride = 2, input row i reaches output rows 2i and 2i+1
    only, so the layer applied to that one row (and cropped as the layer crops)
    gives exactly those rows. Cache: the two output rows, (B, 2, 2W, F); output
    row r is in slot r % 2.
    """

    def __init__(self, state, layer, batch, width_in):
        kh, _, cout, _ = layer.V.shape
        if kh != 2 or layer.stride[1:3] != [2, 2]:
            raise NotImplementedError('the cached sampler expects kernel height 2 and stride 2')
        self.layer = layer
        self.kernel = state.weights(layer.kernel)
        self.rows = state.cache([batch, 2, 2 * width_in, cout])

    def __call__(self, row):
        """Compute and keep the two output rows of input row (B, W, C)."""
        self.rows.assign(self.layer.crop(self.layer.apply(row[:, None], self.kernel)))

    def row(self, r):
        """Output row r (B, 2W, F)."""
        return tf.gather(self.rows, r % 2, axis=1)  # not a slice: XLA would compile per r


class _PixelDeconv:
    """An nn.DownRightShiftedDeconv2d ([2, 2], stride 2), one input position at a time.

    Input (i, j) reaches output (2i + a, 2j + b) for a, b in {0, 1} only, through
    kernel tap (a, b): one product with the kernel laid out (in, 2*2*F) gives all
    four. Cache: two output rows, 2 * 2W positions, by parity.
    """

    def __init__(self, state, layer, batch, width_in):
        kh, kw, cout, cin = layer.V.shape
        if (kh, kw) != (2, 2) or layer.stride[1:3] != [2, 2]:
            raise NotImplementedError('the cached sampler expects a [2, 2] kernel and stride 2')

        def taps(get):
            W, b = layer.kernel(get)  # (2, 2, F, in)
            return tf.reshape(tf.transpose(W, [3, 0, 1, 2]), [cin, 4 * cout]), b
        self.W, self.b = state.weights(taps)
        self.cout, self.width = cout, 2 * width_in
        self.rows = state.positions(2 * self.width, batch, cout)

    def __call__(self, i, j, value):
        """Compute and keep the four outputs of input (B, C) at position (i, j)."""
        out = tf.reshape(tf.matmul(value, self.W), [-1, 4, self.cout]) + self.b  # taps (a, b)
        w, c = self.width, 2 * j
        self.rows.write_many(tf.stack([c, c + 1, w + c, w + c + 1]), tf.transpose(out, [1, 0, 2]))

    def at(self, r, c):
        """Output (B, F) at position (r, c)."""
        return self.rows.read((r % 2) * self.width + c)


class _Dense:
    """An nn.Dense ("nin") with its kernel computed once per run (in `dtype`, default the
    compute dtype)."""

    def __init__(self, state, layer, dtype=None):
        self.layer = layer
        self.kernel = state.weights(layer.kernel, dtype)

    def __call__(self, x):
        return self.layer.apply(x, self.kernel)


class _Block:
    """An nn.GatedResnet in both forms: a whole row (u stream) or one position (ul stream).

    The block's own nonlinearity and gate; conv1 caches f(x), conv2 caches f(c1):
    the inputs exactly as the convs see them.
    """

    def __init__(self, state, block, batch, width, per_pixel):
        self.block = block
        self.f = block.nonlinearity
        if per_pixel:
            self.conv1 = _PixelConv(state, block.conv1, batch, width)
            self.conv2 = _PixelConv(state, block.conv2, batch, width)
        else:
            self.conv1 = _RowConv(state, block.conv1, batch, width)
            self.conv2 = _RowConv(state, block.conv2, batch, width)
        self.nin = _Dense(state, block.nin_a) if block.nin_a is not None else None
        # h . hw for this run's labels, (B, 2F); set at the start of every run.
        self.label_bias = (state.cache([batch, block.conv2.V.shape[-1]])
                           if block.hw is not None else None)
        self.width = block.conv2.V.shape[-1] // 2  # F, the block's output channels

    def aux(self, a):
        """The auxiliary input's term nin(f(a)), for a row or a position."""
        return self.nin(self.f(a))

    def row(self, x, a=None):
        """x (B, W, F) at this level's current row, a (B, W, Fa) or None."""
        c1 = self.conv1(self.f(x))
        c1 = self.f(c1 if a is None else c1 + self.aux(a))
        return self.block.gate(x, self.conv2(c1), self.label_bias)

    def start_row(self, i):
        """Before the ul stream's positions of level row i: the convs' upper halves."""
        self.conv1.start_row(i)
        self.conv2.start_row(i)

    def pixel(self, where, x, a=None, aux=None):
        """x (B, F) at this level's position `where` (a _Where); a (B, Fa), or its term aux."""
        c1 = self.conv1(where, self.f(x))
        if a is not None:
            aux = self.aux(a)
        c1 = self.f(c1 if aux is None else c1 + aux)
        return self.block.gate(x, self.conv2(where, c1), self.label_bias)


class _Attention:
    """The causal non-local block at one position: keys and values of all positions so far.

    Cache: keys (n, B, d) and values (n, B, F) of the level's n positions in
    raster order; positions not yet reached are masked as in the full block.
    """

    def __init__(self, state, block, batch, positions):
        self.block = block
        self.get = state.copies([v for _, v in block.weights])
        d, f = block.wq.shape[-1], block.wv.shape[-1]
        self.keys = state.positions(positions, batch, d)
        self.values = state.positions(positions, batch, f)
        self.positions = positions

    def __call__(self, p, ul, u):
        """ul (B, F) after attending from raster position p (keys from [u, ul] at <= p)."""
        block = self.block
        k, v = block.key_value(u, ul, self.get)
        self.keys.write(p, k)
        self.values.write(p, v)
        visible = (tf.range(self.positions) <= p)[None, None]  # (1, 1, n)
        attended = block.attend(block.query(ul, self.get)[:, None], self.keys.batch_major(),
                                self.values.batch_major(), visible)  # (B, 1, F)
        return block.output(ul, attended[:, 0], self.get)


def _raster(images):
    """(B, H, W, C) -> (H*W, B, C): positions in raster order first."""
    shape = tf.shape(images)
    return tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [-1, shape[0], shape[3]])


def _deepest_level(t):
    """The deepest level whose grid contains image row (or column) t: 2, 1 or 0."""
    return tf.where(t % 4 == 0, 2, tf.where(t % 2 == 0, 1, 0))


def _when(condition, then, otherwise=None):
    """Run `then` (side effects only) if the scalar condition holds, else `otherwise`."""
    def branch(fn):
        def run():
            if fn is not None:
                fn()
            return tf.constant(0)
        return run
    tf.cond(condition, branch(then), branch(otherwise))


class _Own:
    """A function as an object of its own, for tf.function.

    TensorFlow's retracing detector groups functions by their code, so a process
    that builds several samplers (one trace each) would be warned about
    "retracing"; an object is its own key, so each sampler's functions count alone.
    """

    def __init__(self, function):
        self._function = function

    def __call__(self, *args):
        return self._function(*args)


class CachedSampler:
    """Exact fast sampling: every layer computes each position once (Fast PixelCNN++).

    Built for one model, one batch size and one choice of weights; reusable for
    any number of runs (the layers' kernels are re-read from the model at the
    start of each run, so it follows a model that keeps training). The schedule
    is in this module's docstring. Not for energy-distance models (-ed). Use it
    through pixel_cnn_pp.sampling (`sample`, `complete`), which draws the random
    numbers and spreads images over devices.

    What it reads of the model: `network` (the layers by resolution, model.Network),
    `network_input`, `image_shape`, `nr_logistic_mix`, `compute_dtype`, `energy_distance`,
    `check_labels` and `one_hot`.

    Args:
      model: a PixelCNN.
      n: images per run (the batch).
      get: which weights: nn.identity, or a PolyakAverage's `average`.
      jit_compile: compile the whole run with XLA (see bench/sample_speed.py).
      choose: an optional hook that chooses every pixel instead of the draw, for other
        uses of the schedule (compression.py's coder; tests/test_cached_sampler.py records
        the outputs to compare them with the forward pass). choose(pixel, out) is called
        inside the compiled loop at each pixel in raster order, with the pixel's raster
        index (int32 scalar tensor) and the network's output there, float32 (n, K) as
        model.forward gives it, and returns the pixel's levels, float32 (n, C) in 0..255,
        which are fed back as the image (pixels `given` to `run` win). A sampler with a
        hook needs no random numbers; one without has no hook in its loop.

    Example:
        sampler = CachedSampler(model, 16)
        gumbel, logistic = sampling.draw_uniforms(16, model.image_shape, model.nr_logistic_mix)
        images = sampler.run(gumbel, logistic)          # uint8 (16, H, W, C)
    """

    def __init__(self, model, n, get=nn.identity, jit_compile=False, choose=None):
        if model.energy_distance:
            raise ValueError('the cached sampler does not implement the energy-distance head '
                             '(-ed); use method=\'naive\'')
        self.model, self.n = model, int(n)
        self.image_shape = (height, width, _) = model.image_shape
        net = model.network
        state = self._state = _State(get, model.compute_dtype)
        self._dtype = model.compute_dtype
        widths = [width >> l for l in range(len(net.levels))]
        self._widths = widths

        # The input (model.network_input: the image, then what is known up front),
        # zero-padded: position (r + 2) * (W + 2) + c + 1 holds x_pad[r, c].
        in_channels = net.u_init.V.shape[2]
        self._x = state.positions((height + 2) * (width + 2), n, in_channels)
        self._u_init = (net.u_init, state.weights(net.u_init.kernel))
        self._ul_init_down = (net.ul_init_down, state.weights(net.ul_init_down.kernel))
        # The [2, 1] conv at one position: its kernel flattened for a product with the window.
        self._ul_init_right = state.weights(_flat_kernel(net.ul_init_right))
        self._ul_down_row = state.positions(width, n, net.u_init.V.shape[-1])

        def blocks(pairs, level):
            return [(_Block(state, u, n, widths[level], per_pixel=False),
                     _Block(state, ul, n, widths[level], per_pixel=True)) for u, ul in pairs]

        levels = list(enumerate(net.levels))
        self._up = [blocks(level.up, l) for l, level in levels]
        self._down = [blocks(level.down, l) for l, level in levels]
        self._attention = {l: _Attention(state, level.attention, n, (height >> l) * widths[l])
                           for l, level in levels if level.attention is not None}
        self._strided = [(_RowConv(state, level.downsample[0], n, widths[l]),
                          _PixelConv(state, level.downsample[1], n, widths[l], stride=2))
                         for l, level in levels if level.downsample is not None]
        # Level l's deconvs upsample it into level l - 1.
        self._deconv = {l: (_RowDeconv(state, level.upsample[0], n, widths[l]),
                            _PixelDeconv(state, level.upsample[1], n, widths[l]))
                        for l, level in levels if level.upsample is not None}
        # The u stream's row at each level, after each block: what the ul blocks take as `a`.
        # For the up pass only their term nin(f(u)) is needed, computed for the whole row;
        # the attention block (-nl) takes the last block's u itself.
        self._u_up_rows = [[state.positions(widths[l], n, b[0].width) for b in self._up[l]]
                           for l, _ in levels]
        self._u_up_aux = [[state.positions(widths[l], n, b[1].width) for b in self._up[l]]
                          for l, _ in levels]
        self._u_down_rows = [[state.positions(widths[l], n, b[0].width) for b in self._down[l]]
                             for l, _ in levels]
        self._out = _Dense(state, net.out, tf.float32)  # as forward: the output in float32
        self._run_inputs(state, model.nr_logistic_mix)
        self._choose = choose
        self._begin = tf.function(_Own(self._begin_run), autograph=False)
        self._loop = tf.function(_Own(self._rows), jit_compile=bool(jit_compile),
                                 autograph=False)

    def _run_inputs(self, state, nr_mix):
        """Per run: the random numbers, the pixels given (image completion) and which are
        given, the images drawn; all in raster order."""
        height, width, channels = self.image_shape
        pixels, n = height * width, self.n
        self._gumbel = state.positions(pixels, n, nr_mix, tf.float32)
        self._logistic = state.positions(pixels, n, channels, tf.float32)
        self._given = state.positions(pixels, n, channels, tf.float32)  # levels 0..255
        self._known = state.cache([pixels], tf.bool)
        self._images = state.positions(pixels, n, channels, tf.float32)

    # ------------------------------------------------------------ the u stream

    def _u_up(self, l, u):
        """Level l's up pass on its current row from its first input u; the skip stack."""
        stack = [u]
        for k, (block, ul_block) in enumerate(self._up[l]):
            stack.append(block.row(stack[-1]))
            if l in self._attention:
                self._u_up_rows[l][k].assign_row(stack[-1])
            self._u_up_aux[l][k].assign_row(ul_block.aux(stack[-1]))
        return stack

    def _ul_start_row(self, l, i):
        """Level l's ul convs before its row i: the upper halves of their windows."""
        for pairs in (self._up[l], self._down[l]):
            for _, block in pairs:
                block.start_row(i)
        if l > 0:
            self._strided[l - 1][1].start_row(i)

    def _u_down(self, l, u, stack):
        """Level l's down pass on its current row, consuming the level's skip stack."""
        for k, (block, _) in enumerate(self._down[l]):
            u = block.row(u, stack.pop())
            self._u_down_rows[l][k].assign_row(u)
        assert not stack
        if l > 0:
            self._deconv[l][0](u)  # the two rows of level l - 1 this row makes

    def _row_step(self, r):
        """The u stream at image row r: levels 0..L up, then L..0 down (r % 2^L == 0)."""
        live = tf.cast(r > 0, self._dtype)  # down_shift: zeros enter at the top
        padded = self.image_shape[1] + 2
        x = self._x.read_many(r * padded + tf.range(2 * padded))  # (a static size, for XLA)
        x = tf.reshape(x, [self.n, 2, padded, -1])  # image rows r-2, r-1
        (u_init, u_kernel), (ul_init_down, ul_kernel) = self._u_init, self._ul_init_down
        u = u_init.apply(x, u_kernel)[:, 0] * live
        self._ul_down_row.assign_row(ul_init_down.apply(x[:, 1:], ul_kernel)[:, 0] * live)
        L = _deepest_level(r)
        self._ul_start_row(0, r)
        stack0 = self._u_up(0, u)

        def level1():
            self._ul_start_row(1, r // 2)
            stack1 = self._u_up(1, self._strided[0][0](stack0[-1]))

            def level2():
                self._ul_start_row(2, r // 4)
                stack2 = self._u_up(2, self._strided[1][0](stack1[-1]))
                self._u_down(2, stack2.pop(), stack2)

            # At a level-1 row without level 2, the stride-2 conv only keeps the row.
            _when(L >= 2, level2, lambda: self._strided[1][0].remember(stack1[-1]))
            self._u_down(1, self._deconv[2][0].row(r // 2), stack1)

        _when(L >= 1, level1, lambda: self._strided[0][0].remember(stack0[-1]))
        self._u_down(0, self._deconv[1][0].row(r), stack0)

    # ----------------------------------------------------------- the ul stream

    def _ul_up(self, l, where, ul):
        """Level l's up pass at position `where` from its first input ul; the skip stack."""
        stack = [ul]
        for k, (_, block) in enumerate(self._up[l]):
            stack.append(block.pixel(where, stack[-1], aux=self._u_up_aux[l][k].read(where.j)))
        if l in self._attention:
            u = self._u_up_rows[l][-1].read(where.j)
            stack[-1] = self._attention[l](where.raster, stack[-1], u)
        if l < 2:
            self._strided[l][1].write(where, stack[-1])
        return stack

    def _ul_down(self, l, where, ul, stack):
        """Level l's down pass at position `where`, consuming the level's skip stack."""
        for k, (_, block) in enumerate(self._down[l]):
            a = tf.concat([self._u_down_rows[l][k].read(where.j), stack.pop()], axis=-1)
            ul = block.pixel(where, ul, a)
        assert not stack
        if l > 0:
            self._deconv[l][1](where.i, where.j, ul)  # the four level l - 1 positions it makes
        return ul

    def _pixel_step(self, r, c):
        """The ul stream at pixel (r, c), the mixture there, its draw (or the `choose` hook's)."""
        height, width, channels = self.image_shape
        W, b = self._ul_init_right  # right_shift of a [2, 1] conv: image rows r-1..r, column c-1
        padded = width + 2
        window = self._x.read_side_by_side(tf.stack([(r + 1) * padded + c, (r + 2) * padded + c]))
        ul = self._ul_down_row.read(c) + (window @ W + b) * tf.cast(c > 0, self._dtype)
        L = tf.minimum(_deepest_level(r), _deepest_level(c))
        where0 = _Where(r, c, width)
        stack0 = self._ul_up(0, where0, ul)

        def level1():
            where1 = _Where(r // 2, c // 2, width // 2)
            # Stride 2: the window ends at the finer level's position (2i, 2j).
            stack1 = self._ul_up(1, where1, self._strided[0][1].at(where0))

            def level2():
                where2 = _Where(r // 4, c // 4, width // 4)
                stack2 = self._ul_up(2, where2, self._strided[1][1].at(where1))
                self._ul_down(2, where2, stack2.pop(), stack2)

            _when(L >= 2, level2)
            self._ul_down(1, where1, self._deconv[2][1].at(r // 2, c // 2), stack1)

        _when(L >= 1, level1)
        ul = self._ul_down(0, where0, self._deconv[1][1].at(r, c), stack0)
        out = self._out(tf.nn.elu(tf.cast(ul, tf.float32)))  # (B, K): the mixture at (r, c)
        pixel = r * width + c
        if self._choose is None:
            value = mixture.draw(mixture.unpack(out, self.model.nr_logistic_mix, channels),
                                 self._gumbel.read(pixel), self._logistic.read(pixel))
            # Quantise as sample_naive does (tf.round, like np.rint, rounds half to even).
            level = tf.clip_by_value(tf.round((value + 1.0) * 127.5), 0.0, 255.0)
        else:
            level = self._choose(pixel, out)
        level = tf.where(tf.gather(self._known, pixel), self._given.read(pixel), level)
        at = (r + 2) * padded + c + 1  # the image channels; keep the rest of the input
        scaled = tf.cast((level - 127.5) / 127.5, self._dtype)  # as forward casts its input
        self._x.write(at, tf.concat([scaled, self._x.read(at)[:, channels:]], -1))
        self._images.write(pixel, level)

    # ---------------------------------------------------------------- the loop

    def _rows(self, first, end):
        """Image rows first..end-1, every pixel."""
        width = self.image_shape[1]

        def row(r):
            self._row_step(r)

            def pixel(c):
                self._pixel_step(r, c)
                return (c + 1,)

            tf.while_loop(lambda c: c < width, pixel, (tf.constant(0),))
            return (r + 1,)

        tf.while_loop(lambda r: r < end, row, (first,))
        return tf.constant(0)

    def _begin_run(self, h, gumbel, logistic, given, known_rows):
        """Fresh kernels and caches, and this run's inputs."""
        state, n = self._state, self.n
        state.reset()
        height, width, channels = self.image_shape
        # The network's input with the image still zero: what is known up front (the
        # model decides what that is) is in place; pixels are written as they are drawn.
        x_pad = tf.pad(self.model.network_input(tf.zeros([n, height, width, channels])),
                       [[0, 0], [2, 0], [1, 1], [0, 0]])
        self._x.var.assign(tf.cast(_raster(x_pad), self._dtype))
        if h is not None:
            for pairs in self._up + self._down:
                for pair in pairs:
                    for block in pair:
                        block.label_bias.assign(tf.cast(block.block.label_bias(h, state.get),
                                                        self._dtype))
        self._gumbel.var.assign(_raster(gumbel))
        self._logistic.var.assign(_raster(logistic))
        self._given.var.assign(_raster(given))
        self._known.assign(tf.range(height * width) < known_rows * width)

    def _start(self, gumbel, logistic, labels, given, known_rows):
        model, n = self.model, self.n
        labels = model.check_labels(labels, n)
        h = model.one_hot(labels) if labels is not None else None
        height, width, channels = self.image_shape
        if gumbel is None or logistic is None:
            if self._choose is None:
                raise ValueError("'gumbel' and 'logistic' are required: this sampler draws "
                                 "(it has no `choose` hook)")
            gumbel = np.zeros((n, height, width, model.nr_logistic_mix), np.float32)
            logistic = np.zeros((n,) + self.image_shape, np.float32)  # unused: the hook chooses
        if given is None:
            given = np.zeros((n,) + self.image_shape, np.float32)
        elif np.shape(given) != (n,) + self.image_shape:
            raise ValueError("'given' must hold %d images (the sampler's batch) of shape %s, "
                             "got %s" % (n, self.image_shape, np.shape(given)))
        self._begin(h, tf.constant(gumbel, tf.float32), tf.constant(logistic, tf.float32),
                    tf.cast(given, tf.float32), tf.constant(int(known_rows)))

    def run(self, gumbel=None, logistic=None, labels=None, given=None, known_rows=0,
            progress=None):
        """Draw this sampler's n images from the given random numbers (or let `choose` choose).

        Args:
          gumbel, logistic: float32 (n, H, W, M) and (n, H, W, C) uniforms, as
            sampling.draw_uniforms makes them (not needed with a `choose` hook).
          labels: int (n,) for a class-conditional model, else None.
          given: uint8 (n, H, W, C) whose top `known_rows` rows are kept (image
            completion), or None.
          known_rows: rows of `given` to keep, 0..H (validated by the caller).
          progress: optional callable(rows_done, total_rows); without it the whole
            run is one call of the compiled loop, with it one call per row.
        Returns:
          uint8 (n, H, W, C): the images drawn (or chosen).
        """
        self._start(gumbel, logistic, labels, given, known_rows)
        height = self.image_shape[0]
        if progress is None:
            self._loop(tf.constant(0), tf.constant(height))
        else:
            for r in range(height):
                self._loop(tf.constant(r), tf.constant(r + 1))
                progress(r + 1, height)
        images = np.transpose(self._images.var.numpy(), [1, 0, 2])
        return images.reshape((self.n,) + self.image_shape).astype(np.uint8)
