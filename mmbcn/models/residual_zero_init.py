"""``init_cfg=dict(type='ResidualZeroInit')``: every residual block starts as the identity.

The authors' ImageNet ResNets zero the weight of each block's last norm
(``imagenet/models/imagenet/resnet.py`` and ``resnext.py`` of their BCN release; their DeepLabV3
code has no zero-init). For a BCN layer that is the channel stage's weight (``group_weight = 0``;
the batch stage keeps weight 1): zeroing the batch stage instead would make the channel stage
normalize a constant, whose gradient is about 1/sqrt(eps) times too large. For BatchNorm or
GroupNorm it is the usual ``weight = 0``.

mmpretrain's ``ResNet(zero_init_residual=True)`` zeroes weight and bias of the last norm after
every other initializer has run, which is the wrong stage for BCN: the BCN ImageNet configs set
``zero_init_residual=False`` and list this initializer last in the backbone's ``init_cfg``.
"""

from mmengine.model.weight_init import BaseInit
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

from ..layers.bcn import BatchChannelNorm2d


def last_norm(block: nn.Module):
    """The last norm of a ResNet block (``norm3`` of a Bottleneck, ``norm2`` of a BasicBlock).

    A block is a module with a ``downsample`` attribute, as in mmpretrain, mmdet and mmseg.
    """
    if not hasattr(block, 'downsample'):
        return None
    for name in ('norm3', 'norm2'):
        norm = getattr(block, name, None)
        if isinstance(norm, nn.Module):
            return norm
    return None


@WEIGHT_INITIALIZERS.register_module()
class ResidualZeroInit(BaseInit):
    """Zero the weight of the last norm of every residual block in the module (see above)."""

    def __call__(self, module: nn.Module) -> None:
        for block in module.modules():
            norm = last_norm(block)
            if norm is None or getattr(norm, 'weight', None) is None:
                continue
            if isinstance(norm, BatchChannelNorm2d):
                nn.init.ones_(norm.weight)
                nn.init.zeros_(norm.bias)
                nn.init.zeros_(norm.group_weight)
                nn.init.zeros_(norm.group_bias)
            else:
                nn.init.zeros_(norm.weight)
                if getattr(norm, 'bias', None) is not None:
                    nn.init.zeros_(norm.bias)

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: last norm of each residual block zeroed'
