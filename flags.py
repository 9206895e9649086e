"""Command-line flags of train.py and sample.py (and the benches that share the model options).

Every flag of openai/pixel-cnn's train.py, with its long and short name and its
default, except the data and save folders, whose defaults live under your home
folder instead of the original's hard-coded paths. Then the fork's -ac, -nl, -fl,
and what the data sets and the training loop here add. Values are checked when
the command line is parsed, so a bad value stops the program with one line.

    python3 train.py -d patches -q 1 -n 32 -g 1 -x 2
    python3 train.py --nr_gpu 8 -ac -nl

Which script has which flag (each lists its own in --help and refuses the other's):
  - a flag train.py uses: define it above the sample.py section (TRAIN_FLAGS);
  - a flag sample.py alone uses: define it in the sample.py section (sample_flags());
  - a flag compress.py alone uses: define it in the compress.py section (COMPRESS_FLAGS);
  - a flag of train.py that sample.py also reads (the data, the model options, the
    seed): also add its name to SHARED_FLAGS, and, if sample.py reads it otherwise
    (another unit or default), its sample.py help to SAMPLE_PY_HELP.
So adding a training flag or a sampling flag is one definition in its section.

Only definitions live here: train.py and sample.py turn FLAGS into plain arguments once.
"""

import math

from absl import flags

from pixel_cnn_pp.config import NL_LEVELS as LEVELS
from pixel_cnn_pp.config import NONLINEARITIES, TRAINING, ModelConfig
from pixel_cnn_pp.data.loader import DATA_SETS

# The defaults are the configs': the model options' ModelConfig's, the training settings'
# TRAINING (pixel_cnn_pp/config.py, which imports no TensorFlow).
MODEL = ModelConfig()
# Choices spelled out, not read from pixel_cnn_pp (sampling.METHODS, precision.PRECISIONS):
# importing those modules starts TensorFlow, and --help or a bad flag should answer at once.
# tests/test_flags.py holds them equal.
PRECISIONS = ['float32', 'tf32', 'bfloat16', 'float16']  # precision.PRECISIONS, for both flags
NL_LEVELS = [str(level) for level in LEVELS]  # the network's levels (config.NR_LEVELS)

# ---------------------------------------------------------------------- data I/O
flags.DEFINE_string('data_dir', '~/pxpp/data', 'Location for the dataset (data sets that '
                    'download put their files here).', short_name='i')
flags.DEFINE_string('save_dir', '~/pxpp/save', 'Location for parameter checkpoints and '
                    'samples.', short_name='o')
flags.DEFINE_enum('data_set', 'cifar', sorted(DATA_SETS),
                  'Data set: cifar (CIFAR-10), imagenet (Small ImageNet 32 or 64), mnist, folder '
                  '(your images in <data_dir>/train and <data_dir>/test), or patches (the small '
                  'offline set bundled in pixel_cnn_pp/data/patches).', short_name='d')
flags.DEFINE_integer('save_interval', 20, 'Every how many epochs to write samples, and after the '
                     'first and the last (the samples of epoch e are drawn with --seed + e; a '
                     'checkpoint is written after every epoch).', lower_bound=1, short_name='t')
flags.DEFINE_boolean('load_params', False, 'Restore training from the latest checkpoint in '
                     '--save_dir and continue exactly where it stopped; with none of ours there, '
                     'start from OpenAI\'s params_<data_set>.ckpt in --save_dir, as the '
                     'original does.', short_name='r')
flags.DEFINE_string('init_checkpoint', None, 'Start a new run from the weights and Polyak '
                    'averages of this checkpoint, ours or OpenAI\'s (e.g. params_cifar.ckpt): a '
                    'prefix, its .index file or a folder. Adam, the epoch and the learning rate '
                    'start afresh.')
flags.DEFINE_integer('image_size', None, 'imagenet: 32 (default) or 64. folder: resize every '
                     'image to this size (default: keep; all must match).', lower_bound=1)
flags.DEFINE_boolean('download', True, 'cifar and mnist: download missing files '
                     '(--nodownload: fail instead).')

# ------------------------------------------------------------------------- model
flags.DEFINE_integer('nr_resnet', MODEL.nr_resnet, 'Number of residual blocks per stage of the '
                     'model.', lower_bound=1, short_name='q')
flags.DEFINE_integer('nr_filters', MODEL.nr_filters, 'Number of filters to use across the model. '
                     'Higher = larger model.', lower_bound=1, short_name='n')
flags.DEFINE_integer('nr_logistic_mix', MODEL.nr_logistic_mix, 'Number of logistic components in '
                     'the mixture. Higher = more flexible model.', lower_bound=1, short_name='m')
flags.DEFINE_enum('resnet_nonlinearity', MODEL.resnet_nonlinearity, list(NONLINEARITIES), 'Which '
                  'nonlinearity to use in the ResNet layers.', short_name='z')
flags.DEFINE_boolean('class_conditional', bool(MODEL.num_classes), 'Condition generative model on '
                     'labels?', short_name='c')
flags.DEFINE_boolean('energy_distance', MODEL.energy_distance, 'Use energy distance in place of '
                     'likelihood.', short_name='ed')
flags.DEFINE_boolean('add_coords', MODEL.add_coords, 'CoordConv: add two coordinate channels to '
                     'the input.', short_name='ac')
flags.DEFINE_boolean('non_local', MODEL.non_local, 'Add causal self-attention (non-local) blocks '
                     'at the resolutions of --nl_levels.', short_name='nl')
flags.DEFINE_list('nl_levels', [str(level) for level in MODEL.nl_levels], 'With -nl: resolutions '
                  'that get an attention block, comma-separated: 0 full, 1 half, 2 quarter.')
flags.DEFINE_boolean('focal_loss', False, 'Train on the focal objective, each pixel\'s NLL '
                     'weighted by (1 - p)^gamma (reported bits/dim stay the plain NLL).',
                     short_name='fl')
flags.DEFINE_float('focal_gamma', 2.0, 'gamma of -fl (>= 0; 0 is the plain NLL).')

# ------------------------------------------------------------------ optimization
flags.DEFINE_float('learning_rate', TRAINING.learning_rate, 'Base learning rate.', short_name='l')
flags.DEFINE_float('lr_decay', TRAINING.lr_decay, 'Learning rate decay, applied every step of the '
                   'optimization.', short_name='e')
flags.DEFINE_integer('batch_size', TRAINING.batch_size, 'Batch size during training per GPU (per '
                     'tower).', lower_bound=1, short_name='b')
flags.DEFINE_integer('init_batch_size', TRAINING.init_batch_size, 'How much data to use for '
                     'data-dependent initialization.', lower_bound=1, short_name='u')
flags.DEFINE_float('dropout_p', MODEL.dropout_p, 'Dropout strength (i.e. 1 - keep_prob). 0 = No '
                   'dropout, higher = more dropout.', short_name='p')
flags.DEFINE_integer('max_epochs', 5000, 'How many epochs to run in total?', lower_bound=1,
                     short_name='x')
flags.DEFINE_integer('nr_gpu', 8, 'How many GPUs to distribute the training across (towers; on '
                     'a machine without GPUs, logical CPU devices).', lower_bound=1,
                     short_name='g')
flags.DEFINE_boolean('multi_worker', False, 'Train across machines with '
                     'MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG, or under '
                     'Slurm\'s srun from its variables (one task per worker, --nr_gpu GPUs '
                     'each). Every worker needs the same --save_dir on a shared filesystem.')
flags.DEFINE_integer('worker_port', 8888, '--multi_worker under srun: the port of the first '
                     'worker on each node (the k-th task of a node listens on port + k).',
                     lower_bound=1, upper_bound=65535)
flags.DEFINE_float('worker_timeout', 600, '--multi_worker: seconds to wait for every worker of '
                   'TF_CONFIG to start before giving up (0: no limit).', lower_bound=0)
flags.DEFINE_boolean('jit_compile', False, 'Compile each tower\'s step with XLA (see '
                     'bench/train_throughput.py for which is faster on your machine).')
# Strict float32 by default here, for sample.py and compress.py; train.py's default is
# tf32 (TRAIN_PY_HELP).
flags.DEFINE_enum('precision', 'float32', PRECISIONS,
                  'What the network computes in: float32 (the default: strict float32, exactly '
                  'the original\'s numbers, TF32 off on GPUs), tf32 (GPUs of compute capability '
                  '8.0+: TF32 in convolutions and matmuls), bfloat16 (CPUs with AVX-512 BF16 or '
                  'AMX, GPUs of compute capability 8.0+, TPUs: about twice as fast), float16 '
                  '(older GPUs, with loss scaling in training). Weights, the likelihood and '
                  'checkpoints stay float32 in every precision.')
flags.DEFINE_enum('eval_precision', 'float32', PRECISIONS,
                  'What the test bits/dim of each epoch are computed in (strict float32 whatever '
                  '--precision is, so they compare with the paper\'s).')

# -------------------------------------------------------------------- evaluation
flags.DEFINE_float('polyak_decay', TRAINING.polyak_decay, 'Exponential decay rate of the sum of '
                   'previous model iterates during Polyak averaging.')
flags.DEFINE_integer('num_samples', 1, 'How many batches (of batch_size x nr_gpu images) of '
                     'samples to output each time samples are written; 0: none. (sample.py\'s '
                     '--num_samples counts images.)', lower_bound=0, short_name='ns')

# ------------------------------------------------------- checkpoints and logging
flags.DEFINE_integer('save_steps', 0, 'Also write a checkpoint every this many steps within an '
                     'epoch (0: only after each epoch, and on SIGTERM/SIGINT).', lower_bound=0)
flags.DEFINE_integer('keep_checkpoints', 3, 'How many recent checkpoints to keep.',
                     lower_bound=1)

# --------------------------------------------------------------- reproducibility
flags.DEFINE_integer('seed', TRAINING.seed, 'Random seed to use (the samples of epoch e are drawn '
                     'with seed + e).', lower_bound=0, upper_bound=2 ** 32 - 1, short_name='s')
flags.DEFINE_boolean('deterministic', False, 'Deterministic kernels only '
                     '(tf.config.experimental.enable_op_determinism): on GPUs a run repeats, '
                     'and -r continues with the numbers of a run never stopped, at some cost in '
                     'speed; without it, cuDNN\'s backward passes add in an order that varies '
                     'from run to run (CPU kernels repeat either way). -r keeps the run\'s '
                     'setting unless this flag is given.')


def _in_open_interval(low, high, low_open=False, high_open=False):
    def check(value):
        return (math.isfinite(value)
                and (value > low if low_open else value >= low)
                and (value < high if high_open else value <= high))
    return check


flags.register_validator('learning_rate', _in_open_interval(0, math.inf, low_open=True),
                         message='--learning_rate must be a finite number > 0')
flags.register_validator('lr_decay', _in_open_interval(0, 1, low_open=True),
                         message='--lr_decay must be in (0, 1]')
flags.register_validator('dropout_p', _in_open_interval(0, 1, high_open=True),
                         message='--dropout_p must be in [0, 1)')
flags.register_validator('polyak_decay', _in_open_interval(0, 1, high_open=True),
                         message='--polyak_decay must be in [0, 1)')
flags.register_validator('focal_gamma', math.isfinite, message='--focal_gamma must be finite')
flags.register_validator('save_dir', bool, message='-o/--save_dir must name a folder (it is empty)')
flags.register_validator('data_dir', bool, message='-i/--data_dir must name a folder (it is empty)')


def _valid_levels(levels):
    return bool(levels) and all(level in NL_LEVELS for level in levels)


flags.register_validator('nl_levels', _valid_levels,
                         message='--nl_levels must list resolutions among %s (e.g. 1,2)'
                         % ', '.join(NL_LEVELS))


@flags.multi_flags_validator(
    ['focal_loss', 'energy_distance'],
    message='-fl/--focal_loss cannot be combined with -ed/--energy_distance: focal loss weights '
    'the likelihood, which -ed replaces')
def _focal_loss_without_energy_distance(values):
    return not (values['focal_loss'] and values['energy_distance'])


@flags.multi_flags_validator(['focal_loss', 'focal_gamma'],
                             message='--focal_gamma must be >= 0 with -fl/--focal_loss')
def _focal_gamma_non_negative(values):
    return not values['focal_loss'] or values['focal_gamma'] >= 0


# Every flag above is train.py's; the ones below are sample.py's alone.
TRAIN_FLAGS = tuple(f.name for f in flags.FLAGS.get_flags_for_module(__name__))

# The flags above that sample.py reads too: the data and save folders, --data_set and
# --image_size (the image shape of a TF1 checkpoint, and the test set of --eval),
# --download, the model options (OpenAI's TF1 checkpoints do not store them; ours do,
# and any given must agree), --batch_size (images per evaluation batch), --nr_gpu
# (towers to sample on), --jit_compile (compile the sampler), --precision, --num_samples,
# --seed.
SHARED_FLAGS = ('data_dir', 'save_dir', 'data_set', 'image_size', 'download',
                'nr_resnet', 'nr_filters', 'nr_logistic_mix', 'resnet_nonlinearity',
                'class_conditional', 'energy_distance', 'add_coords', 'non_local', 'nl_levels',
                'batch_size', 'nr_gpu', 'jit_compile', 'precision', 'num_samples', 'seed')

# train.py's own help and default of a flag defined above (it applies them before parsing).
TRAIN_PY_HELP = {
    'precision': ('What the training steps compute in: tf32 (the default: float32, with TF32 '
                  'in convolutions and matmuls on GPUs of compute capability 8.0+, several '
                  'times faster; the same as float32 elsewhere), float32 (strict float32: '
                  'exactly the original\'s numbers), bfloat16 (CPUs with AVX-512 BF16 or AMX, '
                  'GPUs of compute capability 8.0+, TPUs: about twice as fast), float16 (older '
                  'GPUs, with loss scaling). Weights, the likelihood and checkpoints stay '
                  'float32 in every precision; test bits/dim and samples are strict float32 '
                  '(--eval_precision).', 'tf32'),
}

# How sample.py reads a shared flag that it uses otherwise: its help there, and its
# default there (None: the same). sample.py's --help shows these.
SAMPLE_PY_HELP = {
    'num_samples': ('How many images to draw (train.py\'s -ns counts batches).', 16),
    'batch_size': ('--eval and --score: how many images per batch on each tower.', None),
    'seed': ('Random seed of the samples: the same seed gives the same images.', None),
    'nr_gpu': ('How many towers to split the images over (sampling, --eval, --score; at most '
               'one per image): GPUs, or on a machine without GPUs logical CPU devices '
               '(default: every visible GPU, or the CPU).', None),
    'jit_compile': ('Compile the sampler with XLA (slower to start, faster after: see the '
                    'sampling speed in docs/benchmarks.md).', None),
    'precision': ('What the network computes in when sampling and with --eval/--score: '
                  'float32 (the default: strict float32, whatever trained the checkpoint), '
                  'tf32 (GPUs), bfloat16 (CPUs with AVX-512 BF16 or AMX, recent GPUs: about '
                  'twice as fast), float16 (older GPUs). The checkpoint is float32 and loads '
                  'in any.', None),
}


# ===================================================================== sample.py
# The flags of sample.py alone (it reads SHARED_FLAGS too).
flags.DEFINE_string('checkpoint', None, 'sample.py: the checkpoint to load: a prefix (e.g. '
                    'save/ckpt-12 or pxpp/params_cifar.ckpt), its .index file, or a folder (its '
                    'latest checkpoint). Default: --save_dir.')
flags.DEFINE_enum('pretrained', None, ['cifar'], 'sample.py: use OpenAI\'s published checkpoint '
                  'instead: cifar is params_cifar.ckpt (2.92 bits/dim on CIFAR-10) from pxpp.zip '
                  '(656 MB), downloaded once into --cache_dir.')
flags.DEFINE_string('pretrained_url', None, 'sample.py: where to download pxpp.zip (default: '
                    '$PIXELCNN_PRETRAINED_URL, else http://alpha.openai.com/pxpp.zip).')
flags.DEFINE_string('cache_dir', None, 'sample.py: folder for pxpp.zip and its checkpoint '
                    '(default: $PIXELCNN_CACHE_DIR, else ~/.cache/pixel_cnn_pp).')
flags.DEFINE_string('checksum', None, 'sample.py: expected checksum of pxpp.zip, sha256:<hex> '
                    'or md5:<hex>. OpenAI publishes none; without one the zip must be whole and '
                    'the checkpoint must load with every variable and shape.')
flags.DEFINE_list('labels', None, 'sample.py, class-conditional models: the class of each '
                  'sample, comma-separated (default: every class in turn).')
flags.DEFINE_enum('method', 'fast', ['fast', 'naive'], 'sample.py: fast (cached: every layer '
                  'computes each position once) or naive (the whole network once per pixel, as '
                  'the original). The same distribution and random numbers: the same images for '
                  'a seed, except where a draw lands within rounding of a bin edge.')
flags.DEFINE_string('output', None, 'sample.py: path prefix of the outputs, <output>.png (a '
                    'grid) and <output>.npz (samples, labels). Default: '
                    '<save_dir>/samples_seed<seed> (with --score <save_dir>/scores). compress.py: '
                    'the .pxpp file to write; with --decompress the folder of PNGs (or an .npz) '
                    '(default: the .pxpp file\'s name without .pxpp).')
flags.DEFINE_boolean('eval', False, 'sample.py: also report the checkpoint\'s test bits/dim on '
                     '--data_set (from --data_dir).')
flags.DEFINE_integer('eval_images', 0, 'sample.py --eval: evaluate only the first this many test '
                     'images (0: all).', lower_bound=0)
flags.DEFINE_boolean('use_ema', True, 'sample.py: use the Polyak-averaged weights, as the '
                     'original samples and tests (--nouse_ema: the raw weights).')
flags.DEFINE_list('complete', None, 'sample.py: complete these images instead of sampling new '
                  'ones: PNG/JPEG files, folders of them, or .npz files of uint8 images of the '
                  'model\'s shape, comma-separated. Keeps the top --known_rows rows of each and '
                  'samples the rest, --num_samples completions per image (default 4).')
flags.DEFINE_integer('known_rows', None, 'sample.py --complete: rows kept from the top of each '
                     'image, 0..height (default: half the height).')
flags.DEFINE_list('score', None, 'sample.py: score these images instead of sampling (read as '
                  '--complete reads them): <output>.csv with each image\'s bits/dim and nats, and '
                  '<output>.png, each image beside a heatmap of its bits per pixel on one colour '
                  'scale (the bar below; its range is printed). A class-conditional model needs '
                  '--labels, one per image.')

# Every flag above is train.py's or sample.py's; the ones below are compress.py's alone.
_TRAIN_AND_SAMPLE_FLAGS = tuple(f.name for f in flags.FLAGS.get_flags_for_module(__name__))

# ==================================================================== compress.py
# It also reads sample.py's --checkpoint, --pretrained, --use_ema, --labels (one per
# image, stored in the file), --output, --batch_size (images coded together) and the
# model flags (for OpenAI's checkpoints).
flags.DEFINE_list('compress', None, 'compress.py: compress these images (read as --complete '
                  'reads them) into the .pxpp file --output, losslessly, with the checkpoint\'s '
                  'model.')
flags.DEFINE_string('decompress', None, 'compress.py: decompress this .pxpp file (made with the '
                    'same checkpoint) into the folder --output, one PNG per image.')

# compress.py's own flags (sample.py's help leaves them out).
COMPRESS_FLAGS = tuple(f.name for f in flags.FLAGS.get_flags_for_module(__name__)
                       if f.name not in _TRAIN_AND_SAMPLE_FLAGS)


def sample_flags():
    """The names of sample.py's flags: SHARED_FLAGS, then every flag of its section."""
    return SHARED_FLAGS + tuple(n for n in _TRAIN_AND_SAMPLE_FLAGS if n not in TRAIN_FLAGS)
