"""The PixelCNN++ network (Salimans, Karpathy, Chen, Kingma 2017) as a tf.Module.

The up pass and the down pass below read like Figure 2 of the paper: two
streams, u (everything above) and ul (above and to the left), through three
resolutions with nr_resnet gated resnet blocks each, skip connections from the
up pass into the down pass, and a 1x1 output layer giving the parameters of a
mixture of discretized logistics at every pixel.

Layers are created in the order in which openai/pixel-cnn creates them, and
numbered per kind (conv2d_0, ..., dense_0, ..., deconv2d_0, ...), so a checkpoint of the
original loads by name (see checkpoints.py).
"""

import json
import types

import numpy as np
import tensorflow as tf

from pixel_cnn_pp import attention, coords, losses, nn

# The options a PixelCNN is built from, with the original's defaults. Stored in
# our checkpoints, so a checkpoint knows which network it belongs to.
DEFAULTS = dict(image_shape=(32, 32, 3), nr_resnet=5, nr_filters=160, nr_logistic_mix=10,
                resnet_nonlinearity='concat_elu', num_classes=0, dropout_p=0.5,
                add_coords=False, non_local=False, nl_levels=(1, 2), energy_distance=False)

# The original's energy-distance head (-ed): samples per image, noise channels, width.
ED_SAMPLES, ED_NOISE_CHANNELS, ED_WIDTH = 10, 4, 64


def _check_options(image_shape, nr_resnet, nr_filters, nr_logistic_mix, resnet_nonlinearity,
                   num_classes, dropout_p, non_local, nl_levels):
    if len(image_shape) != 3:
        raise ValueError("'image_shape' must have length 3, representing [height, width, "
                         "channels]; got %r" % (image_shape,))
    h, w, c = image_shape
    if c not in (1, 3):
        raise ValueError("'image_shape' must have 3 (RGB) or 1 channel; got %r" % (image_shape,))
    if h % 4 or w % 4 or h < 4 or w < 4:
        raise ValueError("'image_shape' height and width must be positive multiples of 4 (the "
                         "network works at 3 resolutions, halving twice); got %r" % (image_shape,))
    for name, value in (('nr_resnet', nr_resnet), ('nr_filters', nr_filters),
                        ('nr_logistic_mix', nr_logistic_mix)):
        if int(value) != value or value < 1:
            raise ValueError("'%s' must be a positive integer; got %r" % (name, value))
    if resnet_nonlinearity not in nn.NONLINEARITIES:
        raise ValueError("'resnet_nonlinearity' must be one of %s; got %r"
                         % (sorted(nn.NONLINEARITIES), resnet_nonlinearity))
    if int(num_classes) != num_classes or num_classes < 0:
        raise ValueError("'num_classes' must be 0 (unconditional) or a positive integer; got %r"
                         % (num_classes,))
    if not 0 <= dropout_p < 1:
        raise ValueError("'dropout_p' must be in [0, 1); got %r" % (dropout_p,))
    if non_local:
        if not nl_levels or any(level not in (0, 1, 2) for level in nl_levels):
            raise ValueError("'nl_levels' must be a non-empty subset of 0 (full resolution), "
                             "1 (half), 2 (quarter); got %r" % (nl_levels,))
        for level in nl_levels:
            attention.check_fits(h >> level, w >> level, level)


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
      image_shape: (H, W, C), H and W multiples of 4, C 3 or 1.
      nr_resnet: gated resnet blocks per resolution (original: 5).
      nr_filters: channels of every hidden layer (original: 160).
      nr_logistic_mix: mixture components per pixel (original: 10).
      resnet_nonlinearity: 'concat_elu' (original), 'elu' or 'relu'.
      num_classes: 0 for an unconditional model, else K classes (labels 0..K-1).
      dropout_p: dropout in each resnet block while training (original: 0.5).
      add_coords: CoordConv (-ac): two coordinate channels added to the input.
      non_local: causal self-attention blocks (-nl) on the hidden streams.
      nl_levels: resolutions that get a block: 0 full, 1 half, 2 quarter.
      energy_distance: the original's energy-distance generator head (-ed)
        instead of the mixture likelihood (such a model has no likelihood).
      seed: optional integer for the random initial weights.

    Example (unconditional, 8x8 RGB):
        model = PixelCNN((8, 8, 3), nr_resnet=1, nr_filters=16, nr_logistic_mix=2)
        model.initialize(images)             # uint8 (N, 8, 8, 3)
        nats = model.nll(images)             # (N,) nats per image
        bpd = bits_per_dim(nats, (8, 8, 3))
        x = model.sample(4, seed=0)          # uint8 (4, 8, 8, 3)

    Example (class-conditional):
        model = PixelCNN((32, 32, 3), num_classes=10)
        model.initialize(images, labels)     # labels int (N,) in 0..9
        x = model.sample(10, labels=np.arange(10), seed=0)
    """

    def __init__(self, image_shape=DEFAULTS['image_shape'], nr_resnet=5, nr_filters=160,
                 nr_logistic_mix=10, resnet_nonlinearity='concat_elu', num_classes=0,
                 dropout_p=0.5, add_coords=False, non_local=False, nl_levels=(1, 2),
                 energy_distance=False, seed=None):
        super().__init__(name='model')
        image_shape = tuple(int(d) for d in image_shape)
        nl_levels = tuple(sorted(set(int(level) for level in nl_levels)))
        _check_options(image_shape, nr_resnet, nr_filters, nr_logistic_mix,
                       resnet_nonlinearity, num_classes, dropout_p, non_local, nl_levels)
        # Kept as a JSON string: tf.Module would wrap a dict for tracking.
        self._config_json = json.dumps(dict(
            image_shape=list(image_shape), nr_resnet=int(nr_resnet), nr_filters=int(nr_filters),
            nr_logistic_mix=int(nr_logistic_mix), resnet_nonlinearity=resnet_nonlinearity,
            num_classes=int(num_classes), dropout_p=float(dropout_p),
            add_coords=bool(add_coords), non_local=bool(non_local), nl_levels=list(nl_levels),
            energy_distance=bool(energy_distance)))
        self.image_shape = image_shape
        self.num_classes = int(num_classes)
        self.nr_logistic_mix = int(nr_logistic_mix)
        self.dropout_p = float(dropout_p)
        self.nr_resnet = int(nr_resnet)
        self.add_coords = bool(add_coords)
        self.energy_distance = bool(energy_distance)

        rng = (tf.random.Generator.from_seed(seed) if seed is not None
               else tf.random.Generator.from_non_deterministic_state())
        # The extensions draw from their own generator, so that with the same
        # seed the original layers get the same weights with or without them.
        ext_rng = (tf.random.Generator.from_seed(seed + 1) if seed is not None
                   else tf.random.Generator.from_non_deterministic_state())
        namer = nn.Namer()
        F, R, K = int(nr_filters), self.nr_resnet, self.num_classes
        # The image, two coordinate channels with -ac, and a channel of ones.
        in_channels = image_shape[-1] + (2 if add_coords else 0) + 1
        # Creation order of every layer and block (not tracked by tf.Module).
        self._order = types.SimpleNamespace(items=[], nl_index={})

        def created(item):
            self._order.items.append(item)
            return item

        def u_block(aux):  # a gated resnet of the u stream (sees above)
            return created(nn.GatedResnet(namer, F, nn.DownShiftedConv2d, resnet_nonlinearity,
                                          aux, K, rng))

        def ul_block(aux):  # a gated resnet of the ul stream (sees above and left)
            return created(nn.GatedResnet(namer, F, nn.DownRightShiftedConv2d,
                                          resnet_nonlinearity, aux, K, rng))

        def layer(cls, *args, **kwargs):
            return created(cls(namer, *args, rng=rng, **kwargs))

        # Created in the original's order; see forward() for how they are used.
        self.u_init = layer(nn.DownShiftedConv2d, in_channels, F, (2, 3))
        self.ul_init_down = layer(nn.DownShiftedConv2d, in_channels, F, (1, 3))
        self.ul_init_right = layer(nn.DownRightShiftedConv2d, in_channels, F, (2, 1))
        self.up_blocks, self.up_strided, self.nl_blocks = [], [], []
        for level in range(3):
            self.up_blocks.append([(u_block(0), ul_block(F)) for _ in range(R)])
            if non_local and level in nl_levels:
                self._order.nl_index[level] = len(self.nl_blocks)
                self.nl_blocks.append(created(attention.CausalSelfAttention(
                    'nonlocal_%d' % len(self.nl_blocks), F, max(F // 2, 8), ext_rng)))
            if level < 2:
                self.up_strided.append((layer(nn.DownShiftedConv2d, F, F, stride=(2, 2)),
                                        layer(nn.DownRightShiftedConv2d, F, F, stride=(2, 2))))
        self.down_blocks, self.down_strided = [], []
        for level in range(3):
            reps = R if level == 0 else R + 1
            self.down_blocks.append([(u_block(F), ul_block(2 * F)) for _ in range(reps)])
            if level < 2:
                self.down_strided.append((
                    layer(nn.DownShiftedDeconv2d, F, F, stride=(2, 2)),
                    layer(nn.DownRightShiftedDeconv2d, F, F, stride=(2, 2))))
        if energy_distance:
            # The original's -ed head: noise-fed 1x1 layers giving image samples.
            self.ed_head = [layer(nn.Dense, F, ED_WIDTH),
                            layer(nn.Dense, ED_NOISE_CHANNELS, ED_WIDTH),
                            layer(nn.Dense, 2 * ED_WIDTH, ED_WIDTH),
                            layer(nn.Dense, 2 * ED_WIDTH, image_shape[-1], init_scale=0.1)]
        else:
            self.out = layer(nn.Dense, F,
                             losses.output_channels(image_shape[-1], nr_logistic_mix))
        self._compiled = types.SimpleNamespace(functions={})  # not tracked by tf.Module

    @property
    def config(self):
        """The options this model was built with, as a plain dict (stored in checkpoints)."""
        return json.loads(self._config_json)

    def describe(self):
        """The options as 'name=value, ...', for messages."""
        return ', '.join('%s=%r' % kv for kv in self.config.items())

    # ------------------------------------------------------------------ network

    def named_weights(self):
        """[(name, tf.Variable)] of every trainable weight, in creation order.

        The original's layers carry its TF1 names without ':0', e.g.
        'model/conv2d_0/V', 'model/conditional_weights_3/hw'; the non-local blocks,
        which the original does not have, are 'model/nonlocal_<k>/<wq|wk|wv|wo|bo>'.
        """
        out = []
        for item in self._order.items:
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

    def forward(self, x, h=None, get=nn.identity, init=False, dropout_p=0.0, seed=None):
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
        Returns:
          float (B, H, W, 10*M) for RGB, (B, H, W, 3*M) for one channel; with
          energy_distance, a list of ED_SAMPLES samples (B, H, W, C) in [-1, 1].
        """
        block_index = [0]

        def block_seed():
            block_index[0] += 1
            if dropout_p <= 0:
                return None
            return tf.random.experimental.stateless_fold_in(seed, block_index[0])

        def gr(block, x, a=None):
            return block(x, a, h, get, init, dropout_p, block_seed())

        if self.add_coords:
            x = coords.add_coords(x)
        # A channel of ones marks the image against the zero padding.
        x_pad = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)

        # ---- up pass: keep every u and ul on a stack for the down pass
        u_list = [nn.down_shift(self.u_init(x_pad, get, init))]
        ul_list = [nn.down_shift(self.ul_init_down(x_pad, get, init))
                   + nn.right_shift(self.ul_init_right(x_pad, get, init))]
        for level in range(3):
            for u_block, ul_block in self.up_blocks[level]:
                u_list.append(gr(u_block, u_list[-1]))
                ul_list.append(gr(ul_block, ul_list[-1], u_list[-1]))
            if level in self._order.nl_index:  # causal attention over this resolution
                block = self.nl_blocks[self._order.nl_index[level]]
                ul_list[-1] = block(ul_list[-1], u_list[-1], get)
            if level < 2:  # halve the resolution
                u_conv, ul_conv = self.up_strided[level]
                u_list.append(u_conv(u_list[-1], get, init))
                ul_list.append(ul_conv(ul_list[-1], get, init))

        # ---- down pass: consume the stacks, upsampling between resolutions
        u, ul = u_list.pop(), ul_list.pop()
        for level in range(3):
            for u_block, ul_block in self.down_blocks[level]:
                u = gr(u_block, u, u_list.pop())
                ul = gr(ul_block, ul, tf.concat([u, ul_list.pop()], axis=-1))
            if level < 2:  # double the resolution
                u_deconv, ul_deconv = self.down_strided[level]
                u = u_deconv(u, get, init)
                ul = ul_deconv(ul, get, init)
        assert not u_list and not ul_list
        if self.energy_distance:
            return self._energy_distance_samples(ul, get, init, seed)
        return self.out(tf.nn.elu(ul), get, init)

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
        return (tf.cast(images, tf.float32) - 127.5) / 127.5

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

    def initialize(self, images, labels=None):
        """Data-dependent initialisation on one batch (uint8 NHWC), as the original.

        Every weight-normalised layer's pre-activation gets mean 0 and standard
        deviation init_scale (0.1 for the second conv of a resnet block, else 1)
        on this batch. Dropout is off during this pass.
        """
        images, labels = self.check_inputs(images, labels)
        x = self.scale_images(images)
        h = self.one_hot(labels) if labels is not None else None
        self.forward(x, h, init=True)

    def _require_likelihood(self):
        if self.energy_distance:
            raise ValueError('an energy-distance model (-ed) has no likelihood: it learns a '
                             'sampler, so there is no NLL or bits/dim to compute')

    def log_prob_per_pixel(self, x, h=None, get=nn.identity, dropout_p=0.0, seed=None):
        """Graph-level per-pixel log-probabilities, (B, H, W), for scaled images x."""
        self._require_likelihood()
        out = self.forward(x, h, get=get, dropout_p=dropout_p, seed=seed)
        return losses.log_prob_per_pixel(x, out, self.nr_logistic_mix)

    def train_objective(self, x, h=None, get=nn.identity, dropout_p=0.0, seed=None,
                        focal_gamma=0.0):
        """What training minimises, and the plain NLL to report, both summed over the batch.

        Returns (objective, nll): objective is the summed NLL, or with focal_gamma > 0
        the focal objective sum of -(1 - p)^gamma log p over pixels (p the pixel's
        probability, all channels), or for an energy-distance model the original's
        energy distance. nll is always the plain summed NLL in nats (for an
        energy-distance model, which has none, the energy distance again), so
        bits/dim reported with and without -fl compare.
        """
        if focal_gamma < 0:
            raise ValueError("'focal_gamma' must be >= 0; got %r" % (focal_gamma,))
        if self.energy_distance:
            if focal_gamma > 0:
                raise ValueError('focal loss (-fl) applies to the likelihood; an '
                                 'energy-distance model (-ed) has none')
            samples = self.forward(x, h, get=get, dropout_p=dropout_p, seed=seed)
            loss = losses.energy_distance(x, samples)
            return loss, loss
        log_p = self.log_prob_per_pixel(x, h, get, dropout_p, seed)
        nll = -tf.reduce_sum(log_p)
        if focal_gamma > 0:
            return -tf.reduce_sum(losses.focal_weight(log_p, focal_gamma) * log_p), nll
        return nll, nll

    def loss(self, x, h=None, get=nn.identity, dropout_p=0.0, seed=None):
        """The original's training objective: NLL in nats summed over the batch."""
        return self.train_objective(x, h, get, dropout_p, seed)[0]

    def _compiled_per_pixel(self, get):
        functions = self._compiled.functions
        key = ('nll', get)
        if key not in functions:
            functions[key] = tf.function(_NegLogProbPerPixel(self, get), reduce_retracing=True)
        return functions[key]

    def nll(self, images, labels=None, per_pixel=False, batch_size=64, averages=None):
        """Exact negative log-likelihood in nats, with dropout off.

        Args:
          images: uint8 (N, H, W, C).
          labels: int (N,) in 0..num_classes-1, for a class-conditional model only.
          per_pixel: return (N, H, W) nats per pixel instead of (N,) per image.
          batch_size: images per forward pass.
          averages: optional optim.PolyakAverage to evaluate its averaged weights.
        Returns:
          NumPy float64 array of nats; `bits_per_dim(nats, image_shape)` converts.
        """
        images, labels = self.check_inputs(images, labels)
        fn = self._compiled_per_pixel(averages.average if averages is not None else nn.identity)
        out = []
        for start in range(0, len(images), batch_size):
            x = self.scale_images(images[start:start + batch_size])
            h = self.one_hot(labels[start:start + batch_size]) if labels is not None else None
            out.append(fn(x, h).numpy().astype(np.float64))
        nats = np.concatenate(out)
        return nats if per_pixel else nats.sum(axis=(1, 2))

    def sample(self, n, labels=None, seed=None, method='fast', devices=None, jit_compile=False):
        """Draw n images, pixel by pixel in raster order, with the current weights.

        Args:
          n: number of images.
          labels: int (n,) classes for a conditional model, else None.
          seed: integer for reproducible samples (same seed, same images, with
            either method and on any devices).
          method: 'fast' (the cached sampler: every layer computes each position
            once) or 'naive' (one forward pass of the whole network per pixel,
            as the original). Both draw the same images for the same seed, up to
            float ties (see sampling.py).
          devices: optional device names (distribute.configure_devices(N)) to
            spread the images over, one tower per device.
          jit_compile: compile the cached sampler's loop with XLA.
        Returns:
          uint8 (n, H, W, C).
        """
        from pixel_cnn_pp import sampling  # avoids a cycle: sampling builds on the model
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
