"""CoordConv (`-ac`, Liu et al. 2018), as the MNIST fork of the original adds it.

Two channels of pixel coordinates in [-1, 1], the first varying along the
columns, the second down the rows (the fork's `AddCoords` order: x, then y),
concatenated to the image before the channel of ones. They carry no pixel values, so the model stays autoregressive.
"""

import tensorflow as tf


def coordinate_channels(batch, height, width):
    """float32 (batch, height, width, 2): column coordinate, then row coordinate, in [-1, 1].

    Column c is 2c / (W - 1) - 1 and row r is 2r / (H - 1) - 1, as the fork computes them;
    a side of length 1 gets 0.
    """
    rows = tf.linspace(-1.0, 1.0, height) if height > 1 else tf.zeros([1])
    cols = tf.linspace(-1.0, 1.0, width) if width > 1 else tf.zeros([1])
    row_grid, col_grid = tf.meshgrid(rows, cols, indexing='ij')  # each (H, W)
    grid = tf.stack([col_grid, row_grid], axis=-1)  # (H, W, 2): the fork's order
    return tf.tile(grid[None], tf.stack([batch, 1, 1, 1]))


def add_coords(x):
    """Append the two coordinate channels to x (B, H, W, C) -> (B, H, W, C + 2)."""
    return tf.concat([x, coordinate_channels(tf.shape(x)[0], x.shape[1], x.shape[2])], axis=-1)
