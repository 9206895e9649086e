"""Sampling from a PixelCNN: one pixel at a time, in raster order.

Two samplers, which draw the same images for the same seed:

- `sample_naive` runs the whole network once per pixel, as the original does:
  H*W forward passes of the whole batch (1,024 for 32x32). It is the reference.
- `CachedSampler` computes every layer's output at every position exactly once,
  as Fast PixelCNN++ does (Ramachandran et al., "Fast Generation for
  Convolutional Autoregressive Models", ICLR 2017 workshop): each layer keeps a
  small cache of the inputs its kernel still needs, and a generation step
  computes only the positions that the new pixel makes computable.

`sample(model, n, ...)` chooses between them (fast by default). All random
numbers are drawn up front from `seed` (`draw_uniforms`), so the same seed gives
the same images, and both samplers consume them identically.

Each sampled pixel is quantised to the 256 levels before it is fed back: the
model is a distribution over 8-bit images, and the images it returns are uint8
(the original feeds back the unquantised float; see README).

The cached schedule, for a network at three resolutions (level 0: HxW, level 1:
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
          (r, c), the mixture draw, and the new pixel written into the input.

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
input keeps the image sampled so far. Every weight-normalised kernel is
computed once per run (W = g * V / ||V||), not once per step.
"""

import functools

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import coords, losses, nn

_UNIFORM_EPS = 1e-5  # uniforms in (eps, 1 - eps), as the original
METHODS = ('fast', 'naive')


def draw_uniforms(n, image_shape, nr_mix, seed=None):
    """The random numbers of a whole sampling run, drawn up front.

    Returns (gumbel, logistic): float32 (n, H, W, M) and (n, H, W, C) in (eps, 1-eps).
    """
    rng = np.random.default_rng(seed)
    h, w, c = image_shape
    gumbel = rng.uniform(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS, (n, h, w, nr_mix))
    logistic = rng.uniform(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS, (n, h, w, c))
    return gumbel.astype(np.float32), logistic.astype(np.float32)


def quantize(x):
    """float in [-1, 1] -> uint8 0..255 (nearest level)."""
    return np.clip(np.rint((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def check_num_samples(n):
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError("the number of samples must be a positive integer; got %r" % (n,))
    return int(n)


def sample(model, n, labels=None, seed=None, method='fast', get=nn.identity, progress=None,
           jit_compile=False):
    """n images from `model`, drawn pixel by pixel in raster order.

    Args:
      model: a PixelCNN.
      n: number of images (drawn as one batch).
      labels: int (n,) classes 0..num_classes-1 for a class-conditional model,
        else None.
      seed: integer seed of all random numbers (None: fresh randomness). The
        same seed gives the same images, with either method.
      method: 'fast' (CachedSampler: every layer computes each position once)
        or 'naive' (one forward pass of the whole network per pixel). An
        energy-distance model (-ed) always uses the naive sampler: its output
        head draws fresh noise per forward pass, which the cached path does not
        implement.
      get: which weights: nn.identity, or a PolyakAverage's `average`.
      progress: optional callable(rows_done, total_rows), called after each row.
      jit_compile: compile the fast sampler's steps with XLA (faster steps, but
        compiling takes longer than a small model's whole run; see
        bench/sample_speed.py).
    Returns:
      uint8 (n, H, W, C).

    Example:
        images = sample(model, 16, seed=0)                  # fast
        same = sample(model, 16, seed=0, method='naive')    # the same images, slowly
    """
    if method not in METHODS:
        raise ValueError("'method' must be one of %s; got %r" % (METHODS, method))
    n = check_num_samples(n)
    labels = model.check_labels(labels, n)
    if method == 'naive' or model.energy_distance:
        return sample_naive(model, n, labels=labels, seed=seed, get=get, progress=progress)
    return CachedSampler(model, n, get, jit_compile).sample(labels, seed, progress)


def sample_naive(model, n, labels=None, seed=None, get=nn.identity, progress=None):
    """n images from `model`, one full forward pass per pixel.

    Args:
      model: a PixelCNN.
      n: number of images.
      labels: int (n,) for a class-conditional model, else None.
      seed: integer seed of all random numbers (None: fresh randomness).
      get: which weights to use (nn.identity, or a PolyakAverage's `average`).
      progress: optional callable(rows_done, total_rows), called after each row.
    Returns:
      uint8 (n, H, W, C).
    """
    n = check_num_samples(n)
    labels = model.check_labels(labels, n)
    h = model.one_hot(labels) if labels is not None else None
    height, width, channels = model.image_shape
    nr_mix = model.nr_logistic_mix
    gumbel, logistic = draw_uniforms(n, model.image_shape, nr_mix, seed)
    # Seed of the energy-distance head's noise (-ed), varied per pixel below.
    noise_seed = int(np.random.default_rng(seed).integers(2 ** 31))

    @tf.function
    def pixel(x, row, col, g, u):
        if model.energy_distance:  # the head's first sample is the pixel's value
            step_seed = tf.stack([noise_seed, row * width + col])
            return model.forward(x, h, get=get, seed=step_seed)[0][:, row, col]
        out = model.forward(x, h, get=get)[:, row, col]  # (n, K): only pixel (row, col)
        return losses.sample_from_mixture(out, nr_mix, channels, g, u)

    images = np.zeros((n, height, width, channels), np.uint8)
    x = np.zeros((n, height, width, channels), np.float32)
    for row in range(height):
        for col in range(width):
            value = pixel(tf.constant(x), tf.constant(row), tf.constant(col),
                          gumbel[:, row, col], logistic[:, row, col])
            images[:, row, col] = quantize(value.numpy())
            x[:, row, col] = (images[:, row, col].astype(np.float32) - 127.5) / 127.5
        if progress is not None:
            progress(row + 1, height)
    return images


# --------------------------------------------------------------------------
# The cached sampler. Each helper class below holds, for one layer of the
# model, its effective weights (recomputed from the model at the start of every
# run) and its cache (zeroed at the start of every run), both as tf.Variables,
# so the compiled steps are traced once per sampler and update in place.
#
# Caches read or written one position at a time are laid out positions first,
# (P, B, C), and accessed only by gather and scatter: a sliced assignment to a
# variable that is also read copies the whole variable (measured: 11 ms per
# pixel step for the level-0 caches of the default model, against 1.4 ms).


class _State:
    """The sampler's variables: effective weights to refresh, caches to zero."""

    def __init__(self, get):
        self.get = get
        self._weights = []  # (variable, function giving its value)
        self._caches = []

    def weight(self, compute):
        var = tf.Variable(compute(self.get), trainable=False)
        self._weights.append((var, compute))
        return var

    def cache(self, shape):
        var = tf.Variable(tf.zeros(shape), trainable=False)
        self._caches.append(var)
        return var

    def positions(self, count, batch, channels):
        return _Positions(self.cache([count, batch, channels]))

    def reset(self):
        for var, compute in self._weights:
            var.assign(compute(self.get))
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

    def assign_row(self, row):
        """Replace every position by a whole row (B, P, C)."""
        self.var.assign(tf.transpose(row, [1, 0, 2]))


def _conv_kernel(layer, flat=False):
    """The effective kernel and bias of an nn.Conv2d: W = g * V / ||V|| over (kh, kw, in).

    Returns two functions of `get`. With flat, the kernel is reshaped to
    (kh*kw*in, F), to multiply a window flattened row-major, (B, kh*kw*in).
    """
    def kernel(get):
        W = get(layer.g) * tf.nn.l2_normalize(get(layer.V), [0, 1, 2])
        return tf.reshape(W, [-1, W.shape[-1]]) if flat else W
    return kernel, lambda get: tf.identity(get(layer.b))


def _deconv_kernel(layer):
    """The effective kernel of an nn.Deconv2d, V [kh, kw, F, in] normalised over (kh, kw, in)."""
    return (lambda get: get(layer.g)[None, None, :, None]
            * tf.nn.l2_normalize(get(layer.V), [0, 1, 3]),
            lambda get: tf.identity(get(layer.b)))


class _Dense:
    """An nn.Dense ("nin") with its weight-normalised matrix V * g / ||V|| precomputed."""

    def __init__(self, state, layer):
        def matrix(get):
            V = get(layer.V)
            return V * (get(layer.g) / tf.sqrt(tf.reduce_sum(tf.square(V), [0])))
        self.W = state.weight(matrix)
        self.b = state.weight(lambda get: tf.identity(get(layer.b)))

    def __call__(self, x):  # (..., in) -> (..., out)
        if x.shape.rank == 2:
            return tf.matmul(x, self.W) + self.b
        flat = tf.reshape(x, [-1, x.shape[-1]])
        out = tf.matmul(flat, self.W) + self.b
        return tf.reshape(out, tf.concat([tf.shape(x)[:-1], [self.W.shape[-1]]], 0))


class _RowConv:
    """A DownShiftedConv2d ([2, kw], stride 1 or 2) computed a whole row at a time.

    Cache: the previous row of its input, padded by (kw-1)/2 columns on each side,
    (B, W + kw - 1, C). At level row i the window is rows i-1 and i.
    """

    def __init__(self, state, layer, batch, width):
        kh, kw, cin, _ = layer.V.shape
        if kh != 2:
            raise NotImplementedError('the cached sampler expects kernel height 2, got %d' % kh)
        self.side = (kw - 1) // 2
        self.stride = layer.stride
        kernel, bias = _conv_kernel(layer)
        self.W, self.b = state.weight(kernel), state.weight(bias)
        self.prev = state.cache([batch, width + kw - 1, cin])

    def _pad(self, row):
        return tf.pad(row, [[0, 0], [self.side, self.side], [0, 0]])

    def __call__(self, row):
        """Output row (B, W / stride, F) from this input row (B, W, C); remembers it."""
        cur = self._pad(row)
        window = tf.stack([self.prev, cur], axis=1)  # (B, 2, W + kw - 1, C)
        out = tf.nn.conv2d(window, self.W, self.stride, 'VALID') + self.b  # (B, 1, W', F)
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
        self.i, self.j = i, j
        here = (i % 2) * (width + 1) + j + 1
        above = ((i + 1) % 2) * (width + 1) + j + 1  # row i - 1
        self.slot = here
        self.window = tf.stack([above - 1, above, here - 1, here])


class _PixelConv:
    """A DownRightShiftedConv2d ([2, 2], stride 1 or 2) computed one position at a time.

    Cache: the last two rows of its input (see _Where).
    """

    def __init__(self, state, layer, batch, width):
        kh, kw, cin, cout = layer.V.shape
        if (kh, kw) != (2, 2):
            raise NotImplementedError('the cached sampler expects a [2, 2] kernel, got [%d, %d]'
                                      % (kh, kw))
        kernel, bias = _conv_kernel(layer, flat=True)
        self.W, self.b = state.weight(kernel), state.weight(bias)
        self.width, self.batch = width, batch
        self.rows = state.positions(2 * (width + 1), batch, cin)

    def write(self, where, value):
        """Store the input (B, C) at position `where` (a _Where)."""
        self.rows.write(where.slot, value)

    def at(self, where):
        """Output (B, F) whose window ends at input position `where`."""
        window = self.rows.read_many(where.window)  # (B, 4, C)
        return tf.matmul(tf.reshape(window, [self.batch, -1]), self.W) + self.b

    def __call__(self, where, value):
        self.write(where, value)
        return self.at(where)


class _RowDeconv:
    """A DownShiftedDeconv2d ([2, kw], stride 2) from a level row to the two rows it makes.

    With kernel height = stride = 2, input row i reaches output rows 2i and 2i+1
    only, so the layer applied to that one row gives exactly those rows. Cache:
    the two output rows, (B, 2, 2W, F); output row r is in slot r % 2.
    """

    def __init__(self, state, layer, batch, width_in):
        kh, kw, cout, _ = layer.V.shape
        if kh != 2 or layer.stride[1:3] != [2, 2]:
            raise NotImplementedError('the cached sampler expects kernel height 2 and stride 2')
        self.kw, self.cout, self.width_in = kw, cout, width_in
        kernel, bias = _deconv_kernel(layer)
        self.W, self.b = state.weight(kernel), state.weight(bias)
        self.rows = state.cache([batch, 2, 2 * width_in, cout])

    def __call__(self, row):
        """Compute and keep the two output rows of input row (B, W, C)."""
        batch = tf.shape(row)[0]
        # As nn.Deconv2d on a one-row map: VALID, output (1*2 + 1, 2W + kw - 1), then
        # nn.DownShiftedDeconv2d's crop (the last row, (kw-1)/2 columns each side).
        out = tf.nn.conv2d_transpose(row[:, None], self.W,
                                     [batch, 3, 2 * self.width_in + self.kw - 1, self.cout],
                                     [1, 2, 2, 1], padding='VALID') + self.b
        side = (self.kw - 1) // 2
        self.rows.assign(out[:, :2, side:side + 2 * self.width_in])

    def row(self, r):
        """Output row r (B, 2W, F)."""
        return tf.gather(self.rows, r % 2, axis=1)  # not a slice: XLA would compile per r


class _PixelDeconv:
    """A DownRightShiftedDeconv2d ([2, 2], stride 2), one input position at a time.

    Input (i, j) reaches output (2i + a, 2j + b) for a, b in {0, 1} only, through
    kernel tap (a, b). Cache: two output rows, 2 * 2W positions, by parity.
    """

    def __init__(self, state, layer, batch, width_in):
        kh, kw, cout, cin = layer.V.shape
        if (kh, kw) != (2, 2) or layer.stride[1:3] != [2, 2]:
            raise NotImplementedError('the cached sampler expects a [2, 2] kernel and stride 2')
        kernel, bias = _deconv_kernel(layer)
        # (2, 2, F, in) -> (in, 2*2*F): one matmul gives all four output positions.
        self.W = state.weight(lambda get: tf.reshape(tf.transpose(kernel(get), [3, 0, 1, 2]),
                                                     [cin, 4 * cout]))
        self.b = state.weight(bias)
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


class _Block:
    """A GatedResnet in both forms: a whole row (u stream) or one position (ul stream).

    x + p * sigmoid(q), (p, q) = split(conv2(f(conv1(f(x)) + nin(f(a)))) + h·hw).
    conv1 caches f(x), conv2 caches f(c1): the inputs exactly as the convs see them.
    """

    def __init__(self, state, block, batch, width, per_pixel):
        conv = _PixelConv if per_pixel else _RowConv
        self.f = block.nonlinearity
        self.conv1 = conv(state, block.conv1, batch, width)
        self.nin = _Dense(state, block.nin_a) if block.nin_a is not None else None
        self.conv2 = conv(state, block.conv2, batch, width)
        self.hw = block.hw
        # h·hw for this run's labels, (B, 2F); set by CachedSampler.sample.
        self.label_bias = (state.cache([batch, block.conv2.V.shape[-1]])
                           if block.hw is not None else None)

    def _finish(self, x, c2):
        if self.label_bias is not None:
            c2 += self.label_bias if x.shape.rank == 2 else self.label_bias[:, None]
        p, q = tf.split(c2, 2, axis=-1)
        return x + p * tf.sigmoid(q)

    def _aux(self, c1, a):
        return c1 if a is None else c1 + self.nin(self.f(a))

    def row(self, x, a=None):
        """x (B, W, F) at this level's current row, a (B, W, Fa) or None."""
        c1 = self.f(self._aux(self.conv1(self.f(x)), a))
        return self._finish(x, self.conv2(c1))

    def pixel(self, where, x, a=None):
        """x (B, F) at this level's position `where` (a _Where), a (B, Fa) or None."""
        c1 = self.f(self._aux(self.conv1(where, self.f(x)), a))
        return self._finish(x, self.conv2(where, c1))


class _Attention:
    """The causal non-local block at one position: keys and values of all positions so far.

    Cache: keys (n, B, d) and values (n, B, F) of the level's n positions in
    raster order; positions not yet reached are masked as in the full block.
    """

    def __init__(self, state, block, batch, positions):
        def take(var):
            return lambda get: tf.identity(get(var))
        self.wq, self.wk, self.wv, self.wo, self.bo = (
            state.weight(take(v)) for v in (block.wq, block.wk, block.wv, block.wo, block.bo))
        d, f = block.wq.shape[-1], block.wv.shape[-1]
        self.scale = np.sqrt(float(d))
        self.keys = state.positions(positions, batch, d)
        self.values = state.positions(positions, batch, f)
        self.positions = positions

    def __call__(self, p, ul, u):
        """ul (B, F) after attending from raster position p (keys from [u, ul] at <= p)."""
        q = ul @ self.wq  # (B, d)
        kv_in = tf.concat([u, ul], -1)  # (B, 2F)
        self.keys.write(p, kv_in @ self.wk)
        self.values.write(p, kv_in @ self.wv)
        logits = tf.einsum('bd,nbd->bn', q, self.keys.var) / self.scale  # (B, n)
        visible = tf.range(self.positions) <= p
        logits = tf.where(visible[None], logits, tf.fill(tf.shape(logits), -1e30))
        attended = tf.einsum('bn,nbf->bf', tf.nn.softmax(logits, axis=-1), self.values.var)
        return ul + attended @ self.wo + self.bo


def _raster(images):
    """(B, H, W, C) -> (H*W, B, C): positions in raster order first."""
    shape = tf.shape(images)
    return tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [-1, shape[0], shape[3]])


def _active_levels(r):
    """The deepest level whose grid contains image row (or column) r: 2, 1 or 0."""
    return 2 if r % 4 == 0 else 1 if r % 2 == 0 else 0


class CachedSampler:
    """Exact fast sampling: every layer computes each position once (Fast PixelCNN++).

    Built for one model, one batch size and one choice of weights; reusable for
    any number of runs (the effective weights are re-read from the model at the
    start of each run, so it follows a model that keeps training). The schedule
    is in this module's docstring. Not for energy-distance models (-ed).

    Args:
      model: a PixelCNN.
      n: images per run (the batch).
      get: which weights: nn.identity, or a PolyakAverage's `average`.
      jit_compile: compile the steps with XLA: faster steps, slower to compile
        (see bench/sample_speed.py for which wins on your machine).

    Example:
        sampler = CachedSampler(model, 16)
        images = sampler.sample(seed=0)                 # uint8 (16, H, W, C)
        outputs = sampler.teacher_forced(images)       # (16, H, W, K), as model.forward
    """

    def __init__(self, model, n, get=nn.identity, jit_compile=False):
        if model.energy_distance:
            raise ValueError('the cached sampler does not implement the energy-distance head '
                             '(-ed); use method=\'naive\'')
        n = check_num_samples(n)
        self.model, self.n = model, n
        self.image_shape = (height, width, channels) = model.image_shape
        config = model.config
        state = self._state = _State(get)
        widths = [width, width // 2, width // 4]
        nl_levels = config.nl_levels if config.non_local else []

        # The input: the image (scaled), coordinates with -ac, the channel of ones,
        # zero-padded: position (r + 2) * (W + 2) + c + 1 holds x_pad[r, c].
        in_channels = model.u_init.V.shape[2]
        self._x = state.positions((height + 2) * (width + 2), n, in_channels)
        self._u_init = [state.weight(f) for f in _conv_kernel(model.u_init)]
        self._ul_init_down = [state.weight(f) for f in _conv_kernel(model.ul_init_down)]
        # The [2, 1] conv at one position: its kernel flattened for a matmul.
        self._ul_init_right = [state.weight(f) for f in _conv_kernel(model.ul_init_right,
                                                                      flat=True)]
        self._ul_down_row = state.positions(width, n, model.u_init.V.shape[-1])

        def blocks(pairs, level):
            return [(_Block(state, u, n, widths[level], per_pixel=False),
                     _Block(state, ul, n, widths[level], per_pixel=True)) for u, ul in pairs]

        self._up = [blocks(model.up_blocks[l], l) for l in range(3)]
        self._down = [blocks(model.down_blocks[2 - l], l) for l in range(3)]
        self._attention = {
            l: _Attention(state, model.nl_blocks[k], n, (height >> l) * widths[l])
            for k, l in enumerate(nl_levels)}
        self._strided = [(_RowConv(state, u, n, widths[l]), _PixelConv(state, ul, n, widths[l]))
                         for l, (u, ul) in enumerate(model.up_strided)]
        # down_strided[0] upsamples level 2 to level 1, [1] level 1 to level 0.
        self._deconv = {2 - k: (_RowDeconv(state, u, n, widths[2 - k]),
                                _PixelDeconv(state, ul, n, widths[2 - k]))
                        for k, (u, ul) in enumerate(model.down_strided)}
        # The u stream's row at each level, after each block: what the ul blocks take as `a`.
        self._u_up_rows = [[state.positions(widths[l], n, self._width_of(b[0]))
                            for b in self._up[l]] for l in range(3)]
        self._u_down_rows = [[state.positions(widths[l], n, self._width_of(b[0]))
                              for b in self._down[l]] for l in range(3)]
        self._out = _Dense(state, model.out)

        # Per run: the random numbers, the labels' biases, the images, teacher forcing.
        nr_mix = model.nr_logistic_mix
        self._gumbel = state.positions(height * width, n, nr_mix)  # raster order
        self._logistic = state.positions(height * width, n, channels)
        self._images = state.positions(height * width, n, channels)
        self._forced = state.positions(height * width, n, channels)
        self._teacher = tf.Variable(False, trainable=False)

        # One compiled step per number of active levels; row and column are tensors,
        # so each is traced once. Python control flow only: no autograph needed.
        compile_ = dict(jit_compile=bool(jit_compile), autograph=False)
        self._row_steps = [tf.function(functools.partial(self._row_step, L=L), **compile_)
                           for L in range(3)]
        self._pixel_steps = [tf.function(functools.partial(self._pixel_step, L=L), **compile_)
                             for L in range(3)]

    @staticmethod
    def _width_of(block):
        return block.conv2.W.shape[-1] // 2

    # ------------------------------------------------------------ the steps

    def _row_step(self, r, L):
        """The u stream at image row r, levels 0..L up then L..0 down (r % 2^L == 0)."""
        live = tf.cast(r > 0, tf.float32)  # down_shift: zeros enter at the top
        padded = self.image_shape[1] + 2
        x = self._x.read_many(r * padded + tf.range(2 * padded))  # (a static size, for XLA)
        x = tf.reshape(x, [self.n, 2, padded, -1])  # image rows r-2, r-1
        W, b = self._u_init
        u = (tf.nn.conv2d(x, W, 1, 'VALID') + b)[:, 0] * live
        W, b = self._ul_init_down
        self._ul_down_row.assign_row((tf.nn.conv2d(x[:, 1:], W, 1, 'VALID') + b)[:, 0] * live)
        stack = [u]
        for l in range(L + 1):
            if l > 0:
                u = self._strided[l - 1][0](u)
                stack.append(u)
            for k, (block, _) in enumerate(self._up[l]):
                u = block.row(u)
                self._u_up_rows[l][k].assign_row(u)
                stack.append(u)
            if l == L and l < 2:  # the stride-2 conv makes no row now, but needs this one
                self._strided[l][0].remember(u)
        for l in range(L, -1, -1):
            u = stack.pop() if l == 2 else self._deconv[l + 1][0].row(r // 2 ** l)
            for k, (block, _) in enumerate(self._down[l]):
                u = block.row(u, stack.pop())
                self._u_down_rows[l][k].assign_row(u)
            if l > 0:
                self._deconv[l][0](u)
        assert not stack
        return u

    def _pixel_step(self, r, c, L):
        """The ul stream at pixel (r, c) and levels 0..L, the output there, and its draw."""
        height, width, channels = self.image_shape
        W, b = self._ul_init_right  # right_shift of a [2, 1] conv: image rows r-1..r, column c-1
        padded = width + 2
        window = self._x.read_many(tf.stack([(r + 1) * padded + c, (r + 2) * padded + c]))
        window = tf.reshape(window, [self.n, -1])
        ul = self._ul_down_row.read(c) + (window @ W + b) * tf.cast(c > 0, tf.float32)
        stack = [ul]
        where = [_Where(r // 2 ** l, c // 2 ** l, width // 2 ** l) for l in range(L + 1)]
        for l in range(L + 1):
            i, j = where[l].i, where[l].j
            if l > 0:  # stride 2: the window ends at the finer level's position (2i, 2j)
                ul = self._strided[l - 1][1].at(where[l - 1])
                stack.append(ul)
            for k, (_, block) in enumerate(self._up[l]):
                ul = block.pixel(where[l], ul, self._u_up_rows[l][k].read(j))
                stack.append(ul)
            if l in self._attention:
                u = self._u_up_rows[l][-1].read(j)
                ul = stack[-1] = self._attention[l](i * (width // 2 ** l) + j, ul, u)
            if l < 2:
                self._strided[l][1].write(where[l], ul)
        for l in range(L, -1, -1):
            i, j = where[l].i, where[l].j
            ul = stack.pop() if l == 2 else self._deconv[l + 1][1].at(i, j)
            for k, (_, block) in enumerate(self._down[l]):
                a = tf.concat([self._u_down_rows[l][k].read(j), stack.pop()], axis=-1)
                ul = block.pixel(where[l], ul, a)
            if l > 0:
                self._deconv[l][1](i, j, ul)
        assert not stack
        out = self._out(tf.nn.elu(ul))  # (B, K): the mixture at (r, c)
        pixel = r * width + c
        value = losses.sample_from_mixture(out, self.model.nr_logistic_mix, channels,
                                           self._gumbel.read(pixel), self._logistic.read(pixel))
        # Quantise as sample_naive does (tf.round, like np.rint, rounds half to even).
        level = tf.clip_by_value(tf.round((value + 1.0) * 127.5), 0.0, 255.0)
        x = tf.where(self._teacher, self._forced.read(pixel), (level - 127.5) / 127.5)
        at = (r + 2) * padded + c + 1
        self._x.write(at, tf.concat([x, self._x.read(at)[:, channels:]], -1))  # keep coords, ones
        self._images.write(pixel, level)
        return out

    # ------------------------------------------------------------- running

    def _start(self, labels, seed, forced=None):
        model, n = self.model, self.n
        labels = model.check_labels(labels, n)
        state = self._state
        state.reset()
        height, width, channels = self.image_shape
        # The inputs that are known up front: coordinates (-ac) and the channel of ones.
        known = tf.ones([n, height, width, 1])
        if model.add_coords:
            known = tf.concat([coords.coordinate_channels(n, height, width), known], -1)
        x_pad = tf.pad(tf.concat([tf.zeros([n, height, width, channels]), known], -1),
                       [[0, 0], [2, 0], [1, 1], [0, 0]])
        self._x.var.assign(tf.reshape(tf.transpose(x_pad, [1, 2, 0, 3]),
                                      self._x.var.shape))
        if labels is not None:
            h = model.one_hot(labels)
            for pairs in self._up + self._down:
                for pair in pairs:
                    for block in pair:
                        block.label_bias.assign(tf.matmul(h, state.get(block.hw)))
        gumbel, logistic = draw_uniforms(n, self.image_shape, model.nr_logistic_mix, seed)
        self._gumbel.var.assign(_raster(gumbel))
        self._logistic.var.assign(_raster(logistic))
        self._teacher.assign(forced is not None)
        if forced is not None:
            self._forced.var.assign(_raster(forced))

    def _run(self, progress=None, keep_outputs=False):
        height, width, _ = self.image_shape
        outputs = []
        cols = [tf.constant(c) for c in range(width)]
        for r in range(height):
            row = tf.constant(r)
            self._row_steps[_active_levels(r)](row)
            for c in range(width):
                out = self._pixel_steps[min(_active_levels(r), _active_levels(c))](row, cols[c])
                if keep_outputs:
                    outputs.append(out)
            if progress is not None:
                progress(r + 1, height)
        return outputs

    def sample(self, labels=None, seed=None, progress=None):
        """Draw this sampler's n images.

        Args:
          labels: int (n,) for a class-conditional model, else None.
          seed: integer seed of all random numbers; the same seed gives the same
            images as `sample_naive` (up to rare float ties in the last digit).
          progress: optional callable(rows_done, total_rows).
        Returns:
          uint8 (n, H, W, C).
        """
        self._start(labels, seed)
        self._run(progress)
        height, width, channels = self.image_shape
        images = np.transpose(self._images.var.numpy(), [1, 0, 2])
        return images.reshape(self.n, height, width, channels).astype(np.uint8)

    def teacher_forced(self, images, labels=None):
        """The network's output at every pixel, fed `images` pixel by pixel through the cache.

        Exactly the sampling schedule, with each drawn pixel replaced by the given
        one: the result should equal model.forward on the whole images (the check
        that the cached path is the network).

        Args:
          images: uint8 (n, H, W, C).
          labels: int (n,) for a class-conditional model, else None.
        Returns:
          NumPy float32 (n, H, W, K).
        """
        images, labels = self.model.check_inputs(images, labels)
        if images.shape[0] != self.n:
            raise ValueError("'images' must hold %d images (the sampler's batch), got %d"
                             % (self.n, images.shape[0]))
        self._start(labels, seed=0, forced=self.model.scale_images(images))
        outputs = self._run(keep_outputs=True)
        height, width, _ = self.image_shape
        out = tf.stack(outputs, axis=1).numpy()  # (n, H*W, K) in raster order
        return out.reshape(self.n, height, width, -1)
