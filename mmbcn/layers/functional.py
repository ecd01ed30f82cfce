"""The maths of Batch-Channel Normalization and Weight Standardization, as plain functions.

Reference: S. Qiao, H. Wang, C. Liu, W. Shen, A. Yuille, "Micro-Batch Training with
Batch-Channel Normalization and Weight Standardization" (arXiv:1903.10520), also published as
"Rethinking Normalization and Elimination Singularity in Neural Networks" (arXiv:1911.09738).

How the BCN computation is organised
------------------------------------
For x of shape (N, C, *) with M spatial positions per sample, let ``m[n, c]`` and ``v[n, c]`` be
the per-sample, per-channel mean and biased variance over the spatial positions. Everything BCN
needs follows from these O(N*C) moments:

* batch statistics (law of total variance, every sample has the same M):
  ``mu[c] = mean_n m[n, c]`` and ``var[c] = mean_n (v[n, c] + m[n, c]^2) - mu[c]^2``;
* the batch stage is the per-channel affine ``y = x * s[c] + t[c]`` with
  ``s = weight / sqrt(var + eps)`` and ``t = bias - mu * s``, so the moments of y per sample and
  channel are ``s * m + t`` and ``s^2 * v``;
* the channel stage's group statistics of y follow from those again by the law of total variance.

The whole layer is therefore one per-(sample, channel) affine map of x, ``out = x * A[n, c] +
B[n, c]``: one statistics pass over x, one pass writing the output, and x plus O(N*C) values
saved for backward (:mod:`mmbcn.layers.fused`; the coefficient maths and its analytic backward
are in :mod:`mmbcn.layers.coefficients`). The composition "BatchNorm, then GroupNorm, then
affine" reads and writes the activation several times; ``tests/reference.py`` keeps a float64
version of it for the tests.
"""

import math
from typing import Optional

import torch

from .fused import BCNSettings, FusedBatchChannelNorm
from .torch_passes import LOW_PRECISION


def spatial_size(x: torch.Tensor) -> int:
    """M, the number of positions per sample and channel of x (N, C, *); 1 for (N, C)."""
    return math.prod(x.shape[2:])


def batch_channel_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    group_weight: Optional[torch.Tensor],
    group_bias: Optional[torch.Tensor],
    num_groups: int,
    training: bool,
    estimate: bool,
    update_rate: float,
    eps: float,
    process_group=None,
    synchronize: bool = False,
    estimate_rule: str = 'authors',
) -> torch.Tensor:
    """Batch-Channel Normalization of x (N, C, *): a batch stage, then a channel stage.

    Batch stage, per channel c: ``y = (x - mu[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``.

    * ``training and not estimate`` (large-batch mode): mu, var are the batch mean and biased
      variance over (N, *) (the global batch when ``synchronize``), with gradients flowing
      through them as in BatchNorm. The running statistics move as BatchNorm moves them:
      ``running = (1 - r) * running + r * stat``, with the unbiased variance
      ``var * count / (count - 1)``.
    * ``training and estimate`` (micro-batch mode): first the estimates move at the rate r,
      ``running_mean = (1 - r) running_mean + r mu_batch`` and
      ``running_var = (1 - r) running_var + r v``, then x is normalized with the updated
      estimates; no gradient flows through any statistic. ``estimate_rule`` picks v: the
      authors' ``mean (x - running_mean_old)^2`` (``'authors'``, default) or the biased batch
      variance (``'batch_variance'``); see :mod:`mmbcn.layers.statistics`.
    * not training: normalize with the running statistics; nothing is updated.

    Channel stage: group normalization of y per sample over (C/G, *), biased variance, eps
    inside the square root, then the per-group affine ``group_weight[g]``, ``group_bias[g]``.

    Statistics are computed in float32 (float64 for the cross-sample sums) whatever the input
    dtype and autocast state; the output has x's dtype and memory layout.

    Args:
        x: (N, C, *) input.
        running_mean, running_var: (C,) buffers, updated in place when training.
        weight, bias: (C,) batch-stage affine, or None.
        group_weight, group_bias: (G,) channel-stage affine, or None.
        num_groups: G, which must divide C.
        training: use and update batch statistics.
        estimate: micro-batch mode (normalize with the moved estimates).
        update_rate: r, the weight of the new batch statistics in the running statistics.
        eps: added to both variances inside the square root.
        process_group: the group whose global batch gives the statistics.
        synchronize: all-reduce the batch statistics over ``process_group``.
        estimate_rule: ``'authors'`` or ``'batch_variance'`` (micro-batch mode only).
    """
    settings = BCNSettings(running_mean, running_var, num_groups, training, estimate,
                           update_rate, eps, process_group, synchronize, estimate_rule)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return FusedBatchChannelNorm.apply(x, weight, bias, group_weight, group_bias, settings)


# Where weight standardization adds eps: to the filter variance, or to its standard deviation.
WS_EPS_FORMS = ('variance', 'std')


def weight_standardize(weight: torch.Tensor, eps: float = 1e-5,
                       eps_on: str = 'variance') -> torch.Tensor:
    """Standardize each output filter to zero mean and unit variance.

    Mean and unbiased variance (``torch.std``'s) are taken over all dimensions but the first,
    (in_channels/groups, *kernel). Where eps goes, ``eps_on``:

    * ``'variance'``: ``(w - mean) / sqrt(var + eps)``, as the authors' ImageNet code that
      trained the released BCN+WS weights; a constant filter maps to zeros;
    * ``'std'``: ``(w - mean) / (sqrt(var) + eps)``, as the authors' DeepLabV3 code, the WS
      repository with its Mask R-CNN fork, and mmcv's ``ConvWS2d``.

    They differ by 0.3-0.8% for Kaiming-initialized filters and a lot for filters with std near
    sqrt(eps). Computed in float32 for low-precision weights, returned in the weight's dtype and
    memory layout (channels_last weights stay channels_last).

    Args:
        weight: (C_out, C_in/groups, *kernel) filters.
        eps: added to the variance or to the standard deviation.
        eps_on: ``'variance'`` or ``'std'``.
    """
    w = weight.float() if weight.dtype in LOW_PRECISION else weight
    reduce_dims = tuple(range(1, w.dim()))
    var, mean = torch.var_mean(w, dim=reduce_dims, correction=1, keepdim=True)
    if eps_on == 'variance':
        inverse_std = torch.rsqrt(var + eps)
    elif eps_on == 'std':
        inverse_std = (var.sqrt() + eps).reciprocal()
    else:
        raise ValueError(f'weight_standardize: eps_on must be one of {WS_EPS_FORMS}, '
                         f'got {eps_on!r}.')
    return ((w - mean) * inverse_std).to(weight.dtype)
