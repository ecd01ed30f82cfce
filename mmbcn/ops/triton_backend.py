"""BCN on Triton kernels, for contiguous CUDA tensors: launch shapes, buffers, grids.

The kernels are in :mod:`.triton_kernels`; the maths they transcribe in :mod:`.maths`.
Two backends with :class:`~.torch_backend.TorchBackend`'s methods:

* :class:`TritonBackend`: the passes and the O(N*C) maths as kernels: a forward is the moments
  kernel, (training) the batch-sums kernel, the coefficient kernel and the affine kernel; a
  backward the gradient-sums kernel, the backward coefficient kernel and the input-gradient
  kernel (plus a few PyTorch ops for the batch-statistics path in large-batch mode).
* :class:`TritonPassesTorchMaths`: the passes as kernels with the maths as PyTorch ops, where
  the coefficient kernels do not apply (see :func:`maths_kernels_apply`).

Rows are split into segments so that even few long rows (N*C = 256 rows of 200x272) keep every
multiprocessor busy. Set ``MMBCN_TRITON=0`` to use the PyTorch ops instead.
"""

import os
from typing import NamedTuple, Optional

import torch
import triton

from . import maths
from . import triton_kernels as kernels
from .maths import Params, Settings
from .torch_backend import BackwardCoefficients, RowMoments, TorchBackend

REDUCE_BLOCK = 1024
ELEMENTWISE_BLOCK = 1024
PROGRAMS_PER_SM = 8
# Largest (N, C/G) tile one program of the coefficient kernels holds (about 20 float64 values
# per element live at once).
MAX_TILE = 8192


def supports(x: torch.Tensor) -> bool:
    """Whether the pass kernels apply to x: contiguous float16/bfloat16/float32 with positions."""
    return (os.environ.get('MMBCN_TRITON', '1') != '0' and x.is_contiguous() and x.dim() >= 3
            and x.dtype in (torch.float16, torch.bfloat16, torch.float32) and x.numel() > 0)


def maths_kernels_apply(x: torch.Tensor, settings: Settings) -> Optional[str]:
    """None when the coefficient kernels take this call, else why not."""
    n, c = x.shape[:2]
    tile = triton.next_power_of_2(n) * triton.next_power_of_2(c // settings.num_groups)
    if tile > MAX_TILE:
        return f'the (N, C/G) tile of {n} x {c // settings.num_groups} exceeds {MAX_TILE}'
    return None


def _segments(rows: int, positions: int, device: torch.device):
    """(segment length, number of segments) splitting each row for about 8 programs per SM."""
    if device.type == 'cuda':
        processors = torch.cuda.get_device_properties(device).multi_processor_count
    else:  # Triton's interpreter (tests)
        processors = 1
    blocks = triton.cdiv(positions, REDUCE_BLOCK)
    per_row = max(1, min(blocks, triton.cdiv(PROGRAMS_PER_SM * processors, rows)))
    segment = triton.cdiv(blocks, per_row) * REDUCE_BLOCK
    return segment, triton.cdiv(positions, segment)


def _row_count(x: torch.Tensor) -> int:
    return x.shape[0] * x.shape[1]


def _per_row(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1).float().contiguous()


class Partials(NamedTuple):
    """Per-(row, segment) results of a reduction kernel, (R, S) float32 each.

    Row r of x is split into S segments of ``segment_length`` positions (the last one shorter):
    for the moments, ``first`` / ``second`` hold each segment's mean and sum of squared
    deviations; for the gradient sums, ``sum g (x - m)`` and ``sum g``.
    """

    first: torch.Tensor
    second: torch.Tensor
    num_segments: int
    segment_length: int


def moment_partials(x: torch.Tensor) -> Partials:
    """Each segment's mean and sum of squared deviations (one pass over x)."""
    rows, positions = _row_count(x), maths.positions_per_sample(x)
    segment, num_segments = _segments(rows, positions, x.device)
    means, m2s = x.new_empty(2, rows, num_segments, dtype=torch.float32)
    kernels._moments_kernel[(rows, num_segments)](x.detach(), means, m2s, positions, segment,
                                                  BLOCK=REDUCE_BLOCK)
    return Partials(means, m2s, num_segments, segment)


def row_moments(x: torch.Tensor):
    """Per-(sample, channel) mean and biased variance, each (N, C) in float32."""
    positions = maths.positions_per_sample(x)
    means, m2s, num_segments, segment = moment_partials(x)
    counts = (positions - torch.arange(num_segments, device=x.device) * segment).clamp(
        max=segment).float()
    mean = (means * counts).sum(dim=1) / positions
    m2 = m2s.sum(dim=1) + ((means - mean[:, None]).square() * counts).sum(dim=1)
    n, c = x.shape[:2]
    return mean.reshape(n, c), (m2 / positions).reshape(n, c)


def _elementwise_grid(x: torch.Tensor):
    """One program per block of a row, all on grid axis 0 (axis 1 stops at 65,535)."""
    blocks_per_row = triton.cdiv(maths.positions_per_sample(x), ELEMENTWISE_BLOCK)
    return (_row_count(x) * blocks_per_row,), blocks_per_row


def apply_affine(x: torch.Tensor, coeff_a: torch.Tensor, coeff_c: torch.Tensor,
                 mean: torch.Tensor) -> torch.Tensor:
    """``(x - mean) * A + C`` per (sample, channel), in x's dtype."""
    out = torch.empty_like(x)
    grid, blocks_per_row = _elementwise_grid(x)
    kernels._affine_kernel[grid](x.detach(), _per_row(coeff_a), _per_row(coeff_c),
                                 _per_row(mean), out, maths.positions_per_sample(x),
                                 blocks_per_row, BLOCK=ELEMENTWISE_BLOCK)
    return out


def gradient_partials(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor) -> Partials:
    """Each segment's ``sum grad * (x - mean)`` and ``sum grad`` (one pass over grad and x)."""
    rows, positions = _row_count(x), maths.positions_per_sample(x)
    segment, num_segments = _segments(rows, positions, x.device)
    centered, total = x.new_empty(2, rows, num_segments, dtype=torch.float32)
    kernels._grad_sums_kernel[(rows, num_segments)](
        grad.contiguous(), x.detach(), _per_row(mean), centered, total, positions, segment,
        BLOCK=REDUCE_BLOCK)
    return Partials(centered, total, num_segments, segment)


def grad_row_sums(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor):
    """``(sum_s grad * (x - mean), sum_s grad)`` per (sample, channel), in float32."""
    centered, total = gradient_partials(grad, x, mean)[:2]
    n, c = x.shape[:2]
    return centered.sum(dim=1).reshape(n, c), total.sum(dim=1).reshape(n, c)


def grad_input(grad: torch.Tensor, x: torch.Tensor, coeff_a: torch.Tensor, slope: torch.Tensor,
               mean: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``grad * A + (x - mean) * slope + offset`` per (sample, channel), in x's dtype."""
    grad = grad.contiguous()
    out = torch.empty_like(x)
    grid, blocks_per_row = _elementwise_grid(x)
    kernels._grad_input_kernel[grid](grad, x, _per_row(coeff_a), _per_row(slope),
                                     _per_row(mean), _per_row(offset), out,
                                     maths.positions_per_sample(x), blocks_per_row,
                                     BLOCK=ELEMENTWISE_BLOCK)
    return out


class TritonPassesTorchMaths(TorchBackend):
    """The pass kernels, the maths as PyTorch ops (where the coefficient kernels do not apply)."""

    name = 'Triton passes + PyTorch maths'

    def statistics_pass(self, x: torch.Tensor) -> RowMoments:
        return RowMoments(*row_moments(x), None)

    apply_affine = staticmethod(apply_affine)
    grad_row_sums = staticmethod(grad_row_sums)
    grad_input = staticmethod(grad_input)


class Saved(NamedTuple):
    """What the backward needs besides x: all O(N*C), float32 except ``count``."""

    sample_mean: torch.Tensor  # (N, C) m
    sample_var: torch.Tensor  # (N, C) v
    channel_mean: torch.Tensor  # (C,) mu used by the batch stage
    channel_var: torch.Tensor  # (C,) var used by the batch stage
    count: Optional[torch.Tensor]  # () S0 of the (global) batch in training, else None


def _launch_shape(x: torch.Tensor, num_groups: int):
    n, c = x.shape[:2]
    block_n, block_k = triton.next_power_of_2(n), triton.next_power_of_2(c // num_groups)
    num_warps = 4 if block_n * block_k <= 2048 else 8
    return (num_groups,), dict(BLOCK_N=block_n, BLOCK_K=block_k, num_warps=num_warps)


def _momentum_arguments(momentum, placeholder: torch.Tensor):
    """``(momentum, momentum_ptr)`` for the forward kernel: a number, or a 0-d device tensor."""
    if isinstance(momentum, torch.Tensor):
        return 0.0, momentum.reshape(1)
    return float(momentum), placeholder


def _flags(params: Params):
    return dict(HAS_WEIGHT=params.weight is not None, HAS_BIAS=params.bias is not None,
                HAS_GROUP_WEIGHT=params.group_weight is not None,
                HAS_GROUP_BIAS=params.group_bias is not None)


def _pointers(params, placeholder: torch.Tensor):
    return [placeholder if p is None else p.detach() for p in params]


class TritonBackend:
    """The passes and the O(N*C) maths as Triton kernels; see the module doc."""

    name = 'Triton'
    grad_input = staticmethod(grad_input)

    def statistics_pass(self, x: torch.Tensor) -> Partials:
        return moment_partials(x)

    def local_sums(self, x: torch.Tensor, partials: Partials,
                   settings: Settings) -> torch.Tensor:
        """``[S0, S1, S2]`` of the local batch in float64 (:func:`.maths.local_batch_sums`)."""
        n, c = x.shape[:2]
        grid, launch = _launch_shape(x, settings.num_groups)
        sums = x.new_empty(2 * c + 1, dtype=torch.float64)
        kernels._batch_sums_kernel[grid](
            partials.first, partials.second, partials.num_segments, partials.segment_length,
            maths.positions_per_sample(x), sums, n, c, c // settings.num_groups, **launch)
        return sums

    def forward(self, x: torch.Tensor, partials: Partials, sums: Optional[torch.Tensor],
                params: Params, settings: Settings):
        """``(out, A, Saved)``, updating the running statistics when training."""
        n, c = x.shape[:2]
        grid, launch = _launch_shape(x, settings.num_groups)
        stats = (kernels.GIVEN if not settings.training else
                 kernels.STATS_OF_RULE[settings.estimate_rule] if settings.estimate
                 else kernels.BATCH)
        sample_mean, sample_var, coeff_a, coeff_c = x.new_empty(4, n, c, dtype=torch.float32)
        channel_mean, channel_var = x.new_empty(2, c, dtype=torch.float32)
        kernels._forward_kernel[grid](
            partials.first, partials.second, partials.num_segments, partials.segment_length,
            maths.positions_per_sample(x), partials.first if sums is None else sums,
            settings.running_mean, settings.running_var,
            *_momentum_arguments(settings.momentum, sample_mean),
            *_pointers(params, sample_mean), sample_mean, sample_var, channel_mean, channel_var,
            coeff_a, coeff_c, n, c, c // settings.num_groups, settings.eps, STATS=stats.value,
            MOMENTUM_FROM_POINTER=isinstance(settings.momentum, torch.Tensor), **_flags(params),
            **launch)
        count = None if sums is None else sums[0]
        saved = Saved(sample_mean, sample_var, channel_mean, channel_var, count)
        return apply_affine(x, coeff_a, coeff_c, sample_mean), coeff_a, saved

    def backward_coefficients(self, grad_out: torch.Tensor, x: torch.Tensor, params: Params,
                              saved: Saved, settings: Settings) -> BackwardCoefficients:
        """As :meth:`.TorchBackend.backward_coefficients`; parameter gradients in float32."""
        n, c = x.shape[:2]
        grid, launch = _launch_shape(x, settings.num_groups)
        partials = gradient_partials(grad_out, x, saved.sample_mean)
        slope, offset = x.new_empty(2, n, c, dtype=torch.float32)
        grad_statistics = x.new_empty(2, c, dtype=torch.float64)
        grads = [None if p is None else x.new_empty(p.shape, dtype=torch.float32)
                 for p in params]
        kernels._backward_kernel[grid](
            partials.first, partials.second, partials.num_segments,
            maths.positions_per_sample(x), saved.sample_mean, saved.sample_var,
            saved.channel_mean, saved.channel_var, *_pointers(params[:3], slope), slope, offset,
            grad_statistics[0], grad_statistics[1], *[slope if g is None else g for g in grads],
            n, c, c // settings.num_groups, settings.eps, **_flags(params), **launch)
        return BackwardCoefficients(maths.InputGradient(slope, offset), grads, grad_statistics)


TRITON = TritonBackend()
TRITON_PASSES_TORCH_MATHS = TritonPassesTorchMaths()
