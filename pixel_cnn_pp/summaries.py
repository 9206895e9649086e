"""TensorBoard events: scalars and images, written by TensorFlow itself.

tf.summary.scalar and tf.summary.image need the tensorboard package installed
just to write, and TensorFlow 2.21 no longer installs it. These write the same
events (tf.summary.write with the scalar and image plugins' metadata); viewing
them still needs TensorBoard (`pip install tensorboard`).

    summaries = Summaries('save/tb')            # Summaries(None): write nothing
    summaries.scalars(10, {'train/bits_per_dim': 4.87})
    summaries.image('samples', grid, 10)        # uint8 (H, W, C)
    summaries.close()
"""

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _summary_metadata(plugin, data_class):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
        data_class=data_class)


def summary_scalar(name, value, step):
    """A TensorBoard scalar, the event tf.summary.scalar writes (inside a writer's as_default)."""
    return tf.summary.write(name, tf.constant(value, tf.float32), step=step,
                            metadata=_summary_metadata('scalars', summary_pb2.DATA_CLASS_SCALAR))


def summary_image(name, image, step):
    """A TensorBoard image from uint8 (H, W, C) (C 1 or 3), as tf.summary.image writes it."""
    image = tf.convert_to_tensor(image, tf.uint8)
    height, width = image.shape[0], image.shape[1]
    blob = tf.stack([tf.as_string(width), tf.as_string(height), tf.io.encode_png(image)])
    metadata = _summary_metadata('images', summary_pb2.DATA_CLASS_BLOB_SEQUENCE)
    return tf.summary.write(name, blob, step=step, metadata=metadata)


class Summaries:
    """An event file in `folder` (None: a writer that writes nothing, e.g. off the chief)."""

    def __init__(self, folder):
        self.writer = (tf.summary.create_file_writer(folder) if folder is not None
                       else tf.summary.create_noop_writer())

    def scalars(self, step, values):
        """Write {tag: number} at `step`."""
        with self.writer.as_default():
            for name, value in values.items():
                summary_scalar(name, value, step)

    def image(self, name, image, step):
        with self.writer.as_default():
            summary_image(name, image, step)

    def close(self):
        self.writer.close()
