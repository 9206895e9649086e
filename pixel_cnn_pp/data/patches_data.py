"""The small offline data set bundled with the repo: 32x32 patches of four photographs.

4,000 training and 1,000 test patches cut by data/make_patches.py from public-domain and
CC0 photographs that scikit-image ships (patches/SOURCES.md here). Test patches come from a
strip of each photo that no training patch touches. Labels are the photo's index (0..3).
It exists so that training runs with no network; it is far too small to learn images well.
The file is read from the repo: data_dir is ignored.
"""

import os
import zipfile

import numpy as np

from .loader import DataError
from .loader import DataLoader as _BaseLoader

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'patches', 'patches_32x32.npz')


class DataLoader(_BaseLoader):
    """The bundled patches; see loader.py for the interface.

    Example: DataLoader(None, 'train', 16, shuffle=True)
    """

    def _load(self, data_dir, subset):
        key = 'train' if subset == 'train' else 'test'
        try:
            with np.load(PATH, allow_pickle=False) as z:
                images, labels, photos = z[key + 'x'], z[key + 'y'], z['photos']
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f'{PATH}: cannot read the bundled patches ({e}); restore it with '
                            '`git checkout pixel_cnn_pp/data/patches` or rebuild it with '
                            'data/make_patches.py') from e
        return images, labels, len(photos)
