"""BCN and WSConv2d in eval mode as plain pieces: the primitives of conv-norm folding.

In eval mode a BCN layer is two stages: its batch stage is the fixed per-channel affine
``y = x * s + t`` with ``s = weight / sqrt(running_var + eps)`` and ``t = bias - running_mean *
s`` (:func:`batch_stage_affine`), and its channel stage is a group norm with the per-group
affine repeated per channel (:func:`channel_stage`). A :class:`~mmbcn.WSConv2d` is an
``nn.Conv2d`` holding its standardized weight (:func:`plain_conv`). An affine after a conv folds
into it: ``conv(x, W) * s + t = conv(x, s W) + s b + t`` (:func:`fold_into_conv`,
:func:`scale_out_channels`).

Both users build on these: :mod:`mmbcn.deploy` (whole models) and :mod:`mmbcn.folding` (what
OpenMMLab's conv-BN fusers compute for BCN and WSConv2d).
"""

from typing import Tuple

import torch
from torch import nn

from ..layers.bcn import BatchChannelNorm2d
from ..layers.conv_ws import WSConv2d

__all__ = ['batch_stage_affine', 'channel_stage', 'fold_into_conv', 'plain_conv',
           'scale_out_channels']


def batch_stage_affine(norm: BatchChannelNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """(s, t) with ``batch stage(x) = x * s + t`` in eval mode (at least float32 precision)."""
    dtype = torch.promote_types(norm.running_var.dtype, torch.float32)
    scale = torch.rsqrt(norm.running_var.to(dtype) + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.to(dtype)
    shift = -norm.running_mean.to(dtype) * scale
    if norm.bias is not None:
        shift = shift + norm.bias.to(dtype)
    return scale, shift


def channel_stage(norm: BatchChannelNorm2d) -> nn.GroupNorm:
    """The channel stage as an ``nn.GroupNorm`` (per-group affine repeated per channel)."""
    group_norm = nn.GroupNorm(norm.num_groups, norm.num_features, norm.eps, norm.affine)
    if norm.affine:
        weight, bias = norm.channel_stage_affine()
        with torch.no_grad():
            group_norm.weight.copy_(weight)
            group_norm.bias.copy_(bias)
    return group_norm.to(norm.running_mean.device, norm.running_mean.dtype)


def plain_conv(conv: WSConv2d) -> nn.Conv2d:
    """An ``nn.Conv2d`` with the same geometry holding the standardized weight."""
    plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                      conv.padding_mode).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        plain.weight.copy_(conv.standardized_weight())
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)
    return plain


def scale_out_channels(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``s W``: each output channel ``o`` of a conv weight ``(C_out, ...)`` times ``scale[o]``,
    in the weight's dtype (differentiable; a new tensor)."""
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))).to(weight)


def fold_into_conv(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """``conv`` followed by ``x * scale + shift`` becomes one conv: W' = sW, b' = sb + t."""
    with torch.no_grad():
        conv.weight.copy_(scale_out_channels(conv.weight, scale))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
        new_bias = bias.to(shift) * scale + shift
        conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype))
