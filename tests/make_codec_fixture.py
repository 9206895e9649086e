"""Writes tests/fixtures/codec/patches.pxpp, which every test run decodes on its own machine.

    python3 -m tests.make_codec_fixture

Three of the bundled test patches, coded with the golden cifar_small model (a model of
the original's code, tests/golden/README.md). The file records the machine it was made
on in tests/fixtures/codec/README.md (written alongside).
"""

import os
import platform

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'codec', 'patches.pxpp')
GOLDEN = os.path.join(ROOT, 'tests', 'golden', 'cifar_small')


def golden_model():
    import pixel_cnn_pp

    return pixel_cnn_pp.load(os.path.join(GOLDEN, 'params_golden.ckpt'), image_shape=(32, 32, 3),
                             nr_resnet=1, nr_filters=16, nr_logistic_mix=3)


def patches():
    from pixel_cnn_pp.data import patches_data

    with np.load(patches_data.PATH) as f:
        return f['testx'][[0, 500, 999]]


def main():
    import tensorflow as tf

    from pixel_cnn_pp import compression

    data = compression.compress(golden_model(), patches())
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, 'wb') as f:
        f.write(data)
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                if line.startswith('model name')), platform.processor()) \
        if os.path.exists('/proc/cpuinfo') else platform.processor()
    with open(os.path.join(os.path.dirname(FIXTURE), 'README.md'), 'w') as f:
        f.write('# patches.pxpp\n\nWritten by `python3 -m tests.make_codec_fixture` on %s '
                '(TensorFlow %s, %s), %d bytes. tests/test_compression.py decodes it on '
                'whatever machine runs the tests.\n' % (cpu, tf.__version__,
                                                        platform.platform(), len(data)))
    print('wrote %s (%d bytes)' % (FIXTURE, len(data)))


if __name__ == '__main__':
    main()
