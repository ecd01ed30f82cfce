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
saved for backward. The composition "BatchNorm, then GroupNorm, then affine" reads and writes
the activation several times; ``tests/reference.py`` keeps a float64 version of it for the tests.
"""

import math
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .distributed import all_reduce_sum

# Low-precision activations are normalized with statistics computed in float32.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class BatchMoments(NamedTuple):
    """Per-channel statistics of a (possibly global) batch.

    Attributes:
        mean: (C,) batch mean.
        var: (C,) biased batch variance.
        count: () number of values per channel, ``N * M`` summed over the processes.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor


def spatial_size(x: torch.Tensor) -> int:
    """M, the number of positions per sample and channel of x (N, C, *); 1 for (N, C)."""
    return math.prod(x.shape[2:])


def sample_channel_moments(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and biased variance over the spatial positions (no autograd).

    Computed with ATen's group-norm kernel with one channel per group and eps = 0, which returns
    the mean and ``rstd = 1 / sqrt(var)`` of every (sample, channel) row; ``var = rstd^-2``
    (0 for a constant row, where rstd is inf). On CPU this stable, vectorized kernel is several
    times faster than ``torch.var_mean`` over the last dimension.

    Args:
        x: (N, C, *) input. Spatial dimensions may be absent (N, C), which counts as M = 1.

    Returns:
        ``(mean, var)``, each (N, C), in float32 for low-precision inputs (else x's dtype).
    """
    n, c = x.shape[:2]
    rows = x.detach()
    if rows.dtype in _LOW_PRECISION:
        rows = rows.float()
    if rows.numel() == 0:
        empty = rows.new_zeros(n, c)
        return empty, empty.clone()
    if not (rows.dim() == 4 and rows.is_contiguous(memory_format=torch.channels_last)):
        rows = rows.reshape(n, c, spatial_size(x)).contiguous()  # a view when contiguous
    _, mean, rstd = torch.ops.aten.native_group_norm(rows, None, None, n, c, spatial_size(x), c,
                                                     0.0)
    return mean.reshape(n, c), rstd.reshape(n, c).pow(-2)


def batch_moments(
    sample_mean: torch.Tensor,
    sample_var: torch.Tensor,
    positions_per_sample: int,
    process_group=None,
    synchronize: bool = False,
) -> BatchMoments:
    """Batch mean and biased variance per channel, over the local or the global batch.

    With ``synchronize`` the sums ``sum_n M`` , ``sum_n M * m`` and ``sum_n M * (v + m^2)`` are
    all-reduced over ``process_group`` (one collective), so processes holding different numbers
    of samples, or images of different sizes, get the statistics of the concatenated batch.
    The sums are formed in float64 so that ``E[x^2] - mu^2`` does not cancel catastrophically
    when |mean| >> std. Gradients flow through the reduction when the inputs require grad.

    Args:
        sample_mean: (N, C) per-sample channel means (from :func:`sample_channel_moments`).
        sample_var: (N, C) per-sample biased channel variances.
        positions_per_sample: M, the number of spatial positions of each sample.
        process_group: the group to reduce over (None: the default group).
        synchronize: whether to all-reduce over ``process_group``.
    """
    mean64 = sample_mean.double()
    second_moment64 = sample_var.double() + mean64.square()
    count = mean64.new_full((1,), float(sample_mean.shape[0] * positions_per_sample))
    sums = torch.cat([
        count,
        mean64.sum(0) * positions_per_sample,
        second_moment64.sum(0) * positions_per_sample,
    ])
    if synchronize:
        sums = all_reduce_sum(sums, process_group)
    num_channels = sample_mean.shape[1]
    total = sums[0]
    mean = sums[1:1 + num_channels] / total
    var = (sums[1 + num_channels:] / total - mean.square()).clamp_min(0)
    return BatchMoments(mean.to(sample_mean.dtype), var.to(sample_mean.dtype), total)


def group_norm_affine(
    sample_mean: torch.Tensor,
    sample_var: torch.Tensor,
    channel_scale: torch.Tensor,
    channel_shift: torch.Tensor,
    num_groups: int,
    group_weight: Optional[torch.Tensor],
    group_bias: Optional[torch.Tensor],
    eps: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Coefficients (A, B) with ``GN(x * s + t) * gw + gb == x * A + B``, per sample and channel.

    The channel stage normalizes ``y = x * s[c] + t[c]`` over each group of C/G channels and all
    spatial positions of one sample, with the biased variance and eps inside the square root:
    ``(y - mu_g) / sqrt(var_g + eps) * gw[g] + gb[g]``. With ``my = s * m + t`` and
    ``vy = s^2 * v`` the per-(sample, channel) moments of y,
    ``mu_g = mean_{c in g} my`` and ``var_g = mean_{c in g} (vy + (my - mu_g)^2)``.

    Args:
        sample_mean, sample_var: (N, C) per-sample channel moments of x.
        channel_scale, channel_shift: (C,) the batch stage's affine ``s``, ``t``.
        num_groups: G.
        group_weight, group_bias: (G,) affine of the channel stage, or None for identity.
        eps: added to the group variance.

    Returns:
        ``(A, B)``, each (N, C).
    """
    n, c = sample_mean.shape
    grouped = (n, num_groups, c // num_groups)
    scale = channel_scale.reshape(1, num_groups, -1)
    shift = channel_shift.reshape(1, num_groups, -1)
    y_mean = sample_mean.reshape(grouped) * scale + shift
    y_var = sample_var.reshape(grouped) * scale.square()
    group_mean = y_mean.mean(dim=2, keepdim=True)
    group_var = (y_var + (y_mean - group_mean).square()).mean(dim=2, keepdim=True)
    group_scale = torch.rsqrt(group_var + eps)
    if group_weight is not None:
        group_scale = group_scale * group_weight.reshape(1, num_groups, 1)
    coeff_a = scale * group_scale
    coeff_b = (shift - group_mean) * group_scale
    if group_bias is not None:
        coeff_b = coeff_b + group_bias.reshape(1, num_groups, 1)
    return coeff_a.reshape(n, c), coeff_b.reshape(n, c)


def apply_sample_channel_affine(x: torch.Tensor, coeff_a: torch.Tensor, coeff_b: torch.Tensor):
    """``x * A[n, c] + B[n, c]`` broadcast over the spatial positions, in x's dtype and layout."""
    broadcast = x.shape[:2] + (1,) * (x.dim() - 2)
    out = torch.addcmul(coeff_b.reshape(broadcast), x, coeff_a.reshape(broadcast))
    return out.to(x.dtype)


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
    def coefficients(sample_mean, sample_var, weight, bias, group_weight, group_bias):
        dtype = sample_mean.dtype  # float32, or float64 for float64 inputs

        def cast(tensor):
            return None if tensor is None else tensor.to(dtype)

        if training:
            channel_mean, channel_var = _training_statistics(
                sample_mean, sample_var, spatial_size(x), running_mean, running_var, estimate,
                update_rate, process_group, synchronize)
        else:
            channel_mean, channel_var = cast(running_mean), cast(running_var)
        channel_scale = torch.rsqrt(channel_var + eps)
        if weight is not None:
            channel_scale = channel_scale * cast(weight)
        channel_shift = -channel_mean * channel_scale
        if bias is not None:
            channel_shift = channel_shift + cast(bias)
        return group_norm_affine(sample_mean, sample_var, channel_scale, channel_shift,
                                 num_groups, cast(group_weight), cast(group_bias), eps)

    with torch.autocast(device_type=x.device.type, enabled=False):
        return _SampleChannelAffineNorm.apply(x, coefficients, weight, bias, group_weight,
                                              group_bias)


class _SampleChannelAffineNorm(torch.autograd.Function):
    """``out = x * A + B`` where (A, B) = coefficients(per-sample channel moments of x, params).

    Forward: one moments pass over x, the O(N*C) coefficient maths (recorded by autograd on
    small leaves), one pass writing the output. Saved for backward: x and the small graph.
    Backward, with g the output gradient and M the spatial size:

    * ``dL/dA[n, c] = sum_s g * x`` and ``dL/dB[n, c] = sum_s g`` (the reduction pass);
    * autograd through the small graph gives dL/dm, dL/dv and the parameter gradients
      (and all-reduces them across processes when the statistics were synchronized);
    * ``dL/dx = g * A + dL/dm / M + dL/dv * 2 (x - m) / M`` (one pass writing the gradient).
    """

    @staticmethod
    def forward(ctx, x, coefficients, *params):
        sample_mean, sample_var = sample_channel_moments(x)
        sample_mean.requires_grad_()
        sample_var.requires_grad_()
        leaves = [None if p is None else p.detach().requires_grad_(p.requires_grad)
                  for p in params]
        with torch.enable_grad():
            coeff_a, coeff_b = coefficients(sample_mean, sample_var, *leaves)
        ctx.save_for_backward(x)
        ctx.small_graph = (coeff_a, coeff_b, sample_mean, sample_var, leaves)
        return apply_sample_channel_affine(x, coeff_a.detach(), coeff_b.detach())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        coeff_a, coeff_b, sample_mean, sample_var, leaves = ctx.small_graph
        n, c = x.shape[:2]
        positions = spatial_size(x)
        flat_x = x.reshape(n, c, positions).to(coeff_a.dtype)
        flat_grad = grad_out.reshape(n, c, positions).to(coeff_a.dtype)
        grad_a = (flat_grad * flat_x).sum(dim=2)
        grad_b = flat_grad.sum(dim=2)
        trained = [p for p in leaves if p is not None and p.requires_grad]
        wanted = [sample_mean, sample_var] + trained
        # retain_graph: the small graph is O(N*C); keeping it allows backward to run twice.
        grads = torch.autograd.grad((coeff_a, coeff_b), wanted, (grad_a, grad_b),
                                    allow_unused=True, retain_graph=True)
        grad_mean, grad_var = (torch.zeros_like(sample_mean) if g is None else g
                               for g in grads[:2])
        param_grads = iter(grads[2:])
        grad_params = [next(param_grads) if p is not None and p.requires_grad else None
                       for p in leaves]
        grad_x = None
        if ctx.needs_input_grad[0]:
            slope = (2.0 / positions) * grad_var
            offset = grad_mean / positions - slope * sample_mean.detach()
            grad_x = torch.addcmul(offset.unsqueeze(-1), flat_x, slope.unsqueeze(-1))
            grad_x.addcmul_(flat_grad, coeff_a.detach().unsqueeze(-1))
            grad_x = grad_x.to(x.dtype).reshape(x.shape)
        return (grad_x, None, *grad_params)


def _training_statistics(sample_mean, sample_var, positions, running_mean, running_var,
                         estimate, update_rate, process_group, synchronize):
    """The (mean, var) the batch stage normalizes with in training, updating the buffers."""
    if estimate:
        with torch.no_grad():
            batch = batch_moments(sample_mean, sample_var, positions, process_group, synchronize)
            running_mean.add_(update_rate * (batch.mean.to(running_mean) - running_mean))
            running_var.add_(update_rate * (batch.var.to(running_var) - running_var))
        # Copies: the buffers change in place at the next step, possibly before this backward.
        dtype = sample_mean.dtype
        return running_mean.to(dtype, copy=True), running_var.to(dtype, copy=True)
    batch = batch_moments(sample_mean, sample_var, positions, process_group, synchronize)
    with torch.no_grad():
        unbiased_var = batch.var * (batch.count / (batch.count - 1)).to(batch.var)
        running_mean.mul_(1 - update_rate).add_(update_rate * batch.mean.to(running_mean))
        running_var.mul_(1 - update_rate).add_(update_rate * unbiased_var.to(running_var))
    return batch.mean, batch.var


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
    w = weight.float() if weight.dtype in _LOW_PRECISION else weight
    reduce_dims = tuple(range(1, w.dim()))
    var, mean = torch.var_mean(w, dim=reduce_dims, correction=1, keepdim=True)
    return ((w - mean) * torch.rsqrt(var + eps)).to(weight.dtype)


def conv2d_weight_standardized(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                               eps: float = 1e-5):
    """``F.conv2d`` with the weight standardized by :func:`weight_standardize`."""
    return F.conv2d(x, weight_standardize(weight, eps), bias, stride, padding, dilation, groups)
