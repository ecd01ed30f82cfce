"""mmseg's ResNets with Proxy Normalization, registered in ``mmseg.registry.MODELS``:
``ProxyNormResNet``, ``ProxyNormResNetV1c`` (deep stem) and ``ProxyNormResNetV1d`` (deep stem,
average-pool downsampling). See :mod:`.proxy_norm_resnet` for what differs from the parents.

Importing this module imports mmseg.
"""

from mmseg.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmseg.registry import MODELS

from .proxy_norm_resnet import (
    ProxyNormBasicBlockMixin,
    ProxyNormBottleneckMixin,
    ProxyNormResNetMixin,
    proxy_norm_arch_settings,
)

__all__ = ['ProxyNormBasicBlock', 'ProxyNormBottleneck', 'ProxyNormResNet', 'ProxyNormResNetV1c',
           'ProxyNormResNetV1d']


class ProxyNormBasicBlock(ProxyNormBasicBlockMixin, BasicBlock):
    """mmseg's BasicBlock with Proxy Normalization after norm1."""


class ProxyNormBottleneck(ProxyNormBottleneckMixin, Bottleneck):
    """mmseg's Bottleneck with Proxy Normalization after norm1 and norm2."""


@MODELS.register_module()
class ProxyNormResNet(ProxyNormResNetMixin, ResNet):
    """mmseg's ResNet with Proxy Normalization (``proxy_cfg``: options of every
    ``NormProxyAct``; the rest as ResNet)."""

    arch_settings = proxy_norm_arch_settings(ResNet.arch_settings, ProxyNormBasicBlock,
                                             ProxyNormBottleneck)


@MODELS.register_module()
class ProxyNormResNetV1c(ProxyNormResNet):
    """ProxyNormResNet with the deep stem (three 3x3 convs), as mmseg's ResNetV1c."""

    def __init__(self, **kwargs):
        super().__init__(deep_stem=True, avg_down=False, **kwargs)


@MODELS.register_module()
class ProxyNormResNetV1d(ProxyNormResNet):
    """ProxyNormResNet with the deep stem and average-pool downsampling, as ResNetV1d."""

    def __init__(self, **kwargs):
        super().__init__(deep_stem=True, avg_down=True, **kwargs)
