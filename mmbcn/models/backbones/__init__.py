"""Proxy-Normalization ResNets: the toolbox-independent parts (:mod:`.proxy_norm_resnet`) and one
module per toolbox, imported by name because each imports its toolbox's models:
``custom_imports=dict(imports=['mmbcn', 'mmbcn.models.backbones.mmseg_resnet'])`` (or
``mmdet_resnet``, ``mmpretrain_resnet``) registers ``ProxyNormResNet``, ``ProxyNormResNetV1c``
and ``ProxyNormResNetV1d`` in that toolbox's ``MODELS``."""

from .proxy_norm_resnet import (
                                ProxyNormBasicBlockMixin,
                                ProxyNormBottleneckMixin,
                                ProxyNormResNetMixin,
                                proxy_norm_arch_settings,
)

TOOLBOX_MODULES = {'mmdet': 'mmdet_resnet', 'mmseg': 'mmseg_resnet',
                   'mmpretrain': 'mmpretrain_resnet'}

__all__ = ['ProxyNormBasicBlockMixin', 'ProxyNormBottleneckMixin', 'ProxyNormResNetMixin',
           'TOOLBOX_MODULES', 'proxy_norm_arch_settings']
