"""ModelConfig: the original's defaults, checks that name the option, JSON both ways, diff."""

import dataclasses
import json

import pytest

from pixel_cnn_pp.config import TRAINING_ONLY, ModelConfig


def test_defaults_are_the_originals():
    config = ModelConfig()
    assert (config.image_shape, config.nr_resnet, config.nr_filters, config.nr_logistic_mix,
            config.resnet_nonlinearity, config.num_classes, config.dropout_p) == \
        ((32, 32, 3), 5, 160, 10, 'concat_elu', 0, 0.5)
    assert not (config.add_coords or config.non_local or config.energy_distance)
    assert config.nl_levels == (1, 2)


def test_json_round_trip_and_the_files_keys():
    config = ModelConfig((8, 8, 1), nr_filters=8, num_classes=3, non_local=True,
                         nl_levels=[2, 0, 2])
    assert config.nl_levels == (0, 2)  # sorted, no repeats
    values = json.loads(config.to_json())
    assert sorted(values) == sorted(ModelConfig.field_names())
    assert values['image_shape'] == [8, 8, 1] and values['nl_levels'] == [0, 2]
    assert ModelConfig.from_json(config.to_json()) == config


def test_a_file_from_before_an_option_existed_gets_its_default():
    values = ModelConfig((8, 8, 3)).to_dict()
    del values['energy_distance']
    assert ModelConfig.from_dict(values).energy_distance is False


def test_an_unknown_option_is_refused_by_name():
    with pytest.raises(ValueError, match='unknown model option.* colour_space'):
        ModelConfig.from_dict(dict(ModelConfig().to_dict(), colour_space='lab'))


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().nr_filters = 8


@pytest.mark.parametrize('options,message', [
    (dict(image_shape=(8, 8)), "'image_shape' must have length 3"),
    (dict(image_shape=(8, 8, 2)), "'image_shape' must have 3 .* or 1 channel"),
    (dict(image_shape=(10, 8, 3)), "'image_shape' height and width must be positive multiples"),
    (dict(image_shape=(0, 8, 3)), "'image_shape' must be a positive integer"),
    (dict(nr_resnet=0), "'nr_resnet' must be a positive integer"),
    (dict(nr_filters=2.5), "'nr_filters' must be a positive integer"),
    (dict(nr_logistic_mix='many'), "'nr_logistic_mix' must be a positive integer"),
    (dict(num_classes=-1), "'num_classes' must be a non-negative integer"),
    (dict(resnet_nonlinearity='tanh'), "'resnet_nonlinearity' must be one of"),
    (dict(dropout_p=1.0), r"'dropout_p' must be in \[0, 1\)"),
    (dict(add_coords=1), "'add_coords' must be True or False"),
    (dict(non_local=True, nl_levels=(3,)), "'nl_levels' must be a non-empty subset"),
    (dict(non_local=True, nl_levels=()), "'nl_levels' must be a non-empty subset"),
    (dict(nl_levels='12'), "'nl_levels' must be a list of integers"),
    (dict(image_shape='883'), "'image_shape' must be a sequence of 3 integers .* not a string"),
])
def test_bad_options_are_refused_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**options)


def test_from_values_reads_the_fields_by_name_and_flag_strings():
    flag_values = dict(nr_resnet=2, nr_filters=8, nl_levels=['2', '1'], learning_rate=0.1,
                       data_set='cifar', non_local=True)
    config = ModelConfig.from_values(flag_values, image_shape=(16, 16, 3), num_classes=10)
    assert (config.nr_resnet, config.nr_filters, config.nl_levels) == (2, 8, (1, 2))
    assert config.image_shape == (16, 16, 3) and config.num_classes == 10


def test_diff_names_what_differs_and_ignores_unused_levels():
    a = ModelConfig((8, 8, 3), nr_filters=8)
    assert a.diff(a.replace()) == {}
    b = a.replace(nr_filters=16, dropout_p=0.1, nl_levels=(0,))
    assert b.diff(a) == {'nr_filters': (16, 8), 'dropout_p': (0.1, 0.5)}  # no -nl: levels unused
    assert b.diff(a, ignore=TRAINING_ONLY) == {'nr_filters': (16, 8)}
    assert b.replace(non_local=True).diff(a)['nl_levels'] == ((0,), (1, 2))
    with pytest.raises(ValueError, match='unknown model option'):
        a.replace(filters=3)


def test_describe_names_every_option():
    text = ModelConfig().describe()
    assert all(name + '=' in text for name in ModelConfig.field_names())


def test_check_integer_is_the_one_count_check():
    import numpy as np

    from pixel_cnn_pp.config import check_integer

    assert [check_integer('n', v) for v in (1, np.int64(7), 3.0, '12')] == [1, 7, 3, 12]
    assert check_integer('num_classes', 0, low=0) == 0
    for bad in (0, -1, 2.5, True, np.bool_(True), None, 'x', '2.5'):
        with pytest.raises(ValueError, match=r"^'batch_size' must be a positive integer \(images "
                                             r"per tower\); got "):
            check_integer('batch_size', bad, meaning='images per tower')
