"""BCN's two stages apart: mmbcn's ablation layers, registered as ``'BCNChannelStage'`` and
``'BCNBatchStage'``.

Each runs one stage of :class:`~mmbcn.layers.bcn.BatchChannelNorm2d` (the maths:
:mod:`mmbcn.ops.maths`) with BCN's own code for it, so that a study can ask which stage gives
BCN+WS its result. They are **mmbcn's ablation layers, not the authors'**: the authors' release
(github.com/joe-siyuan-qiao/Batch-Channel-Normalization) has no layer that runs one stage alone.

Both are plain ``nn.Module`` s, not ``_BatchNorm`` or ``GroupNorm`` subclasses: OpenMMLab and torch
code special-cases those by class (SyncBN conversion, mmcv's ``fuse_conv_bn``, MMEngine's
efficient conv-BN eval, a ResNet's ``norm_eval``), and would silently compute something else
with these. So ``norm_eval=True`` does not freeze them, and ``mmbcn.analysis`` (hence
``NormStatisticsHook``) does not count them among norm layers.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ..ops.function import all_reduce_sum
from ..ops.maths import (
    DEFAULT_ESTIMATE_RULE,
    Settings,
    local_batch_sums,
    positions_per_sample,
    training_statistics,
)
from ..ops.recompute import CheckpointReplayError, Phase, phase_of_call
from ..ops.torch_backend import row_moments
from ..utils.feature_probes import disable_compilation
from .bcn import BatchChannelNorm2d, _check_config, groups_for

__all__ = ['BCNBatchStage', 'BCNChannelStage']

LARGE_BATCH_REFUSAL = (
    "BCNBatchStage: estimate=False (large-batch mode) is refused: BCN's batch stage in "
    "large-batch mode normalizes with the batch's statistics, with gradients through them, which "
    "is (Sync)BatchNorm. Use norm_cfg=dict(type='SyncBN') (the study's 'syncbn' preset) for it; "
    'BCNBatchStage is the micro-batch batch stage (estimate=True).')


def _register_affine(module: nn.Module, **sizes: int) -> None:
    """Parameters of the given names and sizes, in order, as BCN initializes them (``*weight``
    to 1, ``*bias`` to 0), or None each when ``module.affine`` is False."""
    for name, size in sizes.items():
        initial = torch.ones(size) if name.endswith('weight') else torch.zeros(size)
        module.register_parameter(name, nn.Parameter(initial) if module.affine else None)


@MODELS.register_module()
class BCNChannelStage(nn.Module):
    """BCN with its batch stage's normalization removed and its parameterization kept: mmbcn's
    ablation layer, not the authors'.

    For x of shape (N, C, *): ``y = x * weight[c] + bias[c]``, then exactly BCN's channel stage,
    group norm of y per sample (biased variance over the C / G channels of a group and all
    positions, eps inside the square root) with the per-group affine ``group_weight[g]``,
    ``group_bias[g]``. That is GN+WS with BCN's parameterization: a per-channel affine before
    the group norm and a per-group one after it, where GroupNorm has one per-channel affine
    after. It equals BCN in eval mode with ``running_mean = 0`` and ``running_var = 1 - eps``.

    Parameters as BCN's, with BCN's names and initial values: ``weight``, ``bias`` (C,) and
    ``group_weight``, ``group_bias`` (G,); no statistics, no buffer. The channel stage and the
    zero-init of a residual branch are BCN's own methods (:meth:`channel_stage_forward`,
    :meth:`init_weights`: an all-zero ``weight`` and ``bias`` becomes ``weight = 1``,
    ``group_weight = 0``). ``_abbr_`` is ``'bn'``, so ResNets name it as they name BCN.

    Args:
        num_features: C, the number of channels.
        num_groups: G, the channel stage's group count (as BCN's, with ``group_rule``).
        eps: added to the group variance inside the square root.
        affine: learnable affine parameters in both places.
        group_rule: ``'exact'`` or ``'at_most'``, as BCN's.
    """

    _abbr_ = 'bn'

    def __init__(self,
                 num_features: int,
                 num_groups: int = 32,
                 eps: float = 1e-5,
                 affine: bool = True,
                 group_rule: str = 'exact'):
        num_groups = groups_for(num_features, num_groups, group_rule)
        _check_config(num_features, num_groups, eps, None, DEFAULT_ESTIMATE_RULE)
        super().__init__()
        self.num_features = num_features
        self.num_groups = num_groups
        self.eps = eps
        self.affine = bool(affine)
        _register_affine(self, weight=num_features, bias=num_features,
                         group_weight=num_groups, group_bias=num_groups)

    # BCN's own code, which reads only the attributes above: the two cannot drift apart.
    channel_stage_affine = BatchChannelNorm2d.channel_stage_affine
    channel_stage_forward = BatchChannelNorm2d.channel_stage_forward
    init_weights = BatchChannelNorm2d.init_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.affine:
            per_channel = (1, -1) + (1,) * (x.dim() - 2)
            y = x * self.weight.reshape(per_channel) + self.bias.reshape(per_channel)
        return self.channel_stage_forward(y)

    def extra_repr(self) -> str:
        return (f'{self.num_features}, num_groups={self.num_groups}, eps={self.eps}, '
                f'affine={self.affine}')


@MODELS.register_module()
class BCNBatchStage(nn.Module):
    """BCN's batch stage alone, in micro-batch mode: mmbcn's ablation layer, not the authors'.

    For x of shape (N, C, *): ``y = (x - mu[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``,
    with (mu, var):

    * training: BCN's micro-batch estimates, moved exactly as BCN moves them
      (:mod:`mmbcn.ops.maths`, step 2, the same functions: the batch sums, all-reduced over
      ``process_group`` when ``sync_stats`` and more than one process, then
      :func:`~mmbcn.ops.maths.training_statistics` at r = ``momentum`` by ``estimate_rule``;
      ``momentum=None`` with BCN's own rule), then used with no gradient through them:
      ``F.batch_norm(x, mu, var, weight, bias, training=False, eps=eps)``;
    * eval: the running statistics, which are the estimates.

    Without the channel stage this is BatchNorm normalizing with estimated statistics. In
    large-batch mode BCN's batch stage *is* (Sync)BatchNorm, so ``estimate=False`` is refused
    with an error that says so. State as BatchNorm's (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``), so BN checkpoints load; zero-init of a residual
    branch keeps BN's meaning (``weight = bias = 0`` stay). ``_abbr_`` is ``'bn'``.
    :class:`mmbcn.engine.BCNUpdateRateHook` sets ``momentum`` as it does for micro-batch BCN.

    Under activation checkpointing a recompute would move the estimates a second time and
    normalize with other ones than the first run did; BCN replays its records
    (:mod:`mmbcn.ops.recompute`), this layer refuses the recompute
    (:class:`~mmbcn.ops.recompute.CheckpointReplayError`): train it with ``with_cp=False``.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance inside the square root.
        momentum: r, the estimates' update rate (BCN's ``momentum``; None: BCN's cumulative
            average).
        estimate: must be True (see above).
        sync_stats: all-reduce the batch sums over ``process_group`` when torch.distributed is
            initialized with more than one process.
        affine: learnable ``weight`` and ``bias``.
        process_group: the group to synchronize over (None: the default group).
        estimate_rule: ``'authors'`` (default) or ``'batch_variance'``, as BCN's.
    """

    _abbr_ = 'bn'

    def __init__(self,
                 num_features: int,
                 eps: float = 1e-5,
                 momentum: Optional[float] = 0.1,
                 estimate: bool = True,
                 sync_stats: bool = True,
                 affine: bool = True,
                 process_group=None,
                 estimate_rule: str = DEFAULT_ESTIMATE_RULE):
        if not estimate:
            raise ValueError(LARGE_BATCH_REFUSAL)
        _check_config(num_features, 1, eps, momentum, estimate_rule)  # no groups: G = 1
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.estimate = True  # what BCN's momentum rule and BCNUpdateRateHook read
        self.sync_stats = bool(sync_stats)
        self.affine = bool(affine)
        self.process_group = process_group
        self.estimate_rule = estimate_rule
        _register_affine(self, weight=num_features, bias=num_features)
        self.register_buffer('running_mean', torch.zeros(num_features))
        self.register_buffer('running_var', torch.ones(num_features))
        self.register_buffer('num_batches_tracked', torch.tensor(0, dtype=torch.long))

    # BCN's own code, which reads only the attributes above: the two cannot drift apart.
    _momentum_now = BatchChannelNorm2d._momentum_now
    synchronizes = BatchChannelNorm2d.synchronizes

    @disable_compilation  # eager, so that a checkpoint's recompute is seen (as BCN's)
    def moved_estimates(self, x: torch.Tensor):
        """Move the estimates by the batch x and return copies of them, (C,) each, no gradient."""
        if phase_of_call(training=True, compiling=False) is Phase.REPLAY:
            raise CheckpointReplayError(
                'BCNBatchStage: a training call ran again inside a backward pass (an activation '
                'checkpoint recompute, with_cp=True). Its first run already moved the '
                'estimates; the recompute would move them a second time and normalize with '
                'other ones. This ablation layer does not replay checkpointed calls as BCN '
                'does: train it with with_cp=False.')
        momentum = self._momentum_now()
        sample_mean, sample_var = row_moments(x)
        sums = local_batch_sums(sample_mean, sample_var, positions_per_sample(x))
        if self.synchronizes():
            sums = all_reduce_sum(sums, self.process_group)
        settings = Settings(self.running_mean, self.running_var, num_groups=1, training=True,
                            estimate=True, momentum=momentum, eps=self.eps,
                            estimate_rule=self.estimate_rule)
        statistics = training_statistics(sums, settings, sample_mean.dtype)
        return statistics.mean, statistics.var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean, var = self.moved_estimates(x)
        else:
            mean, var = self.running_mean, self.running_var
        return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, momentum=0.0,
                            eps=self.eps)

    def extra_repr(self) -> str:
        return (f'{self.num_features}, eps={self.eps}, momentum={self.momentum}, '
                f'sync_stats={self.sync_stats}, affine={self.affine}, '
                f'estimate_rule={self.estimate_rule!r}')
