"""Where a training run starts: a new run, our latest checkpoint, or another checkpoint's weights.

    latest, start_from = resume_point(save_dir, load_params=True, data_set='cifar')
    if latest:
        check_resumable(latest, config, option_flags)   # the same network, or ValueError
        note_changed_flags(save_dir, settings)          # a note per changed training flag

The rules are the original train.py's, made safe: `load_params` (its -r) continues
our latest checkpoint in `save_dir`, or, with none there but OpenAI's
params_<data_set>.ckpt, starts from that one's weights; without it, a folder that
already holds a run is refused (never trained over). A damaged or missing
"checkpoint" state file never hides a run's checkpoints: -r resumes from the newest
one if it reads whole. The messages name the command-line flags (-r, --save_dir,
--init_checkpoint), as train.py is the caller that meets them.
"""

import os

import tensorflow as tf

from pixel_cnn_pp import checkpoints
from pixel_cnn_pp.config import TRAINING_ONLY
from pixel_cnn_pp.run import read_invocations

# Settings that change the course of training but not the network: a resumed run
# may change them, with a note.
TRAINING_SETTINGS = ('data_set', 'learning_rate', 'lr_decay', 'batch_size', 'nr_gpu',
                     'dropout_p', 'polyak_decay', 'focal_loss', 'focal_gamma', 'seed',
                     'precision', 'eval_precision', 'deterministic')
# Settings a resumed run keeps from the run so far unless its command line sets them:
# on GPUs, -r continues exactly only with deterministic kernels, as the run began.
KEPT_SETTINGS = ('deterministic',)


def resume_point(save_dir, load_params=False, data_set=None, init_checkpoint=None):
    """(our checkpoint to continue, or None; a checkpoint to start from, or None).

    load_params continues our latest checkpoint in `save_dir` (FileNotFoundError if
    there is none, nor OpenAI's params_<data_set>.ckpt); init_checkpoint starts a
    new run from any checkpoint's weights. ValueError: a new run into a folder that
    holds one.
    """
    latest = tf.train.latest_checkpoint(save_dir) if os.path.isdir(save_dir) else None
    if latest is None:
        latest = newest_without_state_file(save_dir, load_params)
    if load_params and latest is None:
        openai = os.path.join(save_dir, 'params_%s.ckpt' % data_set)
        if os.path.exists(openai + '.index'):
            return None, openai
        raise FileNotFoundError('-r/--load_params: no checkpoint to resume in --save_dir %s (it '
                                'has no "checkpoint" file written by train.py, nor OpenAI\'s %s); '
                                'run without -r to start training'
                                % (save_dir, os.path.basename(openai) + '.index'))
    if not load_params and latest is not None:
        raise ValueError('--save_dir %s already holds a training run (%s): resume it with -r, '
                         'or pass another --save_dir' % (save_dir, os.path.basename(latest)))
    if init_checkpoint:
        return None, init_checkpoint
    return latest, None


def newest_without_state_file(save_dir, load_params):
    """Our newest checkpoint when the "checkpoint" state file is unreadable or missing, or None.

    The state file (written by tf.train.CheckpointManager) is what finds a run's
    checkpoints; when it is damaged they are still there, and a new run must never
    be started over them. -r resumes from the newest one if it reads whole;
    otherwise it says which files to move away (an older checkpoint is never taken
    silently: that would drop the epochs after it).
    """
    ours = checkpoints.numbered_checkpoints(save_dir)
    if not ours:
        return None
    newest = ours[-1][1]
    state = '"%s" state file' % checkpoints.STATE_FILE
    problem = ('could not be read (or names no checkpoint there)'
               if os.path.exists(os.path.join(save_dir, checkpoints.STATE_FILE)) else 'is missing')
    if not load_params:
        raise ValueError('--save_dir %s holds a training run (%s), but its %s %s: resume it with '
                         '-r (from %s), or pass another --save_dir'
                         % (save_dir, ', '.join(os.path.basename(p) for _, p in ours),
                            state, problem, os.path.basename(newest)))
    try:
        checkpoints.check_intact(newest)
    except ValueError as e:
        older = (' to resume from %s, the newest before it' % os.path.basename(ours[-2][1])
                 if len(ours) > 1 else '')
        raise ValueError('-r/--load_params: the %s of --save_dir %s %s, and %s; move %s.* out '
                         'of the folder%s' % (state, save_dir, problem, e,
                                              os.path.basename(newest), older)) from None
    print('note: the %s of --save_dir %s %s; resuming from the newest checkpoint, %s (the state '
          'file is written anew at the next save)'
          % (state, save_dir, problem, os.path.basename(newest)))
    return newest


def check_resumable(checkpoint, config, option_flags):
    """ValueError if the checkpoint was trained with another network than `config`.

    option_flags: how the message names each ModelConfig field (e.g. '-n/--nr_filters').
    """
    stored = checkpoints.read_model_config(checkpoint)
    if stored is None:
        return  # Trainer.restore still checks every variable
    differences = ['%s: %r in the checkpoint, %r now' % (option_flags[name], theirs, ours)
                   for name, (theirs, ours) in stored.diff(config, ignore=TRAINING_ONLY).items()]
    if differences:
        raise ValueError('-r/--load_params: the checkpoint %s was trained with another model '
                         'configuration (%s); resume with the same options, or start a new run '
                         'in another --save_dir' % (checkpoint, '; '.join(differences)))


def kept_settings(save_dir, given):
    """{name: value} of the KEPT_SETTINGS of the run's last invocation not in `given`
    (the flags on this command line)."""
    invocations = read_invocations(save_dir)
    before = invocations[-1].get('flags') if invocations else None
    if not isinstance(before, dict):
        return {}
    return {name: before[name] for name in KEPT_SETTINGS if name in before and name not in given}


def note_changed_flags(save_dir, settings, report=print):
    """Report a note for each training setting that differs from the run's last invocation."""
    invocations = read_invocations(save_dir)
    before = invocations[-1].get('flags') if invocations else None
    if not isinstance(before, dict):
        return
    for name in TRAINING_SETTINGS:
        if name in before and before[name] != settings.get(name):
            report('note: resuming with --%s %s (the run so far used %s)'
                   % (name, settings.get(name), before[name]))
