"""The maths of Batch-Channel Normalization, written once: everything BCN computes but the passes.

Reference: S. Qiao, H. Wang, C. Liu, W. Shen, A. Yuille, "Micro-Batch Training with
Batch-Channel Normalization and Weight Standardization" (arXiv:1903.10520), also "Rethinking
Normalization and Elimination Singularity in Neural Networks" (arXiv:1911.09738); the authors'
code: github.com/joe-siyuan-qiao/Batch-Channel-Normalization. The other modules point here.

BCN of x (N, C, *), with M positions per sample and channel, is a batch stage then a channel
stage::

    y   = (x - mu[c]) / sqrt(var[c] + eps) * w[c] + b[c]                        (batch stage)
    out = (y - mu_g[n]) / sqrt(var_g[n] + eps) * gw[g] + gb[g]                   (channel stage)

with mu_g, var_g the mean and biased variance of y over the K = C / G channels of group g and
all positions of sample n (group norm). Everything follows from the per-(sample, channel) mean
``m[n, c]`` and biased variance ``v[n, c]`` over the M positions, all O(N*C):

1. Batch statistics (:func:`local_batch_sums`, :func:`batch_statistics`): from
   ``S0 = sum_n M``, ``S1 = sum_n M m``, ``S2 = sum_n M (v + m^2)`` over the local batch (or
   all-reduced over the processes, for the global batch): ``mu_b = S1 / S0`` and
   ``var_b = S2 / S0 - mu_b^2`` (biased), in float64.
2. The (mu, var) the batch stage uses (:func:`training_statistics`), under no gradient. r, the
   update rate of the paper, is the layer's ``momentum`` (BatchNorm's name for it, which
   ``batch_channel_norm`` and :class:`Settings` keep):

   * large-batch mode (``estimate=False``): ``(mu_b, var_b)``, with gradients through them; the
     running statistics move as BatchNorm's, ``running = (1 - r) running + r stat`` with the
     unbiased ``var_b S0 / (S0 - 1)``;
   * micro-batch mode (``estimate=True``): the estimates move first,
     ``mu = (1 - r) mu_old + r mu_b`` and ``var = (1 - r) var_old + r v``, then are used, with
     no gradient through them. v is chosen by the estimate rule (:func:`estimate_target_variance`):
     ``'authors'`` (default), the ``EstBN`` of the authors' README: ``v = mean (x - mu_old)^2
     = var_b + (mu_b - mu_old)^2``, the batch's spread around the *previous* estimate, which
     counts how far micro-batch means wander, so var estimates the population variance even
     with one value per channel; ``'batch_variance'``: ``v = var_b``, not the authors' rule (it
     under-estimates the population variance, 0.8x at one image per GPU in a float64
     simulation, and is 0 with one value per channel), kept for comparison;
   * eval: the running statistics.
3. BCN is then one per-(sample, channel) affine map ``out = x * A + B`` (:func:`coefficients`)::

       rs  = (var + eps)^-1/2,   s = w * rs,   t = b - mu * s          # batch stage: x*s + t
       my  = s * m + t,          vy = s^2 * v                          # moments of x*s + t
       mu_g = mean_k my,         d = my - mu_g
       var_g = mean_k (vy + d^2),               rg = (var_g + eps)^-1/2  # per (n, group)
       A = s * rg * gw,          B = (t - mu_g) * rg * gw + gb

   written centred on each row's mean, ``out = (x - m) * A + C`` with ``C = A m + B =
   d * rg * gw + gb`` (the output at the row mean): ``x - m`` is exact in float32 where
   ``|m| >> std``, and C has no cancellation, so the output keeps float32's relative precision
   whatever the mean (``x * A + B`` loses ``|m| / std`` of it).

4. Backward, with g the output gradient: one reduction pass gives ``dL/dB = sum_s g`` and
   ``dL/dA = sum_s g (x - m) + m sum_s g``; :func:`coefficients_backward` is the chain rule of
   3 down to dL/dm, dL/dv, dL/dmu, dL/dvar and the parameters; in large-batch mode
   :func:`add_batch_statistics_path` adds the path (m, v) -> (mu_b, var_b) once dL/dmu, dL/dvar
   are summed over the processes that share the statistics; then
   ``dL/dx = g A + (x - m) slope + offset`` with ``slope = 2 dL/dv / M``, ``offset = dL/dm / M``.

All of it runs in float64: it is O(N*C), and the group variance of few channels with 1x1 maps
(or ``s * m - mu * s``) cancels badly in float32. ``tests/mmbcn_testing/reference.py`` composes BCN
from the formulas above in float64, independently of this module.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from .recompute import ForwardRecords, Phase

ESTIMATE_RULES = ('authors', 'batch_variance')
DEFAULT_ESTIMATE_RULE = 'authors'  # the EstBN rule of the authors' release (step 2)
FLOAT64 = torch.float64


class Params(NamedTuple):
    """BCN's parameters, any of which may be None: w, b (C,) and gw, gb (G,)."""

    weight: Optional[torch.Tensor]
    bias: Optional[torch.Tensor]
    group_weight: Optional[torch.Tensor]
    group_bias: Optional[torch.Tensor]


@dataclass
class Settings:
    """The non-tensor arguments of one BCN call, and the buffers it updates."""

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_groups: int
    training: bool
    estimate: bool
    momentum: float  # r (step 2 of the module doc): a number, or a 0-d tensor (the layer's
    #                  momentum=None: a cumulative average, read on the device without a sync)
    eps: float
    process_group: Optional[object] = None
    synchronize: bool = False
    estimate_rule: str = DEFAULT_ESTIMATE_RULE
    # Activation checkpointing (:mod:`.recompute`): what this call is, and the layer's records.
    phase: Phase = Phase.PLAIN
    records: Optional[ForwardRecords] = None

    @property
    def large_batch_training(self) -> bool:
        """Whether gradients flow through batch statistics (training, ``estimate=False``)."""
        return self.training and not self.estimate


def positions_per_sample(x: torch.Tensor) -> int:
    """M, the number of positions per sample and channel of x (N, C, *); 1 for (N, C)."""
    return math.prod(x.shape[2:])


class BatchStatistics(NamedTuple):
    """Per-channel (mean, var) the batch stage normalizes with, and S0 of the batch."""

    mean: torch.Tensor  # (C,)
    var: torch.Tensor  # (C,) biased
    count: Optional[torch.Tensor]  # () float64 S0 in training; None in eval


def local_batch_sums(sample_mean: torch.Tensor, sample_var: torch.Tensor,
                     positions: int) -> torch.Tensor:
    """``[S0, S1 (C), S2 (C)]`` of the local batch in float64 (step 1 of the module doc)."""
    mean64 = sample_mean.to(FLOAT64)
    second_moment = sample_var.to(FLOAT64) + mean64.square()
    count = mean64.new_full((1,), float(sample_mean.shape[0] * positions))
    return torch.cat([count, mean64.sum(0) * positions, second_moment.sum(0) * positions])


def batch_statistics(sums: torch.Tensor):
    """``(mu_b, var_b, S0)`` in float64 from ``[S0, S1, S2]``; var_b clamped at 0."""
    num_channels = (sums.numel() - 1) // 2
    count = sums[0]
    mean = sums[1:1 + num_channels] / count
    var = (sums[1 + num_channels:] / count - mean.square()).clamp_min(0)
    return mean, var, count


def check_estimate_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`ESTIMATE_RULES`, else a ValueError that names them.

    The one check, for the layer's constructor and for ``batch_channel_norm``.
    """
    if rule not in ESTIMATE_RULES:
        raise ValueError(f'BCN: estimate_rule must be one of {ESTIMATE_RULES} (\'authors\' is the '
                         f'authors\' released rule), got {rule!r}.')
    return rule


def estimate_target_variance(batch_mean: torch.Tensor, batch_var: torch.Tensor,
                             previous_mean: torch.Tensor, rule: str) -> torch.Tensor:
    """v, the variance the micro-batch estimate moves towards (step 2 of the module doc), by a
    ``rule`` that passed :func:`check_estimate_rule`."""
    if rule == 'batch_variance':
        return batch_var
    return batch_var + (batch_mean - previous_mean.to(FLOAT64)).square()  # 'authors'


def move_towards(buffer: torch.Tensor, target: torch.Tensor, momentum) -> None:
    """``buffer = (1 - momentum) * buffer + momentum * target`` in place (momentum: r, a number
    or a 0-d tensor)."""
    buffer.mul_(1 - momentum).add_(momentum * target.to(buffer))


@torch.no_grad()
def training_statistics(sums: torch.Tensor, settings: Settings,
                        dtype: torch.dtype) -> BatchStatistics:
    """The (mean, var) used in training, from the (global) batch sums; updates the buffers.

    Step 2 of the module doc. Returned in ``dtype`` (micro-batch mode: copies of the updated
    estimates, since the buffers change in place at the next step, maybe before this backward).
    """
    batch_mean, batch_var, count = batch_statistics(sums)
    running_mean, running_var, momentum = (settings.running_mean, settings.running_var,
                                           settings.momentum)
    if settings.estimate:
        target_var = estimate_target_variance(batch_mean, batch_var, running_mean,
                                              settings.estimate_rule)
        move_towards(running_mean, batch_mean, momentum)
        move_towards(running_var, target_var, momentum)
        return BatchStatistics(running_mean.to(dtype, copy=True),
                               running_var.to(dtype, copy=True), count)
    move_towards(running_mean, batch_mean, momentum)
    move_towards(running_var, batch_var * (count / (count - 1)), momentum)
    return BatchStatistics(batch_mean.to(dtype), batch_var.to(dtype), count)


def eval_statistics(settings: Settings, dtype: torch.dtype) -> BatchStatistics:
    """The running statistics, in ``dtype``."""
    return BatchStatistics(settings.running_mean.to(dtype), settings.running_var.to(dtype), None)


class CoefficientContext(NamedTuple):
    """What :func:`coefficients_backward` needs from the forward; all O(N*C), float64."""

    sample_mean: torch.Tensor  # (N, G, K) m
    sample_var: torch.Tensor  # (N, G, K) v
    channel_mean: torch.Tensor  # (1, G, K) mu
    rsqrt_var: torch.Tensor  # (1, G, K) rs
    scale: torch.Tensor  # (1, G, K) s
    shift: torch.Tensor  # (1, G, K) t
    centered: torch.Tensor  # (N, G, K) d = my - mu_g
    group_shift: torch.Tensor  # (N, G, K) t - mu_g
    rsqrt_group_var: torch.Tensor  # (N, G, 1) rg
    weight: Optional[torch.Tensor]  # (1, G, K) w
    group_weight: Optional[torch.Tensor]  # (1, G, 1) gw


class CoefficientGrads(NamedTuple):
    """Gradients of the loss with respect to the inputs of :func:`coefficients`."""

    sample_mean: torch.Tensor  # (N, C)
    sample_var: torch.Tensor  # (N, C)
    channel_mean: torch.Tensor  # (C,)
    channel_var: torch.Tensor  # (C,)
    weight: Optional[torch.Tensor]  # (C,)
    bias: Optional[torch.Tensor]  # (C,)
    group_weight: Optional[torch.Tensor]  # (G,)
    group_bias: Optional[torch.Tensor]  # (G,)


def coefficients(sample_mean: torch.Tensor, sample_var: torch.Tensor,
                 statistics: BatchStatistics, params: Params, num_groups: int, eps: float):
    """``(A, C, ctx)`` with ``BCN(x) = (x - m) * A + C`` (step 3 of the module doc).

    Args:
        sample_mean, sample_var: (N, C) per-sample channel moments of x.
        statistics: the (C,) mean and var of the batch stage.
        params: the affine parameters, any of them None.
        num_groups: G.
        eps: added to both variances.

    Returns:
        A and C, each (N, C) in the dtype of ``sample_mean`` (C is centred on exactly the
        ``sample_mean`` given: subtract that same m from x), and the
        :class:`CoefficientContext` for the backward.
    """
    n, c = sample_mean.shape
    grouped = (n, num_groups, c // num_groups)

    def per_channel(tensor):
        return None if tensor is None else tensor.to(FLOAT64).reshape(1, num_groups, -1)

    m, v = sample_mean.to(FLOAT64).reshape(grouped), sample_var.to(FLOAT64).reshape(grouped)
    mu, w, b = per_channel(statistics.mean), per_channel(params.weight), per_channel(params.bias)
    rs = torch.rsqrt(per_channel(statistics.var) + eps)
    s = rs if w is None else rs * w
    t = -mu * s if b is None else b - mu * s
    my = torch.addcmul(t, m, s)
    group_mean = my.mean(dim=2, keepdim=True)
    d = my - group_mean
    group_var = torch.addcmul(v * s.square(), d, d).mean(dim=2, keepdim=True)
    rg = torch.rsqrt(group_var + eps)
    gw = per_channel(params.group_weight)
    scaled_rg = rg if gw is None else rg * gw
    group_shift = t - group_mean
    coeff_a = s * scaled_rg
    coeff_c = d * scaled_rg
    if params.group_bias is not None:
        coeff_c = coeff_c + per_channel(params.group_bias)
    ctx = CoefficientContext(m, v, mu, rs, s, t, d, group_shift, rg, w, gw)
    out_dtype = sample_mean.dtype
    return coeff_a.reshape(n, c).to(out_dtype), coeff_c.reshape(n, c).to(out_dtype), ctx


def coefficients_backward(ctx: CoefficientContext, grad_a: torch.Tensor, grad_b: torch.Tensor,
                          has_bias: bool, has_group_bias: bool) -> CoefficientGrads:
    """Chain rule of :func:`coefficients`: from dL/dA, dL/dB (N, C) to its inputs' gradients."""
    n, num_groups, k = ctx.sample_mean.shape
    grad_a = grad_a.to(FLOAT64).reshape(n, num_groups, k)
    grad_b = grad_b.to(FLOAT64).reshape(n, num_groups, k)
    rg, s = ctx.rsqrt_group_var, ctx.scale
    # dL/d(rg * gw) per (n, group), then through gw and rg.
    grad_scaled_rg = (grad_a * s + grad_b * ctx.group_shift).sum(dim=2, keepdim=True)
    grad_group_weight = grad_group_bias = None
    if has_group_bias:
        grad_group_bias = grad_b.sum(dim=(0, 2))
    if ctx.group_weight is not None:
        grad_group_weight = (grad_scaled_rg * rg).sum(dim=(0, 2))
        grad_a = grad_a * ctx.group_weight
        grad_b = grad_b * ctx.group_weight
        grad_scaled_rg = grad_scaled_rg * ctx.group_weight
    grad_group_var = -0.5 * rg.pow(3) * grad_scaled_rg
    grad_group_mean = -rg * grad_b.sum(dim=2, keepdim=True)
    # var_g = mean_k (vy + d^2) has no derivative through mu_g, since sum_k d = 0.
    grad_my = (2.0 / k) * grad_group_var * ctx.centered + grad_group_mean / k
    grad_vy = grad_group_var / k
    grad_m = s * grad_my
    grad_v = s.square() * grad_vy
    grad_t = (grad_b * rg + grad_my).sum(dim=0, keepdim=True)
    grad_s = (grad_a * rg + grad_my * ctx.sample_mean
              + 2.0 * s * grad_vy * ctx.sample_var).sum(dim=0, keepdim=True)
    grad_s = grad_s - ctx.channel_mean * grad_t
    grad_channel_mean = -s * grad_t
    grad_weight = None
    grad_rs = grad_s
    if ctx.weight is not None:
        grad_weight = (grad_s * ctx.rsqrt_var).reshape(-1)
        grad_rs = grad_s * ctx.weight
    grad_channel_var = -0.5 * ctx.rsqrt_var.pow(3) * grad_rs
    return CoefficientGrads(
        grad_m.reshape(n, -1), grad_v.reshape(n, -1), grad_channel_mean.reshape(-1),
        grad_channel_var.reshape(-1), grad_weight,
        grad_t.reshape(-1) if has_bias else None, grad_group_weight, grad_group_bias)


class InputGradient(NamedTuple):
    """``dL/dx = g A + (x - m) slope + offset``: its per-(sample, channel) slope and offset."""

    slope: torch.Tensor  # (N, C)
    offset: torch.Tensor  # (N, C)


def input_gradient_coefficients(grad_sample_mean: torch.Tensor, grad_sample_var: torch.Tensor,
                                positions: int, dtype: torch.dtype) -> InputGradient:
    """slope = 2 dL/dv / M and offset = dL/dm / M (step 4 of the module doc), in ``dtype``."""
    return InputGradient(((2.0 / positions) * grad_sample_var).to(dtype),
                         (grad_sample_mean / positions).to(dtype))


def add_batch_statistics_path(gradient: InputGradient, grad_statistics: torch.Tensor,
                              sample_mean: torch.Tensor, channel_mean: torch.Tensor,
                              count: torch.Tensor) -> InputGradient:
    """Large-batch mode: add the path (m, v) -> (mu_b, var_b) to the input gradient.

    With ``grad_statistics = [dL/dmu, dL/dvar]`` (2, C), already summed over the processes that
    share the statistics, and S0 = ``count``: ``dL/dm += M / S0 (dL/dmu + 2 (m - mu) dL/dvar)``
    and ``dL/dv += M / S0 dL/dvar``, so the slope gains ``2 dL/dvar / S0`` and the offset
    ``(dL/dmu + 2 (m - mu) dL/dvar) / S0``.
    """
    grad_mu, grad_var = grad_statistics.to(FLOAT64)
    deviation = sample_mean.to(FLOAT64) - channel_mean.to(FLOAT64)
    count = count.to(FLOAT64)
    dtype = gradient.slope.dtype
    slope = gradient.slope + (2.0 * grad_var / count).to(dtype)
    offset = gradient.offset + ((grad_mu + 2.0 * deviation * grad_var) / count).to(dtype)
    return InputGradient(slope, offset)
