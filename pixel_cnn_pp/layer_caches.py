"""What each layer keeps while the cached sampler (cached_sampler.py) steps through the
network, and its incremental form (nn.py) applied to what it keeps.

The sampler's variables (`State`): every layer's kernel, computed from the model's weights
once per run, and the caches, zeroed. Per layer kind, the inputs its kernel still needs:
a [2, k] conv of the u stream keeps the previous row of its (padded) input (`RowConv`); a
[2, 2] conv of the ul stream the last two rows of its (left-padded) input, by the parity of
the row, and the upper parts of the current row's windows (`PixelConv`); each deconv the
two output rows it produced (`RowDeconv`, `PixelDeconv`); the causal non-local block (-nl)
the keys and values of every position so far (`Attention`). A gated resnet is its convs'
caches composed by the block itself (`Block`); a pair of them, the u row the ul block
takes (`Pair`).

Precision: kernels and caches of activations are in the model's compute dtype unless told.
Caches read or written one position at a time are laid out positions first, (P, B, C),
and accessed only by gather and scatter (`Positions`): a sliced assignment to a variable
that is also read copies the whole variable.
"""

import functools

import tensorflow as tf

from pixel_cnn_pp import network, nn


class State:
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
        return Positions(self.cache([count, batch, channels], dtype))

    def reset(self):
        for variables, compute in self._weights:
            value = compute(self.get)
            for var, v in zip(variables, value if len(variables) > 1 else [value]):
                var.assign(v)
        for var in self._caches:
            var.assign(tf.zeros_like(var))


class Positions:
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


class RowConv:
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


class Where:
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
        return Where(self.i // 2, self.j // 2, self.width // 2)


class PixelConv:
    """An nn.DownRightShiftedConv2d ([2, 2], stride 1 or 2) one position at a time (its `at`).

    A position's window is two rows: the row above is known for a whole row before
    the row starts, so `start_row` multiplies it by the kernel's upper row for every
    position of the row in one product (B*W rows, not B), and `at` adds the current
    row's part. Caches: the last two rows of its input (see Where) and the upper
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
        """Store the input (B, C) at position `where` (a Where of the input's level)."""
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


class RowDeconv:
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


class PixelDeconv:
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


def applied(state, layer, dtype=None):
    """A layer with an `apply(x, kernel)` (nn.Dense) as a function of x, its kernel computed
    once per run (in `dtype`, default the compute dtype)."""
    return functools.partial(layer.apply, kernel=state.weights(layer.kernel, dtype))


class Block:
    """An nn.GatedResnet composed by itself (its `compose`) from its convs in one incremental
    form: RowConv (u stream, a row at a time) or PixelConv (ul stream, a position)."""

    def __init__(self, state, block, batch, width, conv):
        self.block = block
        self.convs = [conv(state, layer, batch, width) for layer in (block.conv1, block.conv2)]
        self.nin = applied(state, block.nin_a) if block.nin_a is not None else None
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


class Pair:
    """A network.Pair: its u block a row at a time, its ul block a position at a time.

    Cache: what the ul block takes of the u row: with no skip in its input (the up pass),
    the whole term nin(f(a)), computed for the row at once; else the u row itself.
    """

    def __init__(self, state, pair, batch, width):
        self.pair = pair
        self.u = Block(state, pair.u, batch, width, RowConv)
        self.ul = Block(state, pair.ul, batch, width, PixelConv)
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


class Attention:
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
