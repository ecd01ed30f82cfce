"""BCN's O(N*C) maths as one Triton kernel per direction, for CUDA.

The maths is that of :mod:`mmbcn.layers.statistics` and :mod:`mmbcn.layers.coefficients` (read
their docstrings first); written there as PyTorch ops it takes about 150 small kernel launches
per forward and backward, which on a GPU cost more than the passes over the activation. Here one
program per channel group holds the (N, C/G) tile of per-sample moments of its channels, which
is all it needs: the batch statistics of a channel are sums over the samples of the tile, the
group statistics of a sample sums over the channels of the tile.

* :func:`forward`: the output, ``x * A + B`` with A, B from :func:`forward_coefficients`.
* :func:`forward_coefficients`: from the per-segment moment partials of
  :func:`mmbcn.layers.triton_passes.moment_partials` to ``A``, ``B`` (``out = x * A + B``),
  updating the running statistics: one kernel, or, when synchronizing the batch statistics,
  a kernel for the batch sums, their all-reduce and the coefficient kernel.
* :func:`backward_coefficients`: from the per-segment partials of ``sum_s g (x - m)`` and
  ``sum_s g`` to the ``slope`` and ``offset`` of the input gradient
  ``dx = g * A + (x - m) * slope + offset`` and the parameter gradients: one kernel, plus an
  all-reduce of dL/dmu, dL/dvar in large-batch mode when synchronizing.

All arithmetic is float64, as in the PyTorch version. The per-sample moments and the statistics
the batch stage uses are rounded to float32, stored, and read back by the backward, which
recomputes the intermediate values instead of saving them.
"""

from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl

from .distributed import all_reduce_sum
from .fused import BCNSettings, Params
from .triton_passes import Partials, apply_affine, gradient_partials, moment_partials

# Where the batch stage's (mean, var) come from (the STATS argument of the forward kernel): the
# running statistics, the batch, or the estimates moved by the 'authors' or the
# 'batch_variance' rule (:mod:`mmbcn.layers.statistics`).
GIVEN, BATCH = tl.constexpr(0), tl.constexpr(1)
ESTIMATE, ESTIMATE_BATCH_VARIANCE = tl.constexpr(2), tl.constexpr(3)
STATS_OF_RULE = {'authors': ESTIMATE, 'batch_variance': ESTIMATE_BATCH_VARIANCE}
# Largest (N, C/G) tile one program holds (about 20 float64 values per element live at once).
MAX_TILE = 8192


class Saved(NamedTuple):
    """What the backward needs besides x: all O(N*C), float32 except ``count``."""

    sample_mean: torch.Tensor  # (N, C) m
    sample_var: torch.Tensor  # (N, C) v
    channel_mean: torch.Tensor  # (C,) mu used by the batch stage
    channel_var: torch.Tensor  # (C,) var used by the batch stage
    count: Optional[torch.Tensor]  # () S0 of the global batch when synchronizing, else None


def applies(x: torch.Tensor, num_groups: int, update_rate) -> bool:
    """Whether the kernels take this call: the tile fits one program, r is a Python number."""
    n, c = x.shape[:2]
    tile = triton.next_power_of_2(n) * triton.next_power_of_2(c // num_groups)
    return tile <= MAX_TILE and not isinstance(update_rate, torch.Tensor)


@triton.jit
def _tile(group, N, C, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Row indices (N, K) of the group's tile in (N, C) arrays, its channels, and the masks."""
    sample = tl.arange(0, BLOCK_N)[:, None]
    in_group = tl.arange(0, BLOCK_K)
    channel = group * K + in_group
    channel_mask = in_group < K
    mask = (sample < N) & channel_mask[None, :]
    return sample * C + channel[None, :], channel, channel_mask, mask


@triton.jit
def _load64(ptr, index, mask, default, PRESENT: tl.constexpr):
    """``ptr[index]`` as float64, or ``default`` everywhere when the tensor is absent."""
    value = tl.zeros(index.shape, tl.float64) + default
    if PRESENT:
        value = tl.load(ptr + index, mask=mask, other=default).to(tl.float64)
    return value


@triton.jit
def _sum_partials(ptr, row, mask, num_segments):
    """Sum over the segments of a (rows, segments) array, for the tile's rows, in float64."""
    total = tl.zeros(row.shape, tl.float64)
    segment = 0
    while segment < num_segments:  # a while loop: Triton's CPU interpreter runs it too
        total += tl.load(ptr + row * num_segments + segment, mask=mask, other=0.0)
        segment += 1
    return total


@triton.jit
def _sample_moments(mean_ptr, m2_ptr, row, mask, num_segments, segment_length, positions):
    """Per-sample channel mean and biased variance from segment partials (Chan's formula).

    Segment s holds ``min(L, M - s L)`` positions, its mean and its sum of squared deviations.
    The results are rounded to float32 (as stored for the backward) and returned as float64.
    """
    mean = tl.zeros(row.shape, tl.float64)
    m2 = tl.zeros(row.shape, tl.float64)
    segment = 0
    while segment < num_segments:
        before = (segment * segment_length).to(tl.float64)
        count = tl.minimum(segment_length, positions - segment * segment_length).to(tl.float64)
        index = row * num_segments + segment
        part_mean = tl.load(mean_ptr + index, mask=mask, other=0.0).to(tl.float64)
        part_m2 = tl.load(m2_ptr + index, mask=mask, other=0.0).to(tl.float64)
        delta = part_mean - mean
        weight = count / (before + count)
        mean += delta * weight
        m2 += part_m2 + delta * delta * before * weight
        segment += 1
    sample_mean = mean.to(tl.float32).to(tl.float64)
    sample_var = (m2 / positions).to(tl.float32).to(tl.float64)
    return sample_mean, sample_var


@triton.jit
def _batch_sums(sample_mean, sample_var, mask, positions):
    """``S1 = sum_n M m`` and ``S2 = sum_n M (v + m^2)`` per channel of the tile."""
    first = tl.sum(tl.where(mask, sample_mean, 0.0), 0) * positions
    second = tl.sum(tl.where(mask, sample_var + sample_mean * sample_mean, 0.0), 0) * positions
    return first, second


@triton.jit
def _stages(sample_mean, sample_var, channel_mean, channel_var, weight, bias, mask, K, eps):
    """The forward's intermediate values (names as in :mod:`mmbcn.layers.coefficients`)."""
    rsqrt_var = 1.0 / tl.sqrt(channel_var + eps)
    scale = rsqrt_var * weight
    shift = bias - channel_mean * scale
    moved_mean = sample_mean * scale[None, :] + shift[None, :]
    group_mean = tl.sum(tl.where(mask, moved_mean, 0.0), 1) / K
    centered = tl.where(mask, moved_mean - group_mean[:, None], 0.0)
    moved_var = sample_var * (scale * scale)[None, :]
    group_var = tl.sum(tl.where(mask, moved_var + centered * centered, 0.0), 1) / K
    rsqrt_group_var = 1.0 / tl.sqrt(group_var + eps)
    return rsqrt_var, scale, shift, group_mean, centered, rsqrt_group_var


@triton.jit(do_not_specialize=['N', 'positions'])
def _batch_sums_kernel(mean_part_ptr, m2_part_ptr, num_segments, segment_length, positions,
                       sums_ptr, N, C, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``sums = [S0, S1 (C), S2 (C)]`` of the local batch, in float64, for the all-reduce."""
    group = tl.program_id(0)
    row, channel, channel_mask, mask = _tile(group, N, C, K, BLOCK_N, BLOCK_K)
    sample_mean, sample_var = _sample_moments(mean_part_ptr, m2_part_ptr, row, mask,
                                              num_segments, segment_length, positions)
    first, second = _batch_sums(sample_mean, sample_var, mask, positions)
    tl.store(sums_ptr + 1 + channel, first, mask=channel_mask)
    tl.store(sums_ptr + 1 + C + channel, second, mask=channel_mask)
    if group == 0:
        tl.store(sums_ptr, (N * positions).to(tl.float64))


@triton.jit(do_not_specialize=['N', 'positions'])
def _forward_kernel(mean_part_ptr, m2_part_ptr, num_segments, segment_length, positions,
                    sums_ptr, running_mean_ptr, running_var_ptr, update_rate,
                    weight_ptr, bias_ptr, group_weight_ptr, group_bias_ptr,
                    sample_mean_ptr, sample_var_ptr, channel_mean_ptr, channel_var_ptr,
                    a_ptr, b_ptr, N, C, K, eps,
                    STATS: tl.constexpr, SUMS_GIVEN: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                    HAS_BIAS: tl.constexpr, HAS_GROUP_WEIGHT: tl.constexpr,
                    HAS_GROUP_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr):
    group = tl.program_id(0)
    row, channel, channel_mask, mask = _tile(group, N, C, K, BLOCK_N, BLOCK_K)
    sample_mean, sample_var = _sample_moments(mean_part_ptr, m2_part_ptr, row, mask,
                                              num_segments, segment_length, positions)
    tl.store(sample_mean_ptr + row, sample_mean.to(tl.float32), mask=mask)
    tl.store(sample_var_ptr + row, sample_var.to(tl.float32), mask=mask)

    running_mean = tl.load(running_mean_ptr + channel, mask=channel_mask, other=0.0)
    running_var = tl.load(running_var_ptr + channel, mask=channel_mask, other=1.0)
    channel_mean = running_mean.to(tl.float64)
    channel_var = running_var.to(tl.float64)
    if STATS != GIVEN:
        if SUMS_GIVEN:  # all-reduced over the processes
            count = tl.load(sums_ptr)
            first = tl.load(sums_ptr + 1 + channel, mask=channel_mask, other=0.0)
            second = tl.load(sums_ptr + 1 + C + channel, mask=channel_mask, other=0.0)
        else:
            count = (N * positions).to(tl.float64)
            first, second = _batch_sums(sample_mean, sample_var, mask, positions)
        batch_mean = first / count
        batch_var = tl.maximum(second / count - batch_mean * batch_mean, 0.0)
        if STATS == BATCH:  # BatchNorm's update, with the unbiased variance
            target_var = batch_var * (count / (count - 1.0))
        elif STATS == ESTIMATE:  # the spread around the previous estimate (authors' rule)
            target_var = batch_var + (batch_mean - channel_mean) * (batch_mean - channel_mean)
        else:  # ESTIMATE_BATCH_VARIANCE
            target_var = batch_var
        running_mean = ((1.0 - update_rate) * channel_mean
                        + update_rate * batch_mean).to(running_mean.dtype)
        running_var = ((1.0 - update_rate) * channel_var
                       + update_rate * target_var).to(running_var.dtype)
        if STATS == BATCH:
            channel_mean = batch_mean.to(tl.float32).to(tl.float64)
            channel_var = batch_var.to(tl.float32).to(tl.float64)
        else:  # normalize with the moved estimates
            channel_mean = running_mean.to(tl.float32).to(tl.float64)
            channel_var = running_var.to(tl.float32).to(tl.float64)
        tl.store(running_mean_ptr + channel, running_mean, mask=channel_mask)
        tl.store(running_var_ptr + channel, running_var, mask=channel_mask)
    else:  # the given statistics, rounded as the PyTorch version rounds them
        channel_mean = channel_mean.to(tl.float32).to(tl.float64)
        channel_var = channel_var.to(tl.float32).to(tl.float64)
    tl.store(channel_mean_ptr + channel, channel_mean.to(tl.float32), mask=channel_mask)
    tl.store(channel_var_ptr + channel, channel_var.to(tl.float32), mask=channel_mask)

    weight = _load64(weight_ptr, channel, channel_mask, 1.0, HAS_WEIGHT)
    bias = _load64(bias_ptr, channel, channel_mask, 0.0, HAS_BIAS)
    _, scale, shift, group_mean, _, rsqrt_group_var = _stages(
        sample_mean, sample_var, channel_mean, channel_var, weight, bias, mask, K, eps)
    if HAS_GROUP_WEIGHT:
        rsqrt_group_var *= tl.load(group_weight_ptr + group).to(tl.float64)
    coeff_a = scale[None, :] * rsqrt_group_var[:, None]
    coeff_b = (shift[None, :] - group_mean[:, None]) * rsqrt_group_var[:, None]
    if HAS_GROUP_BIAS:
        coeff_b += tl.load(group_bias_ptr + group).to(tl.float64)
    tl.store(a_ptr + row, coeff_a.to(tl.float32), mask=mask)
    tl.store(b_ptr + row, coeff_b.to(tl.float32), mask=mask)


@triton.jit
def _backward_kernel(centered_part_ptr, sum_part_ptr, num_segments, positions,
                     sample_mean_ptr, sample_var_ptr, channel_mean_ptr, channel_var_ptr,
                     weight_ptr, bias_ptr, group_weight_ptr,
                     slope_ptr, offset_ptr, grad_channel_mean_ptr, grad_channel_var_ptr,
                     grad_weight_ptr, grad_bias_ptr, grad_group_weight_ptr, grad_group_bias_ptr,
                     N, C, K, eps, BATCH_PATH: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                     HAS_BIAS: tl.constexpr, HAS_GROUP_WEIGHT: tl.constexpr,
                     HAS_GROUP_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr):
    group = tl.program_id(0)
    row, channel, channel_mask, mask = _tile(group, N, C, K, BLOCK_N, BLOCK_K)
    sample_mean = tl.load(sample_mean_ptr + row, mask=mask, other=0.0).to(tl.float64)
    sample_var = tl.load(sample_var_ptr + row, mask=mask, other=0.0).to(tl.float64)
    channel_mean = tl.load(channel_mean_ptr + channel, mask=channel_mask, other=0.0).to(
        tl.float64)
    channel_var = tl.load(channel_var_ptr + channel, mask=channel_mask, other=1.0).to(
        tl.float64)
    weight = _load64(weight_ptr, channel, channel_mask, 1.0, HAS_WEIGHT)
    bias = _load64(bias_ptr, channel, channel_mask, 0.0, HAS_BIAS)
    rsqrt_var, scale, shift, group_mean, centered, rsqrt_group_var = _stages(
        sample_mean, sample_var, channel_mean, channel_var, weight, bias, mask, K, eps)

    # dL/dA = sum_s g (x - m) + m sum_s g and dL/dB = sum_s g, per (sample, channel).
    grad_b = _sum_partials(sum_part_ptr, row, mask, num_segments)
    grad_a = _sum_partials(centered_part_ptr, row, mask, num_segments) + sample_mean * grad_b
    group_shift = shift[None, :] - group_mean[:, None]
    grad_scaled_r = tl.sum(grad_a * scale[None, :] + grad_b * group_shift, 1)
    if HAS_GROUP_BIAS:
        tl.store(grad_group_bias_ptr + group, tl.sum(tl.sum(grad_b, 1), 0).to(tl.float32))
    if HAS_GROUP_WEIGHT:
        tl.store(grad_group_weight_ptr + group,
                 tl.sum(grad_scaled_r * rsqrt_group_var, 0).to(tl.float32))
        group_weight = tl.load(group_weight_ptr + group).to(tl.float64)
        grad_a *= group_weight
        grad_b *= group_weight
        grad_scaled_r *= group_weight
    cube = rsqrt_group_var * rsqrt_group_var * rsqrt_group_var
    grad_group_var = -0.5 * cube * grad_scaled_r
    grad_group_mean = -rsqrt_group_var * tl.sum(grad_b, 1)
    # var_g = mean_k (vy + d^2) has no derivative through mu_g, since sum_k d = 0.
    grad_moved_mean = tl.where(mask, (2.0 / K) * grad_group_var[:, None] * centered
                               + grad_group_mean[:, None] / K, 0.0)
    grad_moved_var = tl.where(mask, grad_group_var[:, None] / K, 0.0)
    grad_mean = scale[None, :] * grad_moved_mean
    grad_var = (scale * scale)[None, :] * grad_moved_var
    grad_shift = tl.sum(grad_b * rsqrt_group_var[:, None] + grad_moved_mean, 0)
    grad_scale = tl.sum(grad_a * rsqrt_group_var[:, None] + grad_moved_mean * sample_mean
                        + 2.0 * scale[None, :] * grad_moved_var * sample_var, 0)
    grad_scale -= channel_mean * grad_shift
    grad_channel_mean = -scale * grad_shift
    if HAS_WEIGHT:
        tl.store(grad_weight_ptr + channel, (grad_scale * rsqrt_var).to(tl.float32),
                 mask=channel_mask)
        grad_scale *= weight
    if HAS_BIAS:
        tl.store(grad_bias_ptr + channel, grad_shift.to(tl.float32), mask=channel_mask)
    grad_channel_var = -0.5 * rsqrt_var * rsqrt_var * rsqrt_var * grad_scale
    if BATCH_PATH:  # large-batch mode, local statistics: M / S0 = 1 / N
        deviation = sample_mean - channel_mean[None, :]
        grad_mean += (grad_channel_mean[None, :]
                      + 2.0 * deviation * grad_channel_var[None, :]) / N
        grad_var += grad_channel_var[None, :] / N
    tl.store(grad_channel_mean_ptr + channel, grad_channel_mean, mask=channel_mask)
    tl.store(grad_channel_var_ptr + channel, grad_channel_var, mask=channel_mask)
    tl.store(slope_ptr + row, ((2.0 / positions) * grad_var).to(tl.float32), mask=mask)
    tl.store(offset_ptr + row, (grad_mean / positions).to(tl.float32), mask=mask)


def _launch_shape(x: torch.Tensor, num_groups: int):
    n, c = x.shape[:2]
    block_n, block_k = triton.next_power_of_2(n), triton.next_power_of_2(c // num_groups)
    num_warps = 4 if block_n * block_k <= 2048 else 8
    return (num_groups,), dict(BLOCK_N=block_n, BLOCK_K=block_k, num_warps=num_warps)


def _flags(params: Params):
    return dict(HAS_WEIGHT=params.weight is not None, HAS_BIAS=params.bias is not None,
                HAS_GROUP_WEIGHT=params.group_weight is not None,
                HAS_GROUP_BIAS=params.group_bias is not None)


def _pointers(params: Params, placeholder: torch.Tensor):
    return [placeholder if p is None else p.detach() for p in params]


def forward(x: torch.Tensor, params: Params, settings: BCNSettings):
    """``(out, A, Saved)``: BCN's output ``x * A + B``, its slope A and what the backward needs."""
    coeff_a, coeff_b, saved = forward_coefficients(x, params, settings)
    return apply_affine(x, coeff_a, coeff_b), coeff_a, saved


def forward_coefficients(x: torch.Tensor, params: Params, settings: BCNSettings):
    """``(A, B, Saved)`` for x, updating ``settings``' running statistics when training."""
    n, c = x.shape[:2]
    positions = x[0, 0].numel()
    grid, launch = _launch_shape(x, settings.num_groups)
    partials = moment_partials(x)
    sums, count = partials.first, None  # sums: a placeholder unless synchronizing
    if settings.training and settings.synchronize:
        sums = x.new_empty(2 * c + 1, dtype=torch.float64)
        _batch_sums_kernel[grid](partials.first, partials.second, partials.num_segments,
                                 partials.segment_length, positions, sums, n, c,
                                 c // settings.num_groups, **launch)
        sums = all_reduce_sum(sums, settings.process_group)
        count = sums[0]
    stats = (GIVEN if not settings.training else
             STATS_OF_RULE[settings.estimate_rule] if settings.estimate else BATCH)
    sample_mean, sample_var, coeff_a, coeff_b = x.new_empty(4, n, c, dtype=torch.float32)
    channel_mean, channel_var = x.new_empty(2, c, dtype=torch.float32)
    _forward_kernel[grid](
        partials.first, partials.second, partials.num_segments, partials.segment_length, positions,
        sums, settings.running_mean, settings.running_var, float(settings.update_rate),
        *_pointers(params, sample_mean), sample_mean, sample_var, channel_mean, channel_var,
        coeff_a, coeff_b, n, c, c // settings.num_groups, settings.eps, STATS=stats.value,
        SUMS_GIVEN=count is not None, **_flags(params), **launch)
    return coeff_a, coeff_b, Saved(sample_mean, sample_var, channel_mean, channel_var, count)


def backward_coefficients(grad_out: torch.Tensor, x: torch.Tensor, params: Params,
                          saved: Saved, settings: BCNSettings):
    """``(slope, offset, parameter gradients)`` from the output gradient; see the module doc.

    The parameter gradients are float32, in the order of :class:`Params` (None where the
    parameter is absent).
    """
    n, c = x.shape[:2]
    positions = x[0, 0].numel()
    grid, launch = _launch_shape(x, settings.num_groups)
    partials: Partials = gradient_partials(grad_out, x, saved.sample_mean)
    slope, offset = x.new_empty(2, n, c, dtype=torch.float32)
    grad_stats = x.new_empty(2, c, dtype=torch.float64)
    grads = [None if p is None else x.new_empty(p.shape, dtype=torch.float32) for p in params]
    large_batch = settings.training and not settings.estimate
    _backward_kernel[grid](
        partials.first, partials.second, partials.num_segments, positions, saved.sample_mean,
        saved.sample_var, saved.channel_mean, saved.channel_var,
        *_pointers(params[:3], slope), slope, offset, grad_stats[0], grad_stats[1],
        *[slope if g is None else g for g in grads], n, c, c // settings.num_groups,
        settings.eps, BATCH_PATH=large_batch and saved.count is None, **_flags(params),
        **launch)
    if large_batch and saved.count is not None:  # the global batch's path, after an all-reduce
        grad_mu, grad_var = all_reduce_sum(grad_stats, settings.process_group)
        deviation = saved.sample_mean.double() - saved.channel_mean.double()
        slope += (2.0 * grad_var / saved.count).float()
        offset += ((grad_mu + 2.0 * deviation * grad_var) / saved.count).float()
    return slope, offset, grads
