"""Lossless image compression with a PixelCNN++: the likelihood as a file size.

An autoregressive model gives every pixel a distribution given the pixels before
it; an entropy coder turns those distributions into a code whose length is the
summed -log2 p, the model's NLL in bits (Shannon; the PixelRNN paper names this
use first). Here the coder is constriction's range coder
(https://bamler-lab.github.io/constriction/), and the distributions are coding.py's:
each pixel is R, then G given R, then B given R and G, as the discretized logistic
mixture defines them, with the mixture's parameters rounded to grids and the
frequencies computed in integers, so that every machine that computes the
parameters within the file's margin computes the same frequencies (coding.py says
what is guaranteed, and what it costs).

- Encoding takes every pixel's mixture from one forward pass of the whole images
  (the network sees only the pixels before each one: teacher forcing is the forward
  pass), and codes each channel's level as its interval of 2**24, vectorised; while
  TensorFlow computes one chunk of images, threads (one a core) code the chunk before.
- Decoding runs the cached sampler's compiled loop with a `choose` hook
  (_CodingHook): at each pixel the mixture there goes out to NumPy, the decoder
  decodes the pixel's mode and levels from whole frequency tables, and the levels
  go back in as the image. A decoder that finds a parameter too close to a rounding
  edge (coding.DoubtError), a code that does not decode, or decoded images whose
  digest differs from the file's, is refused with a ValueError: never a wrong image.

The .pxpp file (version 2): a fixed header (magic, version, a SHA-256 of the model's
config and weights, an image digest, the shape, the count, the coding batch, the
number of classes, section lengths, the margin, the precision the parameters were
computed in, the frequencies of the three pixel modes), the labels of a
class-conditional model (one byte each, two above 256 classes), optional file names
(zlib), the range coder's words, and a CRC-32 of everything before it. A file made
with another model or precision, a version 1 file (whose codes decode only on the
machine that wrote them), a damaged or truncated file, is refused with a ValueError
saying which.

    data = compress(model, images)             # bytes
    same = decompress(model, data)             # uint8, equal to images bit for bit
"""

import collections
import concurrent.futures
import hashlib
import json
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import coding, mixture
from pixel_cnn_pp.cached_sampler import CachedSampler
from pixel_cnn_pp.config import TRAINING_ONLY, check_integer

MAGIC = b'PXPP'
VERSION = 2
LEVELS = mixture.LEVELS
DEFAULT_BATCH = 16  # images coded together (one compiled loop run); stored in the file
ENCODE_CHUNK = 16  # images in one forward pass of the encoder (speed only)
ENCODE_SLICE = 8192  # pixels a coding thread takes at once (speed only)
PRECISIONS = ('float32',)  # what a file's parameters may be computed in (by its code)

# magic, version, model digest, image digest, H, W, C, images, batch, classes,
# range coder words, names bytes, margin (2**-k: k), precision, the modes' frequencies.
_HEADER = struct.Struct('<4sB32s16sHHHIIHIIBB3I')
HEADER_BYTES = _HEADER.size + 4  # with the CRC-32 at the end
_VERSION_AT = len(MAGIC)

Header = collections.namedtuple('Header', 'version model_digest image_digest image_shape count '
                                'batch num_classes labels names margin precision modes')


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


def _check_precision(model):
    if model.nr_logistic_mix > coding.MAX_COMPONENTS:
        raise ValueError('the codec takes models of at most %d mixture components; this one '
                         'has nr_logistic_mix=%d' % (coding.MAX_COMPONENTS,
                                                     model.nr_logistic_mix))
    if model.precision not in PRECISIONS:
        raise ValueError('the codec computes the mixtures in float32 (so that another machine '
                         'computes them alike); this model computes in %s: load it with '
                         "precision='float32'" % model.precision)


# ------------------------------------------------------------------ the coder


def _constriction():
    import constriction  # lazily: only compression needs it

    return constriction


def _forward(model, with_nll):
    """The model's forward pass of whole images, compiled once: the network's output, and
    with_nll each image's NLL in nats from it (model.nll's log-probabilities, summed)."""
    def forward(x, h):
        out = model.forward(x, h)
        if not with_nll:
            return out, tf.zeros([tf.shape(x)[0]], tf.float64)
        log_prob = model.log_prob_of_output(out, x)
        return out, -tf.reduce_sum(tf.cast(log_prob, tf.float64), axis=[1, 2])

    return model.compiled(('coding_forward', with_nll), lambda: tf.function(
        forward, reduce_retracing=True, autograph=False))


def _mixtures(model, images, labels, with_nll):
    """The images' mixtures from one forward pass (an image's mixtures do not depend on
    the others': any chunk of images will do), NumPy, one row a pixel; and with_nll each
    image's NLL in nats (else zeros)."""
    h = None if labels is None else model.one_hot(labels)
    out, nats = _forward(model, with_nll)(model.scale_images(images), h)
    mix = mixture.unpack(out, model.nr_logistic_mix, model.image_shape[-1])
    return mixture.Mixture(*(None if a is None else a.numpy().reshape(
        (-1,) + tuple(a.shape[3:])) for a in mix)), nats.numpy()


def _coding_threads():
    """Threads that code at once: one a core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _encode_all(model, images, labels, margin, progress, with_nll=False):
    """Every image's modes (n, H*W) and intervals (n, H*W, C, 2, 2), int32, and with_nll
    its NLL in nats (n,), float64 (else zeros).

    The forward pass runs ENCODE_CHUNK images at a time (on TensorFlow's threads) while a
    pool of threads, one a core, codes the chunk before it in slices of ENCODE_SLICE
    pixels (NumPy lets go of the interpreter lock in its loops); a chunk's codes are
    collected before the chunk after next is computed, so at most two chunks' mixtures
    are held. The integers are coding.encode's of each pixel, whatever the slicing.
    """
    count, (height, width, channels) = len(images), model.image_shape
    pixels = height * width
    per_slice = max(1, ENCODE_SLICE // pixels)
    mode = np.empty((count, pixels), np.int32)
    intervals = np.empty((count, pixels, channels, 2, 2), np.int32)
    nats = np.empty(count, np.float64)

    def collect(tasks):
        for start, stop, task in tasks:
            m, i = task.result()
            mode[start:stop] = m.reshape(stop - start, pixels)
            intervals[start:stop] = i.reshape(intervals[start:stop].shape)
        if progress is not None and tasks:
            progress(tasks[-1][1] * height // count, height)

    with concurrent.futures.ThreadPoolExecutor(_coding_threads()) as pool:
        pending = []
        for start in range(0, count, ENCODE_CHUNK):
            stop = min(start + ENCODE_CHUNK, count)
            params, nats[start:stop] = _mixtures(
                model, images[start:stop], None if labels is None else labels[start:stop],
                with_nll)
            levels = images[start:stop].reshape(-1, channels)
            if len(pending) == 2:
                collect(pending.pop(0))
            tasks = []
            for a in range(start, stop, per_slice):
                b = min(a + per_slice, stop)
                rows = slice((a - start) * pixels, (b - start) * pixels)
                sliced = mixture.Mixture(*(None if p is None else p[rows] for p in params))
                tasks.append((a, b, pool.submit(coding.encode, sliced, levels[rows], margin)))
            pending.append(tasks)
        for tasks in pending:
            collect(tasks)
    return mode, intervals, nats


def _stream(mode, intervals, mode_freq):
    """One batch's symbols and constriction weights (3 each) in the decoder's order: for
    each pixel, the n images' modes, then for each channel their groups, then their
    places in the group."""
    n, pixels, channels = intervals.shape[:3]
    weights = np.empty((pixels, 1 + 2 * channels, n, 3), np.int64)  # symbols, in order
    weights[:, 0] = mode_freq - 1
    steps = coding.interval_weights(intervals[..., 0], intervals[..., 1])  # (n, HW, C, 2, 3)
    weights[:, 1:] = steps.reshape(n, pixels, 2 * channels, 3).transpose(1, 2, 0, 3)
    symbols = np.ones((pixels, 1 + 2 * channels, n), np.int32)
    symbols[:, 0] = mode.T
    return symbols.reshape(-1), weights.reshape(-1, 3).astype(np.float32)  # exact: < 2**24


class _Decoder:
    """One batch's decoder, which _CodingHook calls at each pixel: the pixel's modes, then
    its levels channel by channel from coding.py's tables; progress after every row."""

    def __init__(self, decoder, header, width, progress, rows_before, total_rows):
        self.decoder, self.header, self.width, self.progress = decoder, header, width, progress
        self.rows_before, self.total_rows = rows_before, total_rows
        self.family = _constriction().stream.model.Categorical(perfect=False)
        self.mode_weights = None  # constriction's weights of the modes, for n pixels
        self.error = None

    def __call__(self, pixel, mix):
        n = len(mix.logits)
        if self.error is not None:  # the rest of the run only has to end
            return np.zeros((n, mix.means.shape[1]), np.float32)
        try:
            levels = self._pixel(int(pixel), mix)
        except Exception as e:  # noqa: BLE001 - raised again, outside TensorFlow's loop
            self.error = self.error or e
            return np.zeros((n, mix.means.shape[1]), np.float32)
        if self.progress is not None and (int(pixel) + 1) % self.width == 0:
            self.progress(self.rows_before + (int(pixel) + 1) // self.width, self.total_rows)
        return levels.astype(np.float32)

    def _decode(self, weights):
        try:
            return self.decoder.decode(self.family, np.ascontiguousarray(weights, np.float32))
        except AssertionError:  # constriction's: the code does not fit these frequencies
            raise ValueError('the code does not decode with this model\'s frequencies: the '
                             'file is damaged, or was coded from other floats') from None

    def _pixel(self, pixel, mix):
        n = len(mix.logits)
        if self.mode_weights is None or len(self.mode_weights) != n:
            self.mode_weights = np.broadcast_to(np.asarray(self.header.modes, np.float32) - 1,
                                                (n, 3)).copy()
        mode = self._decode(self.mode_weights)

        def code(c, channel):
            group = self._decode(coding.table_weights(channel.group_table())) - 1
            if (group < 0).any() or (group >= LEVELS // coding.GROUP).any():
                raise ValueError('the code decodes to no level: the file is damaged')
            place = self._decode(coding.table_weights(channel.place_table(group))) - 1
            if (place < 0).any() or (place >= coding.GROUP).any():
                raise ValueError('the code decodes to no level: the file is damaged')
            return coding.GROUP * group + place

        levels, doubt = coding.code_pixels(mix, mode, self.header.margin, code)
        if (doubt < coding.ALARM).any():
            row, column = divmod(pixel, self.width)
            raise coding.DoubtError(
                'at row %d, column %d this machine computes a mixture parameter within %g of '
                'the middle between two grid points, closer than the file\'s margin (%g) '
                'allows: its floats differ from the encoder\'s by more than the file was '
                'made for; decode it where it was coded'
                % (row, column, coding.ALARM * self.header.margin, self.header.margin))
        return levels


class _CodingHook:
    """The coding sampler's `choose` hook (see CachedSampler): the mixture out, levels in.

    At each pixel the mixture there, unpacked in the compiled loop, goes out to NumPy
    float32 (through tf.numpy_function, so this loop is never XLA-compiled) to the current
    batch's _Decoder, and the levels it decodes come back in as the image.
    """

    def __init__(self, nr_mix, n, channels):
        self.nr_mix, self.n, self.channels = nr_mix, n, channels
        self.choose = None  # the current batch's _Decoder

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


def compress(model, images, labels=None, names=None, batch=DEFAULT_BATCH, progress=None,
             margin=None, return_nll=False):
    """Images to bytes, losslessly, in about the model's NLL in bits.

    Args:
      model: a PixelCNN in float32 (not an energy-distance one: it has no likelihood).
      images: uint8 (N, H, W, C) of the model's image shape.
      labels: int (N,) for a class-conditional model (stored in the file), else None.
      names: optional N strings (e.g. file names) stored in the file.
      batch: images coded together (speed only; the decoder uses the same batches).
      progress: optional callable(rows_done, total_rows).
      margin: how far (relative) another machine's mixture parameters may be from this
        one's for the file to decode there, a power of two (coding.py); default
        coding.default_margin(model.config.nr_resnet).
      return_nll: also return each image's NLL in nats (N,), float64, from the same
        forward pass (what model.nll gives, without a pass of its own).
    Returns:
      bytes, the .pxpp file: HEADER_BYTES plus labels, names and the code; with
      return_nll, (bytes, nats).

    Example:
        data = compress(model, images)
        assert (decompress(model, data) == images).all()
    """
    model.require_likelihood()
    _check_precision(model)
    images, labels = model.check_inputs(images, labels)
    count = len(images)
    batch = _check_batch(batch)
    margin = coding.check_margin(coding.default_margin(model.config.nr_resnet)
                                 if margin is None else margin)
    if names is not None and len(names) != count:
        raise ValueError("'names' must hold one name per image (%d), got %d"
                         % (count, len(names)))
    mode, intervals, nats = _encode_all(model, images, labels, margin, progress, return_nll)
    modes = coding.mode_frequencies(mode)
    constriction = _constriction()
    family = constriction.stream.model.Categorical(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    for start in range(0, count, batch):  # the decoder's batches, in its order
        symbols, weights = _stream(mode[start:start + batch], intervals[start:start + batch],
                                   modes)
        encoder.encode(symbols, family, weights)
    words = encoder.get_compressed().astype('<u4').tobytes()
    data = _pack(model, images, labels, names, batch, words, margin, modes)
    return (data, nats) if return_nll else data


def decompress(model, data, progress=None):
    """The images of a .pxpp file (bytes), bit for bit; the model must be the one that wrote it.

    Raises ValueError for anything but a whole .pxpp file of this model: not one,
    another version, damaged (CRC), truncated, made with another model (digest) or
    precision, or one that this machine cannot decode exactly (coding.DoubtError, a code
    that does not decode, images whose digest differs from the file's); TypeError if
    `data` is not bytes.
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
    if model.precision != header.precision:
        raise ValueError('this .pxpp file was coded from mixtures computed in %s; this model '
                         'computes in %s: load it with precision=%r'
                         % (header.precision, model.precision, header.precision))
    model.require_likelihood()
    _check_precision(model)
    decoder = _constriction().stream.queue.RangeDecoder(
        np.frombuffer(words, '<u4').astype(np.uint32))
    height, width, _ = model.image_shape
    out = []
    total_rows = -(-header.count // header.batch) * height
    for k, start in enumerate(range(0, header.count, header.batch)):
        n = min(header.batch, header.count - start)
        sampler, hook = _sampler(model, n)
        hook.choose = _Decoder(decoder, header, width, progress, k * height, total_rows)
        try:
            out.append(sampler.run(labels=None if header.labels is None
                                   else header.labels[start:start + n]))
        except tf.errors.OpError as e:
            raise hook.choose.error or e
        finally:
            error, hook.choose = hook.choose.error, None
        if error is not None:
            raise error
    images = np.concatenate(out)
    if _image_digest(images, header.labels) != header.image_digest:
        raise ValueError('the decoded images do not match the digest in the file: this machine '
                         'computes the model\'s mixtures further from the encoder\'s than the '
                         'file\'s margin, or the file was damaged in a way the checksum missed')
    return images


def _short(model):
    c = model.config
    return '(nr_resnet=%d, nr_filters=%d, nr_logistic_mix=%d)' % (
        c.nr_resnet, c.nr_filters, c.nr_logistic_mix)


def _check_batch(batch):
    return check_integer('batch', batch)


# --------------------------------------------------------------- the file


def _pack(model, images, labels, names, batch, words, margin, modes):
    count, (h, w, c) = len(images), model.image_shape
    num_classes = model.num_classes or 0
    name_bytes = b'' if names is None else zlib.compress('\n'.join(names).encode('utf-8'), 9)
    parts = [_HEADER.pack(MAGIC, VERSION, model_digest(model), _image_digest(images, labels),
                          h, w, c, count, batch, num_classes, len(words) // 4, len(name_bytes),
                          coding.margin_bits(margin), PRECISIONS.index(model.precision),
                          *(int(f) for f in modes))]
    if num_classes:
        parts.append(np.asarray(labels, _label_dtype(num_classes)).tobytes())
    parts += [name_bytes, words]
    body = b''.join(parts)
    return body + struct.pack('<I', zlib.crc32(body))


def _label_dtype(num_classes):
    return '<u1' if num_classes <= 256 else '<u2'


def read_header(data):
    """The Header of a .pxpp file (bytes): shape, count, labels, names, digests, margin.

    Raises ValueError if `data` is not a whole, undamaged .pxpp file of this version.
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
    version = data[_VERSION_AT] if len(data) > _VERSION_AT else None
    if version == 1:
        raise ValueError('a .pxpp file of version 1, whose code decodes only where the same '
                         'kernels compute the same floats: this reader knows version %d; '
                         'decompress it with the version of compress.py that wrote it'
                         % VERSION)
    if version is not None and version != VERSION:
        raise ValueError('.pxpp version %d; this reader knows version %d' % (version, VERSION))
    if len(data) < HEADER_BYTES:
        raise ValueError('truncated .pxpp file: %d bytes, shorter than its header (%d)'
                         % (len(data), HEADER_BYTES))
    (_, version, model, image, h, w, c, count, batch, num_classes, nwords, nnames, margin_bits,
     precision, *modes) = _HEADER.unpack_from(data)
    nlabels = count * np.dtype(_label_dtype(num_classes)).itemsize if num_classes else 0
    expected = _HEADER.size + nlabels + nnames + 4 * nwords + 4
    if len(data) != expected:
        raise ValueError('%s .pxpp file: %d bytes, its header says %d' % (
            'truncated' if len(data) < expected else 'damaged', len(data), expected))
    body, (crc,) = data[:-4], struct.unpack('<I', data[-4:])
    if zlib.crc32(body) != crc:
        raise ValueError('damaged .pxpp file: its CRC-32 does not match')
    if precision >= len(PRECISIONS) or sum(modes) != coding.TOTAL or min(modes) < 1:
        raise ValueError('damaged .pxpp file: its header holds no valid precision and modes')
    at = _HEADER.size
    labels = (np.frombuffer(data, _label_dtype(num_classes), count, at).astype(np.int32)
              if num_classes else None)
    at += nlabels
    names = zlib.decompress(data[at:at + nnames]).decode('utf-8').split('\n') if nnames else None
    at += nnames
    header = Header(version, model, image, (h, w, c), count, batch, num_classes, labels, names,
                    2.0 ** -margin_bits, PRECISIONS[precision], np.array(modes, np.int64))
    return header, data[at:at + 4 * nwords]
