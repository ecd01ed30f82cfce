"""Restarted training processes find and resume their own run's latest checkpoint.

Who restarts a dead group, and how a restarted process knows it is one:

* torchrun (``tools/dist_train.sh``, ``--max-restarts``) sets ``TORCHELASTIC_RESTART_COUNT``
  (0 in the first attempt) in every worker;
* Slurm sets ``SLURM_RESTART_COUNT`` in a requeued job (``sbatch --requeue``, preemption);
* ``tools/slurm_train.sh`` re-runs ``srun`` and sets ``MMBCN_RESTART_COUNT``.

A process whose attempt is not the first resumes from the newest checkpoint in the work dir
**written during this launch**, i.e. after the launch marker the first attempt wrote
(:data:`LAUNCH_MARKER`), and only when one exists and loads. Without one (the group died before
its first checkpoint) the attempt starts as the first did, with the user's own ``--resume`` /
``load_from``. So a rerun in an old work dir never picks up the previous run's checkpoints.
"""

import glob
import os
import os.path as osp
from typing import List, Optional

import torch.distributed as dist
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint

from ..checkpoints.weights_only import checkpoint_problem, load_weights_only

RESTART_VARIABLES = ('TORCHELASTIC_RESTART_COUNT', 'SLURM_RESTART_COUNT', 'MMBCN_RESTART_COUNT')
LAUNCH_MARKER = 'launch_marker'
CHECKPOINT_PATTERNS = ('iter_*.pth', 'epoch_*.pth')  # CheckpointHook's default file names


def restart_count(environ=os.environ) -> int:
    """How many times this process's group has been restarted: the largest of the variables
    in :data:`RESTART_VARIABLES` (0 when none is set)."""
    counts = [0]
    for name in RESTART_VARIABLES:
        value = environ.get(name, '').strip()
        if not value:
            continue
        if not value.isdigit():
            raise ValueError(f'{name}={value!r} is not a restart count (a whole number >= 0); '
                             f'unset it or fix what sets it.')
        counts.append(int(value))
    return max(counts)


def mark_launch(work_dir: str) -> None:
    """Record that a launch (its first attempt) starts now: later attempts resume only
    checkpoints newer than this file."""
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, LAUNCH_MARKER), 'w') as marker:
        marker.write('Written by the first attempt of the latest mmbcn training launch; '
                     'restarted attempts resume only checkpoints newer than this file.\n')


def _candidates(work_dir: str) -> List[str]:
    """Checkpoints of ``work_dir``, the one ``last_checkpoint`` names first, then newest first."""
    found = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as file:
            named = file.read().strip()
        if named:
            found.append(named if osp.isabs(named) else osp.join(work_dir, osp.basename(named)))
    files = [path for pattern in CHECKPOINT_PATTERNS
             for path in glob.glob(osp.join(work_dir, pattern))]
    found.extend(sorted(files, key=osp.getmtime, reverse=True))
    return list(dict.fromkeys(found))


def launch_checkpoint(work_dir: str) -> Optional[str]:
    """The newest readable checkpoint of ``work_dir`` written after the launch marker, or None.

    A checkpoint can be missing though ``last_checkpoint`` names it (``max_keep_ckpts`` deletes
    the old file before the new one is written) or cut short (a node died while writing it):
    such files are passed over for the next newest.
    """
    marker = osp.join(work_dir, LAUNCH_MARKER)
    if not osp.isfile(marker):
        return None
    launched = osp.getmtime(marker)
    for path in _candidates(work_dir):
        if not osp.isfile(path) or osp.getmtime(path) < launched:
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print_log(f'Restart: passing over {path}: {problem}.', logger='current')
    return None


def checkpoint_seed(path: str) -> Optional[int]:
    """The random seed a training checkpoint was written with (``meta['seed']``), or None."""
    checkpoint = load_weights_only(path, map_location='cpu', mmap=True)
    seed = checkpoint.get('meta', {}).get('seed')
    return None if seed is None else int(seed)


def _decide(cfg) -> tuple:
    """(checkpoint to resume or None, its seed or None, a line for the log); on rank 0 only."""
    attempt = restart_count()
    if attempt == 0:
        mark_launch(cfg.work_dir)
    elif (path := launch_checkpoint(cfg.work_dir)) is not None:
        return path, checkpoint_seed(path), f'Restart {attempt}: resuming from {path}.'
    note = (f'Restart {attempt}: no checkpoint of this launch in {cfg.work_dir} yet; '
            f'starting as the first attempt did.' if attempt else None)
    if not cfg.get('resume'):
        return None, None, note
    path = cfg.get('load_from') or find_latest_checkpoint(cfg.work_dir)
    readable = path is not None and osp.isfile(path)  # else MMEngine says what is missing
    return path, (checkpoint_seed(path) if readable else None), note


def resume_point(cfg) -> Optional[str]:
    """Set ``cfg.resume`` / ``cfg.load_from`` for this attempt; return the checkpoint resumed.

    The first attempt writes the launch marker and resumes what the user asked for
    (``--resume [CKPT]``); a restarted one resumes this launch's latest checkpoint
    (:func:`launch_checkpoint`) when there is one. Rank 0 decides and tells the others, so all
    ranks resume the same file even where a shared file system shows them different listings.

    When the config sets no ``randomness.seed``, the resumed checkpoint's seed is put in the
    config: MMEngine builds the sampler before it reads the seed from the checkpoint, so a
    fresh seed would shuffle the data differently from the interrupted run.
    """
    decision = [_decide(cfg) if get_rank() == 0 else None]
    if dist.is_initialized():
        dist.broadcast_object_list(decision, src=0)
    path, seed, note = decision[0]
    if note and get_rank() == 0:
        print_log(note, logger='current')
    if path is None:
        return None
    cfg.resume, cfg.load_from = True, path
    randomness = dict(cfg.get('randomness') or {})
    if randomness.get('seed') is None and seed is not None:
        cfg.randomness = dict(randomness, seed=seed)
    return path
