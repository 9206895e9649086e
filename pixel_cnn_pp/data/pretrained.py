"""OpenAI's published checkpoints: downloaded once, checked, and extracted beside the cache.

    prefix = fetch_pretrained('cifar', default_url(), default_cache_dir())
    model = pixel_cnn_pp.load('cifar')     # the same, through the library: 2.92 bits/dim

OpenAI publishes pxpp.zip (656 MB) with params_cifar.ckpt inside and no checksum:
without one, the zip must be whole (and the checkpoint must then load with every
variable and shape); with one (sha256:<hex> or md5:<hex>) it must match.
"""

import glob
import os
import sys
import warnings
import zipfile

from .download import download, safe_extract_zip
from .loader import DataError

PRETRAINED_URL = 'http://alpha.openai.com/pxpp.zip'
URL_ENV, CACHE_ENV = 'PIXELCNN_PRETRAINED_URL', 'PIXELCNN_CACHE_DIR'
DEFAULT_CACHE_DIR = '~/.cache/pixel_cnn_pp'


def default_url():
    """Where pxpp.zip is downloaded from: $PIXELCNN_PRETRAINED_URL, else PRETRAINED_URL."""
    return os.environ.get(URL_ENV) or PRETRAINED_URL


def default_cache_dir():
    """Where it is kept: $PIXELCNN_CACHE_DIR, else DEFAULT_CACHE_DIR (~ expanded)."""
    return os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)
# name -> (archive, checkpoint prefix inside it)
PRETRAINED = {'cifar': ('pxpp.zip', 'params_cifar.ckpt')}


def parse_checksum(text):
    """'sha256:<hex>' or 'md5:<hex>' -> download() keyword arguments."""
    if not text:
        return {}
    kind, _, digest = text.partition(':')
    lengths = {'sha256': 64, 'md5': 32}
    digest = digest.strip().lower()
    if kind.lower() not in lengths or len(digest) != lengths[kind.lower()] or any(
            ch not in '0123456789abcdef' for ch in digest):
        raise ValueError('--checksum must be sha256:<64 hex digits> or md5:<32 hex digits>; '
                         'got %r' % text)
    return {kind.lower(): digest}


def _checkpoint_members(names, prefix):
    """The zip members that make up checkpoint `prefix` (index, data shards; not .meta)."""
    return [name for name in names
            if not name.endswith('/') and (os.path.basename(name) == prefix or (
                os.path.basename(name).startswith(prefix + '.')
                and not name.endswith('.meta')))]


def _extracted_prefix(folder, prefix):
    found = sorted(glob.glob(os.path.join(glob.escape(folder), '**', prefix + '.index'),
                             recursive=True))
    return found[0][:-len('.index')] if found else None


def fetch_pretrained(name, url, cache_dir, checksum=None, progress=None):
    """The checkpoint prefix of OpenAI's published model `name`, downloaded once.

    Downloads the archive to <cache_dir>/<archive> (resuming <archive>.part,
    checking --checksum or else that the zip is whole, renaming it into place
    only then), and extracts only the checkpoint's files into <cache_dir>/<name>
    (through a temporary folder, so a failed extraction leaves nothing behind).
    A checkpoint extracted by an earlier run is used as it is. `progress` shows the
    download (download()'s callback; None: quiet).

    Raises:
      DownloadError: offline, or every URL failed; names the URL and
        the path to put the archive by hand.
      DataError: the archive is corrupt or holds no such checkpoint.
    """
    archive_name, prefix = PRETRAINED[name]
    folder = os.path.join(cache_dir, name)
    sums = parse_checksum(checksum)
    found = _extracted_prefix(folder, prefix)
    if found and not sums:
        return found
    archive = os.path.join(cache_dir, archive_name)
    if not sums and not os.path.exists(archive):
        print('OpenAI publishes no checksum for %s: it will be checked for being a whole zip, '
              'and the checkpoint for every variable and shape (--checksum to check one)'
              % archive_name, file=sys.stderr)
    with warnings.catch_warnings():  # said just above, in sample.py's words
        warnings.filterwarnings('ignore', message='no checksum known')
        download(url, archive, progress=progress, **sums)
    try:
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError('%s is not a whole zip archive (%s). Delete it to download it again.'
                        % (archive, e)) from None
    members = _checkpoint_members(names, prefix)
    if not any(m.endswith(prefix + '.index') for m in members):
        raise DataError('%s holds no checkpoint %s (no %s.index among %s)'
                        % (archive, prefix, prefix, ', '.join(names[:10]) or 'no files'))
    safe_extract_zip(archive, folder, members)
    return _extracted_prefix(folder, prefix)


# Image shape of a TF1 checkpoint (which does not store it), by --data_set.
TF1_IMAGE_SHAPES = {'cifar': (32, 32, 3), 'mnist': (28, 28, 1), 'patches': (32, 32, 3)}


def tf1_image_shape(data_set, image_size=None):
    """The image shape (H, W, C) of an OpenAI TF1 checkpoint trained on `data_set`, or None."""
    if data_set == 'imagenet':
        return (image_size or 32, image_size or 32, 3)
    if data_set in TF1_IMAGE_SHAPES:
        return TF1_IMAGE_SHAPES[data_set]
    return (image_size, image_size, 3) if image_size else None  # None: the default shape
