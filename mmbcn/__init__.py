"""mmbcn: Batch-Channel Normalization and Weight Standardization for OpenMMLab 2.x.

Importing this package registers into MMEngine's root registries (so the ``mmdet``,
``mmseg`` and ``mmpretrain`` scopes find them too):

* ``MODELS``: ``'BCN'`` / ``'BatchChannelNorm2d'`` (a norm layer) and ``'WSConv2d'`` (a conv);
  ``'BCNBatchStage'`` and ``'BCNChannelStage'``, BCN's two stages apart (mmbcn's ablation
  layers, :mod:`mmbcn.layers.bcn_stages`);
* ``HOOKS``: ``'BCNUpdateRateHook'`` and ``'NormStatisticsHook'`` (:mod:`mmbcn.engine.hooks`);
* ``WEIGHT_INITIALIZERS``: ``'ResidualZeroInit'`` and ``'RevisitingBNInit'``
  (:mod:`mmbcn.models`);
* the other normalizations' parts: ``'ProxyNormAct'`` and ``'InputNormDataPreprocessor'``
  (``MODELS``, :mod:`mmbcn.models`) and the optimizer wrapper constructor
  ``'RevisitingBNOptimWrapperConstructor'`` (:mod:`mmbcn.engine.optimizers`).

What ``import mmbcn`` does not register, a config that uses it imports itself
(``custom_imports``): Proxy Normalization's ResNets, one module per toolbox
(``mmbcn.models.backbones.mmdet_resnet``, ``.mmseg_resnet``, ``.mmpretrain_resnet``: each imports
its toolbox), the ImageNet dataset with its class-folder check
(``mmbcn.datasets.checked_imagenet``) and the study's pooling head
(``mmbcn.models.decode_heads.pool_norm_aspp_head``); the study's fine-tuning configs import its
strict backbone loading hook (``mmbcn.study.pretrained``). ``custom_imports=dict(imports=
['mmbcn'])`` is all the other configs need.

It needs MMEngine and mmcv of either OpenMMLab family (upstream or onedl), which it does not
install itself: :mod:`mmbcn.openmmlab_family` checks them first and names the install command
when they are missing. It then applies mmbcn's declared changes to other packages
(:mod:`mmbcn.patches`; ``python -m mmbcn.collect_env`` lists each with its state):
weights-only loading of MMEngine checkpoints (:mod:`mmbcn.checkpoints`), torchvision's import
on a CPU torch, ``pkg::`` base configs found through whichever distribution provides the
module, and the BN special-casing of mmcv, MMEngine, mmpretrain and torch made right for BCN and
WSConv2d, or refused.
"""

from . import torchvision_compat

torchvision_compat.install()  # before anything imports torchvision (mmpretrain does)

from . import openmmlab_family  # noqa: E402

# MMEngine and mmcv of either family (upstream OpenMMLab or onedl), which mmbcn's package
# metadata does not require: an error naming the install command when they do not import.
openmmlab_family.check_core()

from . import models, patches  # noqa: E402, F401  (models: ProxyNormAct, RevisitingBNInit, InputNormDataPreprocessor)
from .engine import (  # noqa: E402
    BCNUpdateRateHook,
    NormStatisticsHook,
    optimizers,  # noqa: E402, F401  (RevisitingBNOptimWrapperConstructor)
)
from .layers import BatchChannelNorm2d, WSConv2d, convert_sync_batchnorm, revert_sync_batchnorm  # noqa: E402
from .ops import batch_channel_norm, weight_standardize  # noqa: E402
from .version import __version__  # noqa: E402

patches.install()

__all__ = [
    'BatchChannelNorm2d', 'WSConv2d', 'BCNUpdateRateHook', 'batch_channel_norm',
    'weight_standardize', 'convert_sync_batchnorm', 'revert_sync_batchnorm', '__version__',
    'NormStatisticsHook'
]
