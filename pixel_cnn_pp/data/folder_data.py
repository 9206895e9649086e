"""Your own images: PNG or JPEG files in a train and a test folder.

Layout under data_dir (class sub-folders are optional; with them you get labels):

    <data_dir>/train/*.png|*.jpg|*.jpeg            or  <data_dir>/train/<class>/*.png ...
    <data_dir>/test/*.png|*.jpg|*.jpeg             or  <data_dir>/test/<class>/*.png ...

Labels are the index of the class folder's name in the sorted list of the train folder's
class names, so train and test agree. All images must share one size, unless `image_size`
is given, in which case each is resized (Lanczos) to it. Grayscale stays one channel; an
alpha channel is dropped. Files are read in sorted order.
"""

import os

import numpy as np

from ..image_input import read_image_file
from .loader import DataError
from .loader import DataLoader as _BaseLoader

EXTENSIONS = ('.png', '.jpg', '.jpeg')


def list_images(folder):
    """Sorted paths of the PNG/JPEG files directly inside `folder` (hidden files skipped)."""
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))
            if f.lower().endswith(EXTENSIONS) and not f.startswith('.')
            and os.path.isfile(os.path.join(folder, f))]


def _read_image(path, size):
    try:
        image = read_image_file(path, drop_alpha=True)
    except ValueError as e:
        raise DataError(str(e)) from None
    if size is not None and image.shape[:2] != tuple(size):
        from PIL import Image  # Pillow comes with imageio
        mode_image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        resized = mode_image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
        image = np.asarray(resized).reshape(size[0], size[1], image.shape[-1])
    return image


def read_images(paths, image_size=None, folder=None):
    """Reads image files into one uint8 array (N, H, W, C).

    Args:
      paths: image files (PNG/JPEG).
      image_size: None (all must share one size), an int, or (height, width) to resize to.
      folder: named in error messages.
    """
    size = None
    if image_size is not None:
        size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f'image_size must be a positive int or (height, width), '
                             f'got {image_size!r}')
        size = (int(size[0]), int(size[1]))
    images = [_read_image(p, size) for p in paths]
    shapes = {}
    for path, image in zip(paths, images):
        shapes.setdefault(image.shape, []).append(path)
    if len(shapes) > 1:
        listing = '; '.join(f'{len(v)} of {"x".join(map(str, k))} (e.g. {os.path.basename(v[0])})'
                            for k, v in sorted(shapes.items(), key=lambda kv: -len(kv[1])))
        advice = ('gray and colour images cannot be mixed: convert them to one kind'
                  if len({k[-1] for k in shapes}) > 1 else
                  'all images must share one size, or pass image_size=(height, width) '
                  'to resize them')
        raise DataError(f'images in {folder or "the folder"} differ in shape: {listing}; {advice}')
    return np.stack(images)


def _class_folders(folder):
    return sorted(d for d in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, d)) and not d.startswith('.'))


class DataLoader(_BaseLoader):
    """Images from <data_dir>/train and <data_dir>/test; see loader.py for the interface.

    Args (beyond the common ones):
      image_size: None (keep; all must match), an int, or (height, width) to resize to.

    Example: DataLoader('~/faces', 'train', 16, shuffle=True, image_size=32)
    """

    def __init__(self, data_dir, subset, batch_size, rng=None, shuffle=False,
                 return_labels=False, image_size=None):
        self.image_size = image_size
        super().__init__(data_dir, subset, batch_size, rng=rng, shuffle=shuffle,
                         return_labels=return_labels)

    def _load(self, data_dir, subset):
        data_dir = os.path.expanduser(data_dir)
        folder = os.path.join(data_dir, subset)
        layout = (f'expected {folder}/*.png (or .jpg/.jpeg), or class sub-folders '
                  f'{folder}/<class>/*.png')
        if not os.path.isdir(folder):
            raise DataError(f'image folder {folder} does not exist; {layout}')
        classes = _class_folders(folder)
        loose = list_images(folder)
        if classes and loose:
            raise DataError(f'{folder} holds both images ({os.path.basename(loose[0])}, ...) and '
                            f'class folders ({classes[0]}, ...); put every image in a class '
                            'folder, or none')
        if not classes:
            if not loose:
                raise DataError(f'no PNG or JPEG images in {folder}; {layout}')
            if self.return_labels:
                raise DataError(f'{folder} has no class folders, so its images have no labels; '
                                f'for class-conditional training put them in {folder}/<class>/')
            return read_images(loose, self.image_size, folder), None, None
        # Class indices come from the train folder so that train and test labels agree.
        train_folder = os.path.join(data_dir, 'train')
        names = _class_folders(train_folder) if os.path.isdir(train_folder) else classes
        unknown = [c for c in classes if c not in names]
        if unknown:
            raise DataError(f'{folder} has class folder(s) {", ".join(unknown)} that '
                            f'{train_folder} lacks; labels must mean the same in both')
        paths, labels = [], []
        for c in classes:
            files = list_images(os.path.join(folder, c))
            paths += files
            labels += [names.index(c)] * len(files)
        if not paths:
            raise DataError(f'no PNG or JPEG images in the class folders of {folder}; {layout}')
        return read_images(paths, self.image_size, folder), np.array(labels), len(names)
