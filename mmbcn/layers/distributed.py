"""Process-group helpers for layers that synchronize statistics across processes."""

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_autograd


def world_size_of(process_group=None) -> int:
    """Number of processes in ``process_group``; 1 when torch.distributed is not initialized."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


def all_reduce_sum(tensor: torch.Tensor, process_group=None) -> torch.Tensor:
    """Sum ``tensor`` over ``process_group`` and return the result (the input is left untouched).

    When ``tensor`` requires grad, the reduction is differentiable: the gradient of the sum is
    itself summed over the processes, which is what a statistic of the global batch needs
    (every process's loss depends on every process's samples through it).
    """
    if tensor.requires_grad:
        return dist_autograd.all_reduce(tensor, op=dist.ReduceOp.SUM, group=process_group)
    reduced = tensor.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=process_group)
    return reduced
