"""The cached sampler: every layer computes each position once (Fast PixelCNN++).

Ramachandran et al., "Fast Generation for Convolutional Autoregressive Models"
(ICLR 2017 workshop): each layer keeps a small cache of the inputs its kernel
still needs, and a generation step computes only the positions that the new
pixel makes computable. This file owns that schedule; layer_caches.py the caches.
The network is the model's description (network.py, model.network), walked one row
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

What each layer keeps, and its incremental form applied to it, is in layer_caches.py;
this file walks the model's description (the levels, their pairs, the strided pairs) with
them. The kernels and caches of activations are in the model's compute dtype
(precision.py), as the forward pass computes; the output layer, the mixture draw, the
random numbers and the images are float32.
"""

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import mixture, network, nn
from pixel_cnn_pp.layer_caches import (Attention, Pair, PixelConv, PixelDeconv, RowConv,
                                       RowDeconv, State, Where, applied)


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

    What it reads of the model: `network` (the layers by resolution, network.Network),
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
        state = self._state = State(get, model.compute_dtype)
        self._dtype = model.compute_dtype
        # The input (model.network_input: the image, then what is known up front),
        # zero-padded: position (r + 2) * (W + 2) + c + 1 holds x_pad[r, c].
        self._x = state.positions((height + 2) * (width + 2), n, net.u_init.V.shape[2])
        self._u_init = (net.u_init, state.weights(net.u_init.kernel))
        self._ul_init_down = (net.ul_init_down, state.weights(net.ul_init_down.kernel))

        def whole(get):  # the [2, 1] conv at one position: its window is known, one product
            rows, b = net.ul_init_right.kernel_rows(get)
            return tf.concat(rows, 0), b
        self._ul_init_right = (net.ul_init_right, state.weights(whole))
        self._ul_down_row = state.positions(width, n, net.u_init.V.shape[-1])
        self._levels = [self._level(state, level, height >> level.index, width >> level.index)
                        for level in net.levels]
        self._out = applied(state, net.out, tf.float32)  # as forward: the output in float32
        self._run_inputs(state, model.nr_logistic_mix)
        self._choose = choose
        self._begin = tf.function(_Own(self._begin_run), autograph=False)
        self._loop = tf.function(_Own(self._rows), jit_compile=bool(jit_compile),
                                 autograph=False)

    def _level(self, state, level, height, width):
        """A network.Level with the sampler's forms of its layers in place."""
        n = self.n
        up, down = ([Pair(state, p, n, width) for p in pairs] for pairs in (level.up, level.down))
        attention = downsample = upsample = None
        if level.attention is not None:
            attention = Attention(state, level.attention, n, height, width)
        if level.downsample is not None:
            downsample = (RowConv(state, level.downsample[0], n, width),
                          PixelConv(state, level.downsample[1], n, width, stride=2))
        if level.upsample is not None:
            upsample = (RowDeconv(state, level.upsample[0], n, width),
                        PixelDeconv(state, level.upsample[1], n, width))
        return level._replace(up=up, down=down, attention=attention, downsample=downsample,
                              upsample=upsample)

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
        ul_down = ul_init_down.row(None, x[:, 1], ul_kernel)  # the [1, 3] conv of row r - 1
        self._ul_down_row.assign_row(nn.down_shift_row(ul_down, r))
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
        out = network.head(self._ul_level(0, Where(r, c, width), ul), self._out)  # (B, K)
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
