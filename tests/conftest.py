"""Shared fixtures: tiny models and images, so the suite stays fast on 2 CPU cores."""

import os
import sys

import numpy as np
import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Golden vectors written by the original code (tests/golden/README.md), kept in the repo so
# that a clone with nothing beside it passes its own tests.
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden')


def random_images(n, shape, seed=0):
    """Smooth-ish random uint8 images with both extremes present (edge bins exercised)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n,) + tuple(shape)).astype(np.uint8)
    x[:, 0, 0] = 0
    x[:, -1, -1] = 255
    return x


@pytest.fixture
def golden_dir():
    if not os.path.isdir(GOLDEN):
        pytest.fail('golden vectors not found at %s' % GOLDEN)
    return GOLDEN


def write_pngs(folder, images):
    """images (N, H, W, C) or (N, H, W) uint8 as folder/im0.png, im1.png, ...; returns folder."""
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        iio.imwrite(str(folder / ('im%d.png' % i)),
                    image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)
    return folder


def save_tiny_run(folder, model):
    """`model` (a PixelCNN) as our checkpoint folder/ckpt-1 with its pixelcnn_config.json."""
    import pixel_cnn_pp
    from pixel_cnn_pp import checkpoints
    from pixel_cnn_pp.run_folder import RunFolder

    checkpoints.training_checkpoint(model, pixel_cnn_pp.PolyakAverage(model.weights)).write(
        str(folder / 'ckpt-1'))
    RunFolder(folder).save_model_config(model.config)
    return str(folder)


def script_cli(program, module):
    """A `cli` fixture: cli(*argv) parses argv as `program`'s command line and runs
    module.run on it (in this process: TensorFlow is imported once); flags reset after."""
    from absl import flags

    @pytest.fixture
    def cli():
        def run(*argv):
            flags.FLAGS.unparse_flags()
            flags.FLAGS([program] + [str(a) for a in argv])
            return module.run(module.arguments_from_flags())
        yield run
        flags.FLAGS.unparse_flags()
    return cli


def run_main(module, program, *argv):
    """module.main on this command line in this process, as `python3 <program> argv` runs it
    (errors and signals become one line on stderr and SystemExit); flags reset after."""
    from absl import flags

    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS([program] + [str(a) for a in argv])
        module.main([program])
    finally:
        flags.FLAGS.unparse_flags()


class Unhandled(Exception):
    """A signal that reached the test: the program under test did not handle it.

    Wrap a run in signals.signals_raise(Unhandled), so that a program that stopped
    handling SIGTERM/SIGINT fails the test instead of ending pytest.
    """

    def __init__(self, signum):
        super().__init__('signal %d was not handled by the program' % signum)


def assert_stopped_with_one_line(stderr, program, signum):
    """`program` ended on `signum` with its one line on stderr, and no traceback."""
    import signal

    lines = [line for line in stderr.splitlines() if line.startswith(program + ':')]
    assert lines == ['%s: stopped by %s (signal %d); no output is left half-written'
                     % (program, signal.Signals(signum).name, signum)], stderr[-3000:]
    assert 'Traceback' not in stderr and 'KeyboardInterrupt' not in stderr, stderr[-3000:]
