"""Images to files: a batch tiled into one grid, written as PNG (and the batch as .npz).

The one grid writer of the project, used by train.py for its samples every
--save_interval epochs and by sample.py. Files are written to a temporary name
beside the target and renamed, so a reader never sees half a file.

    grid = tile_images(samples)                 # uint8 (N, H, W, C) -> (rows*(H+1)+1, ...)
    save_image_grid('save/cifar_sample0.png', samples)
"""

import math

import numpy as np

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
    if int(columns) != columns or columns < 1:
        raise ValueError("'columns' must be a positive integer, got %r" % (columns,))
    columns = int(columns)
    rows = int(math.ceil(n / columns))
    grid = np.full((rows * (h + border) + border, columns * (w + border) + border, c), fill,
                   np.uint8)
    for k in range(n):
        top = border + (k // columns) * (h + border)
        left = border + (k % columns) * (w + border)
        grid[top:top + h, left:left + w] = images[k]
    return grid


def save_png(path, image):
    """Write one uint8 image (H, W, C) or (H, W) as PNG, atomically."""
    import imageio.v3 as iio  # lazily: only writers of images need it

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("a PNG needs uint8 (H, W) or (H, W, C), got %s %s"
                         % (image.dtype, image.shape))
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    atomic_write(path, lambda tmp: iio.imwrite(tmp, image, extension='.png'))


def save_image_grid(path, images, max_images=100, columns=None):
    """Write the first `max_images` of a batch as one PNG grid (the original shows 100)."""
    images = _check_batch(images)
    save_png(path, tile_images(images[:max_images], columns))


def save_npz(path, **arrays):
    """np.savez(path, **arrays), atomically."""
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def save_completion_grid(path, originals, completions):
    """One grid row per original: the original, then its k completions.

    `completions` holds image i's k = len(completions) / len(originals) completions
    at i*k .. i*k+k-1 (as sample.py --complete draws them).
    """
    originals, completions = _check_batch(originals), _check_batch(completions)
    k = len(completions) // len(originals)
    rows = np.concatenate([originals[:, None], completions.reshape(
        (len(originals), k) + completions.shape[1:])], axis=1)
    save_png(path, tile_images(rows.reshape((-1,) + completions.shape[1:]), columns=k + 1))
