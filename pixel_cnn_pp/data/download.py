"""The project's one download helper: mirrors, progress, resume, checksums, safe extraction.

    path = download([url, mirror_url], '/data/cifar-10-python/cifar-10-python.tar.gz',
                    md5='c58f30108f718f92721af3b95e74349a')
    safe_extract_tar(path, '/data/cifar-10-python')

A download goes to `<dest>.part`; an interrupted one is resumed from there with an HTTP
Range request (by a retry in the same call, or by the next call). Only a file whose
checksum matches (or, when none is known, that opens as the archive it claims to be) is
renamed to `dest`, atomically, so `dest` never exists half-written. Extraction goes to a
temporary folder beside the target and is renamed into place once whole; members that
would land outside the target (absolute paths, '..', links pointing out) are refused.
"""

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile

from ..files import give_usual_mode
from .loader import DataError

_CHUNK = 1 << 20


class DownloadError(DataError):
    """No URL gave a complete file with the right checksum (offline, moved, corrupt).

    `tried` lists each attempt as 'url: what went wrong', for a caller that gives its
    own by-hand instructions in place of this message's.
    """

    def __init__(self, message, tried=()):
        super().__init__(message)
        self.tried = list(tried)


# Over 60 lines only through its docstring (27 lines): the body is 34.
def download(url_or_urls, dest_path, md5=None, sha256=None, progress=None, timeout=30,
             retries=3):
    """Fetches a file to `dest_path`, trying each URL in turn; returns `dest_path`.

    If `dest_path` already exists it is checked against the checksum (when one is given)
    and kept. Partial data is kept in `dest_path + '.part'` and resumed.

    Args:
      url_or_urls: a URL or a list of mirror URLs of the same file (http, https, file).
      dest_path: where the file goes; its folder is created.
      md5, sha256: expected hex digests (either, both, or none). With none, a warning says
        so, and an archive (.zip, .npz, .tar, .tar.gz, .tgz, .gz) must at least open whole.
      progress: None (quiet), or a callable(name, total_bytes or None) returning a display
        with update(done_bytes) and close(), e.g. pixel_cnn_pp.progress.download_display.
      timeout: seconds without data before a connection counts as failed.
      retries: further attempts on a URL whose connection broke after sending data.

    Raises:
      DownloadError: every URL failed; the message lists each URL with its error and the
        path to save the file to by hand.
      DataError: `dest_path` exists with the wrong checksum (it is left alone).
    """
    urls = [url_or_urls] if isinstance(url_or_urls, str) else list(url_or_urls)
    dest_path = os.fspath(dest_path)
    name = os.path.basename(dest_path)
    if os.path.exists(dest_path):
        problem = _checksum_problem(dest_path, md5, sha256)
        if problem:  # not a download failure: a wrong file where ours should be
            raise DataError(f'{dest_path} exists but {problem}. Delete it to download it '
                            'again, or replace it with the right file.')
        return dest_path
    if not md5 and not sha256:
        warnings.warn(f'no checksum known for {name}: checking only that it is complete '
                      'and opens', stacklevel=2)
    os.makedirs(os.path.dirname(os.path.abspath(dest_path)), exist_ok=True)
    part = dest_path + '.part'
    errors = []
    for url in urls:
        resumed = os.path.exists(part)
        if not _fetch_with_retries(url, part, progress, timeout, retries, errors):
            continue
        problem = _content_problem(part, name, md5, sha256)
        if problem and resumed:
            # The kept bytes may be what is wrong (an older file, another mirror's copy):
            # fetch the whole file once more before blaming this URL.
            os.remove(part)
            if _fetch_with_retries(url, part, progress, timeout, retries, errors):
                problem = _content_problem(part, name, md5, sha256)
        if problem:
            if os.path.exists(part):
                os.remove(part)  # a whole file with the wrong content: resuming cannot fix it
            errors.append(f'{url}: {problem}')
            continue
        os.replace(part, dest_path)
        return dest_path
    sums = ', '.join(f'{k} {v}' for k, v in (('MD5', md5), ('SHA-256', sha256)) if v)
    tried = ''.join(f'\n  {e}' for e in errors)
    raise DownloadError(
        f'could not download {name} (offline?). Tried:{tried}\n'
        f'Download it by hand from {" or ".join(urls)} and save it as {dest_path}'
        + (f' ({sums}).' if sums else '.'), tried=errors)


def _fetch_with_retries(url, part, progress, timeout, retries, errors):
    """True once `part` holds the whole file from `url`; False (error noted) otherwise."""
    for _ in range(retries + 1):
        before = os.path.getsize(part) if os.path.exists(part) else 0
        try:
            _fetch(url, part, progress, timeout)
            return True
        except (OSError, http.client.HTTPException, ValueError) as e:
            errors.append(f'{url}: {_describe(e)}')
            got_more = os.path.exists(part) and os.path.getsize(part) > before
            if isinstance(e, urllib.error.HTTPError) or not got_more:
                return False  # no point asking this URL again: try the next mirror
    return False


def _describe(e):
    if isinstance(e, urllib.error.HTTPError):
        return f'HTTP {e.code} {e.reason}'
    if isinstance(e, urllib.error.URLError):
        return f'{e.reason}'
    return f'{type(e).__name__}: {e}'


def _fetch(url, part, progress, timeout):
    start = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={'User-Agent': 'pixel-cnn-pp-tf2'})
    if start:
        request.add_header('Range', f'bytes={start}-')
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing after `start`: the .part may already be whole
            return
        raise
    with response:
        status = response.getcode()
        content_range = response.headers.get('Content-Range', '')
        if start and status == 206:
            if not content_range.startswith(f'bytes {start}-'):
                os.remove(part)  # cannot tell where these bytes belong: start over
                raise OSError(f'asked for bytes {start}- but got {content_range!r}')
            mode = 'ab'
        else:  # the server sent the whole file (no Range support, or a file:// URL)
            mode, start = 'wb', 0
        length = response.headers.get('Content-Length')
        total = start + int(length) if length is not None else None
        done = start
        # A callback, not an import: data/ may not import pixel_cnn_pp/ (ARCHITECTURE.md).
        bar = progress(os.path.basename(part)[:-len('.part')], total) if progress else None
        try:
            with open(part, mode) as f:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    if bar:
                        bar.update(done)
        finally:
            if bar:
                bar.update(done)
                bar.close()  # ends the line even when the connection broke
        if total is not None and done < total:
            raise http.client.IncompleteRead(b'', total - done)


def _content_problem(path, name, md5, sha256):
    if md5 or sha256:
        return _checksum_problem(path, md5, sha256)
    return _archive_problem(path, name)


def _checksum_problem(path, md5, sha256):
    """None if `path` matches the given digests, else a description of the mismatch."""
    if not md5 and not sha256:
        return None
    hashers = {'MD5': (hashlib.md5(), md5), 'SHA-256': (hashlib.sha256(), sha256)}
    hashers = {k: v for k, v in hashers.items() if v[1]}
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            for h, _ in hashers.values():
                h.update(chunk)
    for kind, (h, expected) in hashers.items():
        if h.hexdigest() != expected.lower():
            return f'checksum mismatch: {kind} is {h.hexdigest()}, expected {expected.lower()}'
    return None


def _archive_problem(path, name):
    """None if the archive `name` (stored at `path`) reads to its end, else what is wrong."""
    try:
        if name.endswith(('.zip', '.npz')):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            return f'member {bad} of the zip is corrupt' if bad else None
        if name.endswith(('.tar', '.tar.gz', '.tgz')):
            with tarfile.open(path) as t:
                for member in t:
                    if member.isfile():
                        t.extractfile(member).read()
            return None
        if name.endswith('.gz'):
            with gzip.open(path) as g:
                while g.read(_CHUNK):
                    pass
            return None
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as e:
        return f'not a complete archive ({type(e).__name__}: {e})'
    return None


def _check_member(name, dest, archive):
    """Refuses archive member names that would land outside `dest`."""
    parts = name.replace('\\', '/').split('/')
    if (not name or name.startswith(('/', '\\')) or os.path.isabs(name)
            or (len(name) > 1 and name[1] == ':') or '..' in parts):
        raise DataError(f'{archive}: refusing to extract member {name!r}: it would land outside '
                        f'{dest} (absolute path or ".."). The archive is not genuine.')
    root = os.path.realpath(dest)
    target = os.path.realpath(os.path.join(root, name))
    if target != root and not target.startswith(root + os.sep):
        raise DataError(f'{archive}: refusing to extract member {name!r}: it would land '
                        f'outside {dest}.')


def _move_into(tmp, dest):
    """Renames every entry of `tmp` into `dest` (replacing same-named ones)."""
    if not os.path.exists(dest):
        os.replace(tmp, dest)
        return
    for entry in os.listdir(tmp):
        target = os.path.join(dest, entry)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)
        os.replace(os.path.join(tmp, entry), target)


@contextlib.contextmanager
def _reading(archive, kind, error):
    """Inside: an OSError, EOFError or `error` (the archive module's) reading `archive` (a
    `kind` archive) becomes a DataError saying it is truncated or corrupt."""
    try:
        yield
    except DataError:
        raise
    except (OSError, EOFError, error) as e:
        raise DataError(f'{archive}: truncated or corrupt {kind} archive ({type(e).__name__}: '
                        f'{e}). Delete it and download it again.') from e


def _extract_via_temp(dest, extract):
    """Runs extract(tmp_dir) in a temporary folder beside `dest`, then moves the result in."""
    dest = os.path.abspath(os.fspath(dest))
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(dest)}.extracting-', dir=parent)
    try:
        give_usual_mode(tmp, folder=True)  # it becomes `dest` when that is new
        extract(tmp)
        _move_into(tmp, dest)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def safe_extract_tar(archive, dest):
    """Extracts a tar archive (any compression) into folder `dest`; returns `dest`.

    Refuses absolute member paths, '..', links that point outside `dest`, and device or
    FIFO members. Top-level entries of the archive replace same-named ones in `dest`.

    Raises:
      DataError: the archive is truncated or corrupt, or a member is refused. Then `dest`
        is left as it was.
    """
    def extract(tmp):
        with _reading(archive, 'tar', tarfile.TarError), tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m.name, dest, archive)
                if m.issym() or m.islnk():
                    base = os.path.dirname(m.name) if m.issym() else ''
                    _check_member(os.path.normpath(os.path.join(base, m.linkname)), dest,
                                  archive)
                elif not (m.isfile() or m.isdir()):
                    raise DataError(f'{archive}: refusing to extract {m.name!r}: a device '
                                    'or FIFO has no place in a data archive.')
            kwargs = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
            tar.extractall(tmp, members=members, **kwargs)

    _extract_via_temp(dest, extract)
    return dest


def safe_extract_zip(archive, dest, members=None):
    """Extracts a zip archive (or only the named `members`) into folder `dest`; returns
    the extracted files' paths.

    Refuses absolute member paths and '..'. CRC errors are reported, and `dest` is left as
    it was, since extraction happens in a temporary folder renamed into place at the end.

    Raises:
      DataError: the archive is corrupt, a member is refused, or a requested member is
        missing.
    """
    extracted = []

    def extract(tmp):
        with _reading(archive, 'zip', zipfile.BadZipFile), zipfile.ZipFile(archive) as z:
            if members is None:
                infos = z.infolist()
            else:
                names = set(z.namelist())
                missing = [m for m in members if m not in names]
                if missing:
                    raise DataError(f'{archive}: has no member(s) {", ".join(missing)}; it '
                                    f'holds {", ".join(sorted(names)[:20])}')
                infos = [z.getinfo(m) for m in members]
            for info in infos:
                _check_member(info.filename, dest, archive)
            for info in infos:
                z.extract(info, tmp)
                if not info.is_dir():
                    extracted.append(os.path.join(os.path.abspath(dest), info.filename))

    _extract_via_temp(dest, extract)
    return extracted
