"""A training run's folder, and the one module that knows its files.

    folder = RunFolder('runs/patches')
    with folder.lock():                                   # one run at a time writes here
        latest, start_from = folder.resume_point(resume=True, data_set='patches')
        if latest:
            folder.check_resumable(latest, config)        # the same network, or ValueError
        manager = folder.checkpoint_manager(trainer.checkpoint, keep=3)

What a run folder holds:

    run.lock                         held while a run writes here (files.FolderLock)
    checkpoint                       tf.train.CheckpointManager's list of the checkpoints
    ckpt-<N>.index, .data-*          the checkpoints (train.py: every epoch, --save_steps,
                                     and on SIGTERM/SIGINT)
    pixelcnn_config.json             the model's options (ModelConfig), for sample.py & co
    flags.json                       the journal: every invocation's settings and outcome
    tb/                              TensorBoard events
    <name>_sample<E>.png, .npz       the samples of epoch E (and _bits.png, their bits)
    test_bpd_<name>.npz              the history of bits/dim
    params_<data_set>.ckpt.*         OpenAI's checkpoint, put there by hand to start from

The rules of where a run starts are the original train.py's, made safe: `resume` (its
-r) continues our latest checkpoint, or, with none there but OpenAI's
params_<data_set>.ckpt, starts from that one's weights; without it, a folder that
already holds a run is refused (never trained over). A damaged or missing
"checkpoint" state file never hides a run's checkpoints. Messages name the
library's arguments in quotes ('resume', 'save_dir', 'start_from'); train.py says
them as its flags.
"""

import json
import os
import re
import shutil
import socket
import time

import tensorflow as tf

from pixel_cnn_pp import checkpoints, files
from pixel_cnn_pp.config import TRAINING_ONLY, ModelConfig

LOCK_FILE = 'run.lock'
STATE_FILE = 'checkpoint'  # tf.train.CheckpointManager's list of the checkpoints
CHECKPOINT_NAME = 'ckpt'  # a run's checkpoints are ckpt-<N>
CONFIG_FILE = 'pixelcnn_config.json'
JOURNAL_FILE = 'flags.json'
SUMMARIES_DIR = 'tb'
# What a checkpoint save in progress creates beside the last good checkpoint.
_SAVE_DEBRIS = re.compile(r'^%s-\d+(\.index|\.data-\d+-of-\d+|_temp.*)$|^%s\.tmp'
                          % (CHECKPOINT_NAME, STATE_FILE))
_UNRECORDED = 'unknown (recorded before %s kept every invocation)' % JOURNAL_FILE


class RunFolder:
    """The folder `save_dir` of a training run: its files' names, lock, checkpoints, model
    options, journal, and where a run in it starts."""

    def __init__(self, save_dir):
        self.path = os.fspath(save_dir)

    @classmethod
    def of_checkpoint(cls, prefix):
        """The folder that holds the checkpoint at `prefix`."""
        return cls(os.path.dirname(os.fspath(prefix)))

    def file(self, name):
        return os.path.join(self.path, name)

    # ------------------------------------------------------------------ its outputs

    def summaries_dir(self):
        return self.file(SUMMARIES_DIR)

    def samples_prefix(self, name, epoch):
        """<save_dir>/<name>_sample<epoch>: the samples of an epoch (.png, .npz, _bits.png)."""
        return self.file('%s_sample%d' % (name, epoch))

    def history_file(self, name):
        return self.file('test_bpd_%s.npz' % name)

    # ----------------------------------------------------------------------- lock

    def lock(self, what="'save_dir'", log=print):
        """The run's claim of the folder (files.FolderLock on run.lock); `what` names it."""
        return files.FolderLock(self.path, LOCK_FILE, what=what, log=log)

    def lock_text(self):
        """The text of the run's lock (its holder's pid, host, token), or None if none."""
        try:
            with open(self.file(LOCK_FILE), 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return None

    # ---------------------------------------------------------------- checkpoints

    def checkpoints(self):
        """[(N, prefix)] of every ckpt-N the folder holds, oldest first ([] if none)."""
        pattern = re.compile(r'^%s-(\d+)\.index$' % CHECKPOINT_NAME)
        try:
            entries = os.listdir(self.path)
        except OSError:
            return []
        return sorted((int(m.group(1)), self.file(m.group(0)[:-len('.index')]))
                      for m in map(pattern.match, entries) if m)

    def latest_checkpoint(self):
        """The checkpoint the state file names last, or None."""
        return tf.train.latest_checkpoint(self.path) if os.path.isdir(self.path) else None

    def checkpoint_to_load(self):
        """The checkpoint a user means by the folder: the latest, else its only one.

        Raises FileNotFoundError saying what was looked for.
        """
        latest = self.latest_checkpoint()
        if latest is not None:
            return latest
        indexes = sorted(f for f in os.listdir(self.path) if f.endswith('.index'))
        if len(indexes) > 1 and os.path.exists(self.file(STATE_FILE)):
            ours = self.checkpoints()
            raise FileNotFoundError(
                'the "%s" state file of folder %s could not be read (or names no checkpoint '
                'there), and the folder holds %d checkpoints: name one, e.g. %s'
                % (STATE_FILE, self.path, len(indexes),
                   ours[-1][1] if ours else self.file(indexes[-1][:-len('.index')])))
        if len(indexes) != 1:
            raise FileNotFoundError('no checkpoint in folder %s: expected a "%s" file or exactly '
                                    'one *.index file, found %d'
                                    % (self.path, STATE_FILE, len(indexes)))
        return self.file(indexes[0][:-len('.index')])

    def checkpoint_manager(self, checkpoint, keep):
        """The tf.train.CheckpointManager that writes `checkpoint` here as ckpt-N."""
        return tf.train.CheckpointManager(checkpoint, self.path, keep,
                                          checkpoint_name=CHECKPOINT_NAME)

    def next_checkpoint_number(self, manager):
        """One above every checkpoint number the folder holds or `manager` names.

        Not the checkpoint's save counter: a float16 trainer resuming a checkpoint written
        in another precision restores into the layout without the loss scale, so its own
        counter stays 0, and the counter would name the first checkpoint again (written
        over). The folder is what must never be written over.
        """
        numbers = [number for number, _ in self.checkpoints()]
        numbers += [int(path.rsplit('-', 1)[1]) for path in manager.checkpoints
                    if path.rsplit('-', 1)[-1].isdigit()]
        return max(numbers, default=0) + 1

    def entries(self):
        """The names in the folder now (a set; empty if there is no folder)."""
        return set(os.listdir(self.path)) if os.path.isdir(self.path) else set()

    def remove_save_debris(self, before):
        """Remove what a failed save began (ckpt-N_temp/, part of ckpt-N.*, the state file's
        temporary) among the entries not in `before`, so that only whole checkpoints stay
        and the state file still names the last one."""
        for name in self.entries() - before:
            if _SAVE_DEBRIS.match(name):
                path = self.file(name)
                try:
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    else:
                        os.remove(path)
                except OSError:
                    pass  # the error being reported matters more than this file

    # ------------------------------------------------------------- model options

    def model_config(self):
        """The ModelConfig stored here (pixelcnn_config.json), or None if there is none.

        A file written before an option existed gives that option its default.
        Raises ValueError naming the file if it is not a valid one.
        """
        path = self.file(CONFIG_FILE)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                values = json.load(f)
        except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
            raise ValueError('%s (the model options of the checkpoint) cannot be read as JSON: %s'
                             % (path, e)) from None
        if not isinstance(values, dict):
            raise ValueError('%s (the model options of the checkpoint) must hold a JSON object '
                             '{"nr_filters": 160, ...}; got a %s' % (path, type(values).__name__))
        try:
            return ModelConfig.from_dict(values)
        except ValueError as e:
            raise ValueError('%s: %s' % (path, e)) from None

    def save_model_config(self, config):
        """Write `config` (a ModelConfig) as pixelcnn_config.json, atomically."""
        files.write_json(self.file(CONFIG_FILE), config.to_dict())

    # -------------------------------------------------------------------- journal

    def journal_file(self):
        return self.file(JOURNAL_FILE)

    def invocations(self):
        """Every recorded invocation of the run ([] if none), oldest first.

        Each is a dict with 'flags' (the settings), and where recorded 'started',
        'ended', 'host', 'pid' and 'outcome'. A flags.json written before invocations
        were kept gives one entry, its settings.
        """
        try:
            with open(self.journal_file()) as f:
                stored = json.load(f)
        except (OSError, ValueError):
            return []
        if not isinstance(stored, dict):
            return []
        invocations = stored.get('invocations')
        if isinstance(invocations, list):
            return [i for i in invocations if isinstance(i, dict)]
        return [dict(flags=stored, outcome=_UNRECORDED)]

    def record_invocation(self, settings):
        """Append an invocation ('running', now) to the journal; returns its index.

        The first invocation's settings stay at the top level of flags.json (as it always
        held them). An earlier invocation still 'running' (another process: it held the
        folder's lock and is gone) is marked as having ended without recording how.
        """
        invocations = self.invocations()
        for earlier in invocations:
            if earlier.get('outcome') == 'running':
                earlier['outcome'] = 'ended without recording how (killed, or the machine stopped)'
        invocations.append(dict(flags=settings, started=_now(), host=socket.gethostname(),
                                pid=os.getpid(), outcome='running'))
        self._write_journal(invocations)
        return len(invocations) - 1

    def record_outcome(self, index, outcome):
        """Set the outcome (and end time) of invocation `index`."""
        invocations = self.invocations()
        if index < len(invocations):
            invocations[index].update(outcome=outcome, ended=_now())
            self._write_journal(invocations)

    def _write_journal(self, invocations):
        first = invocations[0]['flags']
        files.write_json(self.journal_file(), dict(first if isinstance(first, dict) else {},
                                                   invocations=invocations))

    def _last_settings(self):
        """The settings of the last recorded invocation ({} if none, or unreadable)."""
        invocations = self.invocations()
        before = invocations[-1].get('flags') if invocations else None
        return before if isinstance(before, dict) else {}

    def changed_settings(self, settings, names):
        """[(name, before, now)] for each of `names` whose value in `settings` differs from
        the last recorded invocation's."""
        before = self._last_settings()
        return [(name, before[name], settings.get(name)) for name in names
                if name in before and before[name] != settings.get(name)]

    def kept_settings(self, names, given):
        """{name: value} of each of `names` recorded by the last invocation and not in
        `given` (the settings this invocation sets itself): what a resumed run keeps."""
        before = self._last_settings()
        return {name: before[name] for name in names if name in before and name not in given}

    # ----------------------------------------------------------------- resuming

    def resume_point(self, resume=False, data_set=None, start_from=None, log=print):
        """(our checkpoint to continue, or None; a checkpoint to start from, or None).

        `resume` continues our latest checkpoint here (FileNotFoundError if there is none,
        nor OpenAI's params_<data_set>.ckpt); `start_from` starts a new run from any
        checkpoint's weights. ValueError: a new run into a folder that holds one.
        """
        latest = self.latest_checkpoint()
        if latest is None:
            latest = self._newest_without_state_file(resume, log)
        if resume and latest is None:
            openai = self.file('params_%s.ckpt' % data_set)
            if os.path.exists(openai + '.index'):
                return None, openai
            raise FileNotFoundError("'resume': no checkpoint to resume in 'save_dir' %s (it has "
                                    'no "%s" file written by train.py, nor OpenAI\'s %s.index); '
                                    "start without 'resume' to begin training"
                                    % (self.path, STATE_FILE, os.path.basename(openai)))
        if not resume and latest is not None:
            raise ValueError("'save_dir' %s already holds a training run (%s): continue it with "
                             "'resume', or give another 'save_dir'"
                             % (self.path, os.path.basename(latest)))
        return (None, start_from) if start_from else (latest, None)

    def _newest_without_state_file(self, resume, log):
        """Our newest checkpoint when the state file is unreadable or missing, or None.

        The state file is what finds a run's checkpoints; when it is damaged they are
        still there, and a new run must never be started over them. `resume` continues
        the newest if it reads whole; otherwise the message says which files to move
        away (an older checkpoint is never taken silently: that would drop the epochs
        after it).
        """
        ours = self.checkpoints()
        if not ours:
            return None
        newest = ours[-1][1]
        state = '"%s" state file' % STATE_FILE
        problem = ('could not be read (or names no checkpoint there)'
                   if os.path.exists(self.file(STATE_FILE)) else 'is missing')
        if not resume:
            raise ValueError("'save_dir' %s holds a training run (%s), but its %s %s: continue "
                             "it with 'resume' (from %s), or give another 'save_dir'"
                             % (self.path, ', '.join(os.path.basename(p) for _, p in ours),
                                state, problem, os.path.basename(newest)))
        try:
            checkpoints.check_intact(newest)
        except ValueError as e:
            older = (' to resume from %s, the newest before it' % os.path.basename(ours[-2][1])
                     if len(ours) > 1 else '')
            raise ValueError("'resume': the %s of 'save_dir' %s %s, and %s; move %s.* out of the "
                             'folder%s' % (state, self.path, problem, e,
                                           os.path.basename(newest), older)) from None
        log("note: the %s of 'save_dir' %s %s; resuming from the newest checkpoint, %s (the "
            'state file is written anew at the next save)'
            % (state, self.path, problem, os.path.basename(newest)))
        return newest

    def check_resumable(self, checkpoint, config):
        """ValueError if `checkpoint` (ours, here) was trained with another network than
        `config`; the message names each option that differs, quoted."""
        stored = self.model_config()
        if stored is None:
            return  # Trainer.restore still checks every variable
        changed = stored.diff(config, ignore=TRAINING_ONLY)
        differences = ["'%s': %r in the checkpoint, %r now" % (name, theirs, ours)
                       for name, (theirs, ours) in changed.items()]
        if differences:
            raise ValueError("'resume': the checkpoint %s was trained with another model "
                             'configuration (%s); resume with the same options, or start a new '
                             "run in another 'save_dir'" % (checkpoint, '; '.join(differences)))


def _now():
    return time.strftime('%Y-%m-%d %H:%M:%S %z')
