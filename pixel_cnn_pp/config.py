"""The options a PixelCNN is built from: one frozen dataclass, the original's defaults.

Every model option lives here once: its default (openai/pixel-cnn's), its check, and
its place in the JSON stored beside our checkpoints. The network (model.py) reads
it, checkpoints store it, and train.py, sample.py and the benches build it from
their flags by field name. Adding an option means: a field here, its use in the
network, its flag in flags.py.

    config = ModelConfig(image_shape=(32, 32, 3), nr_resnet=1, nr_filters=32)
    model = PixelCNN(config)
    text = config.to_json()                    # stored in a run folder (RunFolder)
    ModelConfig.from_json(text).diff(config)   # {} : nothing differs

Plain Python: TensorFlow is needed only to check an attention block's size.
"""

import dataclasses
import json
from typing import Tuple

NONLINEARITIES = ('concat_elu', 'elu', 'relu')  # nn.NONLINEARITIES implements each
# The network's resolutions, each half as high and wide as the one before (the original's
# three: full, half and quarter). network.py lays the levels out from this number alone.
NR_LEVELS = 3
NL_LEVELS = tuple(range(NR_LEVELS))  # where an attention block may go


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The options of a PixelCNN++ network, checked when made.

    Attributes:
      image_shape: (H, W, C), H and W positive multiples of 2^(NR_LEVELS - 1) (4), C 3
        (RGB) or 1.
      nr_resnet: gated resnet blocks per resolution (original: 5).
      nr_filters: channels of every hidden layer (original: 160).
      nr_logistic_mix: mixture components per pixel (original: 10).
      resnet_nonlinearity: 'concat_elu' (original), 'elu' or 'relu'.
      num_classes: 0 for an unconditional model, else K classes (labels 0..K-1).
      dropout_p: dropout in each resnet block while training (original: 0.5); it
        changes no weight, so a checkpoint may be trained on with another value.
      add_coords: CoordConv (-ac): two coordinate channels added to the input.
      non_local: causal self-attention blocks (-nl) on the hidden streams.
      nl_levels: resolutions that get a block with non_local: 0 full, 1 half,
        2 quarter, ... (NL_LEVELS; kept sorted, without repeats).
      energy_distance: the original's energy-distance generator head (-ed)
        instead of the mixture likelihood (such a model has no likelihood).

    Raises ValueError naming the option, what it got and what it takes.
    """

    image_shape: Tuple[int, int, int] = (32, 32, 3)
    nr_resnet: int = 5
    nr_filters: int = 160
    nr_logistic_mix: int = 10
    resnet_nonlinearity: str = 'concat_elu'
    num_classes: int = 0
    dropout_p: float = 0.5
    add_coords: bool = False
    non_local: bool = False
    nl_levels: Tuple[int, ...] = (1, 2)
    energy_distance: bool = False

    def __post_init__(self):
        # Normalised first (a frozen dataclass sets through object.__setattr__), so that
        # a config read from JSON (lists) equals one made in Python (tuples).
        _check_length(self.image_shape)

        def set_(name, value):
            object.__setattr__(self, name, value)

        set_('image_shape', tuple(check_integer('image_shape', d, 1) for d in self.image_shape))
        for name in ('nr_resnet', 'nr_filters', 'nr_logistic_mix'):
            set_(name, check_integer(name, getattr(self, name), 1))
        set_('num_classes', check_integer('num_classes', self.num_classes, 0))
        set_('nl_levels', tuple(sorted(set(check_integer('nl_levels', v, 0)
                                           for v in _sequence('nl_levels', self.nl_levels)))))
        for name in ('add_coords', 'non_local', 'energy_distance'):
            if not isinstance(getattr(self, name), bool):
                raise ValueError("'%s' must be True or False; got %r" % (name, getattr(self, name)))
        try:
            set_('dropout_p', float(self.dropout_p))
        except (TypeError, ValueError):
            raise ValueError("'dropout_p' must be a number in [0, 1); got %r"
                             % (self.dropout_p,)) from None
        self._check()

    def _check(self):
        h, w, c = self.image_shape
        if c not in (1, 3):
            raise ValueError("'image_shape' must have 3 (RGB) or 1 channel; got %r"
                             % (self.image_shape,))
        multiple = 2 ** (NR_LEVELS - 1)
        if h % multiple or w % multiple:
            raise ValueError("'image_shape' height and width must be positive multiples of %d "
                             "(the network works at %d resolutions, halving %d times); got %r"
                             % (multiple, NR_LEVELS, NR_LEVELS - 1, self.image_shape))
        if self.resnet_nonlinearity not in NONLINEARITIES:
            raise ValueError("'resnet_nonlinearity' must be one of %s; got %r"
                             % (list(NONLINEARITIES), self.resnet_nonlinearity))
        if not 0 <= self.dropout_p < 1:
            raise ValueError("'dropout_p' must be in [0, 1); got %r" % (self.dropout_p,))
        if self.non_local:
            if not self.nl_levels or any(v not in NL_LEVELS for v in self.nl_levels):
                raise ValueError("'nl_levels' must be a non-empty subset of %s (0 full resolution, "
                                 "1 half, 2 quarter, ...); got %r"
                                 % (', '.join(map(str, NL_LEVELS)), self.nl_levels))
            from pixel_cnn_pp import attention  # TensorFlow: only for a model with -nl

            for level in self.nl_levels:
                attention.check_fits(h >> level, w >> level, level)

    # ------------------------------------------------------------------ making one

    @classmethod
    def field_names(cls):
        """The option names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_values(cls, values, **overrides):
        """A config from the entries of `values` named like a field, then `overrides`.

        `values` may hold anything else as well (e.g. every flag of train.py by
        name): only the option names are read, which is how the scripts map
        their flags onto the options.
        """
        picked = {name: values[name] for name in cls.field_names() if name in values}
        picked.update(overrides)
        return cls(**picked)

    def replace(self, **changes):
        """A copy with `changes` (checked like a new config)."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError('unknown model option(s) %s; the options are %s'
                             % (', '.join(unknown), ', '.join(self.field_names())))
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------- JSON

    def to_dict(self):
        """The options as JSON-ready values (tuples become lists)."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        """The inverse of to_dict. Missing options take their defaults (a file written
        before the option existed); an unknown one is a ValueError naming it."""
        return cls().replace(**values)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    # -------------------------------------------------------------- comparing two

    def diff(self, other, ignore=()):
        """{option: (ours, theirs)} for every option on which `other` differs.

        nl_levels counts only where either side has non_local (otherwise no block
        uses it). `ignore` names options left out, e.g. ('dropout_p',) to ask
        whether two configs build the same weights.
        """
        out = {}
        for name in self.field_names():
            if name in ignore or (name == 'nl_levels'
                                  and not (self.non_local or other.non_local)):
                continue
            ours, theirs = getattr(self, name), getattr(other, name)
            if ours != theirs:
                out[name] = (ours, theirs)
        return out

    def describe(self):
        """The options as 'name=value, ...', for messages."""
        return ', '.join('%s=%r' % (name, getattr(self, name)) for name in self.field_names())


# Options that change no weight: a run may resume or fine-tune with other values.
TRAINING_ONLY = ('dropout_p',)


@dataclasses.dataclass(frozen=True)
class TrainingDefaults:
    """The original train.py's training settings: the defaults of Trainer, PolyakAverage
    and train.py's flags (which read them here, so they are said once)."""

    batch_size: int = 16  # images per tower and step
    init_batch_size: int = 16  # images of the data-dependent init
    learning_rate: float = 1e-3
    lr_decay: float = 0.999995  # the learning rate is multiplied by it before every step
    polyak_decay: float = 0.9995
    seed: int = 1


TRAINING = TrainingDefaults()


def _check_length(image_shape):
    if isinstance(image_shape, (str, bytes)):
        raise ValueError("'image_shape' must be a sequence of 3 integers (height, width, "
                         "channels), e.g. (32, 32, 3), not a string; got %r" % (image_shape,))
    try:
        ok = len(image_shape) == 3
    except TypeError:
        ok = False
    if not ok:
        raise ValueError("'image_shape' must have length 3, representing [height, width, "
                         "channels]; got %r" % (image_shape,))


def _sequence(name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
        raise ValueError("'%s' must be a list of integers; got %r" % (name, value))
    return value


def check_integer(name, value, low=1, meaning=None):
    """int(value) if it is a whole number >= low (1 or 0), else ValueError naming `name`.

    The one check of a count the library is given ('batch_size', 'nr_filters', ...);
    strings of digits pass too, as flags and JSON give them; True and False do not.
    `meaning` is said after the rule: "'batch_size' must be a positive integer (images
    per tower); got 0".
    """
    try:
        number = int(value)
        whole = type(value).__name__ not in ('bool', 'bool_') and number == float(value)
    except (TypeError, ValueError):
        whole = False
    if not whole or number < low:
        raise ValueError("'%s' must be %s integer%s%s; got %r"
                         % (name, 'a positive' if low else 'a non-negative',
                            '' if name != 'nl_levels' else 's',
                            ' (%s)' % meaning if meaning else '', value))
    return number
