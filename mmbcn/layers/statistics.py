"""The batch stage's statistics: batch moments from per-sample moments; the running estimates.

The micro-batch estimates (``estimate=True``) move at the update rate r, under no gradient, with
``mu_old``, ``var_old`` the current estimates and mu_b, var_b the (global) batch mean and biased
variance::

    mu  = (1 - r) mu_old  + r mu_b
    var = (1 - r) var_old + r v

and the batch stage then normalizes with the updated (mu, var). v, the variance the estimate
moves towards, is chosen by the estimate rule:

* ``'authors'`` (default): ``v = mean over the batch of (x - mu_old)^2``, which is
  ``var_b + (mu_b - mu_old)^2``: the batch's spread around the *previous* estimate, as the
  authors' released ``EstBN`` (github.com/joe-siyuan-qiao/Batch-Channel-Normalization). It
  counts how far micro-batch means wander around the population mean, so ``var`` estimates the
  population variance even with one image, or one value per channel (1x1 maps), per
  micro-batch.
* ``'batch_variance'``: ``v = var_b``, the variance inside one micro-batch (mmbcn's default before
  this release). Not the authors' rule: it under-estimates the population variance
  when micro-batch means differ (0.8x at one image per GPU in a float64 simulation), and is 0
  with one value per channel. Kept for comparison.
"""

from typing import NamedTuple

import torch

from .distributed import all_reduce_sum

ESTIMATE_RULES = ('authors', 'batch_variance')


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
    """Batch mean and biased variance per channel (float64), over the local or the global batch.

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
    return BatchMoments(mean, var, total)


def estimate_target_variance(batch: BatchMoments, previous_mean: torch.Tensor,
                             rule: str) -> torch.Tensor:
    """v, the variance the micro-batch estimate moves towards (float64; see the module doc).

    From the batch moments alone (for the global batch, from the same all-reduced sums): the
    authors' ``mean (x - mu_old)^2`` is ``var_b + (mu_b - mu_old)^2``.
    """
    if rule == 'authors':
        return batch.var + (batch.mean - previous_mean.double()).square()
    if rule == 'batch_variance':
        return batch.var
    raise ValueError(f'BCN: estimate_rule must be one of {ESTIMATE_RULES}, got {rule!r}.')


@torch.no_grad()
def training_statistics(sample_mean, sample_var, positions_per_sample, running_mean, running_var,
                        estimate, update_rate, process_group=None, synchronize=False,
                        estimate_rule='authors') -> BatchMoments:
    """The (mean, var) the batch stage normalizes with in training; updates the buffers in place.

    * large-batch mode (``estimate=False``): the batch moments; the buffers move as BatchNorm's,
      ``running = (1 - r) * running + r * stat`` with the unbiased variance
      ``var * count / (count - 1)``.
    * micro-batch mode: the estimates first move at the rate r (the module doc, ``estimate_rule``)
      and are then returned (as copies: the buffers change in place at the next step, possibly
      before this step's backward).

    Returned in the dtype of ``sample_mean``; ``count`` is S0 (float64).
    """
    batch = batch_moments(sample_mean, sample_var, positions_per_sample, process_group,
                          synchronize)
    dtype = sample_mean.dtype
    if estimate:
        target_var = estimate_target_variance(batch, running_mean, estimate_rule)
        _move_towards(running_mean, batch.mean, update_rate)
        _move_towards(running_var, target_var, update_rate)
        return BatchMoments(running_mean.to(dtype, copy=True), running_var.to(dtype, copy=True),
                            batch.count)
    unbiased_var = batch.var * (batch.count / (batch.count - 1))
    _move_towards(running_mean, batch.mean, update_rate)
    _move_towards(running_var, unbiased_var, update_rate)
    return BatchMoments(batch.mean.to(dtype), batch.var.to(dtype), batch.count)


def _move_towards(buffer: torch.Tensor, target: torch.Tensor, rate) -> None:
    """``buffer = (1 - rate) * buffer + rate * target`` in place (rate: a number or 0-d tensor)."""
    buffer.mul_(1 - rate).add_(rate * target.to(buffer))
