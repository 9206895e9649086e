"""Tests for the bundled offline data set (pixel_cnn_pp/data/patches/patches_32x32.npz, cut by
data/make_patches.py) and its loader (pixel_cnn_pp/data/patches_data.py)."""

import os

import numpy as np
import pytest

from data import make_patches
from pixel_cnn_pp.data import patches_data
from pixel_cnn_pp.data.loader import get_loader


@pytest.fixture(scope='module')
def z():
    with np.load(patches_data.PATH, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def test_file_is_small_and_holds_4000_train_and_1000_test_uint8_patches(z):
    assert os.path.getsize(patches_data.PATH) < 10 * 2**20
    assert z['trainx'].shape == (4000, 32, 32, 3) and z['testx'].shape == (1000, 32, 32, 3)
    assert z['trainx'].dtype == z['testx'].dtype == np.uint8
    assert z['trainy'].shape == (4000,) and z['testy'].shape == (1000,)
    assert list(z['photos']) == ['astronaut', 'chelsea', 'coffee', 'rocket']
    assert np.bincount(z['trainy']).tolist() == [1000] * 4
    assert np.bincount(z['testy']).tolist() == [250] * 4


def test_no_test_patch_overlaps_a_training_patch_in_its_photo(z):
    for label in range(4):
        train = z['train_origin'][z['trainy'] == label]
        test = z['test_origin'][z['testy'] == label]
        assert train[:, 1].max() + 32 <= test[:, 1].min()  # columns: train left of the strip
        assert train.min() >= 0 and test.min() >= 0


def test_no_test_patch_equals_any_training_patch(z):
    train = {p.tobytes() for p in z['trainx']}
    assert not any(p.tobytes() in train for p in z['testx'])
    assert len({p.tobytes() for p in z['testx']}) == 1000  # and the test set has no repeats


def test_patches_are_cut_where_their_origins_say(z):
    # Neighbouring patches of one photo that overlap must agree on the shared pixels.
    origins, labels, x = z['train_origin'], z['trainy'], z['trainx']
    checked = 0
    for i in range(len(x) - 1):
        j = i + 1
        (r0, c0), (r1, c1) = origins[i], origins[j]
        if labels[i] == labels[j] and r0 == r1 and 0 < c1 - c0 < 32:
            d = c1 - c0
            np.testing.assert_array_equal(x[i][:, d:], x[j][:, :32 - d])
            checked += 1
    assert checked > 100


def test_cutting_script_reproduces_the_file():
    skimage_data = pytest.importorskip('skimage.data')  # only needed to rebuild the file
    photos = [getattr(skimage_data, name)() for name in make_patches.PHOTOS]
    arrays = make_patches.make(photos, np.random.RandomState(make_patches.SEED))
    with np.load(patches_data.PATH) as z:
        for key in z.files:
            np.testing.assert_array_equal(arrays[key], z[key])


def test_loader_reads_the_bundled_file_whatever_data_dir_says():
    loader = get_loader('patches', '/nonexistent', 'test', 100, return_labels=True)
    x, y = loader.next()
    assert x.shape == (100, 32, 32, 3) and loader.get_num_labels() == 4
    assert len(loader) == 10
