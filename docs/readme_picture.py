"""The README's picture: two of train.py's sample grids side by side, kept small.

Takes the labelled 4x grids that train.py wrote (<save_dir>/<name>_sample<e>.png),
keeps each one's label and its first --rows rows of images (to stay under about
100 KB; 16 samples of noise-like early images compress poorly), and puts them side
by side with a white gap. Pixels are copied, not resampled.

    python3 docs/readme_picture.py /tmp/runs_patches/patches_sample1.png \
        /tmp/runs_patches/patches_sample3.png docs/patches_epochs_2_and_4.png
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pixel_cnn_pp import images  # noqa: E402


def crop_rows(grid, rows, image_size=32, columns=4, scale=4):
    """The label strip and the first `rows` rows of images of a labelled grid (1-pixel borders)."""
    tiles_height = scale * (columns * (image_size + 1) + 1)  # a square grid of `columns` rows
    strip = grid.shape[0] - tiles_height
    return grid[:strip + scale * (rows * (image_size + 1) + 1)]


def main():
    import imageio.v3 as iio

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('grids', nargs='+', help="train.py's <name>_sample<e>.png files")
    parser.add_argument('output')
    parser.add_argument('--rows', type=int, default=3, help='rows of images kept of each grid')
    parser.add_argument('--gap', type=int, default=16, help='white pixels between the grids')
    args = parser.parse_args()
    parts = [crop_rows(iio.imread(path), args.rows) for path in args.grids]
    height = max(p.shape[0] for p in parts)
    row = []
    for k, part in enumerate(parts):
        padded = np.full((height,) + part.shape[1:], 255, np.uint8)
        padded[:part.shape[0]] = part
        row += [padded] + ([np.full((height, args.gap, 3), 255, np.uint8)]
                           if k < len(parts) - 1 else [])
    images.save_png(args.output, np.concatenate(row, axis=1))
    print('wrote %s (%d x %d, %d bytes)' % (args.output, row[0].shape[0],
                                            sum(p.shape[1] for p in row),
                                            os.path.getsize(args.output)))


if __name__ == '__main__':
    main()
