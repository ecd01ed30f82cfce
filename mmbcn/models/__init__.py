"""Model-side OpenMMLab glue: the initializers (:mod:`.residual_zero_init`: every residual block
starts as the identity, the authors' ImageNet init; the Revisiting-BN recipe's scale init, with
its input BatchNorm, :mod:`.revisiting_bn`) and Proxy Normalization's ResNets
(:mod:`.backbones`, imported on their own: they import the toolboxes). Importing this package
registers ``ResidualZeroInit`` and ``RevisitingBNInit`` (MMEngine ``WEIGHT_INITIALIZERS``),
``ProxyNormAct`` and ``InputNormDataPreprocessor`` (``MODELS``)."""

from ..layers.proxy_norm import NormProxyAct, ProxyNormAct
from .residual_zero_init import ResidualZeroInit
from .revisiting_bn import (
                            InputBatchNorm,
                            InputNormDataPreprocessor,
                            RevisitingBNInit,
                            revisiting_bn_init,
                            scaled_norms,
)

__all__ = ['InputBatchNorm', 'InputNormDataPreprocessor', 'NormProxyAct', 'ProxyNormAct',
           'ResidualZeroInit',
           'RevisitingBNInit', 'revisiting_bn_init', 'scaled_norms']
