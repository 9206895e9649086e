"""Where a training run starts (pixel_cnn_pp/resume.py), without training: checkpoints are
written by tf.train.CheckpointManager from a tiny model, as train.py writes them."""

import json
import os

import pytest
import tensorflow as tf

from pixel_cnn_pp import checkpoints, resume
from pixel_cnn_pp.config import ModelConfig
from pixel_cnn_pp.model import PixelCNN

CONFIG = ModelConfig(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=2)


def _write_run(folder, saves=1):
    model = PixelCNN(CONFIG, seed=0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(folder), 5,
                                         checkpoint_name='ckpt')
    for _ in range(saves):
        manager.save()
    checkpoints.save_model_config(str(folder), model)
    return manager.latest_checkpoint


def test_a_new_run_in_an_empty_or_missing_folder_starts_fresh(tmp_path):
    assert resume.resume_point(str(tmp_path / 'none')) == (None, None)
    assert resume.resume_point(str(tmp_path)) == (None, None)
    assert resume.resume_point(str(tmp_path), init_checkpoint='/x/ckpt-3') == (None, '/x/ckpt-3')


def test_r_continues_the_latest_and_a_new_run_is_refused(tmp_path):
    latest = _write_run(tmp_path, saves=2)
    assert latest.endswith('ckpt-2')
    assert resume.resume_point(str(tmp_path), load_params=True) == (latest, None)
    with pytest.raises(ValueError, match=r'already holds a training run \(ckpt-2\): resume it '
                                         r'with -r'):
        resume.resume_point(str(tmp_path))


def test_r_with_nothing_to_resume_names_the_files_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint to resume in --save_dir .*"
                                                r"nor OpenAI's params_cifar.ckpt.index"):
        resume.resume_point(str(tmp_path), load_params=True, data_set='cifar')
    (tmp_path / 'params_cifar.ckpt.index').write_bytes(b'')
    assert resume.resume_point(str(tmp_path), True, 'cifar') == (
        None, str(tmp_path / 'params_cifar.ckpt'))


def test_a_missing_state_file_never_lets_a_new_run_start_over_the_checkpoints(tmp_path, capsys):
    _write_run(tmp_path, saves=2)
    os.remove(tmp_path / checkpoints.STATE_FILE)
    with pytest.raises(ValueError, match=r'holds a training run \(ckpt-1, ckpt-2\), but its '
                                         r'"checkpoint" state file is missing'):
        resume.resume_point(str(tmp_path))
    latest, _ = resume.resume_point(str(tmp_path), load_params=True)
    assert latest == str(tmp_path / 'ckpt-2')
    assert 'resuming from the newest checkpoint, ckpt-2' in capsys.readouterr().out


def test_check_resumable_names_each_option_that_differs(tmp_path):
    latest = _write_run(tmp_path)
    flags = {name: '--' + name for name in ModelConfig.field_names()}
    resume.check_resumable(latest, CONFIG.replace(dropout_p=0.1), flags)  # training only: fine
    with pytest.raises(ValueError, match=r'another model configuration \(--nr_filters: 8 in the '
                                         r'checkpoint, 16 now; --nr_logistic_mix: 2 in the '
                                         r'checkpoint, 3 now\)'):
        resume.check_resumable(latest, CONFIG.replace(nr_filters=16, nr_logistic_mix=3), flags)


def test_changed_training_flags_are_noted_against_the_last_invocation(tmp_path):
    (tmp_path / 'flags.json').write_text(json.dumps(dict(
        learning_rate=0.001, invocations=[dict(flags=dict(learning_rate=0.001, seed=1)),
                                          dict(flags=dict(learning_rate=0.002, seed=1))])))
    notes = []
    resume.note_changed_flags(str(tmp_path), dict(learning_rate=0.003, seed=1), notes.append)
    assert notes == ['note: resuming with --learning_rate 0.003 (the run so far used 0.002)']
    notes.clear()
    resume.note_changed_flags(str(tmp_path), dict(learning_rate=0.002, seed=1), notes.append)
    assert notes == []


def test_resumed_run_keeps_deterministic_unless_given(tmp_path):
    (tmp_path / 'flags.json').write_text(json.dumps(dict(invocations=[
        dict(flags=dict(deterministic=False)), dict(flags=dict(deterministic=True, seed=1))])))
    assert resume.kept_settings(str(tmp_path), given={'seed'}) == dict(deterministic=True)
    assert resume.kept_settings(str(tmp_path), given={'deterministic'}) == {}  # --nodeterministic
    assert resume.kept_settings(str(tmp_path / 'none'), given=set()) == {}
