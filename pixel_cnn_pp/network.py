"""The PixelCNN++ network's shape, described once as data: its levels, their blocks, the
strided pairs between them, the attention, the skip connections, and the output head.

`describe(config)` lays the network out from a ModelConfig (Figure 2 of the paper): two
streams, u (sees the rows above) and ul (above and to the left), through NR_LEVELS
resolutions (config.py), level l at H/2^l x W/2^l. Three things walk the description:

- `PixelCNN._build` creates the layers it names, in the original's order (the up pass
  level by level, finest first; the down pass coarsest first; each level's pairs in
  order), so that checkpoints of the original load by name;
- `PixelCNN.forward` runs them over whole images;
- the cached sampler runs them one row (u stream) or one position (ul stream) at a time.

`PixelCNN.network` is the same description with the layers in place of what describes
them. A new block option is a field in config.py, its entry in the block options below and
its use in nn.GatedResnet; a level more is NR_LEVELS.

Skip connections: the up pass keeps, at each level, the level's first input and each of
its up pairs' outputs (u and ul each on a stack); the down pass takes them back last first,
a down pair's 'skip' each. At the coarsest level the last output starts the down pass, so
it has one down pair fewer: every kept value is taken once.
"""

import collections

import tensorflow as tf

from pixel_cnn_pp import nn
from pixel_cnn_pp.config import NR_LEVELS


class Pair(collections.namedtuple('Pair', 'u ul u_aux ul_aux')):
    """One step of a pass at one level: a gated resnet of the u stream, then one of the ul stream.

    u, ul: in `describe`'s description the blocks' nn.GatedResnet options (a dict), in
      PixelCNN.network the blocks themselves;
    u_aux, ul_aux: the names of each block's auxiliary input `a`, side by side on channels in
      this order (`auxiliary`): 'u' the u stream just computed by this pair's u block (the ul
      block sees it: everything above), 'skip' the block's own stream as the up pass kept it.
    """


# The up pass: ul sees the new u. The down pass: each stream its skip, ul the new u too.
UP = Pair(None, None, u_aux=(), ul_aux=('u',))
DOWN = Pair(None, None, u_aux=('skip',), ul_aux=('u', 'skip'))


class Level(collections.namedtuple('Level', 'index up attention downsample down upsample')):
    """One resolution: level `index` is H / 2^index x W / 2^index.

    up, down: the up pass's and the down pass's Pairs here, in order;
    attention: the causal self-attention on ul after the up pass (-nl), or None;
    downsample: the stride-2 (u, ul) conv pair from here into level index + 1 (after `up`),
      None at the coarsest level;
    upsample: the stride-2 (u, ul) deconv pair from here into level index - 1 (after `down`),
      None at level 0.
    In `describe`'s description attention is the block's options and downsample and
    upsample are True where the pair goes; in PixelCNN.network, the layers.
    """


class Network(collections.namedtuple('Network', 'u_init ul_init_down ul_init_right levels out')):
    """A PixelCNN's layers by resolution (PixelCNN.network), as `forward` uses them.

    u_init, ul_init_down, ul_init_right: the first convs (u: [2, 3] over the rows above; ul:
    [1, 3] over the row above plus [2, 1] over the column to the left); levels: a Level per
    resolution, finest first (the down pass walks them coarsest first); out: the 1x1 output
    layer (None for an energy-distance model).
    """


def describe(config):
    """The Levels of the network a ModelConfig describes, finest first (see Level and Pair)."""
    F, R = config.nr_filters, config.nr_resnet
    block = dict(num_filters=F, nonlinearity=config.resnet_nonlinearity,
                 num_classes=config.num_classes)
    u, ul = dict(block, conv=nn.DownShiftedConv2d), dict(block, conv=nn.DownRightShiftedConv2d)
    levels = []
    for index in range(NR_LEVELS):
        coarsest = index == NR_LEVELS - 1
        attention = (dict(num_filters=F, key_dim=max(F // 2, 8))
                     if config.non_local and index in config.nl_levels else None)
        levels.append(Level(
            index, up=(UP._replace(u=u, ul=ul),) * R, attention=attention,
            downsample=None if coarsest else True,
            down=(DOWN._replace(u=u, ul=ul),) * (R if coarsest else R + 1),
            upsample=True if index > 0 else None))
    return tuple(levels)


def auxiliary(names, u=None, skips=None):
    """A block's auxiliary input: the values `names` (a Pair's u_aux or ul_aux) name, side
    by side on channels, or None for no names. 'u' is `u`; 'skip' takes the last of `skips`
    (a list: the stream's values the up pass kept). Maps, rows or positions alike."""
    parts = [u if name == 'u' else skips.pop() for name in names]
    if len(parts) <= 1:
        return parts[0] if parts else None
    return tf.concat(parts, axis=-1)


def head(ul, dense):
    """The output layer: dense(elu(ul)) in float32, the mixture's parameters.

    Float32 in every precision: the mixture's means need finer steps than a bin (1/127.5),
    which bfloat16's 8-bit mantissa does not have near 1. `dense` is the 1x1 layer as a
    function (the layer, or its incremental form with a kernel computed once).
    """
    return dense(tf.nn.elu(tf.cast(ul, tf.float32)))
