"""The causal non-local block (-nl): causal, the identity when fresh, named apart, sized."""

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import PixelCNN, attention
from tests.conftest import random_images
from tests.test_model import TINY, assert_autoregressive, scramble_attention, tiny_model


def test_unmasked_attention_fails_the_autoregressive_test(monkeypatch):
    model = tiny_model((8, 8, 1), non_local=True, nl_levels=(0,))
    scramble_attention(model)
    # Like the fork's block: every position sees every other. The test must catch it.
    monkeypatch.setattr(attention, 'causal_mask', lambda n: tf.ones([n, n], tf.bool))
    with pytest.raises(AssertionError, match='NLL before position'):
        assert_autoregressive(model, positions=[20])


def test_scrambled_attention_changes_the_likelihood():
    model = tiny_model((8, 8, 3), non_local=True, nl_levels=(1, 2))
    images = random_images(2, (8, 8, 3))
    before = model.nll(images)
    scramble_attention(model)
    assert np.all(np.abs(model.nll(images) - before) > 1e-2)


def test_fresh_non_local_model_computes_the_plain_nll():
    images = random_images(8, (8, 8, 3), seed=2)
    plain = PixelCNN((8, 8, 3), seed=11, **TINY)
    with_nl = PixelCNN((8, 8, 3), seed=11, non_local=True, nl_levels=(0, 1, 2), **TINY)
    plain.initialize(images)
    with_nl.initialize(images)
    np.testing.assert_allclose(with_nl.nll(images), plain.nll(images), rtol=1e-6)


def test_non_local_blocks_have_their_own_names_and_keep_the_originals():
    plain = PixelCNN((8, 8, 3), **TINY)
    with_nl = PixelCNN((8, 8, 3), non_local=True, nl_levels=(1,), **TINY)
    names = [n for n, _ in with_nl.named_weights()]
    assert [n for n in names if 'nonlocal' not in n] == [n for n, _ in plain.named_weights()]
    assert 'model/nonlocal_0/wq' in names


def test_non_local_too_large_for_memory_is_refused():
    with pytest.raises(ValueError, match=r'level 0 \(128x128 = 16384 positions\).*--nl_levels'):
        PixelCNN((128, 128, 3), non_local=True, nl_levels=(0,))
    PixelCNN((128, 128, 3), non_local=True, nl_levels=(2,), nr_resnet=1, nr_filters=8)


def test_bad_nl_levels_are_refused():
    with pytest.raises(ValueError, match="'nl_levels'"):
        PixelCNN((8, 8, 3), non_local=True, nl_levels=(3,))
