"""sample.py --pretrained cifar: OpenAI's pxpp.zip one command away, tested against 127.0.0.1.

A local HTTP server (with Range support, from tests/test_download.py) serves a small
pxpp.zip that holds the golden checkpoint written by the original code, renamed to
params_cifar.ckpt.*, with the golden model's options passed as flags. Nothing here
touches the real network.
"""

import hashlib
import io
import os
import zipfile

import numpy as np
import pytest

import pixel_cnn_pp
import sample
from pixel_cnn_pp.data import pretrained
from pixel_cnn_pp.data.download import DownloadError
from pixel_cnn_pp.data.loader import DataError
from pixel_cnn_pp import sampling
from tests.conftest import GOLDEN, script_cli
from tests.test_download import closed_port_url, serve


GOLDEN_MODEL = ['-q', '1', '-n', '16', '-m', '3']
GOLDEN_OPTIONS = dict(nr_resnet=1, nr_filters=16, nr_logistic_mix=3)
CHECKPOINT_FILES = ('params_cifar.ckpt.index', 'params_cifar.ckpt.data-00000-of-00001')


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    for var in (pretrained.URL_ENV, pretrained.CACHE_ENV):
        monkeypatch.delenv(var, raising=False)


def make_zip(golden_dir, folder='pxpp/', extra=True, names=CHECKPOINT_FILES):
    """pxpp.zip as bytes: the golden checkpoint as params_cifar.ckpt.*, stored uncompressed."""
    source = os.path.join(golden_dir, 'cifar_small', 'params_golden.ckpt')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_STORED) as z:
        for name, suffix in zip(names, ('.index', '.data-00000-of-00001')):
            with open(source + suffix, 'rb') as f:
                z.writestr(folder + name, f.read())
        if extra:  # what the real archive may hold besides: never extracted
            z.writestr(folder + 'params_cifar.ckpt.meta', b'a graph we do not need')
            z.writestr(folder + 'README.txt', b'hello')
    return buffer.getvalue()


@pytest.fixture(scope='module')
def pxpp_zip(tmp_path_factory):
    return make_zip(GOLDEN)


cli = script_cli('sample.py', sample)


def golden_model(golden_dir):
    return pixel_cnn_pp.load(
        os.path.join(golden_dir, 'cifar_small', 'params_golden.ckpt'), **GOLDEN_OPTIONS)


def extracted(cache):
    found = []
    for base, _, files in os.walk(cache):
        found += [os.path.relpath(os.path.join(base, f), cache) for f in files]
    return sorted(found)


def test_download_interrupted_resumed_unzipped_loaded_and_sampled(cli, pxpp_zip, golden_dir,
                                                                  tmp_path):
    cache = tmp_path / 'cache'
    half = len(pxpp_zip) // 2
    with serve({'/pxpp.zip': pxpp_zip}, cut_after={'/pxpp.zip': half}) as (url, server):
        samples = cli('--pretrained', 'cifar', '--pretrained_url', url + '/pxpp.zip',
                      '--cache_dir', cache, *GOLDEN_MODEL, '--num_samples', 2, '-s', 4,
                      '--output', tmp_path / 'out')
    # The connection broke half-way; the download went on from there.
    assert server.requests == [('/pxpp.zip', None), ('/pxpp.zip', 'bytes=%d-' % half)]
    assert (cache / 'pxpp.zip').read_bytes() == pxpp_zip
    # Only the checkpoint's files were extracted; nothing half-written is left.
    assert extracted(cache) == sorted(['pxpp.zip'] + ['cifar/pxpp/' + f for f in CHECKPOINT_FILES])
    # The samples are those of the golden checkpoint itself.
    np.testing.assert_array_equal(samples, sampling.sample(golden_model(golden_dir), 2, seed=4))
    assert os.path.exists(tmp_path / 'out.png') and os.path.exists(tmp_path / 'out.npz')
    # Next time, no network is needed.
    prefix = pretrained.fetch_pretrained('cifar', closed_port_url('pxpp.zip'), str(cache))
    assert prefix == str(cache / 'cifar' / 'pxpp' / 'params_cifar.ckpt')


def test_partial_file_of_an_earlier_run_is_resumed(pxpp_zip, tmp_path):
    cache = tmp_path / 'cache'
    cache.mkdir()
    third = len(pxpp_zip) // 3
    (cache / 'pxpp.zip.part').write_bytes(pxpp_zip[:third])
    with serve({'/pxpp.zip': pxpp_zip}) as (url, server):
        prefix = pretrained.fetch_pretrained('cifar', url + '/pxpp.zip', str(cache),
                                              progress=False)
    assert server.requests == [('/pxpp.zip', 'bytes=%d-' % third)]
    pixel_cnn_pp.load(prefix, **GOLDEN_OPTIONS)  # every variable and shape


def test_the_library_loads_a_published_model_by_name_from_the_environments_url_and_cache(
        pxpp_zip, golden_dir, tmp_path, monkeypatch):
    with serve({'/mirror/pxpp.zip': pxpp_zip}) as (url, server):
        monkeypatch.setenv(pretrained.URL_ENV, url + '/mirror/pxpp.zip')
        monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / 'env_cache'))
        model = pixel_cnn_pp.load('cifar', **GOLDEN_OPTIONS)
    assert [p for p, _ in server.requests] == ['/mirror/pxpp.zip']
    assert os.path.exists(tmp_path / 'env_cache' / 'pxpp.zip')
    for ours, golden in zip(model.weights, golden_model(golden_dir).weights):
        np.testing.assert_array_equal(ours.numpy(), golden.numpy())


def test_checksum_is_checked_when_given(pxpp_zip, tmp_path):
    right = 'sha256:' + hashlib.sha256(pxpp_zip).hexdigest()
    wrong = 'md5:' + hashlib.md5(b'something else').hexdigest()
    with serve({'/pxpp.zip': pxpp_zip}) as (url, _):
        with pytest.raises(DownloadError, match='checksum mismatch: MD5'):
            pretrained.fetch_pretrained('cifar', url + '/pxpp.zip', str(tmp_path), wrong,
                                    progress=False)
        assert extracted(tmp_path) == []  # the wrong file was not kept, nothing extracted
        prefix = pretrained.fetch_pretrained('cifar', url + '/pxpp.zip', str(tmp_path), right,
                                         progress=False)
    pixel_cnn_pp.load(prefix, **GOLDEN_OPTIONS)
    for bad in ('sha256:1234', 'crc32:' + '0' * 8, 'sha256:' + 'g' * 64):
        with pytest.raises(ValueError, match='--checksum must be sha256:'):
            pretrained.parse_checksum(bad)


def test_corrupt_or_truncated_download_is_never_used(pxpp_zip, tmp_path):
    corrupt = bytearray(pxpp_zip)
    corrupt[len(corrupt) // 2] ^= 0xFF  # inside the stored data file: its CRC fails
    for name, body in (('corrupt', bytes(corrupt)), ('truncated', pxpp_zip[:-5000])):
        cache = tmp_path / name
        with serve({'/pxpp.zip': body}) as (url, _):
            with pytest.raises(DownloadError, match='pxpp.zip'):
                pretrained.fetch_pretrained('cifar', url + '/pxpp.zip', str(cache),
                                              progress=False)
        assert extracted(cache) == [], name


def test_corrupt_archive_placed_by_hand_is_refused_and_nothing_extracted(pxpp_zip, tmp_path):
    corrupt = bytearray(pxpp_zip)
    corrupt[len(corrupt) // 2] ^= 0xFF
    (tmp_path / 'pxpp.zip').write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match='corrupt zip archive.*Delete it'):
        pretrained.fetch_pretrained('cifar', closed_port_url('pxpp.zip'), str(tmp_path),
                                progress=False)
    assert extracted(tmp_path) == ['pxpp.zip']


def test_offline_error_names_the_url_and_where_to_put_the_file(cli, tmp_path):
    url = closed_port_url('pxpp.zip')
    with pytest.raises(DownloadError) as error:
        cli('--pretrained', 'cifar', '--pretrained_url', url, '--cache_dir', tmp_path / 'c',
            '--output', tmp_path / 'out')
    message = str(error.value)
    assert url in message
    assert 'save it as %s.' % (tmp_path / 'c' / 'pxpp.zip') in message


@pytest.mark.parametrize('body,message', [
    ('no checkpoint', r'holds no checkpoint params_cifar\.ckpt'),
    ('escaping', 'refusing to extract member'),
])
def test_archive_without_a_safe_checkpoint_is_refused(golden_dir, tmp_path, body, message):
    if body == 'no checkpoint':
        data = make_zip(golden_dir, names=('other.ckpt.index', 'other.ckpt.data-00000-of-00001'))
    else:
        data = make_zip(golden_dir, folder='../', extra=False)
    with serve({'/pxpp.zip': data}) as (url, _):
        with pytest.raises(DataError, match=message):
            pretrained.fetch_pretrained('cifar', url + '/pxpp.zip', str(tmp_path / 'c'),
                                    progress=False)
    assert not os.path.exists(tmp_path / 'pxpp.zip')
    assert extracted(tmp_path / 'c') == ['pxpp.zip']


def test_wrong_model_options_for_the_checkpoint_name_the_variable(cli, pxpp_zip, tmp_path):
    with serve({'/pxpp.zip': pxpp_zip}) as (url, _):
        with pytest.raises(ValueError, match=r'expects \[2, 3, 4, 160\]'):  # the defaults
            cli('--pretrained', 'cifar', '--pretrained_url', url + '/pxpp.zip',
                '--cache_dir', tmp_path / 'c', '--output', tmp_path / 'out')


def test_damaged_extracted_checkpoint_is_reported_with_what_to_delete(cli, pxpp_zip, tmp_path):
    cache = tmp_path / 'c'
    with serve({'/pxpp.zip': pxpp_zip}) as (url, _):
        prefix = pretrained.fetch_pretrained('cifar', url + '/pxpp.zip', str(cache),
                                              progress=False)
    data = prefix + '.data-00000-of-00001'
    with open(data, 'r+b') as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(ValueError, match='damaged or truncated .*delete %s' % (cache / 'cifar')):
        cli('--pretrained', 'cifar', '--pretrained_url', closed_port_url('pxpp.zip'),
            '--cache_dir', cache, *GOLDEN_MODEL, '--output', tmp_path / 'out')
