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
import torch.nn.functional as F

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
) -> torch.Tensor:
    """Batch-Channel Normalization of x (N, C, *): a batch stage, then a channel stage.

    Batch stage, per channel c: ``y = (x - mu[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``.

    * ``training and not estimate`` (large-batch mode): mu, var are the batch mean and biased
      variance over (N, *) (the global batch when ``synchronize``), with gradients flowing
      through them as in BatchNorm. The running statistics move as BatchNorm moves them:
      ``running = (1 - r) * running + r * stat``, with the unbiased variance
      ``var * count / (count - 1)``.
    * ``training and estimate`` (micro-batch mode): first the estimates move towards the batch
      statistics, ``running_mean += r * (mu_batch - running_mean)`` and
      ``running_var += r * (var_batch - running_var)`` (biased ``var_batch``), then x is
      normalized with the updated estimates. No gradient flows through any statistic.
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
    """
    settings = BCNSettings(running_mean, running_var, num_groups, training, estimate,
                           update_rate, eps, process_group, synchronize)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return FusedBatchChannelNorm.apply(x, weight, bias, group_weight, group_bias, settings)


def weight_standardize(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardize each output filter: ``(w - mean) / sqrt(var + eps)``.

    Mean and variance are taken over all dimensions but the first, (in_channels/groups, *kernel),
    with the unbiased variance (as the authors' ImageNet code, ``torch.std``) and eps inside the
    square root, so a constant filter maps to zeros instead of dividing by ~0.
    Computed in float32 for low-precision weights, returned in the weight's dtype and memory
    layout (channels_last weights stay channels_last).

    Args:
        weight: (C_out, C_in/groups, *kernel) filters.
        eps: added to the variance.
    """
    w = weight.float() if weight.dtype in LOW_PRECISION else weight
    reduce_dims = tuple(range(1, w.dim()))
    var, mean = torch.var_mean(w, dim=reduce_dims, correction=1, keepdim=True)
    return ((w - mean) * torch.rsqrt(var + eps)).to(weight.dtype)


def conv2d_weight_standardized(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                               eps: float = 1e-5):
    """``F.conv2d`` with the weight standardized by :func:`weight_standardize`."""
    return F.conv2d(x, weight_standardize(weight, eps), bias, stride, padding, dilation, groups)
