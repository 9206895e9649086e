"""Data sets for PixelCNN++, all behind one DataLoader interface (pixel_cnn_pp/data/loader.py).

    from pixel_cnn_pp.data import get_loader, to_tf_dataset
    train = get_loader('patches', None, 'train', batch_size=16, shuffle=True)

Data sets: 'cifar', 'imagenet', 'mnist', 'folder', 'patches'. Downloads go through
pixel_cnn_pp/data/download.py, the project's one download helper.
"""

from .loader import DATA_SETS, DataError, DataLoader, get_loader, to_tf_dataset

__all__ = ['DATA_SETS', 'DataError', 'DataLoader', 'get_loader', 'to_tf_dataset']
