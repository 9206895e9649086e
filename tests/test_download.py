"""Tests for pixel_cnn_pp/data/download.py: mirrors, resume, checksums, atomic rename, safe
extraction.

Files are served by a local http.server on 127.0.0.1 (with Range support); no test touches
the real network.
"""

import contextlib
import hashlib
import io
import os
import re
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pixel_cnn_pp.data.download import DownloadError, download, safe_extract_tar, safe_extract_zip
from pixel_cnn_pp.data.loader import DataError


class _Handler(BaseHTTPRequestHandler):
    """Serves server.files {path: bytes}; honours 'Range: bytes=N-' when server.ranges;
    cuts the first response for a path after server.cut_after[path] bytes."""

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get('Range')))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        if match and server.ranges:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header('Content-Range', f'bytes */{len(body)}')
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        cut = server.cut_after.pop(self.path, None)
        self.wfile.write(payload if cut is None else payload[:cut])  # then close: HTTP/1.0

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(files, ranges=True, cut_after=None):
    """Serves `files` ({'/name': bytes}) on 127.0.0.1; yields (base_url, server)."""
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    server.files, server.ranges = dict(files), ranges
    server.cut_after, server.requests = dict(cut_after or {}), []
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}', server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url(name='file.bin'):
    """A URL on 127.0.0.1 where nothing listens: what being offline looks like, at once."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}/{name}'


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')


BLOB = bytes(range(256)) * 4096 + b'tail'  # 1 MiB + 4 bytes: several read chunks
MD5 = hashlib.md5(BLOB).hexdigest()
SHA256 = hashlib.sha256(BLOB).hexdigest()


def _leftovers(folder):
    return sorted(os.listdir(folder))


def test_download_fetches_the_file_and_checks_md5_and_sha256(tmp_path):
    with serve({'/blob.bin': BLOB}) as (url, _):
        dest = download(url + '/blob.bin', tmp_path / 'sub' / 'blob.bin', md5=MD5,
                        sha256=SHA256, progress=False)
    assert open(dest, 'rb').read() == BLOB
    assert _leftovers(tmp_path / 'sub') == ['blob.bin']  # no .part left


def test_download_tries_mirrors_in_order(tmp_path):
    with serve({'/b/blob.bin': BLOB}) as (url, server):
        download([url + '/a/blob.bin', url + '/b/blob.bin'], tmp_path / 'blob.bin', md5=MD5,
                 progress=False)
    assert [p for p, _ in server.requests] == ['/a/blob.bin', '/b/blob.bin']
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    half = len(BLOB) // 2
    with serve({'/blob.bin': BLOB}, cut_after={'/blob.bin': half}) as (url, server):
        download(url + '/blob.bin', tmp_path / 'blob.bin', md5=MD5, progress=False)
    assert server.requests == [('/blob.bin', None), ('/blob.bin', f'bytes={half}-')]
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB
    assert _leftovers(tmp_path) == ['blob.bin']


def test_part_file_left_by_an_earlier_run_is_resumed(tmp_path):
    (tmp_path / 'blob.bin.part').write_bytes(BLOB[:1000])
    with serve({'/blob.bin': BLOB}) as (url, server):
        download(url + '/blob.bin', tmp_path / 'blob.bin', sha256=SHA256, progress=False)
    assert server.requests == [('/blob.bin', 'bytes=1000-')]
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB


def test_stale_part_file_that_spoils_the_checksum_is_fetched_again_whole(tmp_path):
    (tmp_path / 'blob.bin.part').write_bytes(b'x' * 1000)  # not the start of this file
    with serve({'/blob.bin': BLOB}) as (url, server):
        download(url + '/blob.bin', tmp_path / 'blob.bin', md5=MD5, progress=False)
    assert server.requests == [('/blob.bin', 'bytes=1000-'), ('/blob.bin', None)]
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB


def test_server_ignoring_range_gets_the_whole_file_rewritten(tmp_path):
    (tmp_path / 'blob.bin.part').write_bytes(b'x' * 1000)  # stale bytes must not survive
    with serve({'/blob.bin': BLOB}, ranges=False) as (url, _):
        download(url + '/blob.bin', tmp_path / 'blob.bin', md5=MD5, progress=False)
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path):
    with serve({'/blob.bin': BLOB}) as (url, _):
        with pytest.raises(DownloadError) as err:
            download(url + '/blob.bin', tmp_path / 'blob.bin', md5='0' * 32, progress=False)
    message = str(err.value)
    assert 'checksum mismatch' in message and MD5 in message and '0' * 32 in message
    assert str(tmp_path / 'blob.bin') in message
    assert _leftovers(tmp_path) == []


def test_offline_error_names_every_url_and_where_to_put_the_file(tmp_path):
    urls = [closed_port_url('a.tar.gz'), closed_port_url('a.tar.gz')]
    with pytest.raises(DownloadError) as err:
        download(urls, tmp_path / 'a.tar.gz', md5=MD5, progress=False)
    message = str(err.value)
    assert 'offline' in message and str(tmp_path / 'a.tar.gz') in message
    assert all(u in message for u in urls) and MD5 in message
    assert _leftovers(tmp_path) == []


def test_existing_file_with_wrong_checksum_is_reported_and_kept(tmp_path):
    (tmp_path / 'blob.bin').write_bytes(b'something else')
    with pytest.raises(DataError, match='exists but checksum mismatch'):
        download(closed_port_url(), tmp_path / 'blob.bin', md5=MD5, progress=False)
    assert (tmp_path / 'blob.bin').read_bytes() == b'something else'


def test_existing_file_with_right_checksum_is_not_fetched_again(tmp_path):
    (tmp_path / 'blob.bin').write_bytes(BLOB)
    assert download(closed_port_url(), tmp_path / 'blob.bin', md5=MD5, progress=False)


def _zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


def test_without_checksum_a_warning_is_given_and_a_truncated_zip_refused(tmp_path):
    good = _zip_bytes({'ckpt/params.index': b'i' * 5000, 'ckpt/params.data': b'd' * 5000})
    with serve({'/good.zip': good, '/bad.zip': good[:-100]}) as (url, _):
        with pytest.warns(UserWarning, match='no checksum known for good.zip'):
            download(url + '/good.zip', tmp_path / 'good.zip', progress=False)
        with pytest.warns(UserWarning):
            with pytest.raises(DownloadError, match='not a complete archive'):
                download(url + '/bad.zip', tmp_path / 'bad.zip', progress=False)
    assert _leftovers(tmp_path) == ['good.zip']


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    from pixel_cnn_pp.progress import download_display

    with serve({'/blob.bin': BLOB}) as (url, _):
        download(url + '/blob.bin', tmp_path / 'blob.bin', md5=MD5, progress=download_display)
    err = capsys.readouterr().err
    assert 'blob.bin' in err and '100.0%' in err and 'MiB' in err


def _tar(path, entries):
    """entries: list of (TarInfo-like kwargs, data or None)."""
    with tarfile.open(path, 'w:gz') as tar:
        for info, data in entries:
            member = tarfile.TarInfo(info['name'])
            for k, v in info.items():
                setattr(member, k, v)
            if data is not None:
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)


def test_safe_extract_tar_puts_members_in_place_beside_existing_files(tmp_path):
    dest = tmp_path / 'cifar-10-python'
    dest.mkdir()
    archive = dest / 'a.tar.gz'
    _tar(archive, [({'name': 'batches', 'type': tarfile.DIRTYPE}, None),
                   ({'name': 'batches/one'}, b'1'), ({'name': 'batches/two'}, b'22')])
    safe_extract_tar(archive, dest)
    assert (dest / 'batches' / 'one').read_bytes() == b'1'
    assert (dest / 'batches' / 'two').read_bytes() == b'22'
    assert sorted(os.listdir(dest)) == ['a.tar.gz', 'batches']
    assert sorted(os.listdir(tmp_path)) == ['cifar-10-python']  # no temporary folder left


def test_safe_extract_into_a_new_folder_gives_it_a_folders_usual_mode(tmp_path):
    # The temporary folder (mkdtemp: 0700) becomes the new folder: it must not stay private.
    import stat
    archive = tmp_path / 'a.tar.gz'
    _tar(archive, [({'name': 'batches/one'}, b'1')])
    old = os.umask(0o022)
    try:
        safe_extract_tar(archive, tmp_path / 'new')
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / 'new').st_mode) == 0o755
    assert (tmp_path / 'new' / 'batches' / 'one').read_bytes() == b'1'


@pytest.mark.parametrize('member', [
    {'name': '../evil'},
    {'name': '/tmp/evil'},
    {'name': 'ok/../../evil'},
    {'name': 'link', 'type': tarfile.SYMTYPE, 'linkname': '../../etc/passwd'},
    {'name': 'sub/link', 'type': tarfile.SYMTYPE, 'linkname': '/etc/passwd'},
    {'name': 'hard', 'type': tarfile.LNKTYPE, 'linkname': '../outside'},
    {'name': 'fifo', 'type': tarfile.FIFOTYPE},
], ids=['dotdot', 'absolute', 'nested-dotdot', 'symlink-out', 'symlink-absolute',
        'hardlink-out', 'fifo'])
def test_safe_extract_tar_refuses_members_escaping_the_folder(tmp_path, member):
    archive = tmp_path / 'evil.tar.gz'
    is_file = member.get('type', tarfile.REGTYPE) == tarfile.REGTYPE
    _tar(archive, [({'name': 'fine.txt'}, b'fine'), (member, b'x' if is_file else None)])
    dest = tmp_path / 'out'
    with pytest.raises(DataError, match='refusing to extract') as err:
        safe_extract_tar(archive, dest)
    assert str(archive) in str(err.value)
    assert not dest.exists() and sorted(os.listdir(tmp_path)) == ['evil.tar.gz']


def test_truncated_tar_is_an_error_and_writes_nothing(tmp_path):
    archive = tmp_path / 'a.tar.gz'
    _tar(archive, [({'name': f'f{i}'}, os.urandom(20000)) for i in range(5)])
    archive.write_bytes(archive.read_bytes()[:50000])
    with pytest.raises(DataError, match='truncated or corrupt tar'):
        safe_extract_tar(archive, tmp_path / 'out')
    assert sorted(os.listdir(tmp_path)) == ['a.tar.gz']


def test_safe_extract_zip_extracts_only_the_named_members(tmp_path):
    archive = tmp_path / 'pxpp.zip'
    archive.write_bytes(_zip_bytes({'pxpp/params.index': b'i', 'pxpp/params.data': b'd',
                                    'pxpp/README': b'r'}))
    paths = safe_extract_zip(archive, tmp_path / 'ckpt', members=['pxpp/params.index',
                                                                  'pxpp/params.data'])
    assert sorted(paths) == sorted(str(tmp_path / 'ckpt' / 'pxpp' / n)
                                   for n in ('params.index', 'params.data'))
    assert sorted(os.listdir(tmp_path / 'ckpt' / 'pxpp')) == ['params.data', 'params.index']
    with pytest.raises(DataError, match='has no member'):
        safe_extract_zip(archive, tmp_path / 'ckpt2', members=['nope'])


@pytest.mark.parametrize('name', ['../evil', '/abs/evil', 'a/../../evil'])
def test_safe_extract_zip_refuses_members_escaping_the_folder(tmp_path, name):
    archive = tmp_path / 'evil.zip'
    archive.write_bytes(_zip_bytes({'fine': b'f', name: b'x'}))
    with pytest.raises(DataError, match='refusing to extract'):
        safe_extract_zip(archive, tmp_path / 'out')
    assert sorted(os.listdir(tmp_path)) == ['evil.zip']


def test_corrupt_zip_is_an_error_and_writes_nothing(tmp_path):
    data = bytearray(_zip_bytes({'a': b'a' * 1000, 'b': b'b' * 1000}))
    data[data.index(b'b' * 100)] = ord('c')  # stored, not deflated: flips one byte of 'b'
    archive = tmp_path / 'bad.zip'
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match='corrupt zip'):
        safe_extract_zip(archive, tmp_path / 'out')
    assert sorted(os.listdir(tmp_path)) == ['bad.zip']
