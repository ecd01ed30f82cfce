"""Fused BCN: one statistics pass and one output pass forward, two passes backward.

Forward: per-sample channel moments of x (one reduction pass), the O(N*C) coefficient maths of
:mod:`mmbcn.layers.coefficients`, then ``out = x * A + B`` (one pass writing the output).
Saved for backward: x and O(N*C) values. Backward, with g the output gradient, M the spatial size
and ``dL/dA = sum_s g (x - m) + m sum_s g``, ``dL/dB = sum_s g`` from one reduction pass:

    dL/dx = g * A + dL/dv * 2 (x - m) / M + dL/dm / M                (one pass)

where dL/dm, dL/dv come from :func:`~mmbcn.layers.coefficients.coefficients_backward`.

The passes run as Triton kernels for contiguous CUDA tensors when Triton is installed
(:mod:`mmbcn.layers.triton_passes`), else with PyTorch ops (:mod:`mmbcn.layers.torch_passes`).
"""

from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from . import torch_passes
from .coefficients import batch_statistics_backward, coefficients, coefficients_backward
from .statistics import training_statistics


@dataclass
class BCNSettings:
    """The non-tensor arguments of one BCN call, and the buffers it updates."""

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_groups: int
    training: bool
    estimate: bool
    update_rate: float
    eps: float
    process_group: Optional[object] = None
    synchronize: bool = False


def passes_for(x: torch.Tensor):
    """The module of passes to use for x: Triton kernels where they apply, else PyTorch ops."""
    if x.is_cuda:
        try:
            from . import triton_passes
        except ImportError:  # no Triton: PyTorch ops
            return torch_passes
        if triton_passes.supports(x):
            return triton_passes
    return torch_passes


class FusedBatchChannelNorm(torch.autograd.Function):
    """``BCN(x) = x * A + B`` with analytic backward; see the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, bias, group_weight, group_bias, settings: BCNSettings):
        passes = passes_for(x)
        sample_mean, sample_var = passes.row_moments(x)
        positions = x[0, 0].numel() if x.shape[0] * x.shape[1] else 0
        if settings.training:
            stats = training_statistics(sample_mean, sample_var, positions, settings.running_mean,
                                        settings.running_var, settings.estimate,
                                        settings.update_rate, settings.process_group,
                                        settings.synchronize)
            channel_mean, channel_var, total_count = stats
        else:
            dtype = sample_mean.dtype
            channel_mean = settings.running_mean.to(dtype)
            channel_var = settings.running_var.to(dtype)
            total_count = None
        coeff_a, coeff_b, coeff_ctx = coefficients(sample_mean, sample_var, channel_mean,
                                                   channel_var, weight, bias, group_weight,
                                                   group_bias, settings.num_groups, settings.eps)
        ctx.save_for_backward(x)
        ctx.passes = passes
        ctx.settings = settings
        ctx.coeff = (coeff_a, sample_mean, channel_mean, total_count, coeff_ctx)
        ctx.param_dtypes = [None if p is None else p.dtype
                            for p in (weight, bias, group_weight, group_bias)]
        return passes.apply_affine(x, coeff_a, coeff_b)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        settings = ctx.settings
        coeff_a, sample_mean, channel_mean, total_count, coeff_ctx = ctx.coeff
        centered_sum, grad_sum = ctx.passes.grad_row_sums(grad_out, x, sample_mean)
        grad_a = torch.addcmul(centered_sum.double(), sample_mean.double(), grad_sum.double())
        weight_dtype, bias_dtype, group_weight_dtype, group_bias_dtype = ctx.param_dtypes
        grads = coefficients_backward(coeff_ctx, grad_a, grad_sum, bias_dtype is not None,
                                      group_bias_dtype is not None)
        grad_mean, grad_var = grads.sample_mean, grads.sample_var
        positions = x[0, 0].numel()
        if settings.training and not settings.estimate:
            if settings.synchronize:
                grads = _sum_statistics_grads(grads, settings.process_group)
            grad_mean, grad_var = batch_statistics_backward(grads, sample_mean, channel_mean,
                                                            positions, total_count)
        grad_x = None
        if ctx.needs_input_grad[0]:
            dtype = sample_mean.dtype
            slope = ((2.0 / positions) * grad_var).to(dtype)
            offset = (grad_mean / positions).to(dtype)
            grad_x = ctx.passes.grad_input(grad_out, x, coeff_a, slope, sample_mean, offset)

        def cast(grad, dtype, index):
            return grad.to(dtype) if ctx.needs_input_grad[index] else None

        return (grad_x, cast(grads.weight, weight_dtype, 1), cast(grads.bias, bias_dtype, 2),
                cast(grads.group_weight, group_weight_dtype, 3),
                cast(grads.group_bias, group_bias_dtype, 4), None)


def _sum_statistics_grads(grads, process_group):
    """dL/dmu and dL/dvar summed over the processes (every loss depends on the shared mu, var)."""
    both = torch.cat([grads.channel_mean, grads.channel_var])
    dist.all_reduce(both, op=dist.ReduceOp.SUM, group=process_group)
    channel_mean, channel_var = both.chunk(2)
    return grads._replace(channel_mean=channel_mean, channel_var=channel_var)
