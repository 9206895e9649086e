"""Lossless image compression with a PixelCNN++: the likelihood as a file size.

An autoregressive model gives every pixel a distribution given the pixels before
it; an entropy coder turns those distributions into a code whose length is the
summed -log2 p, the model's NLL in bits (Shannon; the PixelRNN paper names this
use first). Here the coder is constriction's range coder
(https://bamler-lab.github.io/constriction/), fed one 256-way categorical
distribution per channel:

- Each pixel is R, then G given R, then B given R and G, as the discretized
  logistic mixture defines them: p(R) = sum_k pi_k p_k(R); G given R uses the
  weights pi_k p_k(R) (normalised) and the green mean shifted by the coefficient
  times R, and so on, so that p(R) p(G|R) p(B|R,G) is the mixture's joint
  probability of the pixel (losses.log_prob_per_pixel).
- `frequencies` quantises each distribution to integers, every level at least 1
  (so every value stays codable), summing to 2**24, constriction's precision.
  It is the one function the encoder and the decoder call (through
  `code_pixel`), in NumPy, deterministic for the same input floats. constriction
  gets the frequencies minus one as float weights: its fast categorical model
  (perfect=False) assigns symbol s the cumulative floor(sum_{j<s} w_j * scale) + s,
  and with integer weights summing to 2**24 - 256 the scale is exactly 1, so it
  codes with exactly these frequencies (tests/test_compression.py checks the code
  length against them).
- Encoder and decoder get the mixtures from one compiled loop, the cached
  sampler's (CachedSampler.code): encoding feeds it the image's own pixels
  (teacher forcing), decoding the pixels it decodes, one pixel at a time; the two
  see the same floats on the same kind of machine. A file records a digest of
  the decoded images, so a machine that computes other floats is caught.

The .pxpp file: a fixed header (magic, version, a SHA-256 of the model's config
and weights, an image digest, the shape, the count, the coding batch, the number
of classes, section lengths), the labels of a class-conditional model (one byte
each, two above 256 classes), optional file names (zlib), the range coder's
words, and a CRC-32 of everything before it. A file made with another model, a
damaged or truncated file, is refused with a ValueError saying which.

    data = compress(model, images)             # bytes
    same = decompress(model, data)             # uint8, equal to images bit for bit
"""

import collections
import hashlib
import json
import struct
import zlib

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.cached_sampler import CachedSampler
from pixel_cnn_pp.config import TRAINING_ONLY

MAGIC = b'PXPP'
VERSION = 1
PRECISION = 24  # constriction's range coder: probabilities in units of 2**-24
TOTAL = 1 << PRECISION
LEVELS = 256
DEFAULT_BATCH = 16  # images coded together (one compiled loop run); stored in the file

# magic, version, model digest, image digest, H, W, C, images, batch, classes,
# range coder words, names bytes.
_HEADER = struct.Struct('<4sB32s16sHHHIIHII')
HEADER_BYTES = _HEADER.size + 4  # with the CRC-32 at the end
# The upper edge of every level's bin but the last, in [-1, 1]: level j is 2j/255 - 1.
_EDGES = (2.0 * np.arange(LEVELS - 1) + 1.0) / 255.0 - 1.0

Header = collections.namedtuple('Header', 'version model_digest image_digest image_shape count '
                                'batch num_classes labels names')


# ------------------------------------------------------------------ the model


def model_digest(model):
    """SHA-256 (32 bytes) of the model's options (training-only ones left out) and weights.

    Two models with the same digest compute the same mixtures; a file records the
    digest of the model that wrote it, and `decompress` refuses any other model.
    """
    h = hashlib.sha256()
    options = {k: v for k, v in model.config.to_dict().items() if k not in TRAINING_ONLY}
    h.update(json.dumps(options, sort_keys=True).encode())
    for name, var in model.named_weights():
        value = np.ascontiguousarray(var.numpy(), dtype='<f4')
        h.update(('%s %s\n' % (name, value.shape)).encode())
        h.update(value.tobytes())
    return h.digest()


def _image_digest(images, labels):
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        h.update(np.asarray(labels, '<i4').tobytes())
    return h.digest()[:16]


# ---------------------------------------------------------- the distributions


def _sigmoid(z):
    with np.errstate(over='ignore'):  # exp(709+) is inf: sigmoid 0, as it should be
        return 1.0 / (1.0 + np.exp(-z))


def _mixture_probabilities(weights, mean, log_scale):
    """The mixture's probability of each of the 256 levels, float64 (n, 256).

    A level's bin is +-1/255 around it; the first and last take the tails, as in
    losses.log_prob_per_pixel: differences of the mixture's CDF at the 255 edges.
    Their rounding (1e-16) is far below what the frequencies resolve (2**-24).
    """
    z = (_EDGES - mean[..., None]) * np.exp(-log_scale)[..., None]  # (n, M, 255)
    cdf = np.einsum('nm,nmj->nj', weights, _sigmoid(z))  # (n, 255)
    ones = np.ones((len(cdf), 1))
    return np.maximum(np.diff(np.concatenate([0.0 * ones, cdf, ones], -1), axis=-1), 0.0)


def _component_probabilities(mean, log_scale, level):
    """Each component's probability of the given level (n,), float64 (n, M).

    A bin above the component's mean is a difference of survival functions, one
    below it of CDFs, so that neither tail cancels to 0 (the next channel's
    mixture weights are ratios of these).
    """
    x = (level[:, None] - 127.5) / 127.5
    inv = np.exp(-log_scale)
    low = np.where(level[:, None] > 0, (x - 1.0 / 255.0 - mean) * inv, -np.inf)
    high = np.where(level[:, None] < LEVELS - 1, (x + 1.0 / 255.0 - mean) * inv, np.inf)
    above = low + high > 0
    return np.maximum(np.where(above, _sigmoid(-low) - _sigmoid(-high),
                               _sigmoid(high) - _sigmoid(low)), 0.0)


def frequencies(probabilities):
    """Integer frequencies of (n, 256) probabilities: each at least 1, each row summing to 2**24.

    floor(p * (2**24 - 256)) + 1 per level, the remainder to the most probable
    level. The one quantiser of encoder and decoder.
    """
    p = np.asarray(probabilities, np.float64)
    p = p / p.sum(-1, keepdims=True)
    freq = np.floor(p * (TOTAL - LEVELS)).astype(np.int64) + 1
    rows = np.arange(len(freq))
    freq[rows, np.argmax(p, -1)] += TOTAL - freq.sum(-1)
    return freq


def code_pixel(logits, means, log_scales, coeffs, code):
    """One pixel of n images, channel by channel: R, then G given R, then B given R and G.

    Args:
      logits: (n, M) mixture logits; means, log_scales, coeffs: (n, C, M), as
        losses.mixture_parameters gives them (log_scales clamped, coeffs after
        tanh; unused for one channel).
      code: code(channel, frequencies (n, 256)) -> the channel's levels (n,): the
        encoder encodes the image's levels and returns them, the decoder decodes.
    Returns:
      int (n, C): the pixel's levels.
    """
    logits, means = np.float64(logits), np.float64(means)
    log_scales, coeffs = np.float64(log_scales), np.float64(coeffs)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)  # (n, M)
    levels, x = [], []
    for c in range(means.shape[1]):
        mean = means[:, c]  # (n, M); the coefficients shift G by R, B by R and G
        if c == 1:
            mean = mean + coeffs[:, 0] * x[0]
        elif c == 2:
            mean = mean + coeffs[:, 1] * x[0] + coeffs[:, 2] * x[1]
        p = _mixture_probabilities(weights, mean, log_scales[:, c])
        level = np.asarray(code(c, frequencies(p)), np.int64)
        levels.append(level)
        x.append((level[:, None] - 127.5) / 127.5)
        # The next channel's mixture weights: this channel's value seen.
        posterior = weights * _component_probabilities(mean, log_scales[:, c], level)
        total = posterior.sum(-1, keepdims=True)
        weights = np.where(total > 0, posterior / np.where(total > 0, total, 1.0), weights)
    return np.stack(levels, -1)


# ------------------------------------------------------------------ the coder


def _constriction():
    import constriction  # lazily: only compression needs it

    return constriction


class _Choose:
    """CachedSampler.code's `choose`: code each pixel; progress after every image row."""

    def __init__(self, code, width, progress, rows_before, total_rows):
        self.code, self.width, self.progress = code, width, progress
        self.rows_before, self.total_rows = rows_before, total_rows
        self.error = None

    def __call__(self, pixel, logits, means, log_scales, coeffs):
        if self.error is not None:  # the rest of the run only has to end
            return np.zeros((len(logits), means.shape[1]), np.float32)
        try:
            levels = code_pixel(logits, means, log_scales, coeffs, lambda c, f: self.code(
                int(pixel), c, f))
        except Exception as e:  # noqa: BLE001 - raised again, outside TensorFlow's loop
            self.error = self.error or e
            return np.zeros((len(logits), means.shape[1]), np.float32)
        if self.progress is not None and (int(pixel) + 1) % self.width == 0:
            self.progress(self.rows_before + (int(pixel) + 1) // self.width, self.total_rows)
        return levels.astype(np.float32)


def _sampler(model, n):
    """The model's coding sampler for n images (kept on the model: built and traced once)."""
    key = ('coding_sampler', n)
    samplers = model._compiled.functions
    if key not in samplers:
        samplers[key] = CachedSampler(model, n)
    return samplers[key]


def _run(model, count, batch, labels, code, progress):
    """Every batch through the coding loop, in order; returns the images chosen (N, H, W, C)."""
    height, width, _ = model.image_shape
    out = []
    total_rows = -(-count // batch) * height
    for k, start in enumerate(range(0, count, batch)):
        n = min(batch, count - start)
        choose = _Choose(lambda pixel, c, f, start=start: code(start, pixel, c, f), width,
                         progress, k * height, total_rows)
        try:
            images = _sampler(model, n).code(
                choose, None if labels is None else labels[start:start + n])
        except tf.errors.OpError as e:
            raise choose.error or e
        if choose.error is not None:
            raise choose.error
        out.append(images)
    return np.concatenate(out)


def _weights(freq):
    return (freq - 1).astype(np.float32)  # exact: integers below 2**24


def compress(model, images, labels=None, names=None, batch=DEFAULT_BATCH, progress=None):
    """Images to bytes, losslessly, in about the model's NLL in bits.

    Args:
      model: a PixelCNN (not an energy-distance one: it has no likelihood).
      images: uint8 (N, H, W, C) of the model's image shape.
      labels: int (N,) for a class-conditional model (stored in the file), else None.
      names: optional N strings (e.g. file names) stored in the file.
      batch: images coded together (speed only; the decoder uses the same batches).
      progress: optional callable(rows_done, total_rows).
    Returns:
      bytes, the .pxpp file: HEADER_BYTES plus labels, names and the code.

    Example:
        data = compress(model, images)
        assert (decompress(model, data) == images).all()
    """
    model._require_likelihood()
    images, labels = model.check_inputs(images, labels)
    count = len(images)
    batch = _check_batch(batch)
    if names is not None and len(names) != count:
        raise ValueError("'names' must hold one name per image (%d), got %d"
                         % (count, len(names)))
    constriction = _constriction()
    family = constriction.stream.model.Categorical(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    flat = images.reshape(count, -1, model.image_shape[-1])

    def code(start, pixel, channel, freq):
        level = flat[start:start + len(freq), pixel, channel]
        encoder.encode(level.astype(np.int32), family, _weights(freq))
        return level

    decoded = _run(model, count, batch, labels, code, progress)
    assert np.array_equal(decoded, images)  # the loop was fed the image's own pixels
    words = encoder.get_compressed().astype('<u4').tobytes()
    return _pack(model, images, labels, names, batch, words)


def decompress(model, data, progress=None):
    """The images of a .pxpp file (bytes), bit for bit; the model must be the one that wrote it.

    Raises ValueError for anything but a whole .pxpp file of this model: not one,
    another version, damaged (CRC), truncated, made with another model (digest), or
    decoding to images other than those compressed; TypeError if `data` is not bytes.
    Returns:
      uint8 (N, H, W, C). read_header(data) gives the labels and names.
    """
    header, words = _unpack(data)
    digest = model_digest(model)
    if header.model_digest != digest:
        raise ValueError('this .pxpp file was made with another model (digest %s; this model '
                         'is %s %s, digest %s): decompress it with the model that wrote it'
                         % (header.model_digest.hex()[:16], 'x'.join(map(str, model.image_shape)),
                            _short(model), digest.hex()[:16]))
    model._require_likelihood()
    constriction = _constriction()
    family = constriction.stream.model.Categorical(perfect=False)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(words, '<u4').astype(np.uint32))

    def code(start, pixel, channel, freq):
        return decoder.decode(family, _weights(freq))

    images = _run(model, header.count, header.batch, header.labels, code, progress)
    if _image_digest(images, header.labels) != header.image_digest:
        raise ValueError('the decoded images do not match the digest in the file: it was '
                         'written on a machine that computes this model\'s floats differently, '
                         'or damaged in a way the checksum missed')
    return images


def _short(model):
    c = model.config
    return '(nr_resnet=%d, nr_filters=%d, nr_logistic_mix=%d)' % (
        c.nr_resnet, c.nr_filters, c.nr_logistic_mix)


def _check_batch(batch):
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ValueError("'batch' must be a positive integer, got %r" % (batch,))
    return int(batch)


# --------------------------------------------------------------- the file


def _pack(model, images, labels, names, batch, words):
    count, (h, w, c) = len(images), model.image_shape
    num_classes = model.num_classes or 0
    name_bytes = b'' if names is None else zlib.compress('\n'.join(names).encode('utf-8'), 9)
    parts = [_HEADER.pack(MAGIC, VERSION, model_digest(model), _image_digest(images, labels),
                          h, w, c, count, batch, num_classes, len(words) // 4, len(name_bytes))]
    if num_classes:
        parts.append(np.asarray(labels, _label_dtype(num_classes)).tobytes())
    parts += [name_bytes, words]
    body = b''.join(parts)
    return body + struct.pack('<I', zlib.crc32(body))


def _label_dtype(num_classes):
    return '<u1' if num_classes <= 256 else '<u2'


def read_header(data):
    """The Header of a .pxpp file (bytes): shape, count, labels, names, digests.

    Raises ValueError if `data` is not a whole, undamaged .pxpp file.
    """
    return _unpack(data)[0]


def _unpack(data):
    """(Header, the coder's words as bytes) of a whole, undamaged file; else ValueError."""
    try:
        data = bytes(memoryview(data))  # bytes, bytearray, ...; not a str, None or an int
    except TypeError:
        raise TypeError("'data' must be bytes, the contents of a .pxpp file (e.g. "
                        "open(path, 'rb').read()); got %s" % type(data).__name__) from None
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise ValueError('not a .pxpp file (it does not start with %r)' % MAGIC.decode())
    if len(data) < HEADER_BYTES:
        raise ValueError('truncated .pxpp file: %d bytes, shorter than its header (%d)'
                         % (len(data), HEADER_BYTES))
    (_, version, model, image, h, w, c, count, batch, num_classes, nwords,
     nnames) = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError('.pxpp version %d; this reader knows version %d' % (version, VERSION))
    nlabels = count * np.dtype(_label_dtype(num_classes)).itemsize if num_classes else 0
    expected = _HEADER.size + nlabels + nnames + 4 * nwords + 4
    if len(data) != expected:
        raise ValueError('%s .pxpp file: %d bytes, its header says %d' % (
            'truncated' if len(data) < expected else 'damaged', len(data), expected))
    body, (crc,) = data[:-4], struct.unpack('<I', data[-4:])
    if zlib.crc32(body) != crc:
        raise ValueError('damaged .pxpp file: its CRC-32 does not match')
    at = _HEADER.size
    labels = (np.frombuffer(data, _label_dtype(num_classes), count, at).astype(np.int32)
              if num_classes else None)
    at += nlabels
    names = zlib.decompress(data[at:at + nnames]).decode('utf-8').split('\n') if nnames else None
    at += nnames
    header = Header(version, model, image, (h, w, c), count, batch, num_classes, labels, names)
    return header, data[at:at + 4 * nwords]

