"""Cuts the bundled offline data set, pixel_cnn_pp/data/patches/patches_32x32.npz, from four
photographs.

The photos are the public-domain / CC0 ones that scikit-image ships (astronaut, chelsea,
coffee, rocket; sources and licences in pixel_cnn_pp/data/patches/SOURCES.md). From each photo:

  - the right-most 20% of its width is reserved for the test set: TEST_PER_PHOTO 32x32
    patches are taken there, on a grid with stride 8;
  - TRAIN_PER_PHOTO training patches are taken, also on a stride-8 grid, from the rest of
    the photo, every one ending left of the reserved strip, so no training patch shares a
    pixel with any test patch.

Nearly flat patches (max - min < MIN_RANGE, such as the astronaut photo's pure black corner)
are left out: they teach nothing and would repeat across the split. Patches are drawn from
the grids with a fixed seed and stored sorted by position (which also helps compression).
The label of a patch is the index of its photo (0..3).

Only needed to rebuild the file; scikit-image is not a requirement of the project:

    pip install scikit-image
    python data/make_patches.py            # writes pixel_cnn_pp/data/patches/patches_32x32.npz
"""

import argparse
import os

import numpy as np

PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket')
PATCH = 32
STRIDE = 8
TEST_FRACTION = 0.2
TRAIN_PER_PHOTO = 1000
TEST_PER_PHOTO = 250
MIN_RANGE = 8
SEED = 0
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'pixel_cnn_pp',
                   'data', 'patches', 'patches_32x32.npz')


def test_strip_start(width):
    """First column of the reserved test strip of a photo `width` pixels wide."""
    return width - max(PATCH, int(round(TEST_FRACTION * width)))


def grid(rows, col_lo, col_hi):
    """Top-left corners (row, col) of the stride-STRIDE grid of patches lying within
    columns [col_lo, col_hi)."""
    return np.array([(r, c) for r in range(0, rows - PATCH + 1, STRIDE)
                     for c in range(col_lo, col_hi - PATCH + 1, STRIDE)], dtype=np.int16)


def cut(photo, corners):
    return np.stack([photo[r:r + PATCH, c:c + PATCH] for r, c in corners])


def make(photos, rng):
    """photos: list of uint8 (H, W, 3) arrays -> dict of the arrays stored in the npz."""
    out = {k: [] for k in ('trainx', 'trainy', 'train_origin', 'testx', 'testy', 'test_origin')}
    for label, photo in enumerate(photos):
        height, width = photo.shape[:2]
        strip = test_strip_start(width)
        for split, lo, hi, count in (('train', 0, strip, TRAIN_PER_PHOTO),
                                     ('test', strip, width, TEST_PER_PHOTO)):
            corners = grid(height, lo, hi)
            patches = cut(photo, corners)
            corners = corners[(patches.max(axis=(1, 2, 3)).astype(int)
                               - patches.min(axis=(1, 2, 3))) >= MIN_RANGE]
            chosen = corners[np.sort(rng.choice(len(corners), count, replace=False))]
            out[split + 'x'].append(cut(photo, chosen))
            out[split + 'y'].append(np.full(count, label, np.uint8))
            out[split + '_origin'].append(chosen)
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    arrays['photos'] = np.array(PHOTOS)
    return arrays


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=OUT, help=f'output file (default {OUT})')
    args = parser.parse_args()
    import skimage.data  # only for rebuilding the file
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    arrays = make(photos, np.random.RandomState(SEED))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'wb') as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: train {arrays['trainx'].shape}, test {arrays['testx'].shape}, "
          f'{os.path.getsize(args.out) / 2**20:.1f} MiB')


if __name__ == '__main__':
    main()
