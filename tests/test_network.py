"""The network's description (pixel_cnn_pp/network.py): the levels as data, which the model
creates, its forward pass runs and the cached sampler walks."""

import pytest

from pixel_cnn_pp import ModelConfig, PixelCNN, network
from pixel_cnn_pp.config import NR_LEVELS
from tests.conftest import random_images
from tests.test_cached_sampler import assert_cached_path_is_the_network
from tests.test_model import assert_autoregressive


def test_description_lays_out_the_originals_levels():
    levels = network.describe(ModelConfig(nr_resnet=2, nr_filters=8, non_local=True,
                                          nl_levels=(0, 2)))
    assert len(levels) == NR_LEVELS == 3 and [level.index for level in levels] == [0, 1, 2]
    assert [(len(level.up), len(level.down)) for level in levels] == [(2, 3), (2, 3), (2, 2)]
    assert [level.attention is not None for level in levels] == [True, False, True]
    assert [level.downsample for level in levels] == [True, True, None]
    assert [level.upsample for level in levels] == [None, True, True]
    assert {(p.u_aux, p.ul_aux) for level in levels for p in level.up} == {((), ('u',))}
    assert {(p.u_aux, p.ul_aux) for level in levels for p in level.down} == {
        (('skip',), ('u', 'skip'))}


@pytest.mark.parametrize('nr_resnet', [1, 3])
def test_every_value_the_up_pass_keeps_the_down_pass_takes_once(nr_resnet):
    levels = network.describe(ModelConfig(nr_resnet=nr_resnet))
    for level in levels:
        kept = 1 + len(level.up)  # the level's first input, then each up pair's output
        starts_down_pass = level.downsample is None  # the coarsest level's last one
        for stream in ('u_aux', 'ul_aux'):
            taken = sum(getattr(p, stream).count('skip') for p in level.down)
            assert taken + starts_down_pass == kept, (level.index, stream)


def test_blocks_are_created_with_the_auxiliary_inputs_the_description_names():
    model = PixelCNN((8, 8, 3), seed=0, nr_resnet=2, nr_filters=8, nr_logistic_mix=2)
    pairs = [p for level in model.network.levels for p in level.up + level.down]
    assert len(pairs) == 2 * 3 + 3 + 3 + 2
    for p in pairs:
        for block, names in ((p.u, p.u_aux), (p.ul, p.ul_aux)):
            # concat_elu doubles the channels: 2 * 8 per value the block takes.
            width = block.nin_a.V.shape[0] if block.nin_a is not None else 0
            assert width == 2 * 8 * len(names)


def test_another_number_of_levels_changes_only_the_description(monkeypatch):
    # A fourth level (8x8 down to 1x1), set in one place: the model, its forward pass and the
    # cached sampler follow, causal and equal to each other. (Unconditional: with labels the
    # data-dependent init scales the 1x1 level's convs by ~2000, and float noise with them.)
    monkeypatch.setattr(network, 'NR_LEVELS', 4)
    model = PixelCNN((8, 8, 3), seed=3, nr_resnet=1, nr_filters=8, nr_logistic_mix=2)
    model.initialize(random_images(4, (8, 8, 3), seed=4))
    assert len(model.network.levels) == 4 and len(model.up_strided) == 3
    assert_autoregressive(model, positions=[0, 9, 36, 63])
    assert_cached_path_is_the_network(model)
