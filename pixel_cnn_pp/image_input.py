"""Images from files, for completion (and scoring): PNG or JPEG files, folders, .npz.

One reader for every command that takes a user's own images (sample.py
--complete and --score, compress.py --compress). A path is an image file, a folder
(its .png/.jpg/.jpeg files, by name; not its subfolders) or an .npz of uint8 images
(its `images` array, else `samples` as sample.py writes them, else its only array).
Every image comes back with a name for messages: the file, or `file.npz[i]`. An
image is read exactly as stored or refused by name: 16-bit PNGs, PNGs with an
alpha channel or a transparent colour, and anything but 1 or 3 channels of 8 bits
(a palette PNG is read as the RGB colours it shows).

    images, names = read_images(['photos/', 'extra.png'])   # uint8 (N, H, W, C)
    images, names = read_images('faces.npz', model.image_shape, '--complete')
    labels = read_labels(['3', '5'], len(images), model.num_classes)   # None if unconditional
"""

import os
import struct

import numpy as np

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')


def read_images(paths, shape=None, what='images'):
    """uint8 (N, H, W, C) images and their N names, from files, folders and .npz files.

    With `shape` (H, W, C), every image must have it (a model's image_shape);
    `what` (e.g. the flag that named the paths) starts the messages.
    Raises ValueError naming the path: missing, unreadable, not uint8, an empty
    folder, images of different shapes or not of `shape`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    images, names = [], []
    for path in paths:
        path = os.path.expanduser(os.fspath(path))
        if os.path.isdir(path):
            files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES))
            if not files:
                raise ValueError('%s: a folder without .png/.jpg/.jpeg images' % path)
            for f in files:
                images.append(read_image_file(os.path.join(path, f)))
                names.append(os.path.join(path, f))
        elif not os.path.exists(path):
            raise ValueError('%s: no such file or folder' % path)
        elif path.lower().endswith('.npz'):
            batch = _read_npz(path)
            images.extend(batch)
            names.extend('%s[%d]' % (path, i) for i in range(len(batch)))
        else:
            images.append(read_image_file(path))
            names.append(path)
    if not images:
        raise ValueError('no images given')
    if shape is not None:
        check_image_shape(images, names, shape, what)
    first = images[0].shape
    for image, name in zip(images, names):
        if image.shape != first:
            raise ValueError('%s is %s but %s is %s: all images must have one shape'
                             % (name, _shape(image.shape), names[0], _shape(first)))
    return np.stack(images), names


def check_image_shape(images, names, shape, what='images'):
    """Raise ValueError naming the first image whose (H, W, C) is not the model's `shape`."""
    for image, name in zip(images, names):
        if tuple(image.shape) != tuple(shape):
            raise ValueError('%s: %s is %s, but the model takes %s images'
                             % (what, name, _shape(image.shape), _shape(shape)))


def read_labels(labels, count, num_classes, what='--labels'):
    """int32 (count,) classes of a user's images for a model of num_classes, or None if it has 0.

    `labels`: ints or digit strings (a flag's comma-separated list), one per image.
    Raises ValueError starting with `what`: labels for an unconditional model, none
    for a conditional one, not integers, not one per image, out of range.
    """
    if not num_classes:
        if labels:
            raise ValueError('%s given, but the model is unconditional' % what)
        return None
    if not labels:
        raise ValueError('the model is class-conditional (%d classes): give the class of each '
                         'of the %d images with %s' % (num_classes, count, what))
    text = ','.join(map(str, labels))
    try:
        labels = np.array([int(v) for v in labels], np.int64)
    except ValueError:
        raise ValueError('%s must be integers, comma-separated; got %s' % (what, text)) from None
    if len(labels) != count or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError('%s must give %d classes in 0..%d, one per image; got %s'
                         % (what, count, num_classes - 1, text))
    return labels.astype(np.int32)


def _shape(shape):
    h, w, c = shape
    return '%dx%dx%d (%s)' % (h, w, c, {1: 'one channel', 3: 'RGB'}.get(c, '%d channels' % c))


def read_image_file(path, drop_alpha=False):
    """One image file (PNG, JPEG) as uint8 (H, W, C), C 1 (grey) or 3 (RGB).

    The one image-file reader of the project. By default the image is read exactly as
    stored or refused (`_png_refusal`: 16 bits, alpha, a transparent colour); with
    drop_alpha (a data set's images: the model sees grey or RGB) an alpha channel is
    dropped instead. Raises ValueError naming the path: unreadable, not 8-bit, not an
    image of 1 or 3 channels (2 or 4 with drop_alpha).
    """
    import imageio.v3 as iio  # lazily: only readers of image files need it

    refusal = None if drop_alpha else _png_refusal(path)
    if refusal:
        raise ValueError('%s: %s' % (path, refusal))
    try:
        image = np.asarray(iio.imread(path))
    except Exception as e:  # imageio's plugins raise many types for a damaged file
        raise ValueError('%s: not a readable image (%s); a PNG or JPEG file is expected'
                         % (path, str(e).splitlines()[0] if str(e) else type(e).__name__)) \
            from None
    if image.dtype != np.uint8:
        raise ValueError('%s: %s pixels; 8-bit images are expected' % (path, image.dtype))
    if image.ndim == 2:
        image = image[..., None]
    if drop_alpha and image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., :-1]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError('%s: shape %s is not a grey or RGB image (1 or 3 channels)'
                         % (path, image.shape))
    return image


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_COLOURS = {0: 'grey', 2: 'RGB', 3: 'palette', 4: 'grey-and-alpha', 6: 'RGBA'}


def _png_refusal(path):
    """Why a PNG cannot be read exactly as an opaque 8-bit grey or RGB image, or None.

    Its header says so (the image reader would not: it reduces 16-bit RGB to 8 bits
    and drops a palette's transparency without a word): 16 bits per channel, an
    alpha channel, or a transparent colour (a tRNS chunk). None for other files.
    """
    try:
        with open(path, 'rb') as f:
            if f.read(8) != _PNG_SIGNATURE:
                return None
            depth, colour, transparent = None, None, False
            while True:  # the chunks before the image data: length, type, data, CRC
                head = f.read(8)
                if len(head) < 8:
                    break
                length, kind = struct.unpack('>I4s', head)
                if kind in (b'IDAT', b'IEND'):
                    break
                if kind == b'IHDR':
                    depth, colour = struct.unpack('>8xBB', f.read(length)[:10])
                else:
                    f.seek(length, 1)
                transparent |= kind == b'tRNS'
                f.seek(4, 1)
    except (OSError, struct.error):
        return None  # damaged: the image reader says what is wrong with it
    if depth != 16 and colour not in (4, 6) and not transparent:
        return None
    what = ' (with an alpha channel)' if colour in (4, 6) else (
        ' with a transparent colour (tRNS)' if transparent else '')
    return ('%s %d-bit %s PNG%s; the model codes opaque 8-bit grey or RGB images, and reading '
            'this one as one would change it: convert it yourself if that is what you want'
            % ('an' if depth == 8 else 'a', depth,
               _PNG_COLOURS.get(colour, 'colour type %s' % colour), what))


def _read_npz(path):
    """The uint8 images of an .npz file, as (N, H, W, C)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            keys = list(arrays.keys())
            key = next((k for k in ('images', 'samples') if k in keys),
                       keys[0] if len(keys) == 1 else None)
            batch = None if key is None else arrays[key]
    except Exception as e:  # not a zip, a damaged one, a pickled array, ...
        raise ValueError('%s: not a readable .npz of images (%s)' % (path, e)) from None
    if key is None:
        raise ValueError('%s: holds %s; name the images array `images`' % (path, keys))
    if batch.dtype != np.uint8:
        raise ValueError('%s: %r is %s; uint8 images (N, H, W, C) are expected'
                         % (path, key, batch.dtype))
    if batch.ndim == 3:
        batch = batch[..., None]
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3) or not len(batch):
        raise ValueError('%s: %r has shape %s; uint8 images (N, H, W, C) with C 1 or 3 are '
                         'expected' % (path, key, batch.shape))
    return list(batch)
