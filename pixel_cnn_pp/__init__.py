"""PixelCNN++ in TensorFlow 2: exact log-likelihoods and samples of images.

    import pixel_cnn_pp
    model = pixel_cnn_pp.load('runs/patches')     # a run folder, a checkpoint, OpenAI's, 'cifar'
    nats = model.nll(images)                      # uint8 (N, 32, 32, 3)
    bpd = pixel_cnn_pp.bits_per_dim(nats, model.image_shape)
    samples = model.sample(16, seed=0)
    model = pixel_cnn_pp.PixelCNN(pixel_cnn_pp.ModelConfig((32, 32, 3), nr_resnet=1))

The data sets are in `pixel_cnn_pp.data` (`get_loader`). Importing the package
changes nothing in the process (no environment variable, no file descriptor) and
imports no TensorFlow: each public name is imported when first used (PEP 562), so
`pixel_cnn_pp.data` (plain NumPy) loads at once.

References: Salimans, Karpathy, Chen, Kingma, "PixelCNN++: Improving the PixelCNN
with Discretized Logistic Mixture Likelihood and Other Modifications", ICLR 2017;
openai/pixel-cnn.
"""

import importlib

__version__ = '0.3.0'

# Each public name and the module of ours that defines it.
_PUBLIC = {
    'ModelConfig': 'config',
    'PixelCNN': 'model',
    'load': 'loading',
    'bits_per_dim': 'losses',
    'Adam': 'optim',
    'PolyakAverage': 'optim',
}

__all__ = ['__version__', *_PUBLIC]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError('module %r has no attribute %r' % (__name__, name))
    value = getattr(importlib.import_module('%s.%s' % (__name__, _PUBLIC[name])), name)
    globals()[name] = value  # the next use finds it directly
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
