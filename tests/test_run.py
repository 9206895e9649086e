"""The training run of the library: steps, NaN stop, saves, signals, samples, summaries.

In-process with a tiny model on one device, a list of batches standing in for the
data set, and an outputs object that records what the run asked it to write.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp import checkpoints, run
from pixel_cnn_pp.config import ModelConfig
from pixel_cnn_pp.run_folder import RunFolder
from pixel_cnn_pp.training import Trainer
from tests.conftest import random_images

SHAPE = (4, 4, 3)


class Loader:
    """The parts of a DataLoader the run uses: len(), get_state, set_state, next, reset."""

    def __init__(self, steps=3, batch=2):
        self.batches = [random_images(batch, SHAPE, seed=k) for k in range(steps)]
        self.state = None

    def __len__(self):
        return len(self.batches)

    def get_state(self, position=None):
        return {'position': position}

    def set_state(self, state):
        self.state = state

    def next(self, n):
        return np.concatenate(self.batches)[:n]

    def reset(self):
        pass


class Outputs:
    """Records every call the run makes."""

    def __init__(self):
        self.saves, self.scalar_steps, self.sampled, self.histories = [], [], [], []
        self.captions = []
        self.manager = type('Manager', (), {'latest_checkpoint': 'ckpt-7'})()
        self.closed = False

    def save(self, record):
        self.saves.append(dict(record))
        return 'ckpt-%d' % len(self.saves)

    def scalars(self, step, values):
        self.scalar_steps.append((step, sorted(values)))

    def samples(self, epoch, log=print, caption=()):
        self.sampled.append(epoch)
        self.captions.append(list(caption))

    def history(self, history):
        self.histories.append({k: list(v) for k, v in history.items()})

    def close(self):
        self.closed = True


@pytest.fixture
def trainer():
    strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
    trainer = Trainer(strategy, ModelConfig(SHAPE, nr_resnet=1, nr_filters=4,
                                            nr_logistic_mix=1), batch_size=2)
    trainer.initialize(random_images(2, SHAPE))
    return trainer


def _train(trainer, loader, outputs, record=None, **kwargs):
    record = record or run.fresh_record()
    lines = []
    run.train_epochs(trainer, loader, lambda: tf.data.Dataset.from_tensor_slices(loader.batches),
                     random_images(3, SHAPE, seed=9),
                     None, record, outputs, log=lines.append, **kwargs)
    return record, lines


def test_epochs_evaluate_save_sample_and_keep_the_history(trainer):
    loader, outputs = Loader(steps=3), Outputs()
    record, lines = _train(trainer, loader, outputs, max_epochs=3, sample_interval=2)
    assert int(trainer.step.numpy()) == 9
    assert [s['epoch'] for s in outputs.saves] == [1, 2, 3]  # one save per epoch, no more
    assert outputs.sampled == [0, 2]  # every 2nd epoch, and the last
    test_bpd = outputs.histories[-1]['test_bpd']  # the grids are labelled with it
    assert outputs.captions == [['test %.3f bits/dim' % test_bpd[0]],
                                ['test %.3f bits/dim' % test_bpd[2]]]
    assert outputs.histories[-1]['epoch'] == [0, 1, 2] and outputs.closed
    assert all(np.isfinite(outputs.histories[-1]['test_bpd']))
    step_scalars = [step for step, names in outputs.scalar_steps if 'train/bits_per_dim' in names]
    assert step_scalars == [1]  # step 1, then every 10th
    assert [line.split(',')[0] for line in lines if line.startswith('Iteration')] == \
        ['Iteration 0', 'Iteration 1', 'Iteration 2']


def test_save_steps_record_where_the_loader_is(trainer):
    loader, outputs = Loader(steps=4), Outputs()
    _train(trainer, loader, outputs, max_epochs=1, save_steps=2)
    # Step 2 mid-epoch; step 4 is the epoch's last, whose save is the epoch's own.
    assert [(s['epoch'], s['position'], s['loader']) for s in outputs.saves] == \
        [(0, 4, {'position': 4}), (1, 0, {'position': None})]


def test_a_signal_saves_the_step_and_stops(trainer):
    loader, outputs = Loader(steps=3), Outputs()
    stop = type('Stop', (), {'pending': lambda self: 15})()
    with pytest.raises(run.Stopped) as stopped:
        _train(trainer, loader, outputs, max_epochs=2, stop=stop)
    assert (stopped.value.signum, stopped.value.where, stopped.value.path) == \
        (15, 'at step 1', 'ckpt-1')
    assert outputs.saves[0]['loader'] == {'position': 2}


def test_a_nan_loss_stops_without_saving(trainer):
    loader, outputs = Loader(steps=3), Outputs()
    with trainer.strategy.scope():
        trainer.weights[0].assign(tf.fill(trainer.weights[0].shape, float('nan')))
    with pytest.raises(FloatingPointError, match=r'is nan at step 1 \(epoch 0\).*ckpt-7'):
        _train(trainer, loader, outputs, max_epochs=1)
    assert outputs.saves == []


def test_a_step_reads_from_the_devices_once(trainer, monkeypatch):
    # Every read of a tensor's value on the host (float(), int(), .numpy(), np.asarray)
    # goes through this one method of TensorFlow's eager tensors.
    from tensorflow.python.framework import ops

    reads, read = [], ops._EagerTensorBase._numpy

    def counted(tensor):
        reads.append(tensor.shape)
        return read(tensor)

    monkeypatch.setattr(ops._EagerTensorBase, '_numpy', counted)
    counts = []
    for steps in (3, 6):
        del reads[:]
        _train(trainer, Loader(steps=steps), Outputs(), max_epochs=1)
        counts.append(len(reads))
    # The epoch's evaluation, samples and save read the same in both: 3 more steps, 3 reads.
    assert counts[1] - counts[0] == 3, counts


def test_a_finished_run_says_so(trainer):
    record = dict(run.fresh_record(), epoch=2)
    _, lines = _train(trainer, Loader(), Outputs(), record=record, max_epochs=2)
    assert lines == ['nothing to do: the run has done 2 epochs, max_epochs is 2']


def test_begin_initialises_on_the_first_images_or_restores(trainer, tmp_path):
    loader = Loader()
    outputs = run.RunOutputs(str(tmp_path), trainer, 'tiny', sample_batches=0)
    record = dict(run.fresh_record(), epoch=1, loader={'position': 6})
    path = outputs.save(record)
    assert run.begin(trainer, loader, init_batch_size=2) == run.fresh_record()
    lines = []
    # The checkpoint's record also names the run (for sample.py's label).
    assert run.begin(trainer, loader, resume_from=path, log=lines.append) == \
        dict(record, name='tiny')
    assert checkpoints.read_training_record(path) == dict(record, name='tiny')
    assert loader.state == {'position': 6}
    assert lines[0].startswith('resuming from %s: epoch 1' % path)


def test_flags_json_keeps_every_invocation_with_its_outcome(trainer, tmp_path):
    import json

    def invoke(settings, body):
        outputs = run.RunOutputs(str(tmp_path), trainer, 'tiny', sample_batches=0,
                                 settings=settings)
        try:
            with outputs.recording_outcome():
                body()
        except (FloatingPointError, run.Stopped):
            pass
        outputs.close()

    def nan():
        raise FloatingPointError('the training loss is nan at step 3 (epoch 0)')

    def signal():
        raise run.Stopped(15, 'at step 4', 'ckpt-2', saved=True)

    invoke({'learning_rate': 0.001}, lambda: None)
    invoke({'learning_rate': 1e30}, nan)
    invoke({'learning_rate': 0.002}, signal)
    stored = json.loads((tmp_path / 'flags.json').read_text())
    assert stored['learning_rate'] == 0.001  # the first invocation's, as readers expect
    invocations = RunFolder(tmp_path).invocations()
    assert [i['flags']['learning_rate'] for i in invocations] == [0.001, 1e30, 0.002]
    assert [i['outcome'] for i in invocations] == [
        'finished', 'failed: the training loss is nan at step 3 (epoch 0)',
        'stopped by signal 15 at step 4: saved ckpt-2']
    assert all(i['started'] <= i['ended'] and i['pid'] == os.getpid() for i in invocations)
    assert stored['invocations'] == invocations
