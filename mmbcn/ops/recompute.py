"""BCN under activation checkpointing: a checkpointed training call is recorded, its recompute
replays the record.

``torch.utils.checkpoint`` (and every ``with_cp=True`` of mmdet, mmseg, mmpretrain and MMEngine's
``activation_checkpointing``) runs a checkpointed function twice: a first run in the forward,
under ``no_grad`` (reentrant) or under saved-tensor hooks (non-reentrant), and a recompute in the
backward, whose graph (reentrant) or saved tensors (non-reentrant) the gradients come from. A BCN
training call moves the running statistics and ``num_batches_tracked``; in micro-batch mode it
normalizes with the moved estimates. Run twice plainly, it moves them twice and the recompute
normalizes with other estimates than the first run did: backward differentiates another function.

So each call has a :class:`Phase`, from the autograd state it runs in (:func:`phase_of_call`):

* ``RECORD``, a training call in a checkpoint's first run: computed as usual, and the layer keeps
  a :class:`ForwardRecord`: the call's local batch sums ``[S0, S1, S2]`` (which identify it), the
  (global) batch sums it normalized with and, in micro-batch mode, the estimates it used;
* ``REPLAY``, a training call inside a backward pass, which only a recompute makes: the record
  whose local sums match the recomputed ones is taken; the call normalizes with the recorded
  statistics and moves nothing: no buffer, no ``num_batches_tracked``, no collective (the
  recorded global sums stand for the forward's all-reduce, so a rank whose recompute stops early
  cannot leave another waiting). Large-batch backward keeps its all-reduce of dL/dmu, dL/dvar,
  which every rank runs once per call as in the plain run;
* ``PLAIN``: everything else (eval, a training call with gradients and no checkpoint, a call
  that Dynamo traces).

The two questions asked of torch's autograd state (:func:`in_backward_pass`,
:func:`saved_tensor_hooks_active`) are private torch API. The first is there from torch 2.1
(whose non-reentrant checkpoint asks it itself) to 2.15; without it a recompute is refused
(:class:`CheckpointReplayError`) rather than run wrong. torch 2.1 cannot answer the second
(:func:`can_see_saved_tensor_hooks`): there every training call with gradients is recorded
too, an O(C) record that the next ones push out (:attr:`ForwardRecords.limit`).
"""

import enum
from typing import List, NamedTuple, Optional

import torch

__all__ = ['CheckpointReplayError', 'ForwardRecord', 'ForwardRecords', 'Phase',
           'can_see_saved_tensor_hooks', 'in_backward_pass', 'phase_of_call',
           'saved_tensor_hooks_active']

# Two recomputed local sums that differ by less than this, relative to their largest entry,
# are taken as the same call's (a GPU recompute can round differently; a different input differs
# by far more).
MATCH_TOLERANCE = 1e-4


class CheckpointReplayError(RuntimeError):
    """A BCN training call was recomputed (activation checkpointing) without a record to replay."""


class Phase(enum.Enum):
    """What a BCN call is to activation checkpointing (see the module doc)."""

    PLAIN = 'plain'
    RECORD = 'record'
    REPLAY = 'replay'


def _autograd_question(name: str):
    return getattr(torch._C, name, None) or getattr(torch._C._autograd, name, None)


_graph_task_id = _autograd_question('_current_graph_task_id')
_top_saved_tensors_hooks = _autograd_question('_top_saved_tensors_default_hooks')


def in_backward_pass() -> bool:
    """Whether the autograd engine is running a backward pass in this thread."""
    if _graph_task_id is None:
        raise CheckpointReplayError(
            'this torch has no torch._C._current_graph_task_id: BCN cannot tell a checkpoint '
            "recompute from a forward. Train BCN without activation checkpointing (with_cp=False) "
            'or with torch 2.1 or newer.')
    return _graph_task_id() != -1


def can_see_saved_tensor_hooks() -> bool:
    """Whether this torch tells if saved-tensor hooks are installed (not torch 2.1)."""
    return _top_saved_tensors_hooks is not None


def saved_tensor_hooks_active() -> bool:
    """Whether saved-tensor hooks are installed (a non-reentrant checkpoint's first run, or
    ``torch.autograd.graph.save_on_cpu``); True where torch cannot tell."""
    if _top_saved_tensors_hooks is None:
        return True  # record: a record that is never replayed costs O(C)
    return _top_saved_tensors_hooks(False) is not None


def phase_of_call(training: bool, compiling: bool) -> Phase:
    """The :class:`Phase` of a BCN call in ``training`` mode, from the autograd state.

    A recompute runs inside the backward pass; a first run under ``no_grad`` (reentrant) or
    under saved-tensor hooks (non-reentrant). A training call under ``no_grad`` outside any
    checkpoint is recorded too; its record is never replayed and drops out after
    :attr:`ForwardRecords.limit` newer ones.
    """
    if not training or compiling:
        return Phase.PLAIN
    if in_backward_pass():
        return Phase.REPLAY
    if not torch.is_grad_enabled() or saved_tensor_hooks_active():
        return Phase.RECORD
    return Phase.PLAIN


class ForwardRecord(NamedTuple):
    """What a recorded training call normalized with."""

    local_sums: torch.Tensor  # [S0, S1, S2] of this process's batch: identifies the call
    sums: torch.Tensor  # the (global) batch sums the statistics came from
    estimates: Optional[tuple]  # micro-batch mode: the (mean, var) used; else None


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max(|a|, |b|): 0 for the same sums."""
    scale = torch.maximum(a.abs().max(), b.abs().max()).clamp_min(1e-300)
    return float((a - b).abs().max() / scale)


def _same_replay(a: ForwardRecord, b: ForwardRecord) -> bool:
    pairs = [(a.sums, b.sums)]
    if a.estimates is not None and b.estimates is not None:
        pairs += list(zip(a.estimates, b.estimates, strict=True))
    return all(torch.equal(x, y) for x, y in pairs)


class ForwardRecords:
    """One BCN layer's records of checkpointed training calls whose recompute has not come yet.

    A recompute takes the record whose local batch sums are nearest to its own (within
    :data:`MATCH_TOLERANCE`), so calls recomputed in another order than they ran (several
    checkpointed calls of one layer, the backward of two forwards at once) each get their own.
    At most :attr:`limit` are kept, the oldest dropped first: a first run whose backward never
    comes (no loss through it) leaves its record behind.
    """

    #: The most records a layer keeps; the oldest go first.
    limit = 8

    def __init__(self):
        self._records: List[ForwardRecord] = []

    def __len__(self) -> int:
        return len(self._records)

    def __deepcopy__(self, memo):
        return ForwardRecords()  # a copied model (EMA, a deployed copy) starts with none

    def add(self, record: ForwardRecord) -> None:
        self._records.append(record)
        del self._records[:-self.limit]

    def take(self, local_sums: torch.Tensor) -> ForwardRecord:
        """Remove and return the record of the call whose local sums are ``local_sums``."""
        distances = [_distance(record.local_sums, local_sums) for record in self._records]
        close = [i for i, d in enumerate(distances) if d <= MATCH_TOLERANCE]
        if not close:
            raise CheckpointReplayError(
                'BatchChannelNorm2d: a training call ran inside a backward pass (an activation '
                'checkpoint recompute) on an input no checkpointed forward of this layer saw '
                f'({len(self._records)} recorded; nearest relative difference of the batch sums '
                f'{min(distances, default=float("nan")):.2g}). The checkpointed function must '
                'compute the same input again: keep preserve_rng_state=True with dropout, and '
                'do not change weights between forward and backward. Otherwise train with '
                'with_cp=False.')
        best = min(close, key=distances.__getitem__)
        if any(not _same_replay(self._records[i], self._records[best]) for i in close):
            raise CheckpointReplayError(
                'BatchChannelNorm2d: an activation checkpoint recomputed a training call whose '
                'input matches several checkpointed calls of this layer that normalized with '
                'different statistics, so which one it recomputes cannot be told. Give the '
                'calls different inputs, or do not checkpoint a layer called more than once on '
                'the same input before one backward.')
        return self._records.pop(best)
