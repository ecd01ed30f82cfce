"""Model-side OpenMMLab glue of the other normalizations: Proxy Normalization's ResNets
(:mod:`.backbones`, imported on their own: they import the toolboxes) and the Revisiting-BN
recipe's init and input BatchNorm (:mod:`.revisiting_bn`). Importing this package registers
``ProxyNormAct`` (MMEngine ``MODELS``), ``RevisitingBNInit`` (``WEIGHT_INITIALIZERS``) and
``InputNormDataPreprocessor`` (``MODELS``)."""

from ..layers.proxy_norm import NormProxyAct, ProxyNormAct
from .revisiting_bn import (
                            InputBatchNorm,
                            InputNormDataPreprocessor,
                            RevisitingBNInit,
                            revisiting_bn_init,
                            scaled_norms,
)

__all__ = ['InputBatchNorm', 'InputNormDataPreprocessor', 'NormProxyAct', 'ProxyNormAct',
           'RevisitingBNInit', 'revisiting_bn_init', 'scaled_norms']
