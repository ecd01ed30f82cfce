"""Conv-norm folding that is right for BCN and WSConv2d: what OpenMMLab's fusers should compute.

OpenMMLab folds a BatchNorm in eval mode into the conv before it, ``BN(conv(x, W) + b) =
conv(x, s W) + s b + t`` with ``s = weight / sqrt(running_var + eps)`` and ``t = bias -
running_mean s``. Two of mmbcn's layers break that rule's assumptions:

* a BCN layer is a ``_BatchNorm`` whose batch stage is exactly that affine in eval mode, but it
  is followed by a channel stage (group norm per sample, per-group affine), which folding must
  keep: ``BCN(conv(x)) = GroupNorm(conv(x, s W) + s b + t)``;
* a :class:`~mmbcn.WSConv2d` convolves with its *standardized* weight ``W_hat``, so ``s`` must
  scale ``W_hat``, and the result is a plain ``nn.Conv2d`` (standardizing ``s W_hat`` again would
  undo the scale).

:func:`fuse_conv_norm` is the replacement of mmcv's ``_fuse_conv_bn`` (``fuse_conv_bn``), and
:func:`efficient_conv_norm_eval_forward` of mmcv's ``efficient_conv_bn_eval_forward``
(``ConvModule(efficient_conv_bn_eval=True)``), for the pairs that involve BCN or WSConv2d; other
pairs go to mmcv's own functions. :mod:`mmbcn.patches` installs them.
"""

from typing import Callable

import torch
from torch import nn

from ..layers.bcn import BatchChannelNorm2d
from ..layers.conv_ws import WSConv2d
from ..layers.kinds import is_mmbcn_layer
from .conv_norm import (
    batch_stage_affine,
    channel_stage,
    fold_into_conv,
    plain_conv,
    scale_out_channels,
)

__all__ = ['efficient_conv_norm_eval_forward', 'fuse_conv_norm', 'involves_mmbcn']


def involves_mmbcn(conv: nn.Module, norm: nn.Module) -> bool:
    """Whether the (conv, norm) pair holds a layer that plain conv-BN folding gets wrong."""
    return is_mmbcn_layer(conv) or is_mmbcn_layer(norm)


def fuse_conv_norm(conv: nn.Conv2d, norm: nn.Module, fuse_conv_bn: Callable) -> nn.Module:
    """One module computing ``norm(conv(x))`` with the norm's running statistics (eval mode).

    A ``WSConv2d`` becomes an ``nn.Conv2d`` holding its standardized weight first. A BCN's batch
    stage is then folded into it and its channel stage kept: the result is
    ``nn.Sequential(conv, nn.GroupNorm)``. A plain BatchNorm goes to ``fuse_conv_bn`` (mmcv's
    ``_fuse_conv_bn``).
    """
    if isinstance(conv, WSConv2d):
        conv = plain_conv(conv)
    if not isinstance(norm, BatchChannelNorm2d):
        return fuse_conv_bn(conv, norm)
    fold_into_conv(conv, *batch_stage_affine(norm))
    return nn.Sequential(conv, channel_stage(norm))


def efficient_conv_norm_eval_forward(norm: nn.Module, conv: nn.Conv2d, x: torch.Tensor,
                                     efficient_conv_bn_eval_forward: Callable) -> torch.Tensor:
    """``norm(conv(x))`` for a norm in eval mode, the batch-norm affine folded into the weight.

    With gradients to every parameter (the point of efficient conv-BN eval: fine-tuning with
    frozen statistics keeps no activation between the conv and the norm):
    ``y = conv(x, s W_hat) + s b + t`` with ``W_hat`` the conv's effective weight (standardized
    for a ``WSConv2d``), then BCN's channel stage. Pairs without BCN or WSConv2d go to
    ``efficient_conv_bn_eval_forward`` (mmcv's).
    """
    if not involves_mmbcn(conv, norm):
        return efficient_conv_bn_eval_forward(norm, conv, x)
    weight = conv.standardized_weight() if isinstance(conv, WSConv2d) else conv.weight
    scale, shift = batch_stage_affine(norm)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    folded = scale_out_channels(weight, scale)
    y = conv._conv_forward(x, folded, bias.to(weight.dtype))
    return norm.channel_stage_forward(y) if isinstance(norm, BatchChannelNorm2d) else y
