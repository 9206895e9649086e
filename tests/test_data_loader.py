"""Tests for pixel_cnn_pp/data/loader.py: every data set, built in its real on-disk format, checked
through the same DataLoader interface (batches, epochs, shuffling, labels, next(n),
get/set_state), plus get_loader and to_tf_dataset."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from pixel_cnn_pp.data import patches_data
from pixel_cnn_pp.data.loader import DATA_SETS, DataError, get_loader, to_tf_dataset
from tests.test_data_cifar import write_cifar
from tests.test_data_folder import write_folder
from tests.test_data_imagenet import (write_imagenet_batches, write_imagenet_npz,
                                      write_imagenet_pngs)
from tests.test_data_mnist import write_mnist


def _patches(_):
    with np.load(patches_data.PATH) as z:
        return {'train': (z['trainx'], z['trainy']), 'test': (z['testx'], z['testy'])}


# format -> (data set name, options, builder(data_dir) -> {'train': (x, y), 'test': (x, y)},
#            number of labels or None). Each builder writes ~40 train and 12 test images.
FORMATS = {
    'cifar': ('cifar', {'download': False}, write_cifar, 10),
    'mnist-gz': ('mnist', {'download': False}, write_mnist, 10),
    'mnist-plain': ('mnist', {'download': False}, lambda d: write_mnist(d, gz=False), 10),
    'imagenet32-batches': ('imagenet', {}, write_imagenet_batches, 1000),
    'imagenet64-batches': ('imagenet', {'image_size': 64},
                           lambda d: write_imagenet_batches(d, size=64), 1000),
    'imagenet32-pickles': ('imagenet', {}, lambda d: write_imagenet_batches(d, fmt='pickle'), 1000),
    'imagenet32-npz': ('imagenet', {}, write_imagenet_npz, None),
    'imagenet32-pngs': ('imagenet', {}, write_imagenet_pngs, None),
    'folder': ('folder', {}, write_folder, 2),
    'folder-flat': ('folder', {}, lambda d: write_folder(d, classes=None, n_train=40, n_test=12),
                    None),
    'patches': ('patches', {}, _patches, 4),
}


@pytest.fixture(params=sorted(FORMATS))
def fmt(request, tmp_path):
    """(make_loader(subset, batch_size, **kw), expected arrays, num_labels) of one format."""
    name, opts, build, num_labels = FORMATS[request.param]
    expected = build(tmp_path)

    def make(subset, batch_size, **kw):
        return get_loader(name, tmp_path, subset, batch_size, **opts, **kw)

    return make, expected, num_labels


def _epoch(loader):
    batches = list(loader)
    if loader.return_labels:
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    return np.concatenate(batches), None


def test_batches_are_uint8_nhwc_with_the_files_pixels_in_order(fmt):
    make, expected, _ = fmt
    for subset in ('train', 'test'):
        loader = make(subset, 4)
        images = expected[subset][0]
        x, _ = _epoch(loader)
        assert x.dtype == np.uint8 and x.ndim == 4
        assert loader.get_observation_size() == images.shape[1:]
        n = len(images) // 4 * 4
        np.testing.assert_array_equal(x, images[:n])


def test_labels_are_0_based_and_travel_with_their_images(fmt):
    make, expected, num_labels = fmt
    if num_labels is None:
        with pytest.raises(DataError, match='label'):
            make('train', 4, return_labels=True)
        return
    loader = make('train', 4, return_labels=True, shuffle=True, rng=np.random.RandomState(3))
    assert loader.get_num_labels() == num_labels
    x, y = loader.next()
    assert y.dtype == np.int32 and y.shape == (4,)
    images, labels = expected['train']
    for image, label in zip(x, y):
        index = next(i for i in range(len(images)) if np.array_equal(images[i], image))
        assert label == labels[index] and 0 <= label < num_labels


def test_epoch_drops_the_last_partial_batch_then_raises_stop_iteration(fmt):
    make, expected, _ = fmt
    n = len(expected['test'][0])
    batch = 5 if n % 5 else 7  # a batch size that leaves a remainder
    loader = make('test', batch)
    assert len(loader) == n // batch
    assert sum(1 for _ in loader) == n // batch
    with pytest.raises(StopIteration):  # the loop above already rewound; this is a new epoch
        for _ in range(n // batch + 1):
            x = loader.next()
            assert x.shape[0] == batch
    assert sum(1 for _ in loader) == n // batch  # and the next epoch is whole again


def test_shuffled_order_is_a_function_of_the_rng_and_new_each_epoch(fmt):
    make, expected, _ = fmt
    a = make('train', 4, shuffle=True, rng=np.random.RandomState(7))
    b = make('train', 4, shuffle=True, rng=np.random.RandomState(7))
    c = make('train', 4, shuffle=True, rng=np.random.default_rng(7))
    first_a, first_b, first_c = _epoch(a)[0], _epoch(b)[0], _epoch(c)[0]
    np.testing.assert_array_equal(first_a, first_b)
    second_a = _epoch(a)[0]
    assert not np.array_equal(first_a, second_a)
    assert not np.array_equal(first_a, first_c)  # a Generator works too, with its own order
    images = expected['train'][0]
    n = len(images) // 4 * 4
    assert not np.array_equal(first_a, images[:n])
    flat = {im.tobytes() for im in images}
    assert all(im.tobytes() in flat for im in np.concatenate([first_a, second_a, first_c]))


def test_next_n_returns_n_images_and_advances_by_n(fmt):
    make, expected, _ = fmt
    loader = make('test', 4)
    images = expected['test'][0]
    np.testing.assert_array_equal(loader.next(3), images[:3])
    np.testing.assert_array_equal(loader.next(), images[3:7])
    with pytest.raises(StopIteration):
        loader.next(len(images))
    np.testing.assert_array_equal(loader.next(1), images[:1])  # rewound


@pytest.mark.parametrize('rng_kind', ['RandomState', 'Generator'])
def test_loader_restored_mid_epoch_yields_exactly_the_remaining_batches(fmt, rng_kind):
    make, _, num_labels = fmt
    new_rng = np.random.RandomState if rng_kind == 'RandomState' else np.random.default_rng
    labels = num_labels is not None
    original = make('train', 4, shuffle=True, rng=new_rng(11), return_labels=labels)
    _epoch(original)          # a whole epoch first, so the rng has moved on
    for _ in range(3):
        original.next()
    state = json.loads(json.dumps(original.get_state()))  # survives a JSON checkpoint
    restored = make('train', 4, shuffle=True, rng=new_rng(999), return_labels=labels)
    restored.set_state(state)
    for _ in range(2):  # the rest of this epoch, and the whole next one
        rest_original, rest_restored = _epoch(original), _epoch(restored)
        np.testing.assert_array_equal(rest_original[0], rest_restored[0])
        np.testing.assert_array_equal(rest_original[1], rest_restored[1])


def test_state_at_an_epoch_boundary_replays_the_next_epoch(tmp_path):
    write_cifar(tmp_path)
    a = get_loader('cifar', tmp_path, 'train', 8, rng=np.random.RandomState(2), shuffle=True)
    _epoch(a)
    state = a.get_state()
    assert state['position'] == 0
    b = get_loader('cifar', tmp_path, 'train', 8, rng=np.random.RandomState(0), shuffle=True)
    b.set_state(state)
    np.testing.assert_array_equal(_epoch(a)[0], _epoch(b)[0])


def test_unshuffled_state_is_just_the_position(tmp_path):
    expected = write_mnist(tmp_path)
    a = get_loader('mnist', tmp_path, 'train', 8)
    a.next()
    a.next()
    b = get_loader('mnist', tmp_path, 'train', 8)
    b.set_state(a.get_state())
    np.testing.assert_array_equal(b.next(), expected['train'][0][16:24])
    with pytest.raises(ValueError, match='shuffle'):
        get_loader('mnist', tmp_path, 'train', 8, shuffle=True).set_state(a.get_state())


def test_unknown_data_set_name_lists_the_valid_names(tmp_path):
    with pytest.raises(ValueError) as err:
        get_loader('cifar100', tmp_path, 'train', 8)
    message = str(err.value)
    assert "'cifar100'" in message and all(name in message for name in DATA_SETS)


def test_bad_subset_and_batch_size_are_refused(tmp_path):
    with pytest.raises(ValueError, match="subset must be 'train' or 'test', got 'valid'"):
        get_loader('patches', None, 'valid', 8)
    with pytest.raises(ValueError, match="'batch_size' must be a positive integer"):
        get_loader('patches', None, 'train', 0)
    with pytest.raises(ValueError, match='batch_size 5000 is larger than the train set'):
        get_loader('patches', None, 'train', 5000)


def test_to_tf_dataset_runs_one_reshuffled_epoch_per_pass(tmp_path):
    expected = write_cifar(tmp_path)
    loader = get_loader('cifar', tmp_path, 'train', 8, rng=np.random.RandomState(4),
                        shuffle=True, return_labels=True, download=False)
    twin = get_loader('cifar', tmp_path, 'train', 8, rng=np.random.RandomState(4),
                      shuffle=True, return_labels=True, download=False)
    dataset = to_tf_dataset(loader)
    passes = []
    for _ in range(2):
        batches = [(x.numpy(), y.numpy()) for x, y in dataset]
        assert len(batches) == len(twin) == 5
        assert batches[0][0].dtype == np.uint8 and batches[0][1].dtype == np.int32
        x_twin, y_twin = _epoch(twin)
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x_twin)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y_twin)
        passes.append(x_twin)
    assert not np.array_equal(passes[0], passes[1])
    spec = dataset.element_spec
    assert spec[0].shape == (8, 32, 32, 3) and spec[1].shape == (8,)
    assert len(expected['train'][0]) == 40


def test_to_tf_dataset_checkpoint_with_the_consumed_position_resumes_exactly(tmp_path):
    write_mnist(tmp_path)
    loader = get_loader('mnist', tmp_path, 'train', 4, rng=np.random.RandomState(5),
                        shuffle=True, download=False)
    dataset = to_tf_dataset(loader, prefetch=3)
    seen = []
    for x in dataset:
        seen.append(x.numpy())
        if len(seen) == 8:
            # Let the pipeline run ahead (its prefetch buffer fills in the background; maybe
            # to the end of the epoch), so the loader's own position is not the consumed one.
            deadline = time.time() + 60
            while not (loader.p > 8 * 4 or loader.p == 0) and time.time() < deadline:
                time.sleep(0.01)
            state = loader.get_state(position=8 * 4)
            break
    restored = get_loader('mnist', tmp_path, 'train', 4, rng=np.random.RandomState(0),
                          shuffle=True, download=False)
    restored.set_state(json.loads(json.dumps(state)))
    rest = [x.numpy() for x in to_tf_dataset(restored)]
    reference = get_loader('mnist', tmp_path, 'train', 4, rng=np.random.RandomState(5),
                           shuffle=True, download=False)
    whole = list(reference)
    np.testing.assert_array_equal(np.stack(seen), np.stack(whole[:8]))
    np.testing.assert_array_equal(np.stack(rest), np.stack(whole[8:]))
    assert loader.p > 8 * 4 or loader.p == 0  # it did run ahead: its own position was not it


def test_loaders_import_without_tensorflow():
    code = ('import sys, pixel_cnn_pp.data.loader, pixel_cnn_pp.data.cifar10_data, '
            'pixel_cnn_pp.data.mnist_data, pixel_cnn_pp.data.imagenet_data, '
            'pixel_cnn_pp.data.folder_data, pixel_cnn_pp.data.patches_data, '
            'pixel_cnn_pp.data.download, pixel_cnn_pp.data.pretrained; '
            'assert "tensorflow" not in sys.modules, "tensorflow imported"')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, '-c', code], cwd=root, check=True)
