"""The codec's coding distributions: the same integers on every machine.

A range coder decodes only if the decoder uses exactly the frequencies the
encoder used. The network's mixture parameters are floats, and two machines (or
one machine with other kernels, thread counts, XLA, oneDNN on or off, or the
forward pass against the cached sampler) compute them a few units in the sixth
decimal apart (measured: at most 2.3e-6 for a 1x32 model, 1.8e-5 at the default
size with outputs up to 10). So the frequencies are made from integers only:

1. Each parameter is rounded to a grid: the mixture logits to steps of
   `logit`, the log-scales to steps of `log_scale`, and each mean (after the
   channel coupling, the green mean shifted by the coefficient times red, ...)
   to steps of `mean` times its component's rounded scale. A parameter closer
   than `margin` to the middle between two grid points could round the other
   way on another machine; such a pixel is "in doubt".
2. From the rounded integers, the frequencies are computed in integer
   arithmetic: the weights from a table of exp, each component's CDF at the 255
   bin edges from a table of the sigmoid (linear interpolation in fixed point),
   the mixture's mass per level, then 2**24 frequencies, every level at least 1.
   The tables are made from exact decimal arithmetic, not the platform's exp.
3. Every pixel is coded in one of three modes, chosen by the encoder and coded
   (with frequencies stored in the file) before the pixel: FINE (the grid
   above), COARSE (every step 8 times larger: a parameter is in doubt 8 times
   less often) or UNIFORM (every level 2**16: 8 bits a channel, no parameter).
   The encoder takes the first mode in which no parameter that matters (the
   logits, and the scale and mean of every component with a nonzero weight) is
   in doubt.

What is guaranteed: a decoder whose mixture parameters differ from the
encoder's by less than `margin` (per parameter; the coupled means by less than
`margin` times 1 + the sum of the coupled levels' magnitudes) computes the same
frequencies at every pixel, so it decodes the same images, whatever its
kernels, thread count, XLA, CPU or GPU. A decoder that meets a parameter closer
than a quarter of the margin to a grid edge knows it is outside that guarantee
and says so (`DoubtError`) instead of decoding on.

What it costs: the rounding moves each distribution slightly (measured about
0.1% of the NLL for a 1x32 model), and the modes cost their entropy plus the
dearer codes of COARSE and UNIFORM pixels (about 0.1-0.3% at a margin of 2**-17
for that model); tests/test_coding.py and bench/compression.py measure both.
"""

import collections
import decimal
import functools

import numpy as np

from pixel_cnn_pp import mixture

LEVELS = 256
PRECISION = 24  # the range coder's: frequencies sum to 2**24
TOTAL = 1 << PRECISION
FINE, COARSE, UNIFORM = 0, 1, 2
MODES = 3
LOG_SCALE_MIN = mixture.LOG_SCALE_MIN

_WEIGHT_BITS = 20  # component weights: the largest is 2**20 (or just below)
_DROP = 1 << (_WEIGHT_BITS - 8)  # weights below 2**-8 of the largest are dropped
_CDF_BITS = 30  # component CDFs in units of 2**-30
_FIX = 16  # the sigmoid's argument in units of 2**-16
_TABLE_BITS = 5  # the sigmoid table's step, 2**-5
_T_MAX = 20  # sigmoid(+-20) is within 2**-28 of 1 and 0: beyond, the table's ends
_LOG_SCALE_MAX = 8.0  # larger log-scales (a flat component, 2**16 / scale >= 22) round here

Grid = collections.namedtuple('Grid', 'logit log_scale mean')
# Steps of FINE and COARSE; all powers of two, so that every grid point is exact.
GRIDS = (Grid(logit=0.25, log_scale=0.125, mean=0.5), Grid(logit=2.0, log_scale=1.0, mean=4.0))
DEFAULT_MARGIN = 2.0 ** -18
ALARM = 0.25  # a decoder that finds a parameter closer than this many margins to an edge stops


def default_margin(nr_resnet):
    """The margin for a network of `nr_resnet` blocks a level: 2**ceil(log2(2.5e-6 sqrt(n))).

    Five times the largest relative difference measured between the forward pass and
    the cached sampler (and with and without XLA): 7.6e-7 at (1, 32) (2**-18), 1.7e-6 at
    the default (5, 160) (2**-17); float errors grow with the depth.
    """
    return 2.0 ** np.ceil(np.log2(2.5e-6 * np.sqrt(nr_resnet)))


def check_margin(margin):
    """`margin` if it is a power of two in [2**-30, 2**-4], else ValueError."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating)) or \
            not 2.0 ** -30 <= margin <= 2.0 ** -4 or np.log2(margin) != np.round(np.log2(margin)):
        raise ValueError("'margin' must be a power of two from 2**-30 to 2**-4 (a relative "
                         "difference of the mixture parameters), got %r" % (margin,))
    return float(margin)


def margin_bits(margin):
    """k for a margin of 2**-k (as a file stores it)."""
    return int(round(-np.log2(check_margin(margin))))


class DoubtError(ValueError):
    """A decoder met a parameter too close to a grid edge to trust its rounding."""


# ------------------------------------------------------------------ the tables


def _exp(x):
    """exp(x) as an exact decimal to 40 digits (the same on every machine)."""
    with decimal.localcontext() as context:
        context.prec = 40
        return decimal.Decimal(x).exp()


def _round(value):
    return int(value.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


@functools.lru_cache(maxsize=None)
def _tables():
    """The integer tables of every grid (made once, from decimal arithmetic).

    weight[g, j]: 2**20 exp(-j logit_g), for a logit j steps below the largest.
    inv_scale[g, q - q_min]: 2**16 / exp(q log_scale_g), the inverse scale in fixed point.
    sigmoid[i]: 2**30 sigmoid(i / 2**5 - T_MAX), for i = 0 .. 2 T_MAX 2**5.
    """
    weight_len = 1 + max(int(np.ceil(np.log(2.0 * (1 << _WEIGHT_BITS) / _DROP) / g.logit))
                         for g in GRIDS)
    weight = np.zeros((len(GRIDS), weight_len), np.int64)
    for g, grid in enumerate(GRIDS):
        for j in range(weight_len):
            w = _round(_exp(-j * grid.logit) * (1 << _WEIGHT_BITS))
            weight[g, j] = w if w >= _DROP else 0
    q_min = [int(np.floor(LOG_SCALE_MIN / g.log_scale)) for g in GRIDS]
    q_max = [int(np.ceil(_LOG_SCALE_MAX / g.log_scale)) for g in GRIDS]
    span = max(b - a for a, b in zip(q_min, q_max)) + 1
    inv_scale = np.zeros((len(GRIDS), span), np.int64)
    for g, grid in enumerate(GRIDS):
        for k in range(q_max[g] - q_min[g] + 1):
            inv_scale[g, k] = _round(_exp(-(q_min[g] + k) * grid.log_scale) * (1 << _FIX))
    n = 2 * _T_MAX << _TABLE_BITS
    one = decimal.Decimal(1)
    sigmoid = np.array([_round(one / (one + _exp(decimal.Decimal(_T_MAX) - decimal.Decimal(i) /
                                                 (1 << _TABLE_BITS))) * (1 << _CDF_BITS))
                        for i in range(n + 1)], np.int64)
    return weight, inv_scale, np.array(q_min), np.array(q_max), sigmoid


def _sigmoid_fixed(t):
    """2**30 sigmoid(t / 2**16) for int64 t: the table, interpolated linearly, exactly."""
    _, _, _, _, table = _tables()
    shift = _FIX - _TABLE_BITS
    u = np.clip(t + (_T_MAX << _FIX), 0, ((2 * _T_MAX) << _FIX) - 1)
    i, frac = u >> shift, u & ((1 << shift) - 1)
    return table[i] + (((table[i + 1] - table[i]) * frac) >> shift)


# ------------------------------------------------------------------ rounding


def _rounded(value, step):
    """(the nearest grid point's index, int64; the distance to the nearest rounding edge)."""
    r = value / step
    q = np.floor(r + 0.5)
    return q.astype(np.int64), (0.5 - np.abs(r - q)) * step


def _bit_length(a):
    """The bit length of each non-negative int64 (0 for 0), exactly."""
    n = np.zeros(a.shape, np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        up = (a >> (n + s)) > 0
        n = n + s * up
    return n + (a > 0)


def _normalised(w):
    """Weights (P, M) int64 scaled (by a power of two) so that the largest has 20 bits;
    those below _DROP dropped. Rows of all zeros stay zero."""
    shift = _bit_length(w.max(-1, keepdims=True)) - _WEIGHT_BITS
    w = np.where(shift >= 0, w >> np.maximum(shift, 0), w << np.maximum(-shift, 0))
    return np.where(w >= _DROP, w, 0)


# ------------------------------------------------------------------ one channel


class Channel:
    """One channel of P pixels, its parameters rounded: the integer CDF of its mixture.

    The frequencies of the 256 levels are differences of `cumulative(b)`, b = 0..256:
    cumulative(b) = 1 + b + floor(F(b) (2**24 - 258)), F(b) the mixture's integer CDF
    at the lower edge of level b (0 at b = 0, 1 at b = 256). Every level has at least
    1; 1 is left below level 0 and above level 255, so that the encoder can code a
    level as the middle one of three symbols (`interval`) and the decoder decode it
    from the whole table (`table`), with the same integers.

    Args:
      weights: int64 (P, M), the components' weights (`initial_weights`, or
        `posterior_weights` of the channel before).
      mean: float64 (P, M), the coupled means in [-1, 1] units.
      log_scale: float64 (P, M), clamped at LOG_SCALE_MIN.
      mode: int (P,), FINE, COARSE or UNIFORM.
      margin: the file's margin, relative: a parameter p may be off by margin *
        max(1, |p|); slack: float64 (P, M), that factor of the coupled means
        (max(1, |mean|) + the magnitudes of the levels they are coupled to).
    Attributes:
      doubt: float64 (P,), the smallest distance of a parameter that matters (the
        scale and mean of a component with a nonzero weight) to its rounding edge,
        in margins (inf where none matters, and for UNIFORM).
    """

    def __init__(self, weights, mean, log_scale, mode, margin, slack):
        _, inv_table, q_min, q_max, _ = _tables()
        self.weights, self.mode = weights, mode
        g = np.minimum(mode, COARSE)  # UNIFORM rows are computed as COARSE, not used
        steps = np.array(GRIDS, np.float64)[g]  # (P, 3)
        q_s, d_s = _rounded(log_scale, steps[:, 1:2])
        q_s = np.clip(q_s, q_min[g][:, None], q_max[g][:, None])
        self.inv = inv_table[g[:, None], q_s - q_min[g][:, None]]  # (P, M): 2**16 / scale
        # The mean's grid is `mean` times the rounded scale, 2**16 / inv (exact division).
        q_m, d_m = _rounded(mean, steps[:, 2:3] * (2.0 ** _FIX / self.inv))
        self.mean_fixed = q_m * (steps[:, 2:3] * (1 << _FIX)).astype(np.int64)  # mean / scale
        matters = (weights > 0) & (mode != UNIFORM)[:, None]
        d_s = d_s / (margin * np.maximum(1.0, np.abs(log_scale)))
        d_m = d_m / (margin * slack)
        self.doubt = np.where(matters, np.minimum(d_s, d_m), np.inf).min(-1)
        total = weights.sum(-1) << _CDF_BITS  # the mixture's CDF at the top, < 2**55
        self._shift = np.maximum(_bit_length(total) - 36, 0)  # mass * 2**24 fits in 63 bits
        self._total = np.maximum(total >> self._shift, 1)

    def component_cdf(self, edge):
        """Each component's CDF at bin edge `edge` (int (P,) or (P, E); -1 is minus
        infinity, 255 plus infinity, edge j the upper edge of level j), 2**-30 units,
        int64 (P, M) or (P, M, E)."""
        edge = np.asarray(edge, np.int64)
        e = edge[:, None] if edge.ndim == 1 else edge[:, None, :]
        inv = self.inv if edge.ndim == 1 else self.inv[..., None]
        mean = self.mean_fixed if edge.ndim == 1 else self.mean_fixed[..., None]
        # t = (edge - mean) / scale in units of 2**-16; edge j is (2j - 254) / 255.
        cdf = _sigmoid_fixed(((2 * e - 254) * inv) // 255 - mean)
        return np.where(e < 0, 0, np.where(e >= LEVELS - 1, 1 << _CDF_BITS, cdf))

    def cumulative(self, b):
        """cumulative(b) for level boundaries b (int (P,) or (P, E)), int64 of b's shape."""
        b = np.asarray(b, np.int64)
        cdf = self.component_cdf(b - 1)
        w = self.weights if b.ndim == 1 else self.weights[..., None]
        mix = (w * cdf).sum(1)  # (P,) or (P, E), < 2**55
        shift = self._shift if b.ndim == 1 else self._shift[:, None]
        total = self._total if b.ndim == 1 else self._total[:, None]
        share = ((mix >> shift) * (TOTAL - LEVELS - 2)) // total
        uniform = (b * (TOTAL - LEVELS - 2)) // LEVELS
        mode = self.mode if b.ndim == 1 else self.mode[:, None]
        return 1 + b + np.where(mode == UNIFORM, uniform, share)

    def interval(self, level):
        """The encoder's view: [cumulative(level), cumulative(level + 1)), int64 (P,) each."""
        level = np.asarray(level, np.int64)
        return self.cumulative(level), self.cumulative(level + 1)

    def table(self):
        """The decoder's view: the frequencies of the 256 levels, int64 (P, 256)."""
        b = np.broadcast_to(np.arange(LEVELS + 1, dtype=np.int64), (len(self.mode), LEVELS + 1))
        return np.diff(self.cumulative(b), axis=-1)

    def component_mass(self, level):
        """Each component's mass at `level` (int (P,)), 2**-30 units, int64 (P, M)."""
        level = np.asarray(level, np.int64)
        return self.component_cdf(level) - self.component_cdf(level - 1)


def initial_weights(logits, mode, margin):
    """The first channel's component weights, int64 (P, M), and the logits' doubt (P,)."""
    weight_table = _tables()[0]
    g = np.minimum(mode, COARSE)
    q, d = _rounded(logits, np.array([grid.logit for grid in GRIDS])[g][:, None])
    j = np.minimum(q.max(-1, keepdims=True) - q, weight_table.shape[1] - 1)
    d = d / (margin * np.maximum(1.0, np.abs(logits)))
    doubt = np.where(mode == UNIFORM, np.inf, d.min(-1))
    return weight_table[g[:, None], j], doubt


def posterior_weights(channel, level):
    """The next channel's weights: each component's weight times its mass at `level`
    (int (P,)), renormalised; where every product is 0, the weights as they were."""
    product = _normalised(channel.weights * channel.component_mass(level))  # < 2**50
    return np.where(product.max(-1, keepdims=True) > 0, product, channel.weights)


def code_pixels(params, mode, margin, code):
    """The pixels' channels in order, each coded through `code`: the one procedure of
    encoder and decoder.

    Args:
      params: (logits (P, M), means (P, C, M), log_scales (P, C, M), coeffs (P, C, M)
        or None), floats as the mixture module unpacks them.
      mode: int (P,), each pixel's mode.
      margin: the file's margin.
      code: code(c, channel) -> the levels of channel c, int (P,): an encoder takes
        `channel.interval(levels)`, a decoder decodes with `channel.table()`.
    Returns:
      (levels int64 (P, C), doubt float64 (P,): the smallest distance of any
      parameter that mattered to its rounding edge, in margins; inf if none).
    """
    logits, means, log_scales, coeffs = (None if a is None else np.asarray(a, np.float64)
                                         for a in params)
    mode = np.asarray(mode, np.int64)
    weights, doubt = initial_weights(logits, mode, margin)
    levels, x = [], []
    for c in range(means.shape[1]):
        mean = mixture.couple(means[:, c], c, coeffs, x)  # green moved by red, blue by both
        # How far the coupled mean can be off: its own error and each coefficient's
        # times the level it multiplies (|coefficient| <= 1).
        slack = np.maximum(1.0, np.abs(means[:, c])) + sum(np.abs(v) for v in x)
        channel = Channel(weights, mean, np.maximum(log_scales[:, c], LOG_SCALE_MIN), mode,
                          margin, slack)
        doubt = np.minimum(doubt, channel.doubt)
        level = np.asarray(code(c, channel), np.int64)
        levels.append(level)
        x.append(((level - 127.5) / 127.5)[:, None])
        weights = posterior_weights(channel, level)
    return np.stack(levels, -1), doubt


def choose_modes(params, levels, margin):
    """The encoder's mode of each pixel: the first in which nothing that matters is in
    doubt (FINE, else COARSE, else UNIFORM); int64 (P,)."""
    levels = np.asarray(levels, np.int64)
    mode = np.full(len(levels), FINE, np.int64)
    for candidate in (FINE, COARSE):
        todo = np.flatnonzero(mode == candidate)
        if not len(todo):
            break
        sub = tuple(None if a is None else np.asarray(a)[todo] for a in params)
        _, doubt = code_pixels(sub, mode[todo], margin, lambda c, channel: levels[todo, c])
        mode[todo[doubt < 1.0]] = candidate + 1
    return mode


def encode_intervals(params, levels, mode, margin):
    """The encoder's intervals of every channel: (low, high) int64 (P, C) each."""
    levels = np.asarray(levels, np.int64)
    low, high = [], []

    def code(c, channel):
        lo, hi = channel.interval(levels[:, c])
        low.append(lo)
        high.append(hi)
        return levels[:, c]

    code_pixels(params, mode, margin, code)
    return np.stack(low, -1), np.stack(high, -1)


def interval_weights(low, high):
    """constriction's weights (..., 3) that code [low, high) of 2**24 as symbol 1: its
    fast categorical model gives symbol s the cumulative sum_{j<s} w_j + s when the
    weights sum to 2**24 - 3, exactly these integers."""
    return np.stack([low - 1, high - low - 1, TOTAL - high - 1], -1)


def table_weights(freq):
    """constriction's weights (P, 258) that decode a level as symbol level + 1: one unit
    below level 0 and above level 255 (Channel), every frequency minus one."""
    pad = np.zeros(freq.shape[:-1] + (1,), np.int64)
    return np.concatenate([pad, freq - 1, pad], -1)


def mode_frequencies(mode):
    """The modes' frequencies (3,) from their counts: each at least 1, summing to 2**24,
    so that a file's modes cost about their entropy. Stored in the file."""
    counts = np.bincount(np.asarray(mode, np.int64), minlength=MODES)[:MODES]
    freq = (counts * (TOTAL - MODES)) // max(int(counts.sum()), 1) + 1
    freq[np.argmax(counts)] += TOTAL - freq.sum()
    return freq.astype(np.int64)
