"""The cached sampler: every layer computes each position once (Fast PixelCNN++).

Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models"
(ICLR 2017 workshop): each layer keeps a small cache of the inputs its kernel
still needs, and a generation step computes only the positions that the new
pixel makes computable. This file owns that schedule and those caches only: the
network is the model's description (network.py, model.network), walked one row
or one position at a time, and every layer's arithmetic is its incremental form in
nn.py (and attention.py), with the layer's kernel computed once per run.

The whole run is one compiled loop: rows and pixels are `tf.while_loop`s inside
one `tf.function` (optionally XLA-compiled), the caches are `tf.Variable`s.

The schedule. Level l (H/2^l x W/2^l) is "active" at image row r if r is a multiple
of 2^l, and at pixel (r, c) if both r and c are:

  for each image row r (all pixels of rows < r are known):
      u stream, whole rows: from level 0 on, a level's row r / 2^l: its up pass,
      the next level's (if active, the same recursively), its down pass; every
      layer once. The u stream sees only rows above, so a row at a time is exact.
      The ul stream's first term (a [1, 3] conv of image row r - 1) is a whole row
      too, and is computed here.
      for each column c (all pixels before (r, c) are known):
          ul stream, one position per active level, the same recursion: level-l
          position (r / 2^l, c / 2^l); then the output layer at (r, c), the mixture
          draw, and the new pixel written into the input (or, where the pixel is
          known, as in image completion, the known one).

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

import functools

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import mixture, network, nn


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


class _RowConv:
    """An nn.DownShiftedConv2d ([2, kw], stride 1 or 2) a whole row at a time (its `row`).

    Cache: the input row above, padded as the layer pads, (B, 1, W + kw - 1, C).
    """

    def __init__(self, state, layer, batch, width):
        kh, kw, cin, _ = layer.V.shape
        if kh != 2:
            raise NotImplementedError('the cached sampler expects kernel height 2, got %d' % kh)
        self.layer = layer
        self.kernel = state.weights(layer.kernel)
        self.above = state.cache([batch, 1, width + kw - 1, cin])

    def __call__(self, row):
        """Output row (B, W / stride, F) from this input row (B, W, C); remembers it."""
        row = self.layer.pad_row(row)
        out = self.layer.row(self.above, row, self.kernel)
        self.above.assign(row[:, None])
        return out

    def remember(self, row):
        """Only keep this input row (a stride-2 conv at a row that produces no output)."""
        self.above.assign(self.layer.pad_row(row)[:, None])


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

    def coarser(self):
        """The next level's position whose window ends here (where i and j are even)."""
        return _Where(self.i // 2, self.j // 2, self.width // 2)


class _PixelConv:
    """An nn.DownRightShiftedConv2d ([2, 2], stride 1 or 2) one position at a time (its `at`).

    A position's window is two rows: the row above is known for a whole row before
    the row starts, so `start_row` multiplies it by the kernel's upper row for every
    position of the row in one product (B*W rows, not B), and `at` adds the current
    row's part. Caches: the last two rows of its input (see _Where) and the upper
    parts of this row.
    """

    def __init__(self, state, layer, batch, width_in, stride=1):
        kh, kw, cin, cout = layer.V.shape
        if (kh, kw) != (2, 2) or layer.stride[1:3] != [stride, stride]:
            raise NotImplementedError('the cached sampler expects a [2, 2] kernel, got [%d, %d]'
                                      % (kh, kw))
        def rows(get):  # the kernel's upper row, its lower row, the bias
            (above, here), b = layer.kernel_rows(get)
            return above, here, b
        self.layer = layer
        self.W_above, self.W_here, self.b = state.weights(rows)
        self.batch, self.stride, self.width_in = batch, stride, width_in
        self.rows = state.positions(2 * (width_in + 1), batch, cin)
        self.above = state.positions(width_in // stride, batch, cout)

    def write(self, where, value):
        """Store the input (B, C) at position `where` (a _Where of the input's level)."""
        self.rows.write(where.slot, value)

    def start_row(self, i):
        """The upper parts of every window of output row i (its input's row stride*i - 1)."""
        w = self.width_in
        half = ((self.stride * i - 1) % 2) * (w + 1)  # that row's half of the cache
        # Positions first throughout (no transposes): (W + 1, B, C), column -1 first.
        row = self.rows.read_positions(half + tf.range(w + 1))
        s = self.stride  # window of output j: input columns s*j - 1 and s*j (slots s*j, s*j + 1)
        window = tf.concat([row[0:w:s], row[1:w + 1:s]], -1)  # (W / s, B, 2C)
        flat = tf.reshape(window, [-1, window.shape[-1]])  # one product of (W / s * B) rows
        self.above.assign_positions(tf.reshape(self.layer.at(flat, self.W_above),
                                               [w // s, self.batch, -1]))

    def at(self, where):
        """Output (B, F) whose window ends at input position `where`."""
        here = self.rows.read_side_by_side(where.window[2:])  # (B, 2C)
        return self.above.read(where.j // self.stride) + self.layer.at(here, self.W_here, self.b)

    def __call__(self, where, value):
        self.write(where, value)
        return self.at(where)


class _RowDeconv:
    """An nn.DownShiftedDeconv2d ([2, kw], stride 2) from a level row to the two rows it makes
    (its `rows_from`). Cache: those rows, (B, 2, 2W, F); output row r in slot r % 2."""

    def __init__(self, state, layer, batch, width_in):
        self.layer = layer
        self.kernel = state.weights(layer.kernel)
        self.rows = state.cache([batch, 2, 2 * width_in, layer.num_filters])

    def __call__(self, row):
        """Compute and keep the two output rows of input row (B, W, C)."""
        self.rows.assign(self.layer.rows_from(row, self.kernel))

    def row(self, r):
        """Output row r (B, 2W, F)."""
        return tf.gather(self.rows, r % 2, axis=1)  # not a slice: XLA would compile per r


class _PixelDeconv:
    """An nn.DownRightShiftedDeconv2d ([2, 2], stride 2) one input position at a time (its
    `taps`): input (i, j) gives outputs (2i + a, 2j + b), a, b in {0, 1}. Cache: two output
    rows, 2 * 2W positions, by parity."""

    def __init__(self, state, layer, batch, width_in):
        self.layer = layer
        self.kernel = state.weights(layer.tap_kernel)
        self.width = 2 * width_in
        self.rows = state.positions(2 * self.width, batch, layer.num_filters)

    def __call__(self, i, j, value):
        """Compute and keep the four outputs of input (B, C) at position (i, j)."""
        out = self.layer.taps(value, self.kernel)  # (B, 4, F), taps (a, b) row-major
        w, c = self.width, 2 * j
        self.rows.write_many(tf.stack([c, c + 1, w + c, w + c + 1]), tf.transpose(out, [1, 0, 2]))

    def at(self, r, c):
        """Output (B, F) at position (r, c)."""
        return self.rows.read((r % 2) * self.width + c)


def _applied(state, layer, dtype=None):
    """A layer with an `apply(x, kernel)` (nn.Dense) as a function of x, its kernel computed
    once per run (in `dtype`, default the compute dtype)."""
    return functools.partial(layer.apply, kernel=state.weights(layer.kernel, dtype))


class _Block:
    """An nn.GatedResnet composed by itself (its `compose`) from its convs in one incremental
    form: _RowConv (u stream, a row at a time) or _PixelConv (ul stream, a position)."""

    def __init__(self, state, block, batch, width, conv):
        self.block = block
        self.convs = (conv(state, block.conv1, batch, width), conv(state, block.conv2, batch, width))
        self.nin = _applied(state, block.nin_a) if block.nin_a is not None else None
        # h . hw for this run's labels, (B, 2F); set at the start of every run.
        self.label_bias = (state.cache([batch, block.conv2.V.shape[-1]])
                           if block.hw is not None else None)

    def term(self, a):
        """The auxiliary input's term nin(f(a)), for a row or a position."""
        return self.block.aux_term(a, self.nin)

    def __call__(self, x, *where, a=None, term=None):
        """x at the level's current row (B, W, F), or at position `where` (B, F); the auxiliary
        input a, or its term."""
        conv1, conv2 = (functools.partial(conv, *where) for conv in self.convs)
        if a is not None:
            term = self.term(a)
        return self.block.compose(x, conv1, conv2, term, self.label_bias)

    def start_row(self, i):
        """Before the ul stream's positions of level row i: the convs' upper parts."""
        for conv in self.convs:
            conv.start_row(i)


class _Pair:
    """A network.Pair: its u block a row at a time, its ul block a position at a time.

    Cache: what the ul block takes of the u row: with no skip in its input (the up pass),
    the whole term nin(f(a)), computed for the row at once; else the u row itself.
    """

    def __init__(self, state, pair, batch, width):
        self.pair = pair
        self.u = _Block(state, pair.u, batch, width, _RowConv)
        self.ul = _Block(state, pair.ul, batch, width, _PixelConv)
        self.whole_term = 'skip' not in pair.ul_aux
        self.u_row = (state.positions(width, batch, pair.u.conv1.V.shape[-1])
                      if 'u' in pair.ul_aux else None)

    def row(self, u, skips):
        """The u block on the level's current row (B, W, F); `skips` the level's u stack."""
        u = self.u(u, a=network.auxiliary(self.pair.u_aux, skips=skips))
        if self.u_row is not None:
            self.u_row.assign_row(self.ul.term(network.auxiliary(self.pair.ul_aux, u))
                                  if self.whole_term else u)
        return u

    def pixel(self, where, ul, skips):
        """The ul block at position `where` (B, F); `skips` the level's ul stack."""
        u = self.u_row.read(where.j) if self.u_row is not None else None
        if self.whole_term:
            return self.ul(ul, where, term=u)
        return self.ul(ul, where, a=network.auxiliary(self.pair.ul_aux, u, skips))


class _Attention:
    """The causal non-local block at one position: keys and values of all positions so far.

    Caches: the level's u row after the up pass (B, W, F), and the keys (n, B, d) and
    values (n, B, F) of the level's n positions in raster order; positions not yet
    reached are masked as in the full block.
    """

    def __init__(self, state, block, batch, height, width):
        self.block = block
        self.get = state.copies([v for _, v in block.weights])
        d, f = block.wq.shape[-1], block.wv.shape[-1]
        self.positions = height * width
        self.keys = state.positions(self.positions, batch, d)
        self.values = state.positions(self.positions, batch, f)
        self.u_row = state.positions(width, batch, f)

    def __call__(self, where, ul):
        """ul (B, F) after attending from `where` (keys from [u, ul] at <= it in raster order)."""
        block, p = self.block, where.raster
        k, v = block.key_value(self.u_row.read(where.j), ul, self.get)
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
        # The input (model.network_input: the image, then what is known up front),
        # zero-padded: position (r + 2) * (W + 2) + c + 1 holds x_pad[r, c].
        self._x = state.positions((height + 2) * (width + 2), n, net.u_init.V.shape[2])
        self._u_init = (net.u_init, state.weights(net.u_init.kernel))
        self._ul_init_down = (net.ul_init_down, state.weights(net.ul_init_down.kernel))
        # The [2, 1] conv at one position: its whole window is known, one product.
        def whole(get):
            rows, b = net.ul_init_right.kernel_rows(get)
            return tf.concat(rows, 0), b
        self._ul_init_right = (net.ul_init_right, state.weights(whole))
        self._ul_down_row = state.positions(width, n, net.u_init.V.shape[-1])
        self._levels = [self._level(state, level, height >> level.index, width >> level.index)
                        for level in net.levels]
        self._out = _applied(state, net.out, tf.float32)  # as forward: the output in float32
        self._run_inputs(state, model.nr_logistic_mix)
        self._choose = choose
        self._begin = tf.function(_Own(self._begin_run), autograph=False)
        self._loop = tf.function(_Own(self._rows), jit_compile=bool(jit_compile),
                                 autograph=False)

    def _level(self, state, level, height, width):
        """A network.Level with the sampler's forms of its layers in place."""
        n = self.n
        return level._replace(
            up=[_Pair(state, p, n, width) for p in level.up],
            down=[_Pair(state, p, n, width) for p in level.down],
            attention=level.attention and _Attention(state, level.attention, n, height, width),
            downsample=level.downsample and (
                _RowConv(state, level.downsample[0], n, width),
                _PixelConv(state, level.downsample[1], n, width, stride=2)),
            upsample=level.upsample and (_RowDeconv(state, level.upsample[0], n, width),
                                         _PixelDeconv(state, level.upsample[1], n, width)))

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

    def _row_step(self, r):
        """The u stream at image row r, at every level active there."""
        padded = self.image_shape[1] + 2
        x = self._x.read_many(r * padded + tf.range(2 * padded))  # (a static size, for XLA)
        x = tf.reshape(x, [self.n, 2, padded, -1])  # image rows r-2, r-1, padded
        (u_init, u_kernel), (ul_init_down, ul_kernel) = self._u_init, self._ul_init_down
        u = nn.down_shift_row(u_init.row(x[:, :1], x[:, 1], u_kernel), r)
        self._ul_down_row.assign_row(nn.down_shift_row(ul_init_down.row(None, x[:, 1], ul_kernel),
                                                       r))
        self._u_level(0, r, u)

    def _u_level(self, l, i, u):
        """Level l's row i (the level is active) from its first input u: its up pass, the
        coarser levels' rows (recursively, where active), its down pass."""
        level = self._levels[l]
        for p in level.up + level.down:  # the ul convs of row i: their windows' upper parts
            p.ul.start_row(i)
        if l > 0:
            self._levels[l - 1].downsample[1].start_row(i)
        skips = [u]  # the level's first input and each up pair's output, for the down pass
        for p in level.up:
            skips.append(p.row(skips[-1], None))
        if level.attention is not None:
            level.attention.u_row.assign_row(skips[-1])
        if level.downsample is None:
            u = skips.pop()
        else:  # at an odd row, the stride-2 conv only keeps the row
            conv = level.downsample[0]
            _when(i % 2 == 0, lambda: self._u_level(l + 1, i // 2, conv(skips[-1])),
                  lambda: conv.remember(skips[-1]))
            u = self._levels[l + 1].upsample[0].row(i)
        for p in level.down:
            u = p.row(u, skips)
        assert not skips
        if level.upsample is not None:
            level.upsample[0](u)  # the two rows of level l - 1 this row makes

    # ----------------------------------------------------------- the ul stream

    def _ul_level(self, l, where, ul):
        """Level l's position `where` (the level is active) from its first input ul: its up
        pass, the coarser levels' positions (recursively, where active), its down pass."""
        level = self._levels[l]
        skips = [ul]
        for p in level.up:
            skips.append(p.pixel(where, skips[-1], None))
        if level.attention is not None:
            skips[-1] = level.attention(where, skips[-1])
        if level.downsample is None:
            ul = skips.pop()
        else:
            conv = level.downsample[1]
            conv.write(where, skips[-1])
            # Stride 2: the coarser window ends at this position (2i, 2j).
            _when((where.i % 2 == 0) & (where.j % 2 == 0),
                  lambda: self._ul_level(l + 1, where.coarser(), conv.at(where)))
            ul = self._levels[l + 1].upsample[1].at(where.i, where.j)
        for p in level.down:
            ul = p.pixel(where, ul, skips)
        assert not skips
        if level.upsample is not None:
            level.upsample[1](where.i, where.j, ul)  # the four level l - 1 positions it makes
        return ul

    def _pixel_step(self, r, c):
        """The ul stream at pixel (r, c), the mixture there, its draw (or the `choose` hook's)."""
        height, width, channels = self.image_shape
        ul_init_right, (W, b) = self._ul_init_right
        padded = width + 2  # the [2, 1] conv's window: image rows r-1..r at column c-1
        window = self._x.read_side_by_side(tf.stack([(r + 1) * padded + c, (r + 2) * padded + c]))
        ul = self._ul_down_row.read(c) + nn.right_shift_at(ul_init_right.at(window, W, b), c)
        out = network.head(self._ul_level(0, _Where(r, c, width), ul), self._out)  # (B, K)
        pixel = r * width + c
        if self._choose is None:
            level = mixture.to_level(mixture.draw(
                mixture.unpack(out, self.model.nr_logistic_mix, channels),
                self._gumbel.read(pixel), self._logistic.read(pixel)))
        else:
            level = self._choose(pixel, out)
        level = tf.where(tf.gather(self._known, pixel), self._given.read(pixel), level)
        at = (r + 2) * padded + c + 1  # the image channels; keep the rest of the input
        scaled = tf.cast(mixture.to_value(level), self._dtype)  # as forward casts its input
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
            for level in self._levels:
                for block in [b for p in level.up + level.down for b in (p.u, p.ul)]:
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
