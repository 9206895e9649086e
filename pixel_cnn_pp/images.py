"""Images to files: a batch tiled into one grid, written as PNG (and the batch as .npz).

The one grid writer of the project, used by train.py for its samples every
--save_interval epochs and by sample.py. Files are written to a temporary name
beside the target and renamed, so a reader never sees half a file; `png_writer` and
`npz_writer` give the writing alone, for files.land_together (a grid and its .npz
that land together or not at all).

    grid = tile_images(samples)                 # uint8 (N, H, W, C) -> (rows*(H+1)+1, ...)
    save_image_grid('save/cifar_sample0.png', samples)
    save_image_grid('save/cifar_sample3.png', samples, label=['cifar', 'epoch 3'],
                    scale=viewing_scale(samples.shape[1:3]))   # 4x for 32x32, a label above

A label is drawn in Pillow's own font (`PIL.ImageFont.load_default`: Aileron,
scalable, shipped inside Pillow, which comes with imageio), so labelling needs no font
file of the system's.
"""

import math

import numpy as np

from pixel_cnn_pp.config import check_integer
from pixel_cnn_pp.files import atomic_write


def _check_batch(images):
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError("'images' must be uint8 in 0..255, got dtype %s" % images.dtype)
    if images.ndim == 3:  # (N, H, W): one channel
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError("'images' must have shape (N, H, W, C) with N >= 1 and C 1 or 3, got %s"
                         % (images.shape,))
    return images


def tile_images(images, columns=None, border=1, fill=255):
    """Lay a batch out in a grid, row by row, separated by `border` pixels of `fill`.

    Args:
      images: uint8 (N, H, W, C), C 1 or 3 (or (N, H, W)).
      columns: images per row; default ceil(sqrt(N)), a square-ish grid as the
        original's img_tile.
      border: pixels between images and around the grid.
      fill: value of the border and of empty cells (255: white, as the original).
    Returns:
      uint8 (rows*(H+border)+border, columns*(W+border)+border, C).
    """
    images = _check_batch(images)
    n, h, w, c = images.shape
    if columns is None:
        columns = int(math.ceil(math.sqrt(n)))
    columns = check_integer('columns', columns)
    rows = int(math.ceil(n / columns))
    grid = np.full((rows * (h + border) + border, columns * (w + border) + border, c), fill,
                   np.uint8)
    for k in range(n):
        top = border + (k // columns) * (h + border)
        left = border + (k % columns) * (w + border)
        grid[top:top + h, left:left + w] = images[k]
    return grid


def viewing_scale(image_size, target=128):
    """The whole-number factor that brings an image of `image_size` (H, W) to about `target` px.

    4 for 32x32 (nearest-neighbour: each pixel becomes a 4x4 block), 2 for 64x64, 1 above.
    """
    return max(1, int(target) // max(int(d) for d in image_size))


def upscale(image, factor):
    """Nearest-neighbour: every pixel of a (H, W, ...) array becomes a factor x factor block."""
    factor = check_integer('factor', factor)
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


LABEL_SIZE = 16  # pixels: the labels' font size (about the original grid's 4x-upscaled pixels)


def _font(size):
    from PIL import ImageFont  # lazily: only labels need it

    return ImageFont.load_default(size)


def render_text(text, size=LABEL_SIZE):
    """uint8 (line height, width) coverage of `text` in Pillow's font: 0 none, 255 all ink.

    The height is the font's line height at `size` pixels (ascent and descent), the
    same for every text; the width, the text's advance, rounded up.
    """
    from PIL import Image, ImageDraw

    font = _font(size)
    ascent, descent = font.getmetrics()
    canvas = Image.new('L', (max(1, math.ceil(font.getlength(text))), ascent + descent), 0)
    ImageDraw.Draw(canvas).text((0, 0), text, fill=255, font=font)
    return np.asarray(canvas)


def text_width(text, size=LABEL_SIZE):
    """Pixels `render_text(text, size)` takes across."""
    return render_text(text, size).shape[1]


def label_image(image, parts, size=LABEL_SIZE, fill=255, ink=0, separator='  '):
    """`image` (H, W, C) with a strip of text above it: `parts` joined on lines that fit.

    Parts are put on one line, `separator` between them, while the line fits the
    image's width; then a new line starts. A part wider than the image widens the
    canvas (the image stays at the top left of its region, the rest `fill`). The
    rows below the strip hold `image` unchanged. The text is `ink` on `fill`, its
    edges blended (Pillow's anti-aliasing).
    """
    image = np.asarray(image)
    margin = leading = max(1, size // 4)  # around the text; between lines
    lines = []
    for part in (str(p) for p in parts):
        if lines and 2 * margin + text_width(lines[-1] + separator + part, size) <= \
                image.shape[1]:
            lines[-1] += separator + part
        else:
            lines.append(part)
    rendered = [render_text(line, size) for line in lines]
    height = rendered[0].shape[0] if rendered else 0
    width = max([image.shape[1]] + [2 * margin + r.shape[1] for r in rendered])
    coverage = np.zeros((margin + len(lines) * (height + leading), width), np.float64)
    for k, text in enumerate(rendered):
        top = margin + k * (height + leading)
        coverage[top:top + height, margin:margin + text.shape[1]] = text / 255.0
    strip = np.rint(fill + (ink - fill) * coverage).astype(np.uint8)
    out = np.full((strip.shape[0] + image.shape[0], width) + image.shape[2:], fill, np.uint8)
    out[:strip.shape[0]] = strip.reshape(strip.shape + (1,) * (image.ndim - 2))
    out[strip.shape[0]:, :image.shape[1]] = image
    return out


def save_png(path, image):
    """Write one uint8 image (H, W, C) or (H, W) as PNG, atomically."""
    atomic_write(path, png_writer(image))


def png_writer(image):
    """write(path): `image` (uint8 (H, W, C) or (H, W)) as a PNG file, for files.land_together."""
    import imageio.v3 as iio  # lazily: only writers of images need it

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("a PNG needs uint8 (H, W) or (H, W, C), got %s %s"
                         % (image.dtype, image.shape))
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return lambda path: iio.imwrite(path, image, extension='.png')


def image_grid(images, max_images=100, columns=None, label=None, scale=1):
    """The first `max_images` of a batch as one grid (the original shows 100), as uint8.

    scale: nearest-neighbour factor for the whole grid, borders included
      (`viewing_scale` gives one a person can look at).
    label: strings (data set, epoch, bits/dim, ...) drawn in a strip above the grid.
    """
    images = _check_batch(images)
    grid = upscale(tile_images(images[:max_images], columns), scale)
    return grid if not label else label_image(grid, label)


def save_image_grid(path, images, max_images=100, columns=None, label=None, scale=1):
    """Write `image_grid(images, ...)` as one PNG."""
    save_png(path, image_grid(images, max_images, columns, label, scale))


def save_npz(path, **arrays):
    """np.savez(path, **arrays), atomically."""
    atomic_write(path, npz_writer(**arrays))


def npz_writer(**arrays):
    """write(path): np.savez(path, **arrays), for files.land_together."""
    return lambda path: np.savez(path, **arrays)


def completion_grid(originals, completions, label=None, scale=1):
    """One grid row per original: the original, then its k completions (as image_grid).

    `completions` holds image i's k = len(completions) / len(originals) completions
    at i*k .. i*k+k-1 (as sample.py --complete draws them).
    """
    originals, completions = _check_batch(originals), _check_batch(completions)
    k = len(completions) // len(originals)
    rows = np.concatenate([originals[:, None], completions.reshape(
        (len(originals), k) + completions.shape[1:])], axis=1)
    return image_grid(rows.reshape((-1,) + completions.shape[1:]), len(rows) * (k + 1),
                      columns=k + 1, label=label, scale=scale)
