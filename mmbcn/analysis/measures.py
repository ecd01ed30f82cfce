"""mmbcn's measures of elimination singularities, as plain functions on tensors.

Every measure is kept as *sums* (float64 tensors) that add up exactly over batches and
processes, and the figures are computed from the sums at the end, so that statistics over N
batches are those of one batch of all their samples (up to float64 rounding; the counts are
exact), and an all-reduce of the sums gives every process the figures of the global batch.

Channel statistics of a normalization layer's output z (the pre-activation where the layer
feeds an activation), for each channel c, over all samples and positions (every element of z
whose channel index is c)::

    n        number of values of channel c (samples x positions)
    mu_c     = sum z / n                                    (mean)
    sigma_c  = sqrt(max(sum z^2 / n - mu_c^2, 0))           (biased std, float64)
    a_c      = #(z > 0) / n                                 (activation rate: the fraction a
                                                             ReLU passes)
    margin_c = mu_c / sigma_c                               (how many stds the channel sits
                                                             above the ReLU threshold 0)
    constant_c   = sigma_c <= constant_tolerance * max(|mu_c|, 1)
    eliminated_c = a_c < threshold                          (default 1 %)

The constant test is relative to ``max(|mu_c|, 1)``: normalization layers put their output on a
unit scale (before the affine weight), so a channel whose spread is below 1e-4 (the default
tolerance) of that scale, or of its own mean where that is larger, carries no information; the
float64 sums resolve spreads down to about 1e-7 of ``|mu_c|``, far below the tolerance. The
margin of a constant channel is not defined; percentiles of the margin are taken over the
non-constant channels. A constant channel with ``mu_c <= 0`` is also eliminated (a_c = 0).

Sample similarity of a stage output f with N samples (after Lubana et al., *Beyond BatchNorm:
Towards a Unified Understanding of Normalization in Deep Learning*, NeurIPS 2021, who track the
mean cosine similarity of different samples' features; this is mmbcn's implementation, the
paper's own code and its distance formula are not available to this project): with f_i the
flattened features of sample i and u_i = f_i / ||f_i||_2 (samples with f_i = 0 are left out),
the mean over ordered pairs of different samples::

    s = sum_{i != j} <u_i, u_j> / (n (n - 1)) = (||sum_i u_i||^2 - sum_i ||u_i||^2) / (n (n - 1))

1 when all samples have the same direction (indistinguishable), 0 when they are orthogonal.
Pairs are formed within one batch (in distributed training the global batch: every process's
samples of the same feature shape, see :mod:`mmbcn.analysis.collector`); over several batches
the pair sums and pair counts add up.

Gradient norm of a stage: ``||dL / df||_2`` over the whole batch tensor of the stage output f,
for the loss L whose backward ran (see the collector for the distributed case).
"""

from typing import Dict, NamedTuple, Sequence

import torch

DEFAULT_THRESHOLD = 0.01
DEFAULT_CONSTANT_TOLERANCE = 1e-4
MARGIN_PERCENTILES = (1, 10, 50)


def channel_sums(z: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """Per-channel sums of one output tensor, the state every channel figure comes from.

    Args:
        z: the normalization layer's output, e.g. ``(N, C, H, W)``, ``(N, C)`` or ``(N, L, C)``.
        channel_dim: the dimension of z that holds the channels.

    Returns:
        float64 tensor ``(4, C)``: rows ``n`` (values per channel), ``sum z``, ``sum z^2`` and
        ``#(z > 0)``. Sums of two batches' results are the sums of both batches.
    """
    z = z.detach()
    dims = [d for d in range(z.dim()) if d != channel_dim % z.dim()]
    values = z.double()
    channels = z.shape[channel_dim]
    count = z.numel() // max(channels, 1)
    return torch.stack([
        torch.full((channels, ), float(count), dtype=torch.float64, device=z.device),
        values.sum(dim=dims),
        values.square().sum(dim=dims),
        (z > 0).sum(dim=dims).double(),
    ])


class ChannelFigures(NamedTuple):
    """Per-channel figures of one layer (float64 / bool tensors of shape ``(C, )``)."""

    mean: torch.Tensor
    std: torch.Tensor
    activation_rate: torch.Tensor
    margin: torch.Tensor  # NaN where the channel is constant or was never reached
    constant: torch.Tensor
    eliminated: torch.Tensor


def channel_figures(sums: torch.Tensor, threshold: float = DEFAULT_THRESHOLD,
                    constant_tolerance: float = DEFAULT_CONSTANT_TOLERANCE) -> ChannelFigures:
    """The per-channel figures of the module docstring from :func:`channel_sums` sums."""
    count, total, total_sq, positive = sums.double()
    count = count.clamp(min=1)
    mean = total / count
    std = (total_sq / count - mean.square()).clamp(min=0).sqrt()
    reached = sums[0] > 0
    constant = (std <= constant_tolerance * mean.abs().clamp(min=1)) & reached
    margin = torch.where(constant | ~reached, torch.full_like(mean, float('nan')), mean / std)
    rate = torch.where(reached, positive / count, torch.full_like(mean, float('nan')))
    return ChannelFigures(mean, std, rate, margin, constant, (rate < threshold) & reached)


def percentile(values: torch.Tensor, q: float) -> float:
    """The q-th percentile (0-100) of the finite entries, linear interpolation between order
    statistics (``torch.quantile``'s default); NaN when there is none."""
    finite = values[torch.isfinite(values)].double()
    if finite.numel() == 0:
        return float('nan')
    return float(torch.quantile(finite.cpu(), q / 100.0))


def margin_percentiles(margins: torch.Tensor,
                       quantiles: Sequence[int] = MARGIN_PERCENTILES) -> Dict[str, float]:
    """``{'margin_p1': ..., 'margin_p10': ..., 'margin_p50': ...}`` of non-constant channels."""
    return {f'margin_p{q}': percentile(margins, q) for q in quantiles}


def layer_figures(figures: ChannelFigures) -> Dict[str, float]:
    """Layer-level figures: fractions of eliminated and constant channels, margin percentiles."""
    channels = figures.mean.numel()
    reached = bool(torch.isfinite(figures.activation_rate).any())
    nan = float('nan')
    return {
        'num_channels': channels,
        'eliminated_fraction': float(figures.eliminated.sum()) / channels if reached else nan,
        'constant_fraction': float(figures.constant.sum()) / channels if reached else nan,
        'eliminated_channels': int(figures.eliminated.sum()),
        'constant_channels': int(figures.constant.sum()),
        **margin_percentiles(figures.margin),
        'mean_activation_rate': float(figures.activation_rate.nanmean()) if reached else nan,
    }


def unit_sample_sums(features: torch.Tensor) -> torch.Tensor:
    """The sums the sample similarity of one batch comes from.

    Args:
        features: ``(N, ...)``; sample i is ``features[i]`` flattened.

    Returns:
        float64 tensor ``(D + 2, )``: ``sum_i u_i`` (D values), then ``sum_i ||u_i||^2`` and the
        number of non-zero samples n, with ``u_i = f_i / ||f_i||``. Two processes' results for
        batches of the same feature shape add up to the result of their union.
    """
    flat = features.detach().reshape(features.shape[0], -1).double()
    norms = flat.norm(dim=1, keepdim=True)
    nonzero = norms.squeeze(1) > 0
    units = flat[nonzero] / norms[nonzero]
    return torch.cat([units.sum(dim=0), units.square().sum().reshape(1),
                      nonzero.sum().double().reshape(1)])


def pair_sums(unit_sums: torch.Tensor) -> torch.Tensor:
    """``(sum over ordered pairs i != j of <u_i, u_j>, number of such pairs)``, float64 ``(2, )``.

    From the :func:`unit_sample_sums` of one (global) batch.
    """
    total, self_terms, count = unit_sums[:-2], unit_sums[-2], unit_sums[-1]
    return torch.stack([total.square().sum() - self_terms, count * (count - 1)])


def mean_pairwise_cosine(features: torch.Tensor) -> float:
    """The sample similarity s of the module docstring for one batch ``(N, ...)``."""
    pairs, count = pair_sums(unit_sample_sums(features)).tolist()
    return pairs / count if count else float('nan')
