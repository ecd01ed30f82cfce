"""The batch stage's statistics: batch moments from per-sample moments; the running estimates."""

from typing import NamedTuple

import torch

from .distributed import all_reduce_sum


class BatchMoments(NamedTuple):
    """Per-channel statistics of a (possibly global) batch.

    Attributes:
        mean: (C,) batch mean.
        var: (C,) biased batch variance.
        count: () number of values per channel, ``N * M`` summed over the processes.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor


def batch_moments(
    sample_mean: torch.Tensor,
    sample_var: torch.Tensor,
    positions_per_sample: int,
    process_group=None,
    synchronize: bool = False,
) -> BatchMoments:
    """Batch mean and biased variance per channel, over the local or the global batch.

    With ``synchronize`` the sums ``S0 = sum_n M``, ``S1 = sum_n M * m`` and
    ``S2 = sum_n M * (v + m^2)`` are all-reduced over ``process_group`` (one collective), so
    processes holding different numbers of samples, or images of different sizes, get the
    statistics of the concatenated batch: ``mean = S1 / S0``, ``var = S2 / S0 - mean^2`` (law of
    total variance). The sums are formed in float64 so that the difference does not cancel
    catastrophically when |mean| >> std.

    Args:
        sample_mean: (N, C) per-sample channel means.
        sample_var: (N, C) per-sample biased channel variances.
        positions_per_sample: M, the number of spatial positions of each sample.
        process_group: the group to reduce over (None: the default group).
        synchronize: whether to all-reduce over ``process_group``.
    """
    mean64 = sample_mean.double()
    second_moment64 = sample_var.double() + mean64.square()
    count = mean64.new_full((1,), float(sample_mean.shape[0] * positions_per_sample))
    sums = torch.cat([
        count,
        mean64.sum(0) * positions_per_sample,
        second_moment64.sum(0) * positions_per_sample,
    ])
    if synchronize:
        sums = all_reduce_sum(sums, process_group)
    num_channels = sample_mean.shape[1]
    total = sums[0]
    mean = sums[1:1 + num_channels] / total
    var = (sums[1 + num_channels:] / total - mean.square()).clamp_min(0)
    return BatchMoments(mean.to(sample_mean.dtype), var.to(sample_mean.dtype), total)


@torch.no_grad()
def training_statistics(sample_mean, sample_var, positions_per_sample, running_mean, running_var,
                        estimate, update_rate, process_group=None,
                        synchronize=False) -> BatchMoments:
    """The (mean, var) the batch stage normalizes with in training; updates the buffers in place.

    * large-batch mode (``estimate=False``): the batch moments; the buffers move as BatchNorm's,
      ``running = (1 - r) * running + r * stat`` with the unbiased variance
      ``var * count / (count - 1)``.
    * micro-batch mode: the estimates first move towards the batch moments,
      ``running += r * (batch - running)`` (biased variance), and are then returned (as copies:
      the buffers change in place at the next step, possibly before this step's backward).
    """
    batch = batch_moments(sample_mean, sample_var, positions_per_sample, process_group,
                          synchronize)
    if estimate:
        running_mean.add_(update_rate * (batch.mean.to(running_mean) - running_mean))
        running_var.add_(update_rate * (batch.var.to(running_var) - running_var))
        dtype = sample_mean.dtype
        return BatchMoments(running_mean.to(dtype, copy=True), running_var.to(dtype, copy=True),
                            batch.count)
    unbiased_var = batch.var * (batch.count / (batch.count - 1)).to(batch.var)
    running_mean.mul_(1 - update_rate).add_(update_rate * batch.mean.to(running_mean))
    running_var.mul_(1 - update_rate).add_(update_rate * unbiased_var.to(running_var))
    return batch
