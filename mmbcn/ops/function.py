"""``batch_channel_norm``: the autograd Function, the backend choice, both collectives.

The maths is in :mod:`.maths`. A call runs on one backend, chosen once (:func:`choose_backend`):
:class:`~.torch_backend.TorchBackend` (PyTorch ops, any device),
:class:`~.triton_backend.TritonBackend` (contiguous CUDA tensors) or
:class:`~.triton_backend.TritonPassesTorchMaths`. The distributed protocol is all here, between
backend calls; a backend only ever computes over the local batch:

* forward, training: the backend's local ``[S0, S1, S2]``, all-reduced over the process group
  when synchronizing (one collective: the global batch's statistics, correct for different
  batch or image sizes per process), then the backend's coefficients and output;
* backward, large-batch training: the backend's ``[dL/dmu, dL/dvar]``, all-reduced when
  synchronizing (every process's loss depends on the shared statistics), then
  :func:`.maths.add_batch_statistics_path`, then the backend's input-gradient pass;
* under activation checkpointing (:mod:`.recompute`): a first run records what it normalized
  with; the recompute replays it, with no collective and no buffer moved.
"""

import contextlib
import dataclasses
import functools
import inspect
import logging
import warnings
from typing import Optional

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from ..utils.deprecation import REMOVED_IN
from ..utils.feature_probes import triton_problem
from . import maths
from .maths import DEFAULT_ESTIMATE_RULE, Params, Settings, check_estimate_rule
from .recompute import ForwardRecord, ForwardRecords, Phase
from .torch_backend import TorchBackend

logger = logging.getLogger('mmbcn')
_TORCH = TorchBackend()
_logged_fallbacks = set()


def world_size_of(process_group=None) -> int:
    """Number of processes in ``process_group``; 1 when torch.distributed is not initialized."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


def all_reduce_sum(tensor: torch.Tensor, process_group=None) -> torch.Tensor:
    """``tensor`` summed over ``process_group`` (a new tensor; no autograd)."""
    reduced = tensor.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=process_group)
    return reduced


def _log_once(reason: str, level: int = logging.INFO) -> None:
    if reason not in _logged_fallbacks:
        _logged_fallbacks.add(reason)
        logger.log(level, 'mmbcn: BCN runs %s', reason)


def on_device_of(x: torch.Tensor):
    """A context in which x's device is the current one: kernels launch there, on its stream."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def choose_backend(x: torch.Tensor, settings: Settings):
    """The backend for this call: Triton kernels where they apply, else PyTorch ops."""
    if not x.is_cuda:
        return _TORCH
    problem = triton_problem()
    if problem is not None:
        _log_once(f'on PyTorch ops on CUDA: {problem}', logging.WARNING)
        return _TORCH
    from . import triton_backend

    if not triton_backend.supports(x):
        return _TORCH  # MMBCN_TRITON=0, a non-contiguous or float64 input: no message needed
    reason = triton_backend.maths_kernels_apply(x, settings)
    if reason is None:
        return triton_backend.TRITON
    _log_once(f'its O(N*C) maths as PyTorch ops (the Triton passes stay): {reason}')
    return triton_backend.TRITON_PASSES_TORCH_MATHS


def record_of_call(local_sums: torch.Tensor, sums: torch.Tensor,
                   settings: Settings) -> ForwardRecord:
    """What a training call just normalized with (:mod:`.recompute`): in micro-batch mode the
    estimates it moved and used, copied before the next call moves them."""
    estimates = None
    if settings.estimate:
        estimates = (settings.running_mean.clone(), settings.running_var.clone())
    return ForwardRecord(local_sums, sums, estimates)


def replay_settings(settings: Settings, record: ForwardRecord) -> Settings:
    """The settings under which a recompute computes what ``record``'s call computed, moving
    no buffer of the layer.

    Micro-batch mode: the recorded estimates as given statistics (the function of the eval
    form, which is the micro-batch function with no gradient through the statistics).
    Large-batch mode: the recorded global sums (the caller passes them) with gradients through
    the batch statistics, and scratch copies of the running statistics for the update to land
    on.
    """
    if settings.estimate:
        mean, var = record.estimates
        return dataclasses.replace(settings, running_mean=mean, running_var=var, training=False,
                                   phase=Phase.PLAIN)
    return dataclasses.replace(settings, running_mean=settings.running_mean.clone(),
                               running_var=settings.running_var.clone(), phase=Phase.PLAIN)


class BatchChannelNormFunction(torch.autograd.Function):
    """``BCN(x) = (x - m) * A + C`` with the analytic backward of :mod:`.maths`.

    Every backend call runs with x's device current (:func:`on_device_of`), so kernels launch on
    x's device and its current stream whatever device is current outside.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, group_weight, group_bias, settings: Settings):
        params = Params(weight, bias, group_weight, group_bias)
        backend = choose_backend(x, settings)
        with on_device_of(x):
            moments = backend.statistics_pass(x)
            sums = local_sums = None
            if settings.training:
                sums = local_sums = backend.local_sums(x, moments, settings)
                if settings.phase is Phase.REPLAY:
                    record = settings.records.take(local_sums)
                    settings, sums = replay_settings(settings, record), record.sums
                elif settings.synchronize:
                    sums = all_reduce_sum(sums, settings.process_group)
            out, coeff_a, saved = backend.forward(x, moments, sums, params, settings)
            if settings.phase is Phase.RECORD:
                settings.records.add(record_of_call(local_sums, sums, settings))
        ctx.save_for_backward(x, *params)
        ctx.backend, ctx.settings, ctx.coeff_a, ctx.saved = backend, settings, coeff_a, saved
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, *params = ctx.saved_tensors
        params, settings, saved, backend = Params(*params), ctx.settings, ctx.saved, ctx.backend
        with on_device_of(x):
            result = backend.backward_coefficients(grad_out, x, params, saved, settings)
            gradient = result.gradient
            if settings.large_batch_training:
                grad_statistics = result.grad_statistics
                if settings.synchronize:
                    grad_statistics = all_reduce_sum(grad_statistics, settings.process_group)
                gradient = maths.add_batch_statistics_path(
                    gradient, grad_statistics, saved.sample_mean, saved.channel_mean,
                    saved.count)
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = backend.grad_input(grad_out, x, ctx.coeff_a, gradient.slope,
                                            saved.sample_mean, gradient.offset)
        param_grads = [grad.to(param.dtype) if needed else None for grad, param, needed
                       in zip(result.param_grads, params, ctx.needs_input_grad[1:5], strict=True)]
        return (grad_x, *param_grads, None)


def _accepting_update_rate(function):
    """``function`` also accepting ``update_rate=``, the name of ``momentum`` in mmbcn 0.1, with
    a FutureWarning (until ``REMOVED_IN``); both: a TypeError."""
    name = function.__name__
    position = list(inspect.signature(function).parameters).index('momentum')

    @functools.wraps(function)
    def accepting_update_rate(*args, **kwargs):
        if 'update_rate' in kwargs:
            if 'momentum' in kwargs or len(args) > position:
                raise TypeError(f'{name}() got both momentum and update_rate, its old name; '
                                f'pass momentum only.')
            warnings.warn(f'{name}(update_rate=...) is now {name}(momentum=...), the name '
                          f'BatchNorm and the BCN layer use; update_rate= works until '
                          f'{REMOVED_IN}.', FutureWarning, stacklevel=2)
            kwargs['momentum'] = kwargs.pop('update_rate')
        return function(*args, **kwargs)

    return accepting_update_rate


@_accepting_update_rate
def batch_channel_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    group_weight: Optional[torch.Tensor],
    group_bias: Optional[torch.Tensor],
    num_groups: int,
    training: bool,
    estimate: bool,
    momentum: float,
    eps: float,
    process_group=None,
    synchronize: bool = False,
    estimate_rule: str = DEFAULT_ESTIMATE_RULE,
    phase: Phase = Phase.PLAIN,
    records: Optional[ForwardRecords] = None,
) -> torch.Tensor:
    """Batch-Channel Normalization of x (N, C, *); the maths is stated in :mod:`.maths`.

    Statistics are computed in float32 (float64 for the O(N*C) maths) whatever the input dtype
    and autocast state; the output has x's dtype and memory layout.

    Args:
        x: (N, C, *) input.
        running_mean, running_var: (C,) buffers, updated in place when training.
        weight, bias: (C,) batch-stage affine, or None.
        group_weight, group_bias: (G,) channel-stage affine, or None.
        num_groups: G, which must divide C.
        training: use and update batch statistics.
        estimate: micro-batch mode (normalize with the moved estimates, no gradient through
            them); else large-batch mode (batch statistics with gradients).
        momentum: r, the weight of the new batch statistics in the running statistics (the
            layer's ``momentum``; :mod:`.maths`, step 2): a number, or a 0-d tensor. Also
            accepted as ``update_rate=``, its old name, with a FutureWarning, until mmbcn 0.2.
        eps: added to both variances inside the square root.
        process_group: the group whose global batch gives the statistics.
        synchronize: all-reduce the batch statistics over ``process_group``.
        estimate_rule: ``'authors'`` or ``'batch_variance'`` (:func:`.maths.check_estimate_rule`;
            used in micro-batch mode only).
        phase: what the call is to activation checkpointing (:mod:`.recompute`): ``RECORD``
            adds a record to ``records``, ``REPLAY`` takes one from it and moves nothing.
        records: the layer's :class:`~.recompute.ForwardRecords` (needed unless ``PLAIN``).
    """
    if phase is not Phase.PLAIN and records is None:
        raise ValueError(f'batch_channel_norm: phase {phase.name} needs the layer\'s records.')
    settings = Settings(running_mean, running_var, num_groups, training, estimate, momentum, eps,
                        process_group, synchronize, check_estimate_rule(estimate_rule), phase,
                        records)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return BatchChannelNormFunction.apply(x, weight, bias, group_weight, group_bias,
                                              settings)
