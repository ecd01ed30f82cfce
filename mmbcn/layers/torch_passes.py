"""The passes over the activation that BCN needs, written with PyTorch ops (any device).

Each function touches x once, or once per term, and allocates at most one activation-sized
tensor: on CPU a freshly allocated large tensor costs more than the arithmetic (the kernel maps
and zero-fills new pages on first touch), so the reductions avoid temporaries.
:mod:`mmbcn.layers.triton_passes` holds the same four functions as CUDA kernels.

All per-row values are (N, C); the statistics dtype is float32, or float64 for float64 inputs.
"""

import math
from typing import Tuple

import torch

# Low-precision activations are normalized with statistics computed in float32.
LOW_PRECISION = (torch.float16, torch.bfloat16)
# Bytes of activation handed to one group-norm call when computing moments on CPU: its output is
# scratch, and a block this small is reused by the allocator instead of being mapped afresh.
_CPU_MOMENTS_BLOCK_BYTES = 4 << 20


def statistics_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)


def _sample_blocks(x: torch.Tensor):
    """x split into (1, C, *) samples when channels_last, else (1, rows, M) row blocks."""
    n, c = x.shape[:2]
    if _is_channels_last(x):
        return [x[i:i + 1] for i in range(n)]
    rows = x.reshape(1, n * c, -1)
    if x.device.type != 'cpu':
        return [rows]
    per_block = max(1, _CPU_MOMENTS_BLOCK_BYTES // max(1, rows.shape[2] * x.element_size()))
    return list(rows.split(per_block, dim=1))


def row_moments(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and biased variance of x (N, C, *) over its positions.

    ATen's group-norm kernel with one channel per group and eps = 0 returns the mean and
    ``rstd = var^-1/2`` of each (sample, channel) row from a stable, vectorized one-pass
    reduction (``var = rstd^-2``, 0 for a constant row where rstd is inf). Its normalized output
    is thrown away, so on CPU the rows go through it a few MiB at a time.
    """
    n, c = x.shape[:2]
    dtype = statistics_dtype(x)
    rows = x.detach()
    if rows.dtype in LOW_PRECISION:
        rows = rows.to(dtype)
    if rows.numel() == 0:
        empty = rows.new_zeros(n, c, dtype=dtype)
        return empty, empty.clone()
    means, rstds = [], []
    for block in _sample_blocks(rows):
        channels = block.shape[1]
        _, mean, rstd = torch.ops.aten.native_group_norm(
            block, None, None, 1, channels, math.prod(block.shape[2:]), channels, 0.0)
        means.append(mean.reshape(-1))
        rstds.append(rstd.reshape(-1))
    mean = torch.cat(means).reshape(n, c)
    return mean, torch.cat(rstds).reshape(n, c).pow(-2)


def grad_row_sums(grad: torch.Tensor, x: torch.Tensor,
                  mean: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(sum_s grad * (x - mean), sum_s grad)`` per (sample, channel), in one pass, no temporary.

    Read off ATen's batch-norm backward with rows as channels, the given means as its saved mean
    and an inverse std of 1, asking only for its weight and bias gradients.
    """
    n, c = x.shape[:2]
    dtype = mean.dtype
    if x.dtype != dtype:
        x, grad = x.to(dtype), grad.to(dtype)
    grad = grad.contiguous(memory_format=torch.channels_last) if _is_channels_last(x) \
        else grad.contiguous()
    if _is_channels_last(x):
        pairs = [(grad[i:i + 1], x[i:i + 1], mean[i]) for i in range(n)]
    else:
        pairs = [(grad.reshape(1, n * c, -1), x.reshape(1, n * c, -1), mean.reshape(-1))]
    centered_sums, sums = [], []
    for g, rows, row_mean in pairs:
        ones = torch.ones_like(row_mean)
        _, centered_sum, total = torch.ops.aten.native_batch_norm_backward(
            g, rows, None, None, None, row_mean, ones, True, 0.0, [False, True, True])
        centered_sums.append(centered_sum)
        sums.append(total)
    return torch.cat(centered_sums).reshape(n, c), torch.cat(sums).reshape(n, c)


def _broadcast(x: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    return per_row.reshape(x.shape[:2] + (1,) * (x.dim() - 2))


def apply_affine(x: torch.Tensor, coeff_a: torch.Tensor, coeff_b: torch.Tensor) -> torch.Tensor:
    """``x * A[n, c] + B[n, c]`` in x's dtype and memory layout (statistics dtype arithmetic)."""
    work = x if x.dtype == coeff_a.dtype else x.to(coeff_a.dtype)
    out = torch.mul(work, _broadcast(x, coeff_a)).add_(_broadcast(x, coeff_b))
    return out.to(x.dtype)


def grad_input(grad: torch.Tensor, x: torch.Tensor, coeff_a: torch.Tensor, slope: torch.Tensor,
               mean: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``grad * A + (x - mean) * slope + offset`` per (sample, channel): BCN's input gradient.

    x is centred before scaling (rather than folding ``-mean * slope`` into the offset) so that
    the gradient keeps its precision when |mean| >> std.
    """
    dtype = coeff_a.dtype
    out = torch.sub(x.to(dtype), _broadcast(x, mean)).mul_(_broadcast(x, slope))
    out.addcmul_(grad.to(dtype), _broadcast(x, coeff_a)).add_(_broadcast(x, offset))
    return out.to(x.dtype)
