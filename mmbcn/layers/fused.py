"""Fused BCN: one statistics pass and one output pass forward, two passes backward.

Forward: per-sample channel moments of x (one reduction pass), the O(N*C) coefficient maths of
:mod:`mmbcn.layers.coefficients`, then ``out = x * A + B`` (one pass writing the output).
Saved for backward: x and O(N*C) values. Backward, with g the output gradient, M the spatial size
and ``dL/dA = sum_s g (x - m) + m sum_s g``, ``dL/dB = sum_s g`` from one reduction pass:

    dL/dx = g * A + dL/dv * 2 (x - m) / M + dL/dm / M                (one pass)

where dL/dm, dL/dv come from :func:`~mmbcn.layers.coefficients.coefficients_backward`.

Where it runs: for contiguous CUDA tensors with Triton installed, the passes are Triton kernels
(:mod:`mmbcn.layers.triton_passes`) and so is the O(N*C) maths, one kernel per direction
(:mod:`mmbcn.layers.triton_coefficients`); elsewhere both are PyTorch ops
(:mod:`mmbcn.layers.torch_passes`, :class:`PyTorchCoefficients`). With PyTorch ops and
contiguous x the statistics pass also writes x's standardized rows, and the output is written
over them in place (``z * A sqrt(v) + (A m + B)``), so the forward allocates one activation.
"""

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from . import torch_passes
from .coefficients import (
    CoefficientContext,
    batch_statistics_backward,
    coefficients,
    coefficients_backward,
)
from .statistics import training_statistics


class Params(NamedTuple):
    """BCN's parameters, any of which may be None."""

    weight: Optional[torch.Tensor]
    bias: Optional[torch.Tensor]
    group_weight: Optional[torch.Tensor]
    group_bias: Optional[torch.Tensor]


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
    estimate_rule: str = 'authors'


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


def coefficient_maths_for(passes, x: torch.Tensor, settings: BCNSettings):
    """Where the O(N*C) maths runs: one Triton kernel per direction, or PyTorch ops."""
    if passes is not torch_passes:
        from . import triton_coefficients
        if triton_coefficients.applies(x, settings.num_groups, settings.update_rate):
            return triton_coefficients
    return PyTorchCoefficients(passes)


class _PyTorchSaved(NamedTuple):
    sample_mean: torch.Tensor  # (N, C)
    channel_mean: torch.Tensor  # (C,)
    count: Optional[torch.Tensor]  # () S0 in training, else None
    context: CoefficientContext


class PyTorchCoefficients:
    """The statistics pass plus the O(N*C) maths of BCN as PyTorch ops (any device).

    The same interface as :mod:`mmbcn.layers.triton_coefficients`.
    """

    def __init__(self, passes):
        self.passes = passes

    def forward(self, x, params: Params, settings: BCNSettings):
        """``(out, A, saved)``: BCN's output, its slope A and what the backward needs.

        With PyTorch passes and contiguous x, the statistics pass standardizes x into the
        memory the output is then written over (one activation-sized allocation).
        """
        if self.passes is not torch_passes or not torch_passes.rows_are_contiguous(x):
            coeff_a, coeff_b, saved = self.forward_coefficients(x, params, settings)
            return self.passes.apply_affine(x, coeff_a, coeff_b), coeff_a, saved
        standardized = torch_passes.standardized_rows(x)
        coeff_a, coeff_b, saved = self.coefficients_of(
            standardized.mean, standardized.var, x, params, settings)
        out = torch_passes.affine_over_standardized(x, standardized, coeff_a, coeff_b)
        return out, coeff_a, saved

    def forward_coefficients(self, x, params: Params, settings: BCNSettings):
        """``(A, B, saved)``, updating the running statistics when training."""
        sample_mean, sample_var = self.passes.row_moments(x)
        return self.coefficients_of(sample_mean, sample_var, x, params, settings)

    def coefficients_of(self, sample_mean, sample_var, x, params: Params,
                        settings: BCNSettings):
        """``(A, B, saved)`` from x's per-row moments; updates the running statistics."""
        if settings.training:
            channel_mean, channel_var, count = training_statistics(
                sample_mean, sample_var, spatial_positions(x), settings.running_mean,
                settings.running_var, settings.estimate, settings.update_rate,
                settings.process_group, settings.synchronize, settings.estimate_rule)
        else:
            channel_mean = settings.running_mean.to(sample_mean.dtype)
            channel_var = settings.running_var.to(sample_mean.dtype)
            count = None
        coeff_a, coeff_b, context = coefficients(sample_mean, sample_var, channel_mean,
                                                 channel_var, *params, settings.num_groups,
                                                 settings.eps)
        return coeff_a, coeff_b, _PyTorchSaved(sample_mean, channel_mean, count, context)

    def backward_coefficients(self, grad_out, x, params: Params, saved: _PyTorchSaved,
                              settings: BCNSettings):
        """``(slope, offset, parameter gradients)`` of ``dx = g A + (x - m) slope + offset``."""
        sample_mean = saved.sample_mean
        centered_sum, grad_sum = self.passes.grad_row_sums(grad_out, x, sample_mean)
        grad_sum = grad_sum.double()
        sample_mean64 = saved.context.sample_mean.reshape(grad_sum.shape)  # m in float64
        grad_a = torch.addcmul(centered_sum.double(), sample_mean64, grad_sum)
        grads = coefficients_backward(saved.context, grad_a, grad_sum, params.bias is not None,
                                      params.group_bias is not None)
        grad_mean, grad_var = grads.sample_mean, grads.sample_var
        positions = spatial_positions(x)
        if settings.training and not settings.estimate:
            if settings.synchronize:
                grads = _sum_statistics_grads(grads, settings.process_group)
            grad_mean, grad_var = batch_statistics_backward(grads, sample_mean64,
                                                            saved.channel_mean, positions,
                                                            saved.count)
        slope = ((2.0 / positions) * grad_var).to(sample_mean.dtype)
        offset = (grad_mean / positions).to(sample_mean.dtype)
        return slope, offset, [grads.weight, grads.bias, grads.group_weight, grads.group_bias]


def spatial_positions(x: torch.Tensor) -> int:
    """M, the number of positions per sample and channel (0 for an empty batch)."""
    return x[0, 0].numel() if x.shape[0] * x.shape[1] else 0


class FusedBatchChannelNorm(torch.autograd.Function):
    """``BCN(x) = x * A + B`` with analytic backward; see the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, bias, group_weight, group_bias, settings: BCNSettings):
        params = Params(weight, bias, group_weight, group_bias)
        passes = passes_for(x)
        maths = coefficient_maths_for(passes, x, settings)
        out, coeff_a, saved = maths.forward(x, params, settings)
        ctx.save_for_backward(x, *params)
        ctx.passes, ctx.maths, ctx.settings = passes, maths, settings
        ctx.coeff_a, ctx.saved = coeff_a, saved
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, *params = ctx.saved_tensors
        params = Params(*params)
        slope, offset, param_grads = ctx.maths.backward_coefficients(
            grad_out, x, params, ctx.saved, ctx.settings)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = ctx.passes.grad_input(grad_out, x, ctx.coeff_a, slope,
                                           ctx.saved.sample_mean, offset)
        param_grads = [grad.to(param.dtype) if needed else None for grad, param, needed
                       in zip(param_grads, params, ctx.needs_input_grad[1:5])]
        return (grad_x, *param_grads, None)


def _sum_statistics_grads(grads, process_group):
    """dL/dmu and dL/dvar summed over the processes (every loss depends on the shared mu, var)."""
    both = torch.cat([grads.channel_mean, grads.channel_var])
    dist.all_reduce(both, op=dist.ReduceOp.SUM, group=process_group)
    channel_mean, channel_var = both.chunk(2)
    return grads._replace(channel_mean=channel_mean, channel_var=channel_var)
