"""The codec's coding distributions: the same integers on every machine.

A range coder decodes only if the decoder uses exactly the frequencies the encoder
used. The network's mixture parameters are floats, and two machines (or one machine
with other kernels, thread counts, oneDNN on or off, XLA, or the forward pass against
the cached sampler) compute them slightly apart: measured here, at most 7.6e-7 of a
parameter's magnitude (or of 1, if it is smaller) for a (nr_resnet 1, nr_filters 32)
model, 1.7e-6 at the default (5, 160). So the frequencies are made from integers only:

1. Each parameter is rounded to a grid: the mixture logits to steps of 1/4, the
   log-scales to 1/8, and each mean (after the channel coupling: green moved by red,
   blue by both) to half its component's rounded scale. A parameter p closer than
   margin * max(1, |p|) to the middle between two grid points could round the other
   way elsewhere: its pixel is "in doubt". (A coupled mean's allowance adds the
   coefficients' errors times the levels they multiply.)
2. From the rounded integers the frequencies are computed in integer arithmetic: the
   component weights from a table of exp (those below 2**-8 of the largest dropped),
   each component's CDF from a table of the sigmoid (interpolated linearly in fixed
   point), the mixture's CDF as their weighted sum. The tables are made once with
   exact decimal arithmetic, not the platform's exp.
3. A channel's level is coded in two steps of 16: its group of 16 levels, then the
   level within the group, each with frequencies summing to 2**24 (every symbol at
   least 1, one unit left below the first and above the last, see `interval_weights`).
   The encoder needs the mixture's CDF at 4 points a channel; the decoder builds
   the two tables of 16 it decodes from.
4. Every pixel is coded in one of three modes, chosen by the encoder and coded before
   the pixel with frequencies stored in the file: FINE (the grid above), COARSE (every
   step 8 times larger, so in doubt 8 times less often) or UNIFORM (no parameter: 8 bits
   a channel). The encoder takes the first mode in which no parameter that matters
   (the logits; the scale and mean of every component with a nonzero weight) is in
   doubt.

What is guaranteed: a decoder whose every mixture parameter differs from the
encoder's by less than the margin (relative, as in 1) computes the same frequencies
at every pixel, so it decodes the same images, whatever its CPU, kernels, thread
count, oneDNN, XLA or GPU. A decoder that meets a parameter closer than a quarter of
the margin to a rounding edge knows that it is outside the guarantee and stops
(`DoubtError`) instead of decoding on.

What it costs (bench/compression.py measures it; tests/test_coding.py bounds it), for
the 16-epoch model of the bundled patches (bench/compression.py's CODEC_COMMAND, 3.37
bits/dim) on the 1,000 test patches at its default margin 2**-19: the rounding moves
each distribution a little (0.23% of the NLL of the FINE pixels, 99.4% of them); the
COARSE pixels' dearer codes add 0.06% of the NLL, and the modes their entropy, 0.54%
(a smaller margin puts fewer pixels in doubt): 0.82% in all, 0.84% with the range
coder's ends and the file's header.
"""

import collections
import decimal
import functools

import numpy as np

from pixel_cnn_pp import mixture

LEVELS = mixture.LEVELS
PRECISION = 24  # the range coder's: frequencies sum to 2**24
TOTAL = 1 << PRECISION
GROUP = 16  # a level is coded as its group of 16, then its place in the group
FINE, COARSE, UNIFORM = 0, 1, 2
MODES = 3
ALARM = 0.25  # a decoder that finds a parameter closer than this many margins to an edge stops

Grid = collections.namedtuple('Grid', 'logit log_scale mean')
# The steps of FINE and COARSE: powers of two, so that every grid point is exact.
GRIDS = (Grid(logit=0.25, log_scale=0.125, mean=0.5), Grid(logit=2.0, log_scale=1.0, mean=4.0))

_WEIGHT_BITS = 18  # component weights: the largest is 2**18 (or just below)
_DROP = 1 << (_WEIGHT_BITS - 8)  # weights below 2**-8 of the largest are dropped
_CDF_BITS = 30  # component CDFs in units of 2**-30
_FIX = 24  # a component's standardised bin edge in units of 2**-24
_TABLE_BITS = 5  # the sigmoid table's step, 2**-5
_T_MAX = 20  # sigmoid(+-20) is within 2**-28 of 1 and 0: beyond, the table's ends
_LOG_SCALE_MAX = 8.0  # larger log-scales (a flat component) round to this one
_SPAN = TOTAL - GROUP - 2  # what a step's 16 symbols share beyond their 1 each
_STEPS = np.array(GRIDS, np.float64)  # (grid, logit | log_scale | mean)
_GROUP_EDGES = GROUP * np.arange(LEVELS // GROUP + 1)[None, :]  # (1, 17): the groups' bounds
_PLACES = np.arange(GROUP + 1)
MAX_COMPONENTS = 32  # so that every sum of weights times CDFs stays below 2**53


class DoubtError(ValueError):
    """A decoder met a parameter too close to a rounding edge to trust its rounding."""


def default_margin(nr_resnet):
    """The margin for a network of `nr_resnet` blocks a level: 2**ceil(log2(1.25e-6 sqrt(n))).

    About two and a half times the largest relative difference measured between the
    forward pass and the cached sampler, and with and without XLA (oneDNN on or off and
    the thread count changed nothing here): 7.6e-7 at (1, 32), so 2**-19; 1.7e-6 at the
    default (5, 160), so 2**-18. Float errors grow with the depth. A larger margin costs
    bits (the modes), a smaller one risks a refusal on a machine that is further off.
    """
    return float(2.0 ** np.ceil(np.log2(1.25e-6 * np.sqrt(nr_resnet))))


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
    """The integer tables of every grid, made once from decimal arithmetic.

    weight[g, j]: 2**18 exp(-j logit_g) for a logit j steps below the largest (0 below _DROP).
    inv_scale[g, q - q_min[g]]: 2**24 / (255 exp(q log_scale_g)), the inverse of the
      rounded scale times a level's half-width, 1/255.
    sigmoid[i]: 2**30 sigmoid(i / 2**5 - T_MAX), i = 0 .. 2 T_MAX 2**5.
    """
    length = 1 + max(int(np.ceil(np.log(2.0 * (1 << _WEIGHT_BITS) / _DROP) / g.logit))
                     for g in GRIDS)
    weight = np.array([[_round(_exp(-j * g.logit) * (1 << _WEIGHT_BITS)) for j in range(length)]
                       for g in GRIDS], np.int64)
    weight[weight < _DROP] = 0
    q_min = np.array([int(np.floor(mixture.LOG_SCALE_MIN / g.log_scale)) for g in GRIDS])
    q_max = np.array([int(np.ceil(_LOG_SCALE_MAX / g.log_scale)) for g in GRIDS])
    inv_scale = np.zeros((len(GRIDS), int((q_max - q_min).max()) + 1), np.int64)
    for g, grid in enumerate(GRIDS):
        for q in range(q_min[g], q_max[g] + 1):
            inv_scale[g, q - q_min[g]] = _round(_exp(-q * grid.log_scale) * (1 << _FIX) / 255)
    one, n = decimal.Decimal(1), 2 * _T_MAX << _TABLE_BITS
    sigmoid = np.array([_round(one / (one + _exp(_T_MAX - decimal.Decimal(i) /
                                                 (1 << _TABLE_BITS))) * (1 << _CDF_BITS))
                        for i in range(n + 1)], np.int64)
    return weight, inv_scale, q_min, q_max, sigmoid


@functools.lru_cache(maxsize=None)
def _sigmoid_steps():
    """The sigmoid table and each entry's step to the next (the last step 0)."""
    table = _tables()[4]
    return table, np.append(np.diff(table), 0)


def _sigmoid_fixed(t):
    """2**30 sigmoid(t / 2**24) for int64 t: the table, interpolated linearly, exactly."""
    table, steps = _sigmoid_steps()
    shift = _FIX - _TABLE_BITS
    u = t + (_T_MAX << _FIX)
    np.minimum(np.maximum(u, 0, out=u), ((2 * _T_MAX) << _FIX) - 1, out=u)  # np.clip, cheaper
    i = u >> shift
    return table[i] + ((steps[i] * (u & ((1 << shift) - 1))) >> shift)


def _cdf_at(edge, inv, mean_fixed):
    """A logistic's CDF, int64 in units of 2**-30, at the upper edge of level `edge` (-1 is
    minus infinity, 255 infinity) for its rounded inverse scale and mean (broadcast)."""
    # (edge - mean) / scale in units of 2**-24: the edge is (2 e - 254) / 255.
    cdf = _sigmoid_fixed((2 * edge - 254) * inv - mean_fixed)
    if edge.min() < 0 or edge.max() >= LEVELS - 1:
        cdf = np.where(edge < 0, 0, np.where(edge >= LEVELS - 1, 1 << _CDF_BITS, cdf))
    return cdf


def _rounded(value, step):
    """(the nearest grid point's index, int64; the distance to the nearest rounding edge)."""
    r = value / step
    q = np.floor(r + 0.5)
    return q.astype(np.int64), (0.5 - np.abs(r - q)) * step


def _bit_length(a):
    """The bit length of each int64 in [0, 2**53) (0 for 0), exactly: such integers are
    exact in float64, whose exponent is their bit length."""
    return np.frexp(a.astype(np.float64))[1].astype(np.int64)


def _share(part, whole):
    """floor(part * _SPAN / whole) for int64 0 <= part <= whole < 2**53, whole > 0, exactly
    as defined here: both shifted right first so that the product fits in 63 bits."""
    shift = np.maximum(_bit_length(whole) - 36, 0)
    return ((part >> shift) * _SPAN) // np.maximum(whole >> shift, 1)


# ------------------------------------------------------------------ one channel


Rows = collections.namedtuple('Rows', 'mode steps uniform any_uniform')


def rows_of(mode):
    """What every channel of P pixels in `mode` (int64 (P,)) shares: their grids' steps
    (P, 3), which are UNIFORM, whether any is."""
    uniform = mode == UNIFORM
    return Rows(mode, _STEPS[np.minimum(mode, COARSE)], uniform, bool(uniform.any()))


class Components:
    """The components that count at P pixels: those of nonzero first weight (about 40%
    in a trained model; a later channel's weight is never nonzero where the first is 0),
    as K (pixel, component) pairs in pixel order, every pixel at least one (its largest
    weight). Everything per component is computed for these K only; a sum over a
    pixel's components is the same integer as over all of them.
    """

    def __init__(self, weights):
        self.pixel, self.component = np.nonzero(weights)
        self.starts = np.searchsorted(self.pixel, np.arange(len(weights)))

    def take(self, a):
        """(P, ..., M) -> (K, ...): the pairs' entries."""
        return a[self.pixel, ..., self.component]

    def sum(self, a):
        """(K, ...) -> (P, ...): each pixel's sum over its pairs."""
        return np.add.reduceat(a, self.starts, axis=0)

    def max(self, a):
        return np.maximum.reduceat(a, self.starts, axis=0)

    def min(self, a):
        return np.minimum.reduceat(a, self.starts, axis=0)


def rounded_scales(log_scales, rows, components, margin):
    """The pairs' log-scales (K, C) rounded: (inv, doubt), int64 and float64 (K, C): each
    component's 2**24 / (255 scale), and the log-scale's distance to its rounding edge in
    its allowance, margin * max(1, |log-scale|)."""
    _, inv_table, q_min, q_max, _ = _tables()
    log_scales = np.maximum(log_scales, mixture.LOG_SCALE_MIN)
    g = np.minimum(rows.mode, COARSE)[components.pixel, None]  # UNIFORM rows: as COARSE
    q, d = _rounded(log_scales, rows.steps[components.pixel, 1:2])
    inv = inv_table[g, np.minimum(np.maximum(q, q_min[g]), q_max[g]) - q_min[g]]
    return inv, d / (margin * np.maximum(1.0, np.abs(log_scales)))


class Channel:
    """One channel of P pixels, its parameters rounded: the integer CDF of its mixture.

    Args:
      weights: int64 (K,), the pairs' weights (`initial_weights`, or `posterior_weights`
        of the channel before).
      mean: float64 (K,), the coupled means.
      inv, scale_doubt: this channel's of `rounded_scales`, (K,).
      rows: `rows_of` the pixels' modes; components: their Components.
      margin: the file's margin; slack: float64 (K,), the coupled means' allowance
        in margins (max(1, |mean|) + the magnitudes of the levels they are coupled to).
    Attributes:
      doubt: float64 (P,), the smallest distance of a parameter that matters to its
        rounding edge, in its allowance (inf where nothing matters, and for UNIFORM).
    """

    def __init__(self, weights, mean, inv, scale_doubt, rows, components, margin, slack):
        self.weights, self.inv, self.rows, self.mode = weights, inv, rows, rows.mode
        self.components = components
        # The mean's grid: `mean` times the rounded scale, 2**24 / (255 inv) (IEEE division).
        step = rows.steps[components.pixel, 2]
        q_m, d_m = _rounded(mean, step * ((1 << _FIX) / (255.0 * inv)))
        self.mean_fixed = q_m * (step * (1 << _FIX)).astype(np.int64)  # mean / scale
        doubt = np.where(weights > 0, np.minimum(scale_doubt, d_m / (margin * slack)), np.inf)
        self.doubt = components.min(doubt)
        if rows.any_uniform:
            self.doubt[rows.uniform] = np.inf
        self._mass = self._cdf = None

    def component_cdf(self, edge):
        """Each pair's CDF at the upper edge of level `edge` (int64 (P, E) for the pixels,
        or (1, E) for all of them; -1 is minus infinity, 255 infinity), int64 (K, E) in
        units of 2**-30."""
        edge = edge if len(edge) == 1 else edge[self.components.pixel]
        return _cdf_at(edge, self.inv[:, None], self.mean_fixed[:, None])

    def _mixed(self, cdf, b):
        """The mixture's CDF (P, E) from the pairs' (K, E) at levels b (P, E) (below b)."""
        mixed = self.components.sum(self.weights[:, None] * cdf)
        if self.rows.any_uniform:
            mixed = np.where(self.rows.uniform[:, None], b << _CDF_BITS, mixed)
        return mixed

    def mixture_cdf(self, b):
        """The mixture's CDF below level b (int64 (P, E) or (1, E), 0..256), int64 (P, E);
        total() at 256. UNIFORM rows: b times 2**30."""
        return self._mixed(self.component_cdf(b - 1), b)

    def total(self):
        total = self.components.sum(self.weights) << _CDF_BITS
        if self.rows.any_uniform:
            total = np.where(self.rows.uniform, LEVELS << _CDF_BITS, total)
        return total

    def interval(self, level):
        """The encoder's view: the two steps' intervals, ((low, high) of the group, (low,
        high) within it), int64 (P,) each; keeps the pairs' masses at `level`."""
        group = level // GROUP
        edges = np.stack([GROUP * group, GROUP * group + GROUP, level, level + 1], -1)
        cdf = self.component_cdf(edges - 1)  # (K, 4)
        self._mass = (level, cdf[:, 3] - cdf[:, 2])
        mixed = self._mixed(cdf, edges)
        total = self.total()
        first = (1 + group + _share(mixed[:, 0], total),
                 2 + group + _share(mixed[:, 1], total))
        span, base = mixed[:, 1] - mixed[:, 0], mixed[:, 0]
        place = level - GROUP * group
        return first, _within(span, place, mixed[:, 2] - base, mixed[:, 3] - base)

    def group_table(self):
        """The decoder's first step: the 16 groups' frequencies, int64 (P, 16)."""
        total = self.total()[:, None]
        return _steps(_share(self.mixture_cdf(_GROUP_EDGES), total))

    def place_table(self, group):
        """The decoder's second step: the frequencies of the 16 levels of `group` (int64
        (P,)), int64 (P, 16). Keeps the pairs' CDFs there for `component_mass`."""
        b = GROUP * group[:, None] + _PLACES
        cdf = self.component_cdf(b - 1)  # (K, 17)
        self._cdf = (group, cdf)
        mixed = self._mixed(cdf, b)
        span = mixed[:, -1] - mixed[:, 0]
        return _steps(np.where(span[:, None] > 0, _share(
            mixed - mixed[:, :1], np.maximum(span, 1)[:, None]), (_PLACES * _SPAN) // GROUP))

    def component_mass(self, level):
        """Each pair's mass at `level` (int64 (P,)), int64 (K,) in units of 2**-30."""
        if self._mass is not None and self._mass[0] is level:
            return self._mass[1]
        pixel = self.components.pixel
        if self._cdf is not None:  # the decoder's place_table of level's group
            place = (level - GROUP * self._cdf[0])[pixel]
            rows, cdf = np.arange(len(pixel)), self._cdf[1]
            return cdf[rows, place + 1] - cdf[rows, place]
        cdf = self.component_cdf(np.stack([level - 1, level], -1))
        return cdf[:, 1] - cdf[:, 0]


def _steps(shares):
    """A step's 16 frequencies (P, 16) from the shares of _SPAN below its 17 bounds: one
    unit each on top (the bounds 1 + i + share_i)."""
    return 1 + shares[:, 1:] - shares[:, :-1]


def _within(span, place, low, high):
    """The second step's interval of `place` in its group: [low, high) of `span` shared
    as the group's table shares it (uniform where the group's mass is 0)."""
    whole = np.maximum(span, 1)
    empty = span <= 0
    lo = np.where(empty, (place * _SPAN) // GROUP, _share(low, whole))
    hi = np.where(empty, ((place + 1) * _SPAN) // GROUP, _share(high, whole))
    return 1 + place + lo, 2 + place + hi


def initial_weights(logits, rows, margin):
    """The first channel's component weights, int64 (P, M), and the logits' doubt (P,)."""
    weight_table = _tables()[0]
    q, d = _rounded(logits, rows.steps[:, 0:1])
    j = np.minimum(q.max(-1, keepdims=True) - q, weight_table.shape[1] - 1)
    doubt = (d / (margin * np.maximum(1.0, np.abs(logits)))).min(-1)
    if rows.any_uniform:
        doubt[rows.uniform] = np.inf
    return weight_table[np.minimum(rows.mode, COARSE)[:, None], j], doubt


def posterior_weights(channel, level):
    """The next channel's weights (K,): each pair's weight times its mass at `level`,
    scaled by a power of two a pixel so that its largest has 18 bits, those below _DROP
    of it dropped; where every product of a pixel is 0, the weights as they were."""
    components = channel.components
    product = channel.weights * channel.component_mass(level)  # < 2**48
    shift = (_bit_length(components.max(product)) - _WEIGHT_BITS)[components.pixel]
    product = np.where(shift >= 0, product >> np.maximum(shift, 0),
                       product << np.maximum(-shift, 0))
    product = np.where(product >= _DROP, product, 0)
    return np.where(components.max(product)[components.pixel] > 0, product, channel.weights)


def code_pixels(params, mode, margin, code):
    """The pixels' channels in order, each coded through `code`: the one procedure of
    encoder and decoder.

    Args:
      params: a mixture.Mixture (logits (P, M), means (P, C, M), log_scales (P, C, M),
        coeffs (P, 3, M) or None), floats as mixture.unpack gives them.
      mode: int (P,), each pixel's mode.
      margin: the file's margin.
      code: code(c, channel) -> the levels of channel c, int64 (P,): an encoder takes
        `channel.interval(levels)`, a decoder decodes with `channel.group_table()` and
        `channel.place_table(group)`.
    Returns:
      (levels int64 (P, C), doubt float64 (P,): the smallest distance of a parameter
      that mattered to its rounding edge, in its allowance; inf if none).
    """
    rows = rows_of(np.asarray(mode, np.int64))
    weights, doubt = initial_weights(np.asarray(params[0], np.float64), rows, margin)
    components = Components(weights)
    weights = components.take(weights)
    means, log_scales, coeffs = (None if a is None else
                                 components.take(np.asarray(a)).astype(np.float64)
                                 for a in params[1:])  # (K, C), (K, C), (K, 3)
    inv, scale_doubt = rounded_scales(log_scales, rows, components, margin)
    levels, x = [], []
    for c in range(means.shape[1]):
        # Green moved by red, blue by both (one component a row: (K, 1) against (K, 3, 1)).
        mean = mixture.couple(means[:, c, None], c, None if coeffs is None else
                              coeffs[..., None], x)[:, 0]
        # How far the coupled mean can be off: its own error and each coefficient's
        # times the level it multiplies (|coefficient| <= 1).
        slack = np.maximum(1.0, np.abs(means[:, c])) + sum(np.abs(v[:, 0]) for v in x)
        channel = Channel(weights, mean, inv[:, c], scale_doubt[:, c], rows, components,
                          margin, slack)
        doubt = np.minimum(doubt, channel.doubt)
        level = np.asarray(code(c, channel), np.int64)
        levels.append(level)
        x.append(mixture.to_value(level)[components.pixel, None])
        weights = posterior_weights(channel, level)
    return np.stack(levels, -1), doubt


def encode(params, levels, margin, chunk=8192):
    """The encoder: every pixel's mode, int64 (P,), and its channels' intervals, int64
    (P, C, 2 steps, 2: low and high), each pixel in the first mode in which nothing that
    matters is in doubt. Computed `chunk` pixels at a time (arrays that stay in the
    CPU's caches: about twice as fast as all at once here; the results are the same)."""
    levels = np.asarray(levels, np.int64)
    parts = [_encode_rows(mixture.Mixture(*(None if a is None else np.asarray(a)[s:s + chunk]
                                            for a in params)), levels[s:s + chunk], margin)
             for s in range(0, len(levels), chunk)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _encode_rows(params, levels, margin):
    mode = np.full(len(levels), FINE, np.int64)
    out = np.zeros(levels.shape + (2, 2), np.int64)
    todo = np.arange(len(levels))
    for candidate in (FINE, COARSE, UNIFORM):
        sub = params if candidate == FINE else mixture.Mixture(
            *(None if a is None else a[todo] for a in params))
        found = []

        def code(c, channel):
            level = levels[todo, c]
            first, second = channel.interval(level)  # keeps the masses at `level`
            found.append(np.stack([np.stack(first, -1), np.stack(second, -1)], -2))
            return level

        _, doubt = code_pixels(sub, np.full(len(todo), candidate), margin, code)
        sure = doubt >= 1.0
        mode[todo[sure]] = candidate
        out[todo[sure]] = np.stack(found, 1)[sure]
        todo = todo[~sure]
        if not len(todo):
            break
    return mode, out


def interval_weights(low, high):
    """constriction's weights (..., 3) that code [low, high) of 2**24 as symbol 1: its
    fast categorical model gives symbol s the cumulative sum_{j<s} w_j + s when the
    weights sum to 2**24 - 3, so exactly these integers (low >= 1, high <= 2**24 - 1)."""
    return np.stack([low - 1, high - low - 1, TOTAL - high - 1], -1)


def table_weights(freq):
    """constriction's weights (P, 18) that decode a step's symbol s as symbol s + 1: one
    unit below the first and above the last, every frequency minus one."""
    pad = np.zeros(freq.shape[:-1] + (1,), np.int64)
    return np.concatenate([pad, freq - 1, pad], -1)


def mode_frequencies(mode):
    """The modes' frequencies (3,) from their counts: each at least 1, summing to 2**24,
    so that a file's modes cost about their entropy. Stored in the file."""
    counts = np.bincount(np.asarray(mode, np.int64).reshape(-1), minlength=MODES)[:MODES]
    freq = (counts * (TOTAL - MODES)) // max(int(counts.sum()), 1) + 1
    freq[np.argmax(counts)] += TOTAL - freq.sum()
    return freq.astype(np.int64)
