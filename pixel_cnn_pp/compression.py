"""Lossless image compression with a PixelCNN++: the likelihood as a file size.

An autoregressive model gives every pixel a distribution given the pixels before
it; an entropy coder turns those distributions into a code whose length is the
summed -log2 p, the model's NLL in bits (Shannon; the PixelRNN paper names this
use first). Here the coder is constriction's range coder
(https://bamler-lab.github.io/constriction/), fed one 256-way categorical
distribution per channel:

- Each pixel is R, then G given R, then B given R and G, as the discretized
  logistic mixture defines them (mixture.conditional_levels, from the mixture's
  parameters as mixture.unpack gives them): p(R) p(G|R) p(B|R,G) is the
  mixture's probability of the pixel (mixture.log_prob).
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
  sampler's with a `choose` hook (_CodingHook): encoding feeds it the image's own
  pixels (teacher forcing), decoding the pixels it decodes, one pixel at a time; the two
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

from pixel_cnn_pp import mixture
from pixel_cnn_pp.cached_sampler import CachedSampler
from pixel_cnn_pp.config import TRAINING_ONLY, check_integer

MAGIC = b'PXPP'
VERSION = 1
PRECISION = 24  # constriction's range coder: probabilities in units of 2**-24
TOTAL = 1 << PRECISION
LEVELS = mixture.LEVELS
DEFAULT_BATCH = 16  # images coded together (one compiled loop run); stored in the file

# magic, version, model digest, image digest, H, W, C, images, batch, classes,
# range coder words, names bytes.
_HEADER = struct.Struct('<4sB32s16sHHHIIHII')
HEADER_BYTES = _HEADER.size + 4  # with the CRC-32 at the end

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


def code_pixel(mix, code):
    """One pixel of n images coded channel by channel (mixture.conditional_levels).

    Each channel's 256 probabilities given the channels before are quantised by
    `frequencies` and handed to `code`.

    Args:
      mix: a mixture.Mixture of NumPy float32 arrays for the n images' pixel.
      code: code(channel, frequencies (n, 256)) -> the channel's levels (n,): the
        encoder encodes the image's levels and returns them, the decoder decodes.
    Returns:
      int (n, C): the pixel's levels.
    """
    return mixture.conditional_levels(mix, lambda c, p: code(c, frequencies(p)))


# ------------------------------------------------------------------ the coder


def _constriction():
    import constriction  # lazily: only compression needs it

    return constriction


class _Choose:
    """One batch's coder, which _CodingHook calls at each pixel; progress after every image row."""

    def __init__(self, code, width, progress, rows_before, total_rows):
        self.code, self.width, self.progress = code, width, progress
        self.rows_before, self.total_rows = rows_before, total_rows
        self.error = None

    def __call__(self, pixel, mix):
        if self.error is not None:  # the rest of the run only has to end
            return np.zeros(mix.means.shape[:2], np.float32)
        try:
            levels = code_pixel(mix, lambda c, f: self.code(int(pixel), c, f))
        except Exception as e:  # noqa: BLE001 - raised again, outside TensorFlow's loop
            self.error = self.error or e
            return np.zeros(mix.means.shape[:2], np.float32)
        if self.progress is not None and (int(pixel) + 1) % self.width == 0:
            self.progress(self.rows_before + (int(pixel) + 1) // self.width, self.total_rows)
        return levels.astype(np.float32)


class _CodingHook:
    """The coding sampler's `choose` hook (see CachedSampler): the mixture out, levels in.

    At each pixel the mixture there, unpacked in the compiled loop, goes out to NumPy
    float32 (through tf.numpy_function, so this loop is never XLA-compiled) to the current
    batch's _Choose, and its levels come back in as the image. An encoder returns the
    image's own pixels (the run is then teacher-forced), a decoder the pixels it decodes;
    both run this one compiled loop, so both see the same floats.
    """

    def __init__(self, nr_mix, n, channels):
        self.nr_mix, self.n, self.channels = nr_mix, n, channels
        self.choose = None  # the current batch's _Choose

    def __call__(self, pixel, out):
        mix = mixture.unpack(out, self.nr_mix, self.channels)
        params = [p for p in mix if p is not None]  # no coefficients for one channel
        level = tf.numpy_function(self._to_numpy, [pixel] + params, tf.float32, stateful=True)
        return tf.ensure_shape(level, [self.n, self.channels])

    def _to_numpy(self, pixel, *params):
        return self.choose(pixel, mixture.Mixture._make(params + (None,) * (4 - len(params))))


def _sampler(model, n):
    """(the model's coding sampler for n images, its hook), kept on the model: built once."""
    def build():
        hook = _CodingHook(model.nr_logistic_mix, n, model.image_shape[-1])
        return CachedSampler(model, n, choose=hook), hook
    return model.compiled(('coding_sampler', n), build)


def _run(model, count, batch, labels, code, progress):
    """Every batch through the coding loop, in order; returns the images chosen (N, H, W, C)."""
    height, width, _ = model.image_shape
    out = []
    total_rows = -(-count // batch) * height
    for k, start in enumerate(range(0, count, batch)):
        n = min(batch, count - start)
        choose = _Choose(lambda pixel, c, f, start=start: code(start, pixel, c, f), width,
                         progress, k * height, total_rows)
        sampler, hook = _sampler(model, n)
        hook.choose = choose
        try:
            images = sampler.run(labels=None if labels is None else labels[start:start + n])
        except tf.errors.OpError as e:
            raise choose.error or e
        finally:
            hook.choose = None
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
    model.require_likelihood()
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
    model.require_likelihood()
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
    return check_integer('batch', batch)


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

