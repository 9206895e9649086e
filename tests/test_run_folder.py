"""A run folder (pixel_cnn_pp/run_folder.py), without training: checkpoints are written by
its checkpoint manager from a tiny model, as train.py writes them."""

import json
import os
import subprocess

import pytest
import tensorflow as tf

from pixel_cnn_pp import run_folder
from pixel_cnn_pp.config import ModelConfig
from pixel_cnn_pp.model import PixelCNN
from pixel_cnn_pp.run_folder import RunFolder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = ModelConfig(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=2)


def _write_run(path, saves=1):
    folder = RunFolder(path)
    model = PixelCNN(CONFIG, seed=0)
    manager = folder.checkpoint_manager(tf.train.Checkpoint(model=model), keep=5)
    for _ in range(saves):
        manager.save()
    folder.save_model_config(model.config)
    return manager.latest_checkpoint


def test_a_new_run_in_an_empty_or_missing_folder_starts_fresh(tmp_path):
    assert RunFolder(tmp_path / 'none').resume_point() == (None, None)
    assert RunFolder(tmp_path).resume_point() == (None, None)
    assert RunFolder(tmp_path).resume_point(start_from='/x/a') == (None, '/x/a')


def test_resume_continues_the_latest_and_a_new_run_is_refused(tmp_path):
    latest = _write_run(tmp_path, saves=2)
    assert RunFolder(tmp_path).checkpoints() == [(1, str(tmp_path / 'ckpt-1')), (2, latest)]
    assert RunFolder(tmp_path).resume_point(resume=True) == (latest, None)
    with pytest.raises(ValueError, match=r"already holds a training run \(ckpt-2\): continue it "
                                         r"with 'resume'"):
        RunFolder(tmp_path).resume_point()


def test_resume_with_nothing_to_resume_names_the_files_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint to resume in 'save_dir' .*"
                                                r"nor OpenAI's params_cifar.ckpt.index"):
        RunFolder(tmp_path).resume_point(resume=True, data_set='cifar')
    (tmp_path / 'params_cifar.ckpt.index').write_bytes(b'')
    assert RunFolder(tmp_path).resume_point(True, 'cifar') == (
        None, str(tmp_path / 'params_cifar.ckpt'))


def test_a_missing_state_file_never_lets_a_new_run_start_over_the_checkpoints(tmp_path):
    _write_run(tmp_path, saves=2)
    os.remove(tmp_path / run_folder.STATE_FILE)
    with pytest.raises(ValueError, match=r'holds a training run \(ckpt-1, ckpt-2\), but its '
                                         r'"checkpoint" state file is missing'):
        RunFolder(tmp_path).resume_point()
    notes = []
    latest, _ = RunFolder(tmp_path).resume_point(resume=True, log=notes.append)
    assert latest == str(tmp_path / 'ckpt-2')
    assert 'resuming from the newest checkpoint, ckpt-2' in notes[0]


def test_check_resumable_names_each_option_that_differs(tmp_path):
    latest = _write_run(tmp_path)
    folder = RunFolder(tmp_path)
    folder.check_resumable(latest, CONFIG.replace(dropout_p=0.1))  # training only: fine
    with pytest.raises(ValueError, match=r"another model configuration \('nr_filters': 8 in "
                                         r"the checkpoint, 16 now; 'nr_logistic_mix': 2 in the "
                                         r"checkpoint, 3 now\)"):
        folder.check_resumable(latest, CONFIG.replace(nr_filters=16, nr_logistic_mix=3))


def test_changed_settings_are_against_the_last_invocation(tmp_path):
    (tmp_path / 'flags.json').write_text(json.dumps(dict(
        learning_rate=0.001, invocations=[dict(flags=dict(learning_rate=0.001, seed=1)),
                                          dict(flags=dict(learning_rate=0.002, seed=1))])))
    folder = RunFolder(tmp_path)
    names = ('learning_rate', 'seed')
    assert folder.changed_settings(dict(learning_rate=0.003, seed=1), names) == [
        ('learning_rate', 0.002, 0.003)]
    assert folder.changed_settings(dict(learning_rate=0.002, seed=1), names) == []


def test_an_invocation_that_never_said_how_it_ended_is_marked(tmp_path):
    # What a run killed by SIGKILL leaves, and flags.json as code before this one wrote it.
    (tmp_path / 'flags.json').write_text(json.dumps({'learning_rate': 0.001, 'seed': 1}))
    folder = RunFolder(tmp_path)
    assert folder.invocations() == [dict(flags={'learning_rate': 0.001, 'seed': 1},
                                         outcome=run_folder._UNRECORDED)]
    folder.record_invocation({'learning_rate': 0.002, 'seed': 1})
    assert folder.record_invocation({'learning_rate': 0.003, 'seed': 1}) == 2
    stored = json.loads((tmp_path / 'flags.json').read_text())
    assert (stored['learning_rate'], stored['seed']) == (0.001, 1)
    assert [i['outcome'] for i in stored['invocations']] == [
        run_folder._UNRECORDED, 'ended without recording how (killed, or the machine stopped)',
        'running']


def test_no_other_module_spells_a_file_name_of_the_run_folder():
    """The run folder's files are named in run_folder.py alone."""
    names = r'ckpt-\|run\.lock\|config\.json\|flags\.json\|test_bpd_'
    found = subprocess.run(['grep', '-rln', names, 'pixel_cnn_pp/', '--include=*.py'], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert found.split() == ['pixel_cnn_pp/run_folder.py']


def test_a_resumed_run_keeps_deterministic_unless_given(tmp_path):
    (tmp_path / 'flags.json').write_text(json.dumps(dict(invocations=[
        dict(flags=dict(deterministic=False)), dict(flags=dict(deterministic=True, seed=1))])))
    folder = RunFolder(tmp_path)
    assert folder.kept_settings(('deterministic',), given={'seed'}) == dict(deterministic=True)
    assert folder.kept_settings(('deterministic',), given={'deterministic'}) == {}  # --no...
    assert RunFolder(tmp_path / 'none').kept_settings(('deterministic',), given=set()) == {}
