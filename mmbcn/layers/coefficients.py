"""The O(N*C) part of BCN: per-(sample, channel) coefficients and their analytic backward.

BCN of x (N, C, *) is ``out = x * A[n, c] + B[n, c]``. With ``m[n, c]``, ``v[n, c]`` the
per-sample channel mean and biased variance over the M spatial positions, ``mu[c]``, ``var[c]``
the statistics of the batch stage, w, b its affine, gw, gb the channel stage's per-group affine
and K = C / G channels per group:

    rs  = (var + eps)^-1/2,   s = w * rs,   t = b - mu * s          # batch stage: x*s + t
    my  = s * m + t,          vy = s^2 * v                          # moments of x*s + t
    mu_g = mean_k my,         d = my - mu_g
    var_g = mean_k (vy + d^2),                 r = (var_g + eps)^-1/2   # per (n, group)
    A = s * r * gw,           B = (t - mu_g) * r * gw + gb

:func:`coefficients_backward` is the chain rule of these lines written out (no autograd graph),
ending in dL/dm, dL/dv, dL/dmu, dL/dvar and the parameter gradients. In large-batch mode
``mu = S1 / S0`` and ``var = S2 / S0 - mu^2`` with ``S0 = sum M``, ``S1 = sum M * m`` and
``S2 = sum M * (v + m^2)`` over the (global) batch, which adds
``dL/dm += M / S0 * (dL/dmu + 2 (m - mu) dL/dvar)`` and ``dL/dv += M / S0 * dL/dvar``
(:func:`batch_statistics_backward`).
"""

from typing import NamedTuple, Optional

import torch


class CoefficientContext(NamedTuple):
    """What :func:`coefficients_backward` needs from the forward; all O(N*C)."""

    sample_mean: torch.Tensor  # (N, G, K)
    sample_var: torch.Tensor  # (N, G, K)
    channel_mean: torch.Tensor  # (1, G, K)
    rsqrt_var: torch.Tensor  # (1, G, K) rs
    scale: torch.Tensor  # (1, G, K) s
    shift: torch.Tensor  # (1, G, K) t
    centered: torch.Tensor  # (N, G, K) d = my - mu_g
    group_shift: torch.Tensor  # (N, G, K) t - mu_g
    rsqrt_group_var: torch.Tensor  # (N, G, 1) r
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


def coefficients(sample_mean, sample_var, channel_mean, channel_var, weight, bias, group_weight,
                 group_bias, num_groups: int, eps: float):
    """``(A, B, ctx)`` with ``BCN(x) = x * A + B``; see the module docstring for the maths.

    Args:
        sample_mean, sample_var: (N, C) per-sample channel moments of x.
        channel_mean, channel_var: (C,) statistics of the batch stage.
        weight, bias: (C,) batch-stage affine, or None.
        group_weight, group_bias: (G,) channel-stage affine, or None.
        num_groups: G.
        eps: added to both variances.

    Returns:
        A and B, each (N, C), in the dtype of ``sample_mean``, and the
        :class:`CoefficientContext` for the backward. The maths runs in float64: it is O(N*C),
        and the group variance of few channels with 1x1 maps (or the batch stage's
        ``s * m - mu * s``) can cancel badly in float32.
    """
    n, c = sample_mean.shape
    grouped = (n, num_groups, c // num_groups)
    dtype = torch.float64

    def per_channel(tensor):
        return None if tensor is None else tensor.to(dtype).reshape(1, num_groups, -1)

    m, v = sample_mean.to(dtype).reshape(grouped), sample_var.to(dtype).reshape(grouped)
    mu, w, b = per_channel(channel_mean), per_channel(weight), per_channel(bias)
    rs = torch.rsqrt(per_channel(channel_var) + eps)
    s = rs if w is None else rs * w
    t = -mu * s if b is None else b - mu * s
    my = torch.addcmul(t, m, s)
    group_mean = my.mean(dim=2, keepdim=True)
    d = my - group_mean
    group_var = torch.addcmul(v * s.square(), d, d).mean(dim=2, keepdim=True)
    r = torch.rsqrt(group_var + eps)
    gw = per_channel(group_weight)
    scaled_r = r if gw is None else r * gw
    group_shift = t - group_mean
    coeff_a = s * scaled_r
    coeff_b = group_shift * scaled_r
    if group_bias is not None:
        coeff_b = coeff_b + per_channel(group_bias)
    ctx = CoefficientContext(m, v, mu, rs, s, t, d, group_shift, r, w, gw)
    out_dtype = sample_mean.dtype
    return coeff_a.reshape(n, c).to(out_dtype), coeff_b.reshape(n, c).to(out_dtype), ctx


def coefficients_backward(ctx: CoefficientContext, grad_a: torch.Tensor, grad_b: torch.Tensor,
                          has_bias: bool, has_group_bias: bool) -> CoefficientGrads:
    """Chain rule of :func:`coefficients`: from dL/dA, dL/dB (N, C) to its inputs' gradients."""
    n, num_groups, k = ctx.sample_mean.shape
    grad_a = grad_a.to(ctx.sample_mean.dtype).reshape(n, num_groups, k)
    grad_b = grad_b.to(ctx.sample_mean.dtype).reshape(n, num_groups, k)
    r, s = ctx.rsqrt_group_var, ctx.scale
    # dL/d(r * gw) per (n, group), then through gw and r.
    grad_scaled_r = (grad_a * s + grad_b * ctx.group_shift).sum(dim=2, keepdim=True)
    grad_group_weight = grad_group_bias = None
    if has_group_bias:
        grad_group_bias = grad_b.sum(dim=(0, 2))
    if ctx.group_weight is not None:
        grad_group_weight = (grad_scaled_r * r).sum(dim=(0, 2))
        grad_a = grad_a * ctx.group_weight
        grad_b = grad_b * ctx.group_weight
        grad_scaled_r = grad_scaled_r * ctx.group_weight
    grad_group_var = -0.5 * r.pow(3) * grad_scaled_r
    grad_group_mean = -r * grad_b.sum(dim=2, keepdim=True)
    # var_g = mean_k (vy + d^2) has no derivative through mu_g, since sum_k d = 0.
    grad_my = (2.0 / k) * grad_group_var * ctx.centered + grad_group_mean / k
    grad_vy = grad_group_var / k
    grad_m = s * grad_my
    grad_v = s.square() * grad_vy
    grad_t = (grad_b * r + grad_my).sum(dim=0, keepdim=True)
    grad_s = (grad_a * r + grad_my * ctx.sample_mean
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


def batch_statistics_backward(grads: CoefficientGrads, sample_mean, channel_mean,
                              positions_per_sample: int, total_count):
    """Add the large-batch path ``(m, v) -> (mu, var)`` to dL/dm and dL/dv.

    ``grads.channel_mean`` / ``grads.channel_var`` must already be summed over the processes that
    share the statistics. ``total_count`` is S0, the number of values per channel in the batch.
    """
    dtype = grads.sample_mean.dtype
    scale = positions_per_sample / total_count.to(dtype)
    grad_mu, grad_var = grads.channel_mean, grads.channel_var
    centered = sample_mean.to(dtype) - channel_mean.to(dtype)
    grad_m = grads.sample_mean + scale * (grad_mu + 2.0 * centered * grad_var)
    grad_v = grads.sample_var + scale * grad_var
    return grad_m, grad_v
