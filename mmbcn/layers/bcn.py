"""Batch-Channel Normalization as an ``nn.Module``, registered as ``'BCN'`` for OpenMMLab, and
the SyncBN conversion that leaves it alone."""

from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..ops import batch_channel_norm
from ..ops.function import world_size_of
from ..ops.maths import DEFAULT_ESTIMATE_RULE, check_estimate_rule, positions_per_sample
from ..ops.recompute import ForwardRecords, Phase, phase_of_call
from ..utils.feature_probes import disable_compilation, is_compiling, is_exporting
from .fx_tracing import refuse_fx_tracing_through

__all__ = ['BatchChannelNorm2d', 'GroupCountMismatchError', 'convert_sync_batchnorm',
           'revert_sync_batchnorm']


@MODELS.register_module(name=['BCN', 'BatchChannelNorm2d'])
class BatchChannelNorm2d(_BatchNorm):
    """Batch-Channel Normalization: a batch-normalization stage, then a channel-normalization stage.

    For x of shape (N, C, *): ``y = (x - mu) / sqrt(var + eps) * weight + bias`` per channel,
    then group norm of y per sample with ``group_weight``, ``group_bias`` per group. The maths,
    stated once, is in :mod:`mmbcn.ops.maths`. The modes, for the (mu, var) of the batch stage:

    * large-batch (``estimate=False``), training: the batch's, with gradients (as BatchNorm,
      whose running statistics and ``momentum`` it keeps; None: a cumulative average);
    * micro-batch (``estimate=True``), training: estimates moved at r = ``momentum`` by the
      ``estimate_rule`` (default: the authors'), then used, with no gradient.
      :class:`mmbcn.engine.BCNUpdateRateHook` sets ``momentum`` during training;
      ``momentum=None`` averages the batches seen, restarting at the second step (r = 1, 1,
      then 1/(t - 1) at step t), which forgets the first step's spread around the initial mean;
    * eval: the running statistics, in both modes.

    Under activation checkpointing (``with_cp=True``, ``torch.utils.checkpoint`` reentrant or
    not) a training call's recompute normalizes with what its first run normalized with and
    moves nothing, so gradients, statistics and ``num_batches_tracked`` are the plain run's
    (:mod:`mmbcn.ops.recompute`).

    When torch.distributed is initialized with more than one process and ``sync_stats`` is True,
    the batch statistics are those of the global batch (an all-reduce of counts and sums, correct
    for different batch or image sizes per process), in both modes, so every process keeps the
    same running statistics: MMEngine's DDP wrapper does not broadcast buffers.

    The batch stage has exactly BatchNorm2d's state (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``), so BN checkpoints load into it; the channel stage
    adds ``group_weight`` and ``group_bias`` of shape (G,), initialized to 1 and 0. ``_abbr_`` is
    ``'bn'``, so mmdet/mmseg ResNets name these layers as they name BN layers (``bn1``, ...).

    Zero-init of a residual branch (mmdet's and mmseg's ``zero_init_residual=True``, a
    ``Constant(val=0)`` init of the block's last norm) sets a norm layer's ``weight`` and
    ``bias`` to 0. On BCN that would zero the batch stage, leaving the channel stage to divide a
    constant by sqrt(eps). The authors' ImageNet ResNets (``imagenet/models/imagenet/resnet.py``
    of their release) zero the channel stage's weight instead, so
    :meth:`init_weights` (which MMEngine calls after the parent's init) turns a batch stage with
    all-zero weight and bias into the authors' zero-init: ``weight = 1``, ``group_weight = 0``.

    Being a ``_BatchNorm``, this layer follows what OpenMMLab settings mean for BN layers:
    ``norm_eval=True`` in a ResNet freezes the batch stage's statistics (the layer runs in eval
    mode), and ``norm_decay_mult`` applies to all four affine parameters. SyncBN conversion
    (:func:`mmbcn.convert_sync_batchnorm`, and with mmbcn imported torch's
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` and MMEngine's ``sync_bn``) keeps a BCN layer
    and turns on ``sync_stats`` instead of replacing it by a plain SyncBN.

    Args:
        num_features: C, the number of channels.
        num_groups: G, the number of channel groups of the channel stage; must divide C, unless
            ``group_rule='at_most'``.
        eps: added to the batch and to the group variance inside the square root.
        momentum: r, the update rate of the paper (:mod:`mmbcn.ops.maths`, step 2). Large-batch
            mode: BatchNorm's momentum for the running statistics (None: a cumulative moving
            average). Micro-batch mode: how fast the estimates move.
        estimate: False for large-batch mode, True for micro-batch mode.
        sync_stats: compute batch statistics over all processes of ``process_group`` when
            torch.distributed is initialized.
        affine: learnable affine parameters in both stages.
        process_group: the group to synchronize over (None: the default group).
        estimate_rule: what the micro-batch variance estimate moves towards: ``'authors'``
            (default, the spread of the batch around the previous estimate) or
            ``'batch_variance'`` (the biased variance of the batch; not the authors' rule, kept
            for comparison). Ignored in large-batch mode.
        group_rule: how ``num_groups`` meets the width C: ``'exact'`` (default; G =
            ``num_groups``, which must divide C) or ``'at_most'`` (G = the largest divisor of C
            not above ``num_groups``: 32 for 256 channels, 24 for 48, 20 for 40), so that one
            ``norm_cfg`` serves every width of a model (DeepLabV3+'s 48-channel decoder,
            RTMDet's 40-channel stem).

    Note:
        Compared with the authors' release (``BCNorm`` / ``EstBN`` in the README of
        github.com/joe-siyuan-qiao/Batch-Channel-Normalization; the DeepLabV3 code's ``PBCNorm``
        for large-batch mode), the defaults compute the same function, and the same estimates at
        the same r. The release keeps r in ``EstBN``'s ``estbn_moving_speed`` buffer, initialized
        to 0 and set by nothing in it (it has no micro-batch training script); ``momentum=0.1``
        and :class:`mmbcn.engine.BCNUpdateRateHook` are mmbcn's choices of r.
        Departures: ``estimate_rule='batch_variance'`` is an option of ours; their ``EstBN``
        fixes the batch stage's eps at 1e-5 (here ``eps``, default 1e-5, for both stages);
        statistics can be all-reduced over processes in micro-batch mode too (their ``EstBN``
        is per process); and the maths is a single pass (:mod:`mmbcn.ops`) rather than
        a BatchNorm module followed by a batch-norm call over reshaped groups.
    """

    _abbr_ = 'bn'

    def __init__(self,
                 num_features: int,
                 num_groups: int = 32,
                 eps: float = 1e-5,
                 momentum: Optional[float] = 0.1,
                 estimate: bool = False,
                 sync_stats: bool = True,
                 affine: bool = True,
                 process_group=None,
                 estimate_rule: str = DEFAULT_ESTIMATE_RULE,
                 group_rule: str = 'exact'):
        num_groups = groups_for(num_features, num_groups, group_rule)
        _check_config(num_features, num_groups, eps, momentum, estimate_rule)
        super().__init__(num_features, eps, momentum, affine, track_running_stats=True)
        self.num_groups = num_groups
        self.estimate = bool(estimate)
        self.estimate_rule = estimate_rule
        self.sync_stats = bool(sync_stats)
        self.process_group = process_group
        # Activation checkpointing: the records of first runs, for their recomputes to replay.
        self.checkpoint_records = ForwardRecords()
        if affine:
            self.group_weight = nn.Parameter(torch.ones(num_groups))
            self.group_bias = nn.Parameter(torch.zeros(num_groups))
        else:
            self.register_parameter('group_weight', None)
            self.register_parameter('group_bias', None)

    def reset_parameters(self) -> None:
        """Batch stage as BatchNorm's reset; channel-stage affine to identity."""
        super().reset_parameters()
        if getattr(self, 'group_weight', None) is not None:
            nn.init.ones_(self.group_weight)
            nn.init.zeros_(self.group_bias)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Turn a zeroed batch stage (a ``Constant(val=0)`` init) into the authors' zero-init.

        MMEngine's ``BaseModule.init_weights`` calls this after applying the parent's
        ``init_cfg``. A batch stage whose weight and bias are all 0 makes the channel stage
        normalize a constant; the authors zero-initialize a residual branch by its channel
        stage's weight instead. So: ``weight = 1``, ``group_weight = 0`` (bias and group_bias
        stay 0). Any other state is left as it is.
        """
        if not self.affine or self.weight.any() or self.bias.any():
            return
        self.weight.fill_(1.0)
        self.group_weight.zero_()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Refuse weights of another group count, which a non-strict load would only warn about."""
        saved = state_dict.get(prefix + 'group_weight')
        if self.affine and saved is not None and saved.shape != self.group_weight.shape:
            raise GroupCountMismatchError(
                group_count_mismatch(prefix + 'group_weight', saved.numel(), self.num_groups))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(
                f'BatchChannelNorm2d expects an input of shape (N, C, *) with at least 2 '
                f'dimensions, got shape {tuple(x.shape)}.')
        if x.shape[1] != self.num_features:
            raise ValueError(
                f'BatchChannelNorm2d was built for {self.num_features} channels but got an input '
                f'with {x.shape[1]} channels (shape {tuple(x.shape)}); check num_features or '
                f'the layer that feeds this one.')

    def synchronizes(self) -> bool:
        """Whether batch statistics are currently all-reduced across processes."""
        return self.sync_stats and world_size_of(self.process_group) > 1

    def _momentum_now(self):
        """The momentum (r) of this step, counting the step in ``num_batches_tracked`` (as
        BatchNorm): ``momentum``, or a 0-d tensor when it is None."""
        self.num_batches_tracked.add_(1)
        if self.momentum is not None:
            return self.momentum
        # A cumulative moving average (a 0-d tensor: no sync), as BatchNorm; the estimates
        # restart at the second step (see the class doc).
        steps = self.num_batches_tracked
        if self.estimate:
            steps = (steps - 1).clamp_min(1)
        return 1.0 / steps.double()

    def channel_stage_affine(self):
        """The channel stage's (G,) affine repeated per channel, (C,) each; (None, None) without
        affine: GroupNorm's ``weight`` and ``bias`` for the same function."""
        if not self.affine:
            return None, None
        per_group = self.num_features // self.num_groups
        return (self.group_weight.repeat_interleave(per_group),
                self.group_bias.repeat_interleave(per_group))

    def channel_stage_forward(self, y: torch.Tensor) -> torch.Tensor:
        """The channel stage alone: group norm of y per sample, the (G,) affine per channel."""
        return F.group_norm(y, self.num_groups, *self.channel_stage_affine(), self.eps)

    def traced_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The eval-mode forward as two aten ops, for ``torch.jit`` tracing, ``torch.export`` and
        ``torch.compile`` in eval mode.

        Tracers (MMEngine's FLOP counter, TorchScript-based ONNX export) and ``torch.export``
        (the default ONNX exporter) cannot record BCN's autograd Function. In eval mode BCN is
        exactly BatchNorm with the running statistics followed by the channel stage, so the
        graph holds ``aten::batch_norm`` and ``aten::group_norm`` (and FLOP counters count BCN
        as those two). In training mode the running statistics' update and the all-reduce
        cannot be traced: refused.
        """
        if self.training:
            raise RuntimeError(
                'BatchChannelNorm2d cannot be traced (torch.jit.trace, FLOP counting, '
                'torch.export) in training mode: its statistics update is not traceable. Call '
                'model.eval() first; the eval-mode trace is exact.')
        y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         training=False, momentum=0.0, eps=self.eps)
        return self.channel_stage_forward(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        refuse_fx_tracing_through(self, x)
        self._check_input_dim(x)
        if self.running_mean is None or self.running_var is None:
            raise RuntimeError(
                'BatchChannelNorm2d has no running statistics (running_mean / running_var are '
                'None, e.g. after torch.func.replace_all_batch_norm_modules_); BCN has no '
                'statistics-free mode: keep its buffers.')
        if (torch.jit.is_tracing() or is_exporting()
                or (not self.training and is_compiling())):
            return self.traced_forward(x)
        if self.training and self.estimate and is_compiling():
            return _micro_batch_training_call_eagerly(self, x)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """BCN of x in the current mode, the statistics moved as the mode and the activation
        checkpointing phase (:mod:`mmbcn.ops.recompute`) say."""
        phase = phase_of_call(self.training, is_compiling())
        synchronize = self.training and self.synchronizes()
        if self.training and not self.estimate and not synchronize:
            values = x.shape[0] * positions_per_sample(x)
            if values <= 1:
                raise ValueError(
                    f'BatchChannelNorm2d in large-batch mode (estimate=False) needs more than one '
                    f'value per channel to compute batch statistics in training, got input of '
                    f'shape {tuple(x.shape)}. Use estimate=True (micro-batch mode) for one sample '
                    f'with 1x1 spatial size, or train with more samples per process.')
        # A checkpoint's recompute (REPLAY) moves nothing, not even the step count.
        moves = self.training and phase is not Phase.REPLAY
        momentum = self._momentum_now() if moves else 0.0
        return batch_channel_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.group_weight,
            self.group_bias, self.num_groups, training=self.training, estimate=self.estimate,
            momentum=momentum, eps=self.eps, process_group=self.process_group,
            synchronize=synchronize, estimate_rule=self.estimate_rule, phase=phase,
            records=self.checkpoint_records)

    def extra_repr(self) -> str:
        return (f'{self.num_features}, num_groups={self.num_groups}, eps={self.eps}, '
                f'momentum={self.momentum}, estimate={self.estimate}, '
                f'sync_stats={self.sync_stats}, affine={self.affine}'
                + (f', estimate_rule={self.estimate_rule!r}' if self.estimate else ''))


@disable_compilation
def _micro_batch_training_call_eagerly(layer: BatchChannelNorm2d, x: torch.Tensor):
    """A micro-batch training call of ``layer`` outside ``torch.compile``'s graph.

    Compiled, it would normalize with estimates read from the buffers it moves, and a compiled
    activation checkpoint recomputes it in backward after they moved (measured: gradients off
    by 35 % against the eager run). Eager, the checkpoint's record and replay apply
    (:mod:`mmbcn.ops.recompute`); compiled regions end and restart around each such call.
    """
    return layer.normalize(x)


GROUP_RULES = ('exact', 'at_most')


class GroupCountMismatchError(ValueError):
    """BCN weights saved with one channel-stage group count, loaded into another."""


def group_count_mismatch(key: str, saved_groups: int, num_groups: int) -> str:
    """What is wrong, and the fix, when ``key`` holds ``saved_groups`` groups, not the layer's."""
    return (f'{key}: the checkpoint has {saved_groups} channel-stage groups, this BCN layer '
            f'{num_groups}. BCN weights load only into the same group count: set '
            f'num_groups={saved_groups} in the BCN norm_cfg, or use a checkpoint trained with '
            f'num_groups={num_groups}.')


def groups_for(num_features: int, num_groups: int, group_rule: str) -> int:
    """G for C = ``num_features`` channels under ``group_rule`` (see the class doc)."""
    if group_rule not in GROUP_RULES:
        raise ValueError(f'BCN: group_rule must be one of {GROUP_RULES}, got {group_rule!r}.')
    if group_rule == 'exact' or not isinstance(num_features, int) or not isinstance(
            num_groups, int) or num_features <= 0 or num_groups <= 0:
        return num_groups  # _check_config names what is wrong
    return max(g for g in range(1, min(num_groups, num_features) + 1) if num_features % g == 0)


def _check_config(num_features, num_groups, eps, momentum, estimate_rule) -> None:
    """Raise a ValueError naming the bad option of a BatchChannelNorm2d config."""
    if not isinstance(num_features, int) or num_features <= 0:
        raise ValueError(f'BCN: num_features must be a positive int, got {num_features!r}.')
    if not isinstance(num_groups, int) or num_groups <= 0:
        raise ValueError(f'BCN: num_groups must be a positive int, got {num_groups!r}.')
    if num_features % num_groups:
        raise ValueError(
            f'BCN: num_features={num_features} is not divisible by num_groups={num_groups}; '
            f'choose num_groups among the divisors of {num_features} (e.g. 32 for 256 channels), '
            f"or set group_rule='at_most' to use the largest divisor not above num_groups.")
    if not eps > 0:
        raise ValueError(f'BCN: eps must be > 0 (it keeps the square root away from 0), '
                         f'got {eps!r}.')
    if momentum is not None and not 0.0 <= momentum <= 1.0:
        raise ValueError(f'BCN: momentum (the update rate r) must be in [0, 1] or None, '
                         f'got {momentum!r}.')
    check_estimate_rule(estimate_rule)


def keep_synchronized(bcn: BatchChannelNorm2d, process_group=None) -> BatchChannelNorm2d:
    """A BCN layer as a SyncBN conversion should leave it: itself, synchronizing its batch
    statistics over ``process_group`` (None: the default group)."""
    bcn.sync_stats = True
    bcn.process_group = process_group
    return bcn


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Like ``nn.SyncBatchNorm.convert_sync_batchnorm``, but BCN layers stay BCN layers.

    torch's converter alone replaces every ``_BatchNorm`` instance, BCN included, by a plain
    ``SyncBatchNorm`` and so would silently drop BCN's channel stage (``import mmbcn`` makes it
    keep BCN too: :mod:`mmbcn.patches`). BCN layers already
    synchronize their batch statistics (``sync_stats=True``); here they are kept and switched to
    synchronize over ``process_group``, and every other BatchNorm becomes a SyncBatchNorm.
    ``mmengine.model.revert_sync_batchnorm`` (re-exported here) leaves BCN layers alone.
    """
    if isinstance(module, BatchChannelNorm2d):
        return keep_synchronized(module, process_group)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child, process_group)
        if converted is not child:
            module.add_module(name, converted)
    return module
