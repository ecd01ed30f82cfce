"""mmpretrain's ResNets with Proxy Normalization, registered in ``mmpretrain.registry.MODELS``:
``ProxyNormResNet``, ``ProxyNormResNetV1c`` (deep stem) and ``ProxyNormResNetV1d`` (deep stem,
average-pool downsampling). See :mod:`.proxy_norm_resnet` for what differs from the parents.

Importing this module imports mmpretrain.
"""

from mmpretrain.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmpretrain.registry import MODELS

from .proxy_norm_resnet import define_proxy_norm_resnets

__all__ = ['ProxyNormBasicBlock', 'ProxyNormBottleneck', 'ProxyNormResNet', 'ProxyNormResNetV1c',
           'ProxyNormResNetV1d']

(ProxyNormBasicBlock, ProxyNormBottleneck, ProxyNormResNet, ProxyNormResNetV1c,
 ProxyNormResNetV1d) = define_proxy_norm_resnets(
    'mmpretrain', __name__, BasicBlock, Bottleneck, ResNet, MODELS,
    zero_init_by_block_cfg=False)  # mmpretrain's init_weights zeroes the last norms itself
