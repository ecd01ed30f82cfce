"""BCN on PyTorch ops (any device): the passes over the activation and :mod:`.maths` as ops.

The passes: each touches x once, or once per term, and allocates at most one activation-sized
tensor: on CPU a freshly allocated large tensor costs more than the arithmetic (the kernel maps
and zero-fills new pages on first touch), so the reductions avoid activation-sized temporaries.
For contiguous x the forward allocates one tensor: :func:`standardized_rows` writes the
standardized rows while it computes the moments, and :func:`affine_over_standardized` turns them
into the output in place. The backward allocates the input gradient.

:class:`TorchBackend` puts the passes and the maths of :mod:`.maths` together for
:mod:`.function`; :mod:`.triton_backend` has the same methods on Triton kernels.
All per-row values are (N, C); the statistics dtype is float32, or float64 for float64 inputs.
"""

from typing import NamedTuple, Optional, Tuple

import torch

from ..utils.feature_probes import is_compiling
from . import maths
from .maths import Params, Settings


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


class StandardizedRows(NamedTuple):
    """x's (sample, channel) rows standardized, and their moments."""

    values: torch.Tensor  # x's shape, (x - mean) * rstd per row; NaN on constant rows
    mean: torch.Tensor  # (N, C)
    var: torch.Tensor  # (N, C) biased
    rstd: torch.Tensor  # (N, C) var^-1/2, inf on constant rows


def _statistics_data(x: torch.Tensor) -> torch.Tensor:
    data = x.detach()
    dtype = statistics_dtype(x)
    return data if data.dtype == dtype else data.to(dtype)


def _group_norm_rows(x: torch.Tensor, rows: int):
    """``(standardized, mean, rstd)`` of x taken as ``rows`` contiguous rows.

    ATen's group norm with one channel per group and eps = 0: a stable (Welford), vectorized
    reduction. Its N, C, HxW arguments give the layout (here 1, rows, x.numel() / rows), as
    ``F.group_norm`` passes them for any (N, C, *) input, so the standardized output comes in x's
    own shape: not a view, which an in-place op after BCN could not modify.
    """
    return torch.ops.aten.native_group_norm(x, None, None, 1, rows, x.numel() // rows, rows, 0.0)


def standardized_rows(x: torch.Tensor) -> StandardizedRows:
    """Moments of the (sample, channel) rows of contiguous, non-empty x, and the rows standardized.

    One pass over x, writing one activation-sized tensor in the statistics dtype and in x's shape
    (the memory :func:`affine_over_standardized` then turns into the output). ``var = rstd^-2``,
    which is 0 for a constant row.
    """
    n, c = x.shape[:2]
    values, mean, rstd = _group_norm_rows(_statistics_data(x), n * c)
    rstd = rstd.reshape(n, c)
    return StandardizedRows(values, mean.reshape(n, c), rstd.pow(-2), rstd)


def row_moments(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and biased variance of x (N, C, *) over its positions.

    As :func:`standardized_rows`, with the standardized values as scratch (per sample when x is
    channels_last, whose rows are strided).
    """
    n, c = x.shape[:2]
    data = _statistics_data(x)
    if data.numel() == 0:
        empty = data.new_zeros(n, c)
        return empty, empty.clone()
    means, rstds = [], []
    for rows in _sample_rows(data):
        # ATen's channels_last group norm sums x and x^2 in one pass, which cancels when
        # |mean| >> std (measured: errors of order 1 at mean 1e3, std 1e-2); its contiguous
        # kernel is Welford's. So strided rows are copied, one sample at a time.
        _, mean, rstd = _group_norm_rows(rows.contiguous(), rows.shape[1])
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
        _sample_rows(grad), views, mean.reshape(len(views), -1), strict=True)]
    return (torch.cat([d for d, _ in sums]).reshape(n, c),
            torch.cat([t for _, t in sums]).reshape(n, c))


def _broadcast(x: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    return per_row.reshape(x.shape[:2] + (1,) * (x.dim() - 2))


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """Contiguous x (N, C, *) as (1, N * C, M): one ATen 'channel' per (sample, channel) row."""
    return x.view(1, x.shape[0] * x.shape[1], -1)


def _row_affine(rows: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                center: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = (rows - center) * scale + shift`` per row of (1, R, M) rows, in one pass.

    ATen's inference batch norm with a unit variance and eps = 0 computes exactly this (as
    ``rows * scale + (shift - center * scale)``), element by element, so ``out`` may be ``rows``
    itself: in place it is one pass where ``mul_`` then ``add_`` make two.
    """
    if is_compiling():  # Dynamo graphs get the plain formulation (torch 2.1 cannot lower .out)
        per_row = (1, -1, 1)
        return out.copy_((rows - center.reshape(per_row)) * scale.reshape(per_row)
                         + shift.reshape(per_row))
    flat_scale = scale.reshape(-1)
    unused = rows.new_empty(0)  # the batch statistics it would save in training
    torch.ops.aten.native_batch_norm.out(
        rows, flat_scale, shift.reshape(-1), center.reshape(-1), torch.ones_like(flat_scale),
        False, 0.0, 0.0, out=out, save_mean=unused, save_invstd=unused.clone())
    return out


def affine_over_standardized(x: torch.Tensor, standardized: StandardizedRows,
                             coeff_a: torch.Tensor, coeff_c: torch.Tensor) -> torch.Tensor:
    """``(x - m) * A + C`` written in place over x's standardized rows z = (x - m) * rstd.

    ``(x - m) * A + C = z * (A / rstd) + C``: one in-place pass, no new activation-sized
    tensor. Constant rows, whose z is NaN (0 * inf), are C.
    """
    scale = coeff_a / standardized.rstd
    if is_compiling():  # Dynamo: out of place and without a data-dependent branch
        constant = torch.isinf(standardized.rstd)
        out = standardized.values * _broadcast(x, scale) + _broadcast(x, coeff_c)
        return torch.where(_broadcast(x, constant), _broadcast(x, coeff_c), out).to(x.dtype)
    rows = _as_rows(standardized.values)
    _row_affine(rows, scale, coeff_c, torch.zeros_like(coeff_c), out=rows)
    constant = torch.isinf(standardized.rstd).reshape(-1)
    if constant.any():
        rows[0, constant] = coeff_c.reshape(-1, 1)[constant]
    return standardized.values.to(x.dtype)


def rows_are_contiguous(x: torch.Tensor) -> bool:
    """Whether x is non-empty and its (sample, channel) rows lie one after another."""
    return x.is_contiguous() and x.numel() > 0


def apply_affine(x: torch.Tensor, coeff_a: torch.Tensor, coeff_c: torch.Tensor,
                 mean: torch.Tensor) -> torch.Tensor:
    """``(x - mean) * A + C`` per (sample, channel), in x's dtype and layout (A's dtype inside).

    Strided x is centred first; contiguous x goes through :func:`_row_affine`, which folds the
    centre into the shift (the forward of contiguous x uses :func:`affine_over_standardized`).
    """
    work = x if x.dtype == coeff_a.dtype else x.to(coeff_a.dtype)
    if rows_are_contiguous(work):
        out = torch.empty_like(work)
        _row_affine(_as_rows(work), coeff_a, coeff_c, mean, _as_rows(out))
    else:
        out = torch.sub(work, _broadcast(x, mean)).mul_(_broadcast(x, coeff_a))
        out.add_(_broadcast(x, coeff_c))
    return out.to(x.dtype)


def grad_input(grad: torch.Tensor, x: torch.Tensor, coeff_a: torch.Tensor, slope: torch.Tensor,
               mean: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """``grad * A + (x - mean) * slope + offset`` per (sample, channel): BCN's input gradient.

    Contiguous x: two passes, :func:`_row_affine` then an in-place ``addcmul_``. It folds
    ``-mean * slope`` into the offset, so when |mean| >> std the term ``(x - mean) * slope``
    keeps the relative precision ``eps_fp32 * |mean| / std`` (the forward, written over the
    standardized rows, does better).
    channels_last x: x is centred first (exact where x is near its mean), in four passes.
    """
    dtype = coeff_a.dtype
    work = x.to(dtype)
    if rows_are_contiguous(work):
        out = torch.empty_like(work)
        _row_affine(_as_rows(work), slope, offset, mean, _as_rows(out))
        return out.addcmul_(grad.to(dtype), _broadcast(x, coeff_a)).to(x.dtype)
    out = torch.sub(work, _broadcast(x, mean)).mul_(_broadcast(x, slope))
    out.addcmul_(grad.to(dtype), _broadcast(x, coeff_a)).add_(_broadcast(x, offset))
    return out.to(x.dtype)


class RowMoments(NamedTuple):
    """The statistics pass's result: per-row moments, and x standardized when it was written."""

    mean: torch.Tensor  # (N, C)
    var: torch.Tensor  # (N, C) biased
    standardized: Optional[StandardizedRows]


class Saved(NamedTuple):
    """What the backward needs besides x and the parameters: all O(N*C)."""

    sample_mean: torch.Tensor  # (N, C) m
    channel_mean: torch.Tensor  # (C,) mu used by the batch stage
    count: Optional[torch.Tensor]  # () S0 in training, else None
    context: maths.CoefficientContext


class BackwardCoefficients(NamedTuple):
    """The input gradient's slope and offset, the parameter gradients and [dL/dmu, dL/dvar]."""

    gradient: maths.InputGradient
    param_grads: list  # in the order of Params, None where the parameter is absent
    grad_statistics: torch.Tensor  # (2, C) float64


class TorchBackend:
    """The passes above and :mod:`.maths` as PyTorch ops: the reference backend, any device.

    The methods :mod:`.function` calls, in order: :meth:`statistics_pass`, (training)
    :meth:`local_sums`, :meth:`forward`; backward: :meth:`backward_coefficients`,
    :meth:`grad_input`. The passes are methods so that a subclass can swap them (Triton passes
    with these maths, :class:`mmbcn.ops.triton_backend.TritonPassesTorchMaths`).
    """

    name = 'PyTorch ops'

    def statistics_pass(self, x: torch.Tensor) -> RowMoments:
        """Per-row moments; contiguous x is also written standardized (the output's memory)."""
        if rows_are_contiguous(x):
            standardized = standardized_rows(x)
            return RowMoments(standardized.mean, standardized.var, standardized)
        return RowMoments(*self.row_moments(x), None)

    row_moments = staticmethod(row_moments)
    apply_affine = staticmethod(apply_affine)
    grad_row_sums = staticmethod(grad_row_sums)
    grad_input = staticmethod(grad_input)

    def local_sums(self, x: torch.Tensor, moments: RowMoments,
                   settings: Settings) -> torch.Tensor:
        """``[S0, S1, S2]`` of the local batch (:func:`.maths.local_batch_sums`)."""
        return maths.local_batch_sums(moments.mean, moments.var, maths.positions_per_sample(x))

    def forward(self, x: torch.Tensor, moments: RowMoments, sums: Optional[torch.Tensor],
                params: Params, settings: Settings):
        """``(out, A, Saved)`` from the moments and, in training, the (global) batch sums.

        Updates the running statistics when training (:func:`.maths.training_statistics`).
        """
        dtype = moments.mean.dtype
        statistics = (maths.training_statistics(sums, settings, dtype) if settings.training
                      else maths.eval_statistics(settings, dtype))
        coeff_a, coeff_c, context = maths.coefficients(moments.mean, moments.var, statistics,
                                                       params, settings.num_groups, settings.eps)
        if moments.standardized is not None:
            out = affine_over_standardized(x, moments.standardized, coeff_a, coeff_c)
        else:
            out = self.apply_affine(x, coeff_a, coeff_c, moments.mean)
        return out, coeff_a, Saved(moments.mean, statistics.mean, statistics.count, context)

    def backward_coefficients(self, grad_out: torch.Tensor, x: torch.Tensor, params: Params,
                              saved: Saved, settings: Settings) -> BackwardCoefficients:
        """Step 4 of :mod:`.maths` but the batch-statistics path (the Function adds it)."""
        centered_sum, grad_sum = self.grad_row_sums(grad_out, x, saved.sample_mean)
        grad_b = grad_sum.to(maths.FLOAT64)
        sample_mean64 = saved.context.sample_mean.reshape(grad_b.shape)
        grad_a = torch.addcmul(centered_sum.to(maths.FLOAT64), sample_mean64, grad_b)
        grads = maths.coefficients_backward(saved.context, grad_a, grad_b,
                                            params.bias is not None,
                                            params.group_bias is not None)
        gradient = maths.input_gradient_coefficients(
            grads.sample_mean, grads.sample_var, maths.positions_per_sample(x),
            saved.sample_mean.dtype)
        return BackwardCoefficients(
            gradient, [grads.weight, grads.bias, grads.group_weight, grads.group_bias],
            torch.stack([grads.channel_mean, grads.channel_var]))
