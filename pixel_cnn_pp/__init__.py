"""PixelCNN++ in TensorFlow 2: exact log-likelihoods and samples of images.

    import pixel_cnn_pp
    model = pixel_cnn_pp.load_checkpoint('pxpp/params_cifar.ckpt')   # OpenAI's, or ours
    nats = model.nll(images)                                          # uint8 (N, 32, 32, 3)
    bpd = pixel_cnn_pp.bits_per_dim(nats, model.image_shape)
    samples = model.sample(16, seed=0)
    model = pixel_cnn_pp.PixelCNN(pixel_cnn_pp.ModelConfig((32, 32, 3), nr_resnet=1))

References: Salimans, Karpathy, Chen, Kingma, "PixelCNN++: Improving the PixelCNN
with Discretized Logistic Mixture Likelihood and Other Modifications", ICLR 2017;
openai/pixel-cnn.
"""

import importlib

# name -> module. Imported on first use (PEP 562), so that `pixel_cnn_pp.config` and
# `pixel_cnn_pp.progress` load without TensorFlow (flags.py reads the option choices).
_EXPORTS = {'PixelCNN': 'model', 'ModelConfig': 'config', 'load_checkpoint': 'checkpoints',
            'bits_per_dim': 'losses', 'Adam': 'optim', 'PolyakAverage': 'optim'}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'pixel_cnn_pp' has no attribute %r" % name)
    return getattr(importlib.import_module('pixel_cnn_pp.' + _EXPORTS[name]), name)


def __dir__():
    return sorted(list(globals()) + __all__)
