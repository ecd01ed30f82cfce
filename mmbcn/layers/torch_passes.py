"""The passes over the activation that BCN needs, written with PyTorch ops (any device).

Each function touches x once, or once per term, and allocates at most one activation-sized
tensor: on CPU a freshly allocated large tensor costs more than the arithmetic (the kernel maps
and zero-fills new pages on first touch), so the reductions avoid activation-sized temporaries:
the forward allocates its output (and a few MiB of recycled scratch), the backward the input
gradient.
:mod:`mmbcn.layers.triton_passes` holds the same four functions as CUDA kernels.

All per-row values are (N, C); the statistics dtype is float32, or float64 for float64 inputs.
"""

from typing import Tuple

import torch

# Low-precision activations are normalized with statistics computed in float32.
LOW_PRECISION = (torch.float16, torch.bfloat16)
# Bytes of activation per group-norm call when computing moments on CPU (measured on a 2-core
# machine: 4 MiB blocks take ~7 ms for a 106 MiB activation, one whole-tensor call ~43 ms).
_MOMENTS_BLOCK_BYTES = 4 << 20


def statistics_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)


def _sample_rows(x: torch.Tensor):
    """x as a list of (1, channels, *) views that ATen's batch-norm kernels reduce per channel.

    Contiguous x is one view with a channel per (sample, channel) row; channels_last x is one
    view per sample (its rows are strided).
    """
    n, c = x.shape[:2]
    if _is_channels_last(x):
        return [x[i:i + 1] for i in range(n)]
    return [x.reshape(1, n * c, -1)]


def _centered_row_sums(grad, x, mean):
    """``(sum_s grad * (x - mean), sum_s grad)`` per row of the (1, rows, *) views, as (rows,).

    ATen's batch-norm backward with the rows as channels, ``mean`` as its saved mean and an
    inverse std of 1 computes exactly these as its weight and bias gradients, in one pass that
    allocates nothing activation-sized when the input gradient is not asked for.
    """
    ones = torch.ones_like(mean)  # the inverse std, and a weight (CUDA's kernel needs one)
    _, centered_sum, total = torch.ops.aten.native_batch_norm_backward(
        grad, x, ones, None, None, mean, ones, True, 0.0, [False, True, True])
    return centered_sum, total


def _moment_blocks(x: torch.Tensor):
    """x as (1, rows, *) blocks for the group-norm kernel: per sample when channels_last, else
    runs of (sample, channel) rows of about ``_MOMENTS_BLOCK_BYTES`` on CPU (one block on GPU)."""
    n, c = x.shape[:2]
    if _is_channels_last(x):
        return [x[i:i + 1] for i in range(n)]
    rows = x.reshape(1, n * c, -1)
    if x.device.type != 'cpu':
        return [rows]
    per_block = max(1, _MOMENTS_BLOCK_BYTES // max(1, rows.shape[2] * x.element_size()))
    return list(rows.split(per_block, dim=1))


def row_moments(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and biased variance of x (N, C, *) over its positions.

    ATen's group-norm kernel with one channel per group and eps = 0 returns the mean and
    ``rstd = var^-1/2`` of each (sample, channel) row from a stable (Welford), vectorized
    reduction; ``var = rstd^-2`` (0 for a constant row, where rstd is inf). Its normalized output
    is scratch, so on CPU the rows go through it a few MiB at a time: blocks that small are
    recycled by the allocator, where one activation-sized scratch would be mapped afresh.
    """
    n, c = x.shape[:2]
    dtype = statistics_dtype(x)
    data = x.detach()
    if data.dtype != dtype:
        data = data.to(dtype)
    if data.numel() == 0:
        empty = data.new_zeros(n, c)
        return empty, empty.clone()
    means, rstds = [], []
    for block in _moment_blocks(data):
        rows = block.shape[1]
        _, mean, rstd = torch.ops.aten.native_group_norm(
            block, None, None, 1, rows, block[0, 0].numel(), rows, 0.0)
        means.append(mean.reshape(-1))
        rstds.append(rstd.reshape(-1))
    return torch.cat(means).reshape(n, c), torch.cat(rstds).reshape(n, c).pow(-2)


def grad_row_sums(grad: torch.Tensor, x: torch.Tensor,
                  mean: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(sum_s grad * (x - mean), sum_s grad)`` per (sample, channel): one pass, no temporary."""
    n, c = x.shape[:2]
    dtype = mean.dtype
    if x.dtype != dtype:
        x, grad = x.to(dtype), grad.to(dtype)
    layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    grad = grad.contiguous(memory_format=layout)
    views = _sample_rows(x)
    sums = [_centered_row_sums(g, rows, row_mean) for g, rows, row_mean in zip(
        _sample_rows(grad), views, mean.reshape(len(views), -1))]
    return (torch.cat([d for d, _ in sums]).reshape(n, c),
            torch.cat([t for _, t in sums]).reshape(n, c))


def _broadcast(x: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    return per_row.reshape(x.shape[:2] + (1,) * (x.dim() - 2))


def _row_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                center: torch.Tensor) -> torch.Tensor:
    """``(x - center) * scale + shift`` per (sample, channel) row of contiguous x, in one pass.

    ATen's inference batch norm with the rows as channels, a unit variance and eps = 0 computes
    exactly this (as ``x * scale + (shift - center * scale)``), reading x once and writing a new
    tensor once, where the broadcast ops ``(x - c) * s + t`` make three passes.
    """
    rows = x.reshape(1, x.shape[0] * x.shape[1], -1)
    flat_scale = scale.reshape(-1)
    out, _, _ = torch.ops.aten.native_batch_norm(
        rows, flat_scale, shift.reshape(-1), center.reshape(-1), torch.ones_like(flat_scale),
        False, 0.0, 0.0)
    # x's shape over the same memory, but not as a view of ``out``: autograd forbids in-place
    # changes (an inplace ReLU after BCN) to views created inside a custom Function.
    return out.new_empty(0).set_(out.untyped_storage(), 0, x.shape, x.stride())


def _rows_are_contiguous(x: torch.Tensor) -> bool:
    return x.is_contiguous() and x.numel() > 0


def apply_affine(x: torch.Tensor, coeff_a: torch.Tensor, coeff_b: torch.Tensor) -> torch.Tensor:
    """``x * A[n, c] + B[n, c]`` in x's dtype and layout (arithmetic in A's dtype)."""
    work = x if x.dtype == coeff_a.dtype else x.to(coeff_a.dtype)
    if _rows_are_contiguous(work):
        out = _row_affine(work, coeff_a, coeff_b, torch.zeros_like(coeff_a))
    else:
        out = torch.mul(work, _broadcast(x, coeff_a)).add_(_broadcast(x, coeff_b))
    return out.to(x.dtype)


def grad_input(grad: torch.Tensor, x: torch.Tensor, coeff_a: torch.Tensor, slope: torch.Tensor,
               mean: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``grad * A + (x - mean) * slope + offset`` per (sample, channel): BCN's input gradient.

    Contiguous x: two passes, :func:`_row_affine` then an in-place ``addcmul_``. It folds
    ``-mean * slope`` into the offset, so when |mean| >> std the term ``(x - mean) * slope``
    keeps the relative precision ``eps_fp32 * |mean| / std``, as the forward ``x * A + B`` does.
    channels_last x: x is centred first (exact where x is near its mean), in four passes.
    """
    dtype = coeff_a.dtype
    work = x.to(dtype)
    if _rows_are_contiguous(work):
        out = _row_affine(work, slope, offset, mean)
        return out.addcmul_(grad.to(dtype), _broadcast(x, coeff_a)).to(x.dtype)
    out = torch.sub(work, _broadcast(x, mean)).mul_(_broadcast(x, slope))
    out.addcmul_(grad.to(dtype), _broadcast(x, coeff_a)).add_(_broadcast(x, offset))
    return out.to(x.dtype)
