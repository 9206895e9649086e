"""The PixelCNN++ network (Salimans, Karpathy, Chen, Kingma 2017) as a tf.Module.

The up pass and the down pass below read like Figure 2 of the paper: two
streams, u (everything above) and ul (above and to the left), through the
resolutions network.py describes (the original's three) with nr_resnet gated
resnet blocks each, skip connections from the up pass into the down pass, and a
1x1 output layer giving the parameters of a mixture of discretized logistics at
every pixel. The model creates the layers network.describe lays out, and walks
the same description to run them.

Layers are created in the order in which openai/pixel-cnn creates them, and
numbered per kind (conv2d_0, ..., dense_0, ..., deconv2d_0, ...), so a checkpoint of the
original loads by name (see checkpoints.py).
"""

import types

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import attention, coords, losses, mixture, network, nn
from pixel_cnn_pp import precision as precisions
from pixel_cnn_pp.config import ModelConfig, check_integer

# The original's energy-distance head (-ed): samples per image, noise channels, width.
ED_SAMPLES, ED_NOISE_CHANNELS, ED_WIDTH = 10, 4, 64


def _generator(seed):
    return (tf.random.Generator.from_seed(seed) if seed is not None
            else tf.random.Generator.from_non_deterministic_state())


class _Maker:
    """Creates a model's layers one after another: numbered per kind (nn.Namer), with weights
    drawn from `rng`, listed in `created` (the creation order named_weights follows)."""

    def __init__(self, rng, created):
        self.namer, self.rng, self.created = nn.Namer(), rng, created

    def add(self, item):
        self.created.append(item)
        return item

    def __call__(self, cls, *args, **kwargs):
        return self.add(cls(self.namer, *args, rng=self.rng, **kwargs))

    def pairs(self, specs):
        """The gated resnets of network.Pairs (u, then ul), options from the description; a
        block's auxiliary input has F channels per value it names."""
        def block(options, aux):
            return self(nn.GatedResnet, aux_channels=options['num_filters'] * len(aux), **options)
        return tuple(p._replace(u=block(p.u, p.u_aux), ul=block(p.ul, p.ul_aux)) for p in specs)


class _ForwardPairs:
    """Runs a forward pass's gated resnet pairs (network.Pair): a u block, then a ul block,
    each given the auxiliary input its pair names; numbers the blocks in order (the dropout
    seed of block k folds k into the pass's seed) and reports progress after each."""

    def __init__(self, net, h, get, init, dropout_p, seed, progress):
        self.h, self.get, self.init, self.dropout_p, self.seed = h, get, init, dropout_p, seed
        self.progress, self.done = progress, 0
        self.total = 2 * sum(len(level.up) + len(level.down) for level in net.levels)

    def __call__(self, p, u, ul, u_skips=None, ul_skips=None):
        u = self._block(p.u, u, network.auxiliary(p.u_aux, skips=u_skips))
        return u, self._block(p.ul, ul, network.auxiliary(p.ul_aux, u, ul_skips))

    def _block(self, block, x, a):
        self.done += 1
        seed = (None if self.dropout_p <= 0
                else tf.random.experimental.stateless_fold_in(self.seed, self.done))
        out = block(x, a, self.h, self.get, self.init, self.dropout_p, seed)
        if self.progress is not None:
            self.progress(self.done, self.total)
        return out


class PixelCNN(tf.Module):
    """PixelCNN++: an autoregressive model of images with an exact likelihood.

    p(x) = prod over pixels (i, j) in raster order of p(x[i, j, :] | x[<(i, j)]),
    each pixel's colours a mixture of `nr_logistic_mix` discretized logistics,
    with green depending linearly on red and blue on red and green (RGB), or a
    plain mixture for one channel (MNIST). The network's output at a pixel sees
    only the pixels before it; a one-hot class label may condition every layer.

    Sampling (pseudo-code):
        x = zeros
        for i, j in raster order:
            x[:, i, j, :] = draw from the mixture given network(x)[:, i, j]

    Args:
      config: a ModelConfig (every option, with the original's defaults), or an
        image shape (H, W, C) as a shorthand for ModelConfig(image_shape=...).
      seed: optional integer for the random initial weights.
      precision: the number format the layers compute in (precision.py): 'float32'
        (the default, the original's numbers), 'tf32', 'bfloat16' or 'float16'.
        The weights, the output layer and the likelihood are float32 in every
        precision, so the same weights (any checkpoint) load in any of them.
        Building a model sets TensorFlow's TF32 switch (on only for 'tf32').
      **options: ModelConfig fields that replace the config's (nr_resnet=1, ...).

    Example (unconditional, 8x8 RGB):
        model = PixelCNN((8, 8, 3), nr_resnet=1, nr_filters=16, nr_logistic_mix=2)
        model.initialize(images)             # uint8 (N, 8, 8, 3)
        nats = model.nll(images)             # (N,) nats per image
        bpd = bits_per_dim(nats, (8, 8, 3))
        x = model.sample(4, seed=0)          # uint8 (4, 8, 8, 3)
        fast = PixelCNN((8, 8, 3), precision='bfloat16', nr_resnet=1, nr_filters=16)

    Example (class-conditional):
        model = PixelCNN((32, 32, 3), num_classes=10)
        model.initialize(images, labels)     # labels int (N,) in 0..9
        x = model.sample(10, labels=np.arange(10), seed=0)
    """

    def __init__(self, config=None, seed=None, precision='float32', **options):
        super().__init__(name='model')
        self.precision = precisions.check(precision)
        self.compute_dtype = precisions.compute_dtype(precision)
        precisions.apply_tf32(precision)
        if not isinstance(config, ModelConfig):
            if isinstance(config, (str, bytes)) or not (config is None
                                                        or hasattr(config, '__len__')):
                raise ValueError("PixelCNN's first argument 'config' must be a ModelConfig or an "
                                 "image shape (height, width, channels), e.g. (32, 32, 3); got %r"
                                 % (config,))
            config = ModelConfig() if config is None else ModelConfig(image_shape=config)
        c = self._config = config.replace(**options) if options else config
        self.image_shape, self.num_classes = c.image_shape, c.num_classes
        self.nr_logistic_mix, self.dropout_p = c.nr_logistic_mix, c.dropout_p
        self.nr_resnet, self.add_coords = c.nr_resnet, c.add_coords
        self.energy_distance = c.energy_distance
        # The extensions draw from their own generator, so that with the same
        # seed the original layers get the same weights with or without them.
        rng, ext_rng = _generator(seed), _generator(None if seed is None else seed + 1)
        # Every layer in creation order, and the network view (not tracked by tf.Module).
        self._layers = types.SimpleNamespace(created=[], network=None)
        self._build(c, rng, ext_rng)
        self._compiled = types.SimpleNamespace(functions={})  # not tracked by tf.Module

    def _build(self, c, rng, ext_rng):
        """Every layer network.describe(c) lays out, created in the original's order."""
        F, make = c.nr_filters, _Maker(rng, self._layers.created)
        # The channels network_input gives (the image, then what is known up front).
        in_channels = self.network_input(tf.zeros((1,) + c.image_shape)).shape[-1]
        self.u_init = make(nn.DownShiftedConv2d, in_channels, F, (2, 3))
        self.ul_init_down = make(nn.DownShiftedConv2d, in_channels, F, (1, 3))
        self.ul_init_right = make(nn.DownRightShiftedConv2d, in_channels, F, (2, 1))
        levels = self._build_levels(network.describe(c), F, make, ext_rng)
        out = None
        if c.energy_distance:
            # The original's -ed head: noise-fed 1x1 layers giving image samples.
            self.ed_head = [make(nn.Dense, F, ED_WIDTH),
                            make(nn.Dense, ED_NOISE_CHANNELS, ED_WIDTH),
                            make(nn.Dense, 2 * ED_WIDTH, ED_WIDTH),
                            make(nn.Dense, 2 * ED_WIDTH, c.image_shape[-1], init_scale=0.1)]
        else:
            out = self.out = make(nn.Dense, F,
                                  mixture.output_channels(c.image_shape[-1], c.nr_logistic_mix))
        self._layers.network = network.Network(self.u_init, self.ul_init_down,
                                               self.ul_init_right, levels, out)

    def _build_levels(self, levels, F, make, ext_rng):
        """The levels' layers (the description's Levels with the layers in place): the up pass
        finest first (pairs, attention, stride-2 convs down), then the down pass coarsest first
        (pairs, stride-2 deconvs up). The lists up_blocks, up_strided, nl_blocks (finest
        first), down_blocks and down_strided (coarsest first) are what our checkpoints name.
        """
        levels = list(levels)
        self.up_blocks, self.up_strided, self.nl_blocks = [], [], []
        for l, level in enumerate(levels):
            up, block, strided = make.pairs(level.up), None, None
            self.up_blocks.append([(p.u, p.ul) for p in up])
            if level.attention is not None:
                block = make.add(attention.CausalSelfAttention(
                    'nonlocal_%d' % len(self.nl_blocks), rng=ext_rng, **level.attention))
                self.nl_blocks.append(block)
            if level.downsample is not None:  # into the next level
                strided = (make(nn.DownShiftedConv2d, F, F, stride=(2, 2)),
                           make(nn.DownRightShiftedConv2d, F, F, stride=(2, 2)))
                self.up_strided.append(strided)
            levels[l] = level._replace(up=up, attention=block, downsample=strided)
        self.down_blocks, self.down_strided = [], []
        for l, level in reversed(list(enumerate(levels))):
            down, strided = make.pairs(level.down), None
            self.down_blocks.append([(p.u, p.ul) for p in down])
            if level.upsample is not None:  # into the level before
                strided = (make(nn.DownShiftedDeconv2d, F, F, stride=(2, 2)),
                           make(nn.DownRightShiftedDeconv2d, F, F, stride=(2, 2)))
                self.down_strided.append(strided)
            levels[l] = level._replace(down=down, upsample=strided)
        return tuple(levels)

    @property
    def config(self):
        """The ModelConfig this model was built from (stored beside our checkpoints)."""
        return self._config

    def describe(self):
        """The options as 'name=value, ...', for messages."""
        return self._config.describe()

    @property
    def network(self):
        """The layers by resolution (network.Network of network.Levels): network.describe's
        description of this model with its layers in place. What forward runs and the
        cached sampler walks step by step.

        Example:
            for level in model.network.levels:      # finest first
                for pair in level.up: pair.u, pair.ul, pair.ul_aux ...
        """
        return self._layers.network

    # ------------------------------------------------------------------ network

    def named_weights(self):
        """[(name, tf.Variable)] of every trainable weight, in creation order.

        The original's layers carry its TF1 names without ':0', e.g.
        'model/conv2d_0/V', 'model/conditional_weights_3/hw'; the non-local blocks,
        which the original does not have, are 'model/nonlocal_<k>/<wq|wk|wv|wo|bo>'.
        """
        out = []
        for item in self._layers.created:
            if isinstance(item, nn.GatedResnet):
                for layer in item.layers:
                    out.extend(('model/%s/%s' % (layer.scope, n), v) for n, v in layer.weights)
                if item.hw is not None:
                    out.append(('model/%s/hw' % item.hw_scope, item.hw))
            else:
                out.extend(('model/%s/%s' % (item.scope, n), v) for n, v in item.weights)
        return out

    @property
    def weights(self):
        """The trainable variables in the original's creation order."""
        return [v for _, v in self.named_weights()]

    def forward(self, x, h=None, get=nn.identity, init=False, dropout_p=0.0, seed=None,
                progress=None, compute_dtype=None):
        """The network: mixture parameters at every pixel.

        Args:
          x: float (B, H, W, C), the image scaled to [-1, 1].
          h: float (B, num_classes) one-hot labels, or None for an unconditional model.
          get: variable -> tensor; nn.identity for the raw weights, or a Polyak
            average's `average` for the averaged ones.
          init: run the data-dependent initialisation on this batch (eager, once).
          dropout_p: dropout rate in the resnet blocks (0 for evaluation).
          seed: int32 (2,) seed for the dropout masks when dropout_p > 0 (and
            for the noise of an energy-distance head).
          progress: optional callable(blocks_done, total_blocks), called after each
            gated resnet block (for the eager init pass, which is slow on big models).
          compute_dtype: the dtype the layers compute in (default: the model's
            precision's); the initialisation always runs in float32.
        Returns:
          float (B, H, W, 10*M) for RGB, (B, H, W, 3*M) for one channel; with
          energy_distance, a list of ED_SAMPLES samples (B, H, W, C) in [-1, 1].
        """
        net = self.network
        pair = _ForwardPairs(net, h, get, init, dropout_p, seed, progress)
        dtype = tf.float32 if init else (compute_dtype or self.compute_dtype)
        # Every layer computes in its input's dtype: casting the input sets the precision.
        x_pad = tf.cast(self.network_input(x), dtype)

        # ---- up pass: keep every u and ul on a stack for the down pass
        u_list = [nn.down_shift(net.u_init(x_pad, get, init))]
        ul_list = [nn.down_shift(net.ul_init_down(x_pad, get, init))
                   + nn.right_shift(net.ul_init_right(x_pad, get, init))]
        for level in net.levels:
            for p in level.up:
                u, ul = pair(p, u_list[-1], ul_list[-1])
                u_list.append(u)
                ul_list.append(ul)
            if level.attention is not None:  # causal attention over this resolution
                ul_list[-1] = level.attention(ul_list[-1], u_list[-1], get)
            if level.downsample is not None:  # halve the resolution
                u_conv, ul_conv = level.downsample
                u_list.append(u_conv(u_list[-1], get, init))
                ul_list.append(ul_conv(ul_list[-1], get, init))

        # ---- down pass: consume the stacks, upsampling between resolutions
        u, ul = u_list.pop(), ul_list.pop()
        for level in reversed(net.levels):
            for p in level.down:
                u, ul = pair(p, u, ul, u_list, ul_list)
            if level.upsample is not None:  # double the resolution
                u_deconv, ul_deconv = level.upsample
                u = u_deconv(u, get, init)
                ul = ul_deconv(ul, get, init)
        assert not u_list and not ul_list
        if self.energy_distance:
            return self._energy_distance_samples(tf.cast(ul, tf.float32), get, init, seed)
        return network.head(ul, lambda z: net.out(z, get, init))

    def network_input(self, x):
        """What the first convs see: the image's C channels first, then what is known up front.

        The one place that decides the network's input (the cached sampler builds its
        input here too, from a zero image, and writes only the first C channels): with
        -ac the two coordinate channels, then a channel of ones that marks the image
        against the zero padding.
        """
        if self.add_coords:
            x = coords.add_coords(x)
        return tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)

    def _energy_distance_samples(self, ul, get, init, seed):
        """The original's -ed head: ED_SAMPLES noisy 1x1-generator samples per image."""
        first, noise_in, hidden, last = self.ed_head
        f = first(tf.nn.elu(ul), get, init)
        f = tf.tile(f, [ED_SAMPLES, 1, 1, 1])  # (S*B, H, W, 64)
        shape = tf.concat([tf.shape(f)[:-1], [ED_NOISE_CHANNELS]], 0)
        if seed is None:
            noise = tf.random.uniform(shape, -1.0, 1.0)
        else:
            noise_seed = tf.random.experimental.stateless_fold_in(seed, -1)
            noise = tf.random.stateless_uniform(shape, noise_seed, -1.0, 1.0)
        f += noise_in(noise, get, init)
        f = hidden(nn.concat_elu(f), get, init)
        samples = tf.tanh(last(nn.concat_elu(f), get, init))
        return tf.split(samples, ED_SAMPLES, axis=0)

    # ------------------------------------------------------------- public API

    def scale_images(self, images):
        """uint8 (N, H, W, C) -> float32 in [-1, 1], as the original: (x - 127.5) / 127.5."""
        return mixture.to_value(tf.cast(images, tf.float32))

    def one_hot(self, labels):
        """int labels (N,) -> float one-hot (N, num_classes), or None if unconditional."""
        if not self.num_classes:
            return None
        return tf.one_hot(labels, self.num_classes)

    def check_inputs(self, images, labels=None, name='images'):
        """Validate uint8 NHWC images and labels; return them as NumPy arrays.

        Raises ValueError naming what is wrong and what was expected.
        """
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError("'%s' must be uint8 in 0..255, got dtype %s" % (name, images.dtype))
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError("'%s' must have shape (N, %d, %d, %d), got %s"
                             % ((name,) + self.image_shape + (images.shape,)))
        if images.shape[0] == 0:
            raise ValueError("'%s' is empty: need at least one image" % name)
        return images, self.check_labels(labels, images.shape[0])

    def check_labels(self, labels, n):
        """Validate labels for n images: required (0..K-1) iff the model is conditional."""
        if not self.num_classes:
            if labels is not None:
                raise ValueError("'labels' given, but this model is unconditional "
                                 "(num_classes=0)")
            return None
        if labels is None:
            raise ValueError("'labels' are required: this model is class-conditional "
                             "(num_classes=%d)" % self.num_classes)
        labels = np.asarray(labels)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError("'labels' must be integers of shape (%d,), got %s %s"
                             % (n, labels.dtype, labels.shape))
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError("'labels' must be in 0..%d, got values from %d to %d"
                             % (self.num_classes - 1, labels.min(), labels.max()))
        return labels.astype(np.int32)

    def initialize(self, images, labels=None, progress=None):
        """Data-dependent initialisation on one batch (uint8 NHWC), as the original.

        Every weight-normalised layer's pre-activation gets mean 0 and standard
        deviation init_scale (0.1 for the second conv of a resnet block, else 1)
        on this batch. Dropout is off during this pass. `progress`, if given, is
        called as progress(blocks_done, total_blocks) after each gated resnet block.
        """
        images, labels = self.check_inputs(images, labels)
        x = self.scale_images(images)
        h = self.one_hot(labels) if labels is not None else None
        self.forward(x, h, init=True, progress=progress)

    def require_likelihood(self):
        """Raise ValueError if this model has no likelihood (an energy-distance model, -ed).

        What needs p(x) calls it first: the NLL, the training objective's likelihood, the
        codec (compression.py).
        """
        if self.energy_distance:
            raise ValueError('an energy-distance model (-ed) has no likelihood: it learns a '
                             'sampler, so there is no NLL or bits/dim to compute')

    def log_prob_per_pixel(self, x, h=None, get=nn.identity, dropout_p=0.0, seed=None,
                           compute_dtype=None):
        """Graph-level per-pixel log-probabilities, (B, H, W), for scaled images x.

        The network computes in `compute_dtype` (default: the model's precision's),
        the likelihood in float32.
        """
        self.require_likelihood()
        return self.log_prob_of_output(self.forward(x, h, get=get, dropout_p=dropout_p,
                                                    seed=seed, compute_dtype=compute_dtype), x)

    def log_prob_of_output(self, out, x):
        """Per-pixel log-probabilities (B, H, W) of scaled images x under the network's
        output `out` for them (the mixtures it gives every pixel)."""
        return mixture.log_prob(mixture.unpack(out, self.nr_logistic_mix, x.shape[-1]), x)

    def train_objective(self, x, h=None, get=nn.identity, dropout_p=0.0, seed=None,
                        focal_gamma=0.0, compute_dtype=None):
        """What training minimises, and the plain NLL to report, both summed over the batch.

        Returns (objective, nll): objective is the summed NLL, or with focal_gamma > 0
        the focal objective sum of -(1 - p)^gamma log p over pixels (p the pixel's
        probability, all channels), or for an energy-distance model the original's
        energy distance. nll is always the plain summed NLL in nats (for an
        energy-distance model, which has none, the energy distance again), so
        bits/dim reported with and without -fl compare. Both are float32 whatever
        `compute_dtype` the network computes in (default: the model's precision's).
        """
        if focal_gamma < 0:
            raise ValueError("'focal_gamma' must be >= 0; got %r" % (focal_gamma,))
        if self.energy_distance:
            if focal_gamma > 0:
                raise ValueError('focal loss (-fl) applies to the likelihood; an '
                                 'energy-distance model (-ed) has none')
            samples = self.forward(x, h, get=get, dropout_p=dropout_p, seed=seed,
                                   compute_dtype=compute_dtype)
            loss = losses.energy_distance(x, samples)
            return loss, loss
        log_p = self.log_prob_per_pixel(x, h, get, dropout_p, seed, compute_dtype)
        nll = -tf.reduce_sum(log_p)
        if focal_gamma > 0:
            return -tf.reduce_sum(losses.focal_weight(log_p, focal_gamma) * log_p), nll
        return nll, nll

    def compiled(self, key, build):
        """What is kept on this model under `key`: build() the first time, the same object after.

        The one place for what is traced or compiled once per model and reused: the NLL's
        tf.function (key ('nll', get)), the cached samplers (sampling.py, key
        ('cached_sampler', ...)) and the codec's coding loops (compression.py, key
        ('coding_sampler', ...)), so that sampling again, every epoch of a training run,
        traces nothing new. Keys are tuples whose first item names the user.

        Example:
            fn = model.compiled(('mine', n), lambda: tf.function(...))
        """
        functions = self._compiled.functions
        if key not in functions:
            functions[key] = build()
        return functions[key]

    def _compiled_per_pixel(self, get):
        return self.compiled(('nll', get), lambda: tf.function(
            _NegLogProbPerPixel(self, get), reduce_retracing=True, autograph=False))

    def nll(self, images, labels=None, per_pixel=False, batch_size=64, averages=None,
            progress=None):
        """Exact negative log-likelihood in nats, with dropout off.

        Args:
          images: uint8 (N, H, W, C).
          labels: int (N,) in 0..num_classes-1, for a class-conditional model only.
          per_pixel: return (N, H, W) nats per pixel instead of (N,) per image.
          batch_size: images per forward pass.
          averages: optional optim.PolyakAverage to evaluate its averaged weights.
          progress: optional callable(images_done, total), called after each batch.
        Returns:
          NumPy float64 array of nats; `bits_per_dim(nats, image_shape)` converts.
        """
        if not isinstance(per_pixel, (bool, np.bool_)):
            raise ValueError("'per_pixel' must be True or False; got %r" % (per_pixel,))
        batch_size = check_integer('batch_size', batch_size, meaning='images per forward pass')
        images, labels = self.check_inputs(images, labels)
        fn = self._compiled_per_pixel(averages.average if averages is not None else nn.identity)
        out = []
        for start in range(0, len(images), batch_size):
            x = self.scale_images(images[start:start + batch_size])
            h = self.one_hot(labels[start:start + batch_size]) if labels is not None else None
            out.append(fn(x, h).numpy().astype(np.float64))
            if progress is not None:
                progress(min(start + batch_size, len(images)), len(images))
        nats = np.concatenate(out)
        return nats if per_pixel else nats.sum(axis=(1, 2))

    def every_class(self, n):
        """int32 (n,) labels 0, 1, ..., K-1, 0, 1, ... (every class in turn, as the
        original samples), or None for an unconditional model."""
        if not self.num_classes:
            return None
        return np.mod(np.arange(n), self.num_classes).astype(np.int32)

    def sample(self, n, labels=None, seed=None, method='fast', devices=None, jit_compile=False):
        """Draw n images, pixel by pixel in raster order, with the current weights.

        Args:
          n: number of images.
          labels: int (n,) classes for a conditional model, else None.
          seed: integer for reproducible samples (same seed and method, same
            images, on any devices).
          method: 'fast' (the cached sampler: every layer computes each position
            once) or 'naive' (one forward pass of the whole network per pixel,
            as the original). Both sample the same distribution with the same
            random numbers for a seed: the same images, except where a draw lands
            within rounding of a bin edge (float ties, see sampling.py).
          devices: optional device names (distribute.configure_devices(N)) to
            spread the images over, one tower per device.
          jit_compile: compile the cached sampler's loop with XLA.
        Returns:
          uint8 (n, H, W, C).
        """
        from pixel_cnn_pp import sampling  # the samplers use the model, not the other way

        return sampling.sample(self, n, labels=labels, seed=seed, method=method,
                               devices=devices, jit_compile=jit_compile)

    def complete(self, images, known_rows, labels=None, seed=None, method='fast', devices=None,
                 jit_compile=False):
        """Keep the top `known_rows` rows of each image and sample the rest.

        Args:
          images: uint8 (N, H, W, C) of this model's image shape.
          known_rows: K in 0..H, the rows kept.
          labels, seed, method, devices, jit_compile: as `sample`.
        Returns:
          uint8 (N, H, W, C): rows < K are `images`' own, the rest drawn given them.

        Example:
            halves = model.complete(test_images[:8], known_rows=16, seed=0)
        """
        from pixel_cnn_pp import sampling

        return sampling.complete(self, images, known_rows, labels=labels, seed=seed,
                                 method=method, devices=devices, jit_compile=jit_compile)


class _NegLogProbPerPixel:
    """-log p per pixel of one model with one weight getter, as a callable object.

    TensorFlow's retracing detector groups plain functions by their code, so a
    process that loads several models (one trace each) would be warned about
    "retracing"; an object is its own key, so each model's function is counted alone.
    """

    def __init__(self, model, get):
        self.model, self.get = model, get

    def __call__(self, x, h):
        return -self.model.log_prob_per_pixel(x, h, get=self.get)
