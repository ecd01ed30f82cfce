"""The random streams of a resumed run continue where the interrupted run's left off.

MMEngine 0.10.7 checkpoints hold no random state, and on resume it re-seeds Python's, numpy's
and torch's generators from the seed (``Runner.resume``). What that changes:

* ``IterBasedTrainLoop`` resumes at iteration ``k`` by drawing ``k`` batches from a fresh
  dataloader and dropping them, which replays the data pipeline's numpy / Python draws exactly
  (the model does not use those generators), but not torch's: dropout masks and any other torch
  random op in the model come out of a different stream than in an uninterrupted run.
* ``EpochBasedTrainLoop`` resumes at the start of the checkpoint's epoch with no replay: the
  augmentations of every later epoch come from the seed, not from where the run was.

:class:`RandomStateHook` makes both exact. At the point where a resumed run continues (before
the first iteration after a checkpoint in iteration-based loops, after the batch is drawn;
before the first epoch after it in epoch-based loops) each rank saves its generators' states
next to the checkpoint (``random_state/<checkpoint>_rank<R>.pt`` in the work dir, plain tensors,
loaded with ``weights_only=True``); a run resumed from that checkpoint sets them back at the
same point. The uninterrupted run's streams are only read, never changed.
"""

import glob
import os
import os.path as osp
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from ...checkpoints.weights_only import load_weights_only

STATE_DIR = 'random_state'


def capture_random_state() -> dict:
    """The states of Python's, numpy's and torch's (CPU and current CUDA device) generators."""
    name, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = dict(python=random.getstate(), torch=torch.get_rng_state(),
                 numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)),
                            position=int(position), has_gauss=int(has_gauss),
                            cached_gauss=float(cached_gauss)))
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def restore_random_state(state: dict) -> None:
    """Set the generators to a state of :func:`capture_random_state`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    saved = state['numpy']
    np.random.set_state((saved['name'], saved['keys'].numpy().astype(np.uint32),
                         saved['position'], saved['has_gauss'], saved['cached_gauss']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


def state_path(work_dir: str, checkpoint: str, rank: int) -> str:
    stem = osp.splitext(osp.basename(checkpoint))[0]
    return osp.join(work_dir, STATE_DIR, f'{stem}_rank{rank}.pt')


class RandomStateHook(Hook):
    """Saves each rank's random state with every checkpoint and restores it on resume.

    Args:
        resume_from: The checkpoint this run resumes from (None: a fresh start).

    Note:
        Exact for data pipelines run in the training process (``num_workers=0``) or in worker
        processes that start with each epoch (MMEngine seeds them from the seed, rank and worker
        id); ``persistent_workers=True`` keeps workers' generators across epochs, which only an
        iteration-based loop replays.
    """

    priority = 'NORMAL'

    def __init__(self, resume_from: Optional[str] = None):
        self.resume_from = resume_from
        self._seen_checkpoint = None
        self._resumed_experiment = None
        self._pending: List[str] = []

    # -- saving: note each new checkpoint, save the state where a resumed run continues --
    def before_train(self, runner) -> None:
        self._seen_checkpoint = runner.message_hub.get_info('last_ckpt')  # resumed: not new
        if self.resume_from is not None and runner.iter == 0:
            self.resume_from = None  # loaded weights only, nothing to continue

    def _note_checkpoint(self, runner) -> None:
        """Every rank learns of a new checkpoint from the message hub (only rank 0 writes it)."""
        latest = runner.message_hub.get_info('last_ckpt')
        if latest is not None and latest != self._seen_checkpoint:
            self._seen_checkpoint = latest
            self._pending.append(latest)

    def after_val_epoch(self, runner, metrics=None) -> None:
        # Before the CheckpointHook (lower priority) may save a best-metric checkpoint here:
        # note the regular one saved since the last iteration or epoch.
        self._note_checkpoint(runner)

    def _continue_point(self, runner) -> None:
        self._note_checkpoint(runner)
        if self.resume_from is not None:
            self._restore(runner, self.resume_from)
            self.resume_from = None
        for checkpoint in self._pending:
            self._save(runner, checkpoint)
        self._pending = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            self._continue_point(runner)

    def before_train_epoch(self, runner) -> None:
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            self._continue_point(runner)

    def _save(self, runner, checkpoint: str) -> None:
        path = state_path(runner.work_dir, checkpoint, get_rank())
        os.makedirs(osp.dirname(path), exist_ok=True)
        state = dict(iter=runner.iter, experiment=runner.experiment_name)
        torch.save(dict(state, **capture_random_state()), path)
        self._remove_orphans(runner, kept=path)

    def after_train(self, runner) -> None:
        self._remove_orphans(runner)

    @staticmethod
    def _remove_orphans(runner, kept: Optional[str] = None) -> None:
        """Delete this rank's saved states whose checkpoint is gone (``max_keep_ckpts``).

        ``kept``, just written, stays: rank 0 may still be writing its checkpoint.
        """
        latest = runner.message_hub.get_info('last_ckpt')
        if latest is None:
            return
        suffix = f'_rank{get_rank()}.pt'
        for path in glob.glob(osp.join(runner.work_dir, STATE_DIR, f'*{suffix}')):
            stem = osp.basename(path)[:-len(suffix)]
            if path != kept and not osp.exists(osp.join(osp.dirname(latest), f'{stem}.pth')):
                os.remove(path)

    # -- restoring --
    def after_load_checkpoint(self, runner, checkpoint) -> None:
        self._resumed_experiment = checkpoint.get('meta', {}).get('experiment_name')

    def _restore(self, runner, checkpoint: str) -> None:
        path = state_path(runner.work_dir, checkpoint, get_rank())
        problem = None
        if not osp.isfile(path):
            problem = f'no {path}'
        else:
            state = load_weights_only(path, map_location='cpu')
            if state['experiment'] != self._resumed_experiment:
                problem = f'{path} belongs to run {state["experiment"]!r}, not to the checkpoint'
            elif state['iter'] != runner.iter:
                problem = f'{path} was saved at iteration {state["iter"]}, not {runner.iter}'
        if problem:
            runner.logger.warning(
                f'Resuming without the random state of {checkpoint} ({problem}): random '
                f'augmentations and dropout continue from re-seeded generators, so the run is '
                f'not bit-equal to an uninterrupted one.')
            return
        restore_random_state(state)
        runner.logger.info(f'Random state of iteration {runner.iter} restored from {path}.')
