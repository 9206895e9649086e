"""CoordConv (-ac): two coordinate channels, and a network that uses them and stays causal."""

import numpy as np

from pixel_cnn_pp import coords
from tests.conftest import random_images
from tests.test_model import assert_autoregressive, tiny_model


def test_one_channel_runs_along_the_rows_the_other_along_the_columns_in_minus_one_one():
    grid = coords.coordinate_channels(2, 4, 6).numpy()
    assert grid.shape == (2, 4, 6, 2)
    assert grid.min() == -1.0 and grid.max() == 1.0
    along_columns = [k for k in range(2) if np.allclose(grid[0, :, :, k], grid[0, :1, :, k])]
    along_rows = [k for k in range(2) if np.allclose(grid[0, :, :, k], grid[0, :, :1, k])]
    assert sorted(along_columns + along_rows) == [0, 1]  # one of each, whatever the order
    np.testing.assert_allclose(grid[0, 0, :, along_columns[0]], np.linspace(-1, 1, 6),
                               rtol=1e-6)
    np.testing.assert_allclose(grid[0, :, 0, along_rows[0]], np.linspace(-1, 1, 4), rtol=1e-6)
    np.testing.assert_array_equal(grid[1], grid[0])


def test_a_side_of_length_one_gets_zero():
    assert np.all(coords.coordinate_channels(1, 1, 1).numpy() == 0.0)


def test_add_coords_appends_two_channels():
    x = np.zeros((3, 4, 4, 1), np.float32)
    assert coords.add_coords(x).shape == (3, 4, 4, 3)


def test_coordinates_change_the_network_but_not_its_causality():
    images = random_images(2, (8, 8, 1))
    plain = tiny_model((8, 8, 1))
    with_coords = tiny_model((8, 8, 1), add_coords=True)
    assert with_coords.u_init.V.shape[2] == plain.u_init.V.shape[2] + 2  # image, 2 coords, ones
    assert np.abs(with_coords.nll(images) - plain.nll(images)).max() > 1e-2
    assert_autoregressive(with_coords, positions=[0, 27, 63])
