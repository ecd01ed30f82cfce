"""Slow float64 references written directly from the formulas, for the tests to compare against.

Nothing here shares code with mmbcn: the batch stage is written out over (N, *), the channel stage
is group normalization over reshaped groups, as the formulas in the issue state them.
"""

import torch


def batch_stage(x, mean, var, weight, bias, eps):
    """``(x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]`` for x (N, C, *)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps) * \
        weight.reshape(shape) + bias.reshape(shape)


def channel_stage(y, num_groups, group_weight, group_bias, eps):
    """Group norm of y per sample over (C/G, *) with the biased variance, then per-group affine."""
    n = y.shape[0]
    grouped = y.reshape(n, num_groups, -1)
    mean = grouped.mean(dim=2, keepdim=True)
    var = ((grouped - mean) ** 2).mean(dim=2, keepdim=True)
    normalized = (grouped - mean) / torch.sqrt(var + eps)
    out = normalized * group_weight.reshape(1, -1, 1) + group_bias.reshape(1, -1, 1)
    return out.reshape(y.shape)


def batch_stats(x):
    """Per-channel mean and biased variance of x (N, C, *) over (N, *)."""
    dims = [0] + list(range(2, x.dim()))
    mean = x.mean(dim=dims)
    var = ((x - mean.reshape((1, -1) + (1,) * (x.dim() - 2))) ** 2).mean(dim=dims)
    return mean, var


def batch_stats_around(x, center):
    """Per-channel mean of (x - center[c])^2 over (N, *)."""
    dims = [0] + list(range(2, x.dim()))
    return ((x - center.reshape((1, -1) + (1,) * (x.dim() - 2))) ** 2).mean(dim=dims)


def bcn_reference(x, params, num_groups, mode, running_mean, running_var, rate, eps=1e-5,
                  estimate_rule='authors'):
    """BCN in float64. Returns (out, new_running_mean, new_running_var).

    mode: 'large' (large-batch training), 'micro' (micro-batch training) or 'eval'.
    params: dict with weight, bias, group_weight, group_bias (float64 tensors).
    estimate_rule (micro): 'authors', the authors' EstBN: the variance estimate moves towards the
    mean square of x around the previous running mean; 'batch_variance': towards the batch's
    biased variance.
    """
    count = x.numel() // x.shape[1]
    if mode == 'large':
        mean, var = batch_stats(x)
        new_mean = (1 - rate) * running_mean + rate * mean.detach()
        new_var = (1 - rate) * running_var + rate * var.detach() * count / (count - 1)
    elif mode == 'micro':
        batch_mean, batch_var = batch_stats(x.detach())
        if estimate_rule == 'authors':  # mean over (N, *) of (x - running_mean)^2
            target_var = batch_stats_around(x.detach(), running_mean)
        else:
            target_var = batch_var
        new_mean = (1 - rate) * running_mean + rate * batch_mean
        new_var = (1 - rate) * running_var + rate * target_var
        mean, var = new_mean, new_var
    elif mode == 'eval':
        mean, var = running_mean, running_var
        new_mean, new_var = running_mean, running_var
    else:
        raise ValueError(mode)
    y = batch_stage(x, mean, var, params['weight'], params['bias'], eps)
    out = channel_stage(y, num_groups, params['group_weight'], params['group_bias'], eps)
    return out, new_mean, new_var


def weight_standardize_reference(weight, eps=1e-5, eps_on='variance'):
    """Per output filter, in float64: (w - mean) / sqrt(unbiased var + eps) ('variance', the
    authors' ImageNet code) or (w - mean) / (unbiased std + eps) ('std', their DeepLabV3 code)."""
    flat = weight.double().reshape(weight.shape[0], -1)
    mean = flat.mean(dim=1, keepdim=True)
    var = ((flat - mean) ** 2).sum(dim=1, keepdim=True) / (flat.shape[1] - 1)
    denominator = torch.sqrt(var + eps) if eps_on == 'variance' else torch.sqrt(var) + eps
    return ((flat - mean) / denominator).reshape(weight.shape)
