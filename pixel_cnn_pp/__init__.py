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

__version__ = '0.3.0'

from pixel_cnn_pp._startup import import_tensorflow as _import_tensorflow

_import_tensorflow()  # before any module of ours imports it (see _startup.py)

from pixel_cnn_pp.checkpoints import load_checkpoint  # noqa: E402
from pixel_cnn_pp.config import ModelConfig  # noqa: E402
from pixel_cnn_pp.losses import bits_per_dim  # noqa: E402
from pixel_cnn_pp.model import PixelCNN  # noqa: E402
from pixel_cnn_pp.optim import Adam, PolyakAverage  # noqa: E402

__all__ = ['__version__', 'ModelConfig', 'PixelCNN', 'load_checkpoint', 'bits_per_dim', 'Adam', 'PolyakAverage']
