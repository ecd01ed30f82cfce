"""Which modules are mmbcn's layers: the one answer the patches, folding and deploy ask for.

BCN (:class:`~mmbcn.layers.bcn.BatchChannelNorm2d`, a ``_BatchNorm`` that is not one) and
:class:`~mmbcn.layers.conv_ws.WSConv2d` (an ``nn.Conv2d`` whose weight is not the one it
convolves with) are the layers that code written for BatchNorm and plain convs gets wrong.
"""

from typing import List

from torch import nn

from .bcn import BatchChannelNorm2d
from .conv_ws import WSConv2d

__all__ = ['MMBCN_LAYERS', 'is_mmbcn_layer', 'mmbcn_layer_names']

MMBCN_LAYERS = (BatchChannelNorm2d, WSConv2d)


def is_mmbcn_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a BCN or WSConv2d layer (not: whether it holds one)."""
    return isinstance(module, MMBCN_LAYERS)


def mmbcn_layer_names(module: nn.Module) -> List[str]:
    """Names of the BCN and WSConv2d layers in ``module`` (``''`` for the module itself)."""
    return [name for name, m in module.named_modules() if is_mmbcn_layer(m)]
