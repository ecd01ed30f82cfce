"""BCN's passes over the activation as Triton kernels, for contiguous CUDA tensors.

The same four functions as :mod:`mmbcn.layers.torch_passes`, over x viewed as R = N*C rows of M
positions. Each kernel reads every input once and writes every output once, accumulating in
float32 whatever the input dtype:

* :func:`row_moments`: per-row mean and biased variance (Welford per lane, Chan's formula to
  combine lanes and, in PyTorch, row segments);
* :func:`apply_affine`: ``out = x * A + B``;
* :func:`grad_row_sums`: ``sum_s g (x - m)`` and ``sum_s g`` per row;
* :func:`grad_input`: ``dx = g * A + (x - m) * slope + offset``.

Rows are split into segments so that even few long rows (N*C = 256 rows of 200x272) keep every
multiprocessor busy. Set ``MMBCN_TRITON=0`` to use the PyTorch-ops passes instead.
"""

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

_REDUCE_BLOCK = 1024
_ELEMENTWISE_BLOCK = 1024
_PROGRAMS_PER_SM = 8


def supports(x: torch.Tensor) -> bool:
    """Whether these kernels apply to x: contiguous float16/bfloat16/float32 with positions."""
    return (os.environ.get('MMBCN_TRITON', '1') != '0' and x.is_contiguous() and x.dim() >= 3
            and x.dtype in (torch.float16, torch.bfloat16, torch.float32) and x.numel() > 0)


@triton.jit
def _welford_combine(mean_a, m2_a, count_a, mean_b, m2_b, count_b):
    count = count_a + count_b
    weight_b = tl.where(count > 0, count_b / tl.maximum(count, 1.0), 0.0)
    delta = mean_b - mean_a
    return mean_a + delta * weight_b, m2_a + m2_b + delta * delta * count_a * weight_b, count


@triton.jit
def _moments_kernel(x_ptr, mean_ptr, m2_ptr, positions, segment, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    seg = tl.program_id(1)
    num_segments = tl.num_programs(1)
    base = x_ptr + row.to(tl.int64) * positions
    start = seg * segment  # segment is a multiple of BLOCK
    mean = tl.zeros([BLOCK], tl.float32)
    m2 = tl.zeros([BLOCK], tl.float32)
    count = tl.zeros([BLOCK], tl.float32)
    offset = start
    while offset < start + segment:  # a while loop: Triton's CPU interpreter runs it too
        index = offset + tl.arange(0, BLOCK)
        mask = index < positions
        value = tl.load(base + index, mask=mask, other=0.0).to(tl.float32)
        new_count = count + mask.to(tl.float32)
        delta = value - mean
        mean += tl.where(mask, delta / tl.maximum(new_count, 1.0), 0.0)
        m2 += tl.where(mask, delta * (value - mean), 0.0)
        count = new_count
        offset += BLOCK
    mean, m2, count = tl.reduce((mean, m2, count), 0, _welford_combine)
    tl.store(mean_ptr + row * num_segments + seg, mean)
    tl.store(m2_ptr + row * num_segments + seg, m2)


@triton.jit
def _grad_sums_kernel(grad_ptr, x_ptr, mean_ptr, centered_ptr, sum_ptr, positions, segment,
                      BLOCK: tl.constexpr):
    row = tl.program_id(0)
    seg = tl.program_id(1)
    num_segments = tl.num_programs(1)
    offset_row = row.to(tl.int64) * positions
    start = seg * segment  # segment is a multiple of BLOCK
    row_mean = tl.load(mean_ptr + row)
    centered = tl.zeros([BLOCK], tl.float32)
    total = tl.zeros([BLOCK], tl.float32)
    offset = start
    while offset < start + segment:  # a while loop: Triton's CPU interpreter runs it too
        index = offset + tl.arange(0, BLOCK)
        mask = index < positions
        grad = tl.load(grad_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
        value = tl.load(x_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
        centered += grad * (value - row_mean)
        total += grad
        offset += BLOCK
    tl.store(centered_ptr + row * num_segments + seg, tl.sum(centered, 0))
    tl.store(sum_ptr + row * num_segments + seg, tl.sum(total, 0))


@triton.jit
def _affine_kernel(x_ptr, a_ptr, b_ptr, out_ptr, positions, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    index = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = index < positions
    offset_row = row.to(tl.int64) * positions
    value = tl.load(x_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
    out = value * tl.load(a_ptr + row) + tl.load(b_ptr + row)
    tl.store(out_ptr + offset_row + index, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _grad_input_kernel(grad_ptr, x_ptr, a_ptr, slope_ptr, mean_ptr, offset_ptr, out_ptr,
                       positions, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    index = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = index < positions
    offset_row = row.to(tl.int64) * positions
    grad = tl.load(grad_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
    value = tl.load(x_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
    centered = value - tl.load(mean_ptr + row)
    out = grad * tl.load(a_ptr + row) + centered * tl.load(slope_ptr + row)
    out += tl.load(offset_ptr + row)
    tl.store(out_ptr + offset_row + index, out.to(out_ptr.dtype.element_ty), mask=mask)


def _segments(rows: int, positions: int, device: torch.device):
    """(segment length, number of segments) splitting each row for about 8 programs per SM."""
    if device.type == 'cuda':
        processors = torch.cuda.get_device_properties(device).multi_processor_count
    else:  # Triton's interpreter (tests)
        processors = 1
    blocks = triton.cdiv(positions, _REDUCE_BLOCK)
    per_row = max(1, min(blocks, triton.cdiv(_PROGRAMS_PER_SM * processors, rows)))
    segment = triton.cdiv(blocks, per_row) * _REDUCE_BLOCK
    return segment, triton.cdiv(positions, segment)


def _rows(x: torch.Tensor):
    n, c = x.shape[:2]
    return n * c, x[0, 0].numel()


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
    rows, positions = _rows(x)
    segment, num_segments = _segments(rows, positions, x.device)
    means, m2s = x.new_empty(2, rows, num_segments, dtype=torch.float32)
    _moments_kernel[(rows, num_segments)](x.detach(), means, m2s, positions, segment,
                                          BLOCK=_REDUCE_BLOCK)
    return Partials(means, m2s, num_segments, segment)


def row_moments(x: torch.Tensor):
    """Per-(sample, channel) mean and biased variance, each (N, C) in float32."""
    rows, positions = _rows(x)
    means, m2s, num_segments, segment = moment_partials(x)
    counts = (positions - torch.arange(num_segments, device=x.device) * segment).clamp(
        max=segment).float()
    mean = (means * counts).sum(dim=1) / positions
    m2 = m2s.sum(dim=1) + ((means - mean[:, None]).square() * counts).sum(dim=1)
    n, c = x.shape[:2]
    return mean.reshape(n, c), (m2 / positions).reshape(n, c)


def apply_affine(x: torch.Tensor, coeff_a: torch.Tensor, coeff_b: torch.Tensor) -> torch.Tensor:
    """``x * A + B`` per (sample, channel), in x's dtype."""
    rows, positions = _rows(x)
    out = torch.empty_like(x)
    grid = (rows, triton.cdiv(positions, _ELEMENTWISE_BLOCK))
    _affine_kernel[grid](x.detach(), _per_row(coeff_a), _per_row(coeff_b), out, positions,
                         BLOCK=_ELEMENTWISE_BLOCK)
    return out


def gradient_partials(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor) -> Partials:
    """Each segment's ``sum grad * (x - mean)`` and ``sum grad`` (one pass over grad and x)."""
    rows, positions = _rows(x)
    segment, num_segments = _segments(rows, positions, x.device)
    centered, total = x.new_empty(2, rows, num_segments, dtype=torch.float32)
    _grad_sums_kernel[(rows, num_segments)](grad.contiguous(), x.detach(), _per_row(mean),
                                            centered, total, positions, segment,
                                            BLOCK=_REDUCE_BLOCK)
    return Partials(centered, total, num_segments, segment)


def grad_row_sums(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor):
    """``(sum_s grad * (x - mean), sum_s grad)`` per (sample, channel), in float32."""
    centered, total = gradient_partials(grad, x, mean)[:2]
    n, c = x.shape[:2]
    return centered.sum(dim=1).reshape(n, c), total.sum(dim=1).reshape(n, c)


def grad_input(grad: torch.Tensor, x: torch.Tensor, coeff_a: torch.Tensor, slope: torch.Tensor,
               mean: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``grad * A + (x - mean) * slope + offset`` per (sample, channel), in x's dtype."""
    rows, positions = _rows(x)
    grad = grad.contiguous()
    out = torch.empty_like(x)
    grid = (rows, triton.cdiv(positions, _ELEMENTWISE_BLOCK))
    _grad_input_kernel[grid](grad, x, _per_row(coeff_a), _per_row(slope), _per_row(mean),
                             _per_row(offset), out, positions, BLOCK=_ELEMENTWISE_BLOCK)
    return out
