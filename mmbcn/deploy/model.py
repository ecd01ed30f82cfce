"""Deploy conversion: BCN+WS models become plain convolutions and GroupNorm layers.

For a model in eval mode:

* every :class:`~mmbcn.WSConv2d` becomes an ``nn.Conv2d`` holding its standardized weight;
* every BCN layer's batch stage is the fixed per-channel affine ``y = x * s + t``
  (:mod:`mmbcn.conv_norm`). Where the layer directly follows an ``nn.Conv2d`` (``conv{i}`` ->
  ``norm{i}`` in mmdet/mmseg ResNet blocks, conv -> norm in mmcv's ``ConvModule``, consecutive
  modules of an ``nn.Sequential``), the affine is folded into that conv exactly: ``W' = s W``,
  ``b' = s b + t``. The channel stage is then an
  ``nn.GroupNorm`` with the per-group affine repeated per channel, i.e. GroupNorm's cost.
  A BCN layer with no such conv becomes :class:`ChannelAffineGroupNorm` (affine, then GroupNorm).

The converted model computes the same function as the eval-mode original (up to float rounding)
and no longer needs mmbcn to run or export.
"""

from typing import Iterator, Tuple

import torch
from torch import nn

from ..layers.bcn import BatchChannelNorm2d
from ..layers.conv_ws import WSConv2d
from .conv_norm import batch_stage_affine, channel_stage, fold_into_conv, plain_conv

__all__ = ['ChannelAffineGroupNorm', 'deploy_model']


class ChannelAffineGroupNorm(nn.Module):
    """``GroupNorm(x * scale[c] + shift[c])``: a BCN in eval with nothing to fold into."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, group_norm: nn.GroupNorm):
        super().__init__()
        shape = (1, -1, 1, 1)
        dtype = group_norm.weight.dtype if group_norm.affine else scale.dtype
        self.register_buffer('scale', scale.reshape(shape).to(dtype))
        self.register_buffer('shift', shift.reshape(shape).to(dtype))
        self.group_norm = group_norm

    def forward(self, x):
        return self.group_norm(torch.addcmul(self.shift, x, self.scale))


def conv_norm_pairs(module: nn.Module) -> Iterator[Tuple[str, str]]:
    """Names (conv, norm) of children of ``module`` where the norm directly follows the conv."""
    for index in range(1, 4):  # mmdet/mmseg ResNet stems and blocks: conv{i} -> norm{i}
        norm_name = getattr(module, f'norm{index}_name', None)
        if norm_name and hasattr(module, f'conv{index}') and hasattr(module, norm_name):
            yield f'conv{index}', norm_name
    order = getattr(module, 'order', None)  # mmcv ConvModule
    if getattr(module, 'with_norm', False) and order and order.index('conv') < order.index(
            'norm'):
        yield 'conv', module.norm_name
    if isinstance(module, nn.Sequential):
        names = [name for name, _ in module.named_children()]
        yield from zip(names, names[1:], strict=False)


def deploy_model(model: nn.Module) -> nn.Module:
    """Convert ``model`` in place for inference (see the module docstring); returns it.

    Raises:
        RuntimeError: when ``model`` is in training mode (the batch stage is a fixed affine only
            in eval mode).
    """
    if model.training:
        raise RuntimeError('deploy_model needs a model in eval mode: call model.eval() first '
                           '(in training BCN normalizes with batch statistics).')
    with torch.no_grad():
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, WSConv2d):
                    setattr(parent, name, plain_conv(child))
        folded = set()
        for parent in list(model.modules()):
            for conv_name, norm_name in list(conv_norm_pairs(parent)):
                conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
                if type(conv) is nn.Conv2d and isinstance(norm, BatchChannelNorm2d):
                    fold_into_conv(conv, *batch_stage_affine(norm))
                    setattr(parent, norm_name, channel_stage(norm))
                    folded.add(id(norm))
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, BatchChannelNorm2d) and id(child) not in folded:
                    setattr(parent, name, ChannelAffineGroupNorm(
                        *batch_stage_affine(child), channel_stage(child)))
    model.eval()  # new modules start in training mode
    return model
