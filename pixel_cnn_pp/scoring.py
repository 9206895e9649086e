"""Score a user's images: bits/dim per image (CSV) and where the bits go (a heatmap grid).

The likelihood of PixelCNN++ is exact, so an image's NLL is a code length: the
bits the model needs for it (pixel_cnn_pp.compression writes that code). The
number people compare across data sets (a CIFAR-10 model that gives SVHN a
higher likelihood than CIFAR-10 itself) is bits/dim; the map of bits per pixel
shows which regions the model finds surprising. sample.py --score runs
`score_files`.

    nats = score_files(model, ['photos/'], 'runs/scores')   # scores.csv, scores.png; prints
    grid, (lo, hi) = heatmap_grid(images, bits_per_pixel)    # uint8 RGB, one colour scale
    nats = nll_on_devices(model, images, devices=['/gpu:0', '/gpu:1'])   # model.nll, spread
"""

import csv
import io
import math
import threading

import numpy as np

from pixel_cnn_pp import distribute, image_input, images as image_files
from pixel_cnn_pp.files import land_together
from pixel_cnn_pp.losses import bits_per_dim

MAX_GRID_IMAGES = 100  # as the sample grids: the first 100 images
# The colour scale, low to high: dark blue-black, violet, red, orange, pale yellow,
# evenly spaced and linearly interpolated (chosen here for a monotone brightness).
_ANCHORS = np.array([[0, 0, 8], [70, 20, 120], [170, 40, 110], [235, 100, 40], [250, 190, 40],
                     [252, 250, 200]], np.float64)


def colour_scale(t):
    """float t in [0, 1] (any shape) -> uint8 RGB (..., 3) on the heatmap's colour scale."""
    t = np.clip(np.asarray(t, np.float64), 0.0, 1.0) * (len(_ANCHORS) - 1)
    k = np.minimum(t.astype(int), len(_ANCHORS) - 2)
    f = (t - k)[..., None]
    return np.rint(_ANCHORS[k] * (1 - f) + _ANCHORS[k + 1] * f).astype(np.uint8)


def _enlarge(images, factor):
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


def heatmap_grid(images, bits, columns=None):
    """Each image beside a heatmap of its bits per pixel, on one colour scale, with a colour bar.

    Args:
      images: uint8 (N, H, W, C), C 1 or 3.
      bits: (N, H, W) bits per pixel (all its channels), e.g. model.nll(per_pixel=True) / ln 2.
      columns: image pairs per grid row (default ceil(sqrt(N))).
    Returns:
      (grid, (lo, hi)): uint8 RGB; the pairs tiled as images.tile_images tiles (pixels
      enlarged `grid_scale(H, W)` times, 1-pixel white borders), then a colour bar
      from lo (left) to hi (right), the smallest and largest bits per pixel in the grid,
      with its scale written under it (lo, the middle, hi: "bits per pixel").
    """
    images = np.asarray(images)
    bits = np.asarray(bits, np.float64)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError("'images' must be uint8 (N, H, W, C) with C 1 or 3, got %s %s"
                         % (images.dtype, images.shape))
    if bits.shape != images.shape[:3]:
        raise ValueError("'bits' must be (N, H, W) = %s, got %s" % (images.shape[:3], bits.shape))
    n, h, w, _ = images.shape
    lo, hi = float(bits.min()), float(bits.max())
    heat = colour_scale((bits - lo) / (hi - lo) if hi > lo else np.zeros_like(bits))
    rgb = np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
    factor = grid_scale(h, w)
    pairs = _enlarge(np.stack([rgb, heat], axis=1).reshape(2 * n, h, w, 3), factor)
    columns = int(math.ceil(math.sqrt(n))) if columns is None else int(columns)
    grid = image_files.tile_images(pairs, columns=2 * columns)
    # The colour bar: as tall as a quarter image (at least 4 pixels), the grid's width.
    height, width = max(4, h * factor // 4), grid.shape[1] - 2
    bar = np.full((height + 1, grid.shape[1], 3), 255, np.uint8)
    bar[:height, 1:-1] = colour_scale(np.linspace(0.0, 1.0, width))[None]
    return np.concatenate([grid, bar, _bar_scale(grid.shape[1], lo, hi)]), (lo, hi)


BAR_TEXT_SIZE = 12  # pixels: the font size of the numbers under the colour bar


def _bar_scale(width, lo, hi, size=BAR_TEXT_SIZE, ink=64):
    """uint8 RGB rows (`width` wide) under the colour bar: a tick and the bits per pixel at
    its left end, middle and right end, then the unit, in Pillow's font (images.render_text)."""
    ticks = [(1, lo), (width // 2, (lo + hi) / 2), (width - 2, hi)]
    texts = [image_files.render_text('%.2f' % value, size) for _, value in ticks]
    unit = image_files.render_text('bits per pixel', size)
    tick, line = max(2, size // 4), texts[0].shape[0]
    coverage = np.zeros((tick + 2 * line + 2, width))
    for (x, _), text, align in zip(ticks, texts, (0.0, 0.5, 1.0)):
        coverage[:tick, x] = 255  # a tick under the bar
        left = int(round(min(max(x - align * (text.shape[1] - 1), 0), width - text.shape[1])))
        coverage[tick:tick + line, left:left + text.shape[1]] = np.maximum(
            coverage[tick:tick + line, left:left + text.shape[1]], text[:, :width - left])
    left = max(0, (width - unit.shape[1]) // 2)
    coverage[tick + line + 1:tick + 2 * line + 1, left:left + unit.shape[1]] = \
        unit[:, :width - left]
    rows = np.rint(255 + (ink - 255) * coverage / 255.0).astype(np.uint8)
    return np.repeat(rows[..., None], 3, axis=-1)


def grid_scale(height, width):
    """How many times heatmap_grid enlarges pixels: images at least 64 pixels on a side."""
    return max(1, 64 // max(height, width))


def _csv_writer(names, nats, image_shape):
    """write(path): the CSV of scores (file, bits/dim, nats; one row per image)."""
    text = io.StringIO()
    table = csv.writer(text, lineterminator='\n')
    table.writerow(['file', 'bits_per_dim', 'nats'])
    for name, value, bpd in zip(names, nats, bits_per_dim(nats, image_shape)):
        table.writerow([name, '%.6f' % bpd, '%.4f' % value])

    def write(tmp):
        with open(tmp, 'w', newline='') as f:
            f.write(text.getvalue())
    return write


def nll_on_devices(model, images, labels=None, devices=None, per_pixel=False, batch_size=64,
                   progress=None):
    """model.nll with the images split over `devices`, which compute their parts at once.

    Each device takes a near-equal run of the images (at most one device per image)
    and evaluates it in batches of `batch_size`; an image's NLL does not depend on
    the others, so the numbers are model.nll's (up to float rounding of another
    batch). devices None: model.nll as it is. `progress(images_done, total)` counts
    every device's images.
    """
    images, labels = model.check_inputs(images, labels)
    if devices is None or len(images) == 0:
        return model.nll(images, labels, per_pixel=per_pixel, batch_size=batch_size,
                         progress=progress)
    done, lock = {}, threading.Lock()

    def part(k, index, device):
        def report(count, _):
            with lock:
                done[k] = count
                progress(sum(done.values()), len(images))
        return model.nll(images[index], None if labels is None else labels[index],
                         per_pixel=per_pixel, batch_size=batch_size,
                         progress=report if progress is not None else None)

    return distribute.split_over_devices(len(images), devices, part)


def score_files(model, paths, output, labels=None, batch_size=64, report=print, progress=None,
                devices=None):
    """Score images from files: <output>.csv and <output>.png (the heatmap grid), together.

    Args:
      model: a PixelCNN with a likelihood (not -ed).
      paths: image files, folders or .npz files (image_input.read_images), of the
        model's image shape.
      output: path prefix of the two files.
      labels: for a class-conditional model, one class per image (ints or digit strings).
      batch_size, progress: as model.nll.
      devices: device names to spread the images over (`nll_on_devices`), or None.
      report: called with each line of the summary (mean, min and max bits/dim, the
        colour scale's range, the files written).
    Returns:
      float64 (N,): each image's NLL in nats, as in the CSV.
    """
    images, names = image_input.read_images(paths, model.image_shape, '--score')
    labels = image_input.read_labels(labels, len(images), model.num_classes)
    per_pixel = nll_on_devices(model, images, labels, devices, per_pixel=True,
                               batch_size=batch_size, progress=progress)  # (N, H, W) nats
    nats = per_pixel.sum(axis=(1, 2))
    bpd = bits_per_dim(nats, model.image_shape)
    shown = slice(0, MAX_GRID_IMAGES)
    grid, (lo, hi) = heatmap_grid(images[shown], per_pixel[shown] / np.log(2.0))
    land_together([(output + '.csv', _csv_writer(names, nats, model.image_shape)),
                   (output + '.png', image_files.png_writer(grid))])  # both, or neither
    for line in [
            'scored %d images: bits/dim mean %.4f, min %.4f (%s), max %.4f (%s)'
            % (len(nats), bpd.mean(), bpd.min(), names[int(bpd.argmin())], bpd.max(),
               names[int(bpd.argmax())]),
            'heatmap colour scale (the bar under the grid, left to right): %.2f to %.2f bits per '
            'pixel%s' % (lo, hi, '' if len(nats) <= MAX_GRID_IMAGES else
                         ' (the first %d images)' % MAX_GRID_IMAGES),
            'wrote %s.csv (file, bits_per_dim, nats) and %s.png' % (output, output)]:
        report(line)
    return nats
