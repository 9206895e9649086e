"""compression.py and compress.py: exact round trips, files the size of the NLL, refusals."""

import os
import signal
import struct
import subprocess
import sys
import zlib

import imageio.v3 as iio
import numpy as np
import pytest

import compress
import pixel_cnn_pp
from pixel_cnn_pp import compression
from pixel_cnn_pp.data import patches_data
from pixel_cnn_pp.signals import signals_raise
from tests.conftest import (Unhandled, assert_stopped_with_one_line, random_images, run_main,
                            save_tiny_run, script_cli, write_pngs)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCHES = patches_data.PATH


def tiny(shape=(8, 8, 3), seed=1, **options):
    model = pixel_cnn_pp.PixelCNN(shape, nr_resnet=1, nr_filters=8, nr_logistic_mix=3,
                                  seed=seed, **options)
    labels = np.arange(6) % model.num_classes if model.num_classes else None
    model.initialize(random_images(6, shape, seed=seed), labels)
    return model


def batch_with_extremes(shape, seed=0):
    """4 images: all 0, all 255, and two random ones."""
    images = random_images(4, shape, seed=seed)
    images[0], images[1] = 0, 255
    return images


@pytest.mark.parametrize('shape, options', [
    ((8, 8, 3), {}),
    ((8, 8, 1), {}),
    ((8, 8, 3), dict(num_classes=3)),
    ((8, 8, 3), dict(add_coords=True)),
    ((8, 8, 1), dict(non_local=True, nl_levels=(0, 1, 2))),
    ((8, 8, 3), dict(add_coords=True, non_local=True, resnet_nonlinearity='elu')),
], ids=['rgb', 'one_channel', 'class_conditional', 'ac', 'nl_one_channel', 'ac_nl_elu'])
def test_round_trip_is_exact(shape, options):
    model = tiny(shape, **options)
    images = batch_with_extremes(shape)
    labels = np.array([2, 0, 1, 2]) if model.num_classes else None
    # batch 3: a batch of 3 images, then one of a single image.
    data = compression.compress(model, images, labels, batch=3)
    decoded = compression.decompress(model, data)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, images)
    header = compression.read_header(data)
    assert (header.image_shape, header.count, header.batch) == (shape, 4, 3)
    if labels is not None:
        np.testing.assert_array_equal(header.labels, labels)
    for image in images[:2]:  # one image alone: all 0, all 255
        one = compression.compress(model, image[None], None if labels is None else labels[:1])
        np.testing.assert_array_equal(compression.decompress(model, one), image[None])


def test_class_labels_change_the_code_and_are_kept():
    model = tiny(num_classes=3)
    images = batch_with_extremes((8, 8, 3))
    a = compression.compress(model, images, [0, 0, 0, 0])
    b = compression.compress(model, images, [1, 2, 0, 1])
    assert a[compression.HEADER_BYTES:] != b[compression.HEADER_BYTES:]
    np.testing.assert_array_equal(compression.read_header(b).labels, [1, 2, 0, 1])
    np.testing.assert_array_equal(compression.decompress(model, b), images)
    with pytest.raises(ValueError, match="'labels' are required"):
        compression.compress(model, images)


def test_the_code_is_as_long_as_its_intervals_say(monkeypatch):
    # The range coder codes with exactly coding.py's integers: the words hold the ideal
    # length of every pixel's mode and levels, -sum log2(frequency / 2**24), rounded up to
    # 32 bits, plus at most one word.
    from pixel_cnn_pp import coding

    model = tiny(add_coords=True)
    images = batch_with_extremes((8, 8, 3), seed=3)
    seen = []
    encode = coding.encode
    monkeypatch.setattr(coding, 'encode', lambda *a: seen.append(encode(*a)) or seen[-1])
    data = compression.compress(model, images, batch=2)
    modes = compression.read_header(data).modes
    bits = sum(-np.log2((high - low) / coding.TOTAL).sum() - np.log2(modes[mode] /
                                                                    coding.TOTAL).sum()
               for mode, (low, high) in ((m, (i[..., 0], i[..., 1])) for m, i in seen))
    payload_bits = 8 * (len(data) - compression.HEADER_BYTES)
    assert len(seen) == 1 and bits <= payload_bits <= bits + 64
    np.testing.assert_array_equal(compression.decompress(model, data), images)


def test_file_is_the_size_of_the_nll():
    """Within 1% of the NLL in bits, plus the header (bench/compression.py measures it for a
    trained 32x32 model on the bundled test patches)."""
    model = tiny(seed=4)
    assert compression.HEADER_BYTES <= 100
    samples = model.sample(10, seed=0)  # images as the model expects them
    with np.load(PATCHES) as f:
        crops = f['testx'][::100, 4:12, 4:12]  # 10 natural images it has never seen
    for images in samples, crops:
        nats = model.nll(images)
        nll_bytes = nats.sum() / np.log(2) / 8
        data, its_nats = compression.compress(model, images, return_nll=True)
        # The NLL from the encoder's own forward pass is model.nll's, the file the same.
        np.testing.assert_allclose(its_nats, nats, rtol=1e-5)
        assert data == compression.compress(model, images)
        code_bytes = len(data) - compression.HEADER_BYTES
        assert code_bytes <= 1.01 * nll_bytes, (code_bytes, nll_bytes)
        if images is samples:
            assert code_bytes >= 0.99 * nll_bytes, (code_bytes, nll_bytes)
        # Below it, only by pixels whose channel the NLL gives less than 2**-24 (an untrained
        # model meets a few in the patches): every level keeps a frequency of at least 1.
        assert code_bytes >= 0.97 * nll_bytes, (code_bytes, nll_bytes)


def test_damaged_truncated_and_foreign_files_are_refused():
    model = tiny()
    images = batch_with_extremes((8, 8, 3))
    data = compression.compress(model, images)

    def with_crc(body):
        return body + struct.pack('<I', zlib.crc32(body))

    flipped = bytearray(data)
    flipped[compression.HEADER_BYTES + 10] ^= 0x10
    recoded = with_crc(bytes(flipped[:-4]))  # damaged, but with a CRC that matches
    newer = bytearray(data[:-4])
    newer[4] = compression.VERSION + 1
    older = bytearray(data[:60])
    older[4] = 1
    cases = [
        (bytes(flipped), 'damaged .pxpp file: its CRC-32 does not match'),
        (data[:-9], r'truncated .pxpp file: \d+ bytes, its header says \d+'),
        (data[:20], 'truncated .pxpp file'),
        (data + b'\0', 'damaged .pxpp file'),
        (b'\x89PNG' + data[4:], 'not a .pxpp file'),
        (with_crc(bytes(newer)), '.pxpp version 3; this reader knows version 2'),
        (with_crc(bytes(older)), 'a .pxpp file of version 1, whose code decodes only where '
                                 'the same kernels compute the same floats'),
        (recoded, 'the decoded images do not match the digest|the code does not decode|'
                  'decodes to no level'),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            compression.decompress(model, bad)
    other = tiny(seed=2)  # the same options, other weights
    with pytest.raises(ValueError, match='made with another model'):
        compression.decompress(other, data)
    with pytest.raises(ValueError, match='made with another model'):
        compression.decompress(tiny((8, 8, 1)), data)


def test_a_decoder_outside_the_margin_or_in_another_precision_is_refused(monkeypatch):
    from pixel_cnn_pp import coding

    model = tiny(seed=6)
    images = random_images(2, (8, 8, 3), seed=8)
    data = compression.compress(model, images)
    other = tiny(seed=6, precision='bfloat16')  # the same weights (initialised in float32)
    with pytest.raises(ValueError, match='coded from mixtures computed in float32; this model '
                                         'computes in bfloat16'):
        compression.decompress(other, data)
    with pytest.raises(ValueError, match='the codec computes the mixtures in float32'):
        compression.compress(other, images)
    # A decoder whose floats put a parameter on a rounding edge (further from the encoder's
    # than the margin): it stops there, naming the pixel, instead of decoding on.
    assert compression.read_header(data).modes[0] == coding.TOTAL - 2  # every pixel FINE
    pixel = compression._Decoder._pixel

    def off(self, index, mix):
        if index == 5:
            edge = -3.0 + coding.GRIDS[coding.FINE].log_scale / 2
            mix = mix._replace(log_scales=np.full_like(mix.log_scales, edge))
        return pixel(self, index, mix)

    monkeypatch.setattr(compression._Decoder, '_pixel', off)
    with pytest.raises(coding.DoubtError, match='at row 0, column 5 this machine computes a '
                                                'mixture parameter within'):
        compression.decompress(model, data)


def test_a_file_written_elsewhere_decodes_here():
    """tests/fixtures/codec/patches.pxpp: 3 bundled test patches coded with the golden
    cifar_small model (tests/golden) by `python3 -m tests.make_codec_fixture`."""
    from tests.make_codec_fixture import FIXTURE, golden_model, patches

    with open(FIXTURE, 'rb') as f:
        data = f.read()
    header = compression.read_header(data)
    assert (header.version, header.count, header.precision) == (2, 3, 'float32')
    np.testing.assert_array_equal(compression.decompress(golden_model(), data), patches())


def test_model_digest_follows_the_weights_not_the_dropout():
    model = tiny()
    digest = compression.model_digest(model)
    assert digest == compression.model_digest(model) and len(digest) == 32
    model.weights[3].assign_add(np.full(model.weights[3].shape, 1e-7, np.float32))
    assert compression.model_digest(model) != digest


# ------------------------------------------------------------------ compress.py


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    """Our checkpoint of a tiny 8x8 RGB model."""
    folder = tmp_path_factory.mktemp('run')
    return save_tiny_run(folder, tiny(seed=5))


cli = script_cli('compress.py', compress)


@pytest.fixture(scope='module')
def loaded(run_dir):
    """cli.load_model's answer for run_dir, loaded once: the runs that use it share one
    model, so its coding loops are traced once (the subject is the outputs, not loading)."""
    model = pixel_cnn_pp.load(run_dir)
    return lambda *args: (model, os.path.join(run_dir, 'ckpt-1'))



def test_cli_turns_pngs_into_one_file_and_back_in_another_process(cli, run_dir, tmp_path,
                                                                 capsys):
    images = batch_with_extremes((8, 8, 3), seed=6)
    folder = write_pngs(tmp_path / 'in', images)
    packed = tmp_path / 'packed.pxpp'
    cli('--checkpoint', run_dir, '--compress', folder, '--output', packed, '--batch_size', 3)
    out = capsys.readouterr().out
    assert 'compressed 4 images into %s: %d bytes' % (packed, os.path.getsize(packed)) in out
    # Decoded in fresh processes whose kernels sum in other orders: oneDNN off and one
    # thread; oneDNN on, two threads and XLA's auto-clustering on the CPU. Exact each time.
    for k, env in enumerate([
            dict(TF_ENABLE_ONEDNN_OPTS='0', TF_NUM_INTRAOP_THREADS='1'),
            dict(TF_ENABLE_ONEDNN_OPTS='1', TF_NUM_INTRAOP_THREADS='2',
                 TF_XLA_FLAGS='--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit')]):
        back = tmp_path / ('back%d' % k)
        result = subprocess.run([sys.executable, 'compress.py', '--checkpoint', run_dir,
                                 '--decompress', str(packed), '--output', str(back)], cwd=ROOT,
                                capture_output=True, text=True, timeout=600,
                                env=dict(os.environ, **env))
        assert result.returncode == 0, (env, result.stderr[-3000:])
        for i, image in enumerate(images):
            np.testing.assert_array_equal(iio.imread(str(back / ('im%d.png' % i))), image)
    cli('--checkpoint', run_dir, '--decompress', packed, '--output', tmp_path / 'back.npz')
    with np.load(str(tmp_path / 'back.npz')) as f:
        np.testing.assert_array_equal(f['images'], images)


def test_cli_refuses_damaged_files_and_writes_nothing(cli, run_dir, tmp_path):
    images = random_images(2, (8, 8, 3), seed=7)
    packed = tmp_path / 'x.pxpp'
    cli('--checkpoint', run_dir, '--compress', write_pngs(tmp_path / 'in', images),
        '--output', packed)
    data = packed.read_bytes()
    packed.write_bytes(data[:-3])
    with pytest.raises(ValueError, match=r'x.pxpp: truncated .pxpp file'):
        cli('--checkpoint', run_dir, '--decompress', packed)
    assert not os.path.exists(str(tmp_path / 'x'))
    with pytest.raises(ValueError, match='im0.png is 8x8x1 \\(one channel\\), but the model '
                                         'takes 8x8x3'):
        cli('--checkpoint', run_dir, '--compress',
            write_pngs(tmp_path / 'grey', random_images(1, (8, 8, 1))[..., 0]),
            '--output', tmp_path / 'grey.pxpp')
    assert not os.path.exists(str(tmp_path / 'grey.pxpp'))
    with pytest.raises(ValueError, match='give --output'):
        cli('--checkpoint', run_dir, '--compress', tmp_path / 'in')
    with pytest.raises(ValueError, match='--labels given, but the model is unconditional'):
        cli('--checkpoint', run_dir, '--compress', tmp_path / 'in', '--labels', '1,2',
            '--output', tmp_path / 'y.pxpp')


def _digests(folder):
    """{path: sha256} of every file under `folder` (hidden ones too)."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob('*') if p.is_file()}


def test_nothing_is_written_over_and_every_output_is_checked_before_the_work(
        cli, run_dir, tmp_path, monkeypatch):
    write_pngs(tmp_path / 'in', random_images(2, (8, 8, 3), seed=8))
    packed = tmp_path / 'x.pxpp'
    packed.write_bytes(b'PXPP, never read: the refusals come first')
    out = tmp_path / 'out'  # the user's files, named as the decoded images would be
    out.mkdir()
    (out / 'im0.png').write_bytes(os.urandom(50000))
    (out / 'notes.txt').write_text('not an image')
    (tmp_path / 'a.npz').write_text('my npz')
    before = _digests(tmp_path)
    # Refused before the checkpoint is loaded, let alone the file read or the images decoded.
    monkeypatch.setattr(compress.cli, 'load_model', lambda *args: pytest.fail('loaded'))
    for argv, message in [
            (['--decompress', packed, '--output', out],
             '--output %s is a folder that holds 2 files already' % out),
            (['--decompress', packed, '--output', out / 'notes.txt'],
             '--output %s is a file, not a folder$' % (out / 'notes.txt')),
            (['--decompress', packed, '--output', tmp_path / 'a.npz'],
             '--output %s exists already: nothing is written over' % (tmp_path / 'a.npz')),
            (['--compress', tmp_path / 'in', '--output', out / 'notes.txt'],
             '--output %s exists already' % (out / 'notes.txt')),
            (['--compress', tmp_path / 'in', '--output', packed],
             '--output %s exists already' % packed)]:
        with pytest.raises(ValueError, match=message):
            cli('--checkpoint', run_dir, *argv)
        assert _digests(tmp_path) == before  # every file as it was, nothing added


def test_library_decompress_says_data_must_be_bytes():
    model = tiny()
    for data in ('PXPP', None, 3):
        with pytest.raises(TypeError, match=r"^'data' must be bytes, the contents of a \.pxpp "
                                            r"file .*; got %s$" % type(data).__name__):
            compression.decompress(model, data)
    with pytest.raises(ValueError, match='not a .pxpp file'):
        compression.decompress(model, bytearray(b'PXP'))


def test_a_signal_while_the_pngs_or_the_file_are_written_leaves_nothing(
        run_dir, loaded, tmp_path, monkeypatch, capsys):
    from pixel_cnn_pp import images as image_files

    monkeypatch.setattr(compress.cli, 'load_model', loaded)
    images = random_images(3, (8, 8, 3), seed=9)
    packed = tmp_path / 'x.pxpp'
    run_main(compress, 'compress.py', '--checkpoint', run_dir, '--compress',
             write_pngs(tmp_path / 'in', images), '--output', packed)
    before = _digests(tmp_path)
    # SIGTERM after the first of three PNGs is written, as a user's kill would arrive.
    save_png = image_files.save_png

    def save_then_stop(path, image):
        save_png(path, image)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(image_files, 'save_png', save_then_stop)
    with pytest.raises(SystemExit) as stopped, signals_raise(Unhandled):
        run_main(compress, 'compress.py', '--checkpoint', run_dir, '--decompress', packed)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert_stopped_with_one_line(capsys.readouterr().err, 'compress.py', signal.SIGTERM)
    assert _digests(tmp_path) == before and sorted(os.listdir(tmp_path)) == ['in', 'x.pxpp']
    # Ctrl-C half-way through writing the .pxpp file.
    write_bytes = compress._write_bytes

    def write_half_then_interrupt(path, data):
        write_bytes(path, data[:len(data) // 2])
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(compress, '_write_bytes', write_half_then_interrupt)
    with pytest.raises(SystemExit) as stopped, signals_raise(Unhandled):
        run_main(compress, 'compress.py', '--checkpoint', run_dir, '--compress', tmp_path / 'in',
                 '--output', tmp_path / 'y.pxpp')
    assert stopped.value.code == 130
    assert_stopped_with_one_line(capsys.readouterr().err, 'compress.py', signal.SIGINT)
    assert _digests(tmp_path) == before
