"""TensorBoard events written without the tensorboard package: scalars and images."""

import os

import numpy as np
import tensorflow as tf
from tensorflow.core.util import event_pb2

from pixel_cnn_pp.summaries import Summaries


def _events(folder):
    out = []
    for name in os.listdir(folder):
        for record in tf.data.TFRecordDataset(os.path.join(folder, name)):
            event = event_pb2.Event.FromString(record.numpy())
            out.extend((event.step, v) for v in event.summary.value)
    return out


def test_scalars_and_images_carry_the_plugins_metadata(tmp_path):
    summaries = Summaries(str(tmp_path))
    summaries.scalars(7, {'train/bits_per_dim': 4.5})
    summaries.image('samples', np.full((5, 6, 3), 200, np.uint8), 7)
    summaries.close()
    events = {v.tag: (step, v) for step, v in _events(str(tmp_path))}
    step, scalar = events['train/bits_per_dim']
    assert step == 7 and scalar.metadata.plugin_data.plugin_name == 'scalars'
    assert tf.make_ndarray(scalar.tensor) == np.float32(4.5)
    _, image = events['samples']
    assert image.metadata.plugin_data.plugin_name == 'images'
    width, height, png = tf.make_ndarray(image.tensor)
    assert (int(width), int(height)) == (6, 5)
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), np.full((5, 6, 3), 200))


def test_no_folder_writes_nothing(tmp_path):
    summaries = Summaries(None)
    summaries.scalars(1, {'a': 1.0})
    summaries.close()
    assert os.listdir(str(tmp_path)) == []
