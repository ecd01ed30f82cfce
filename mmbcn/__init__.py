"""mmbcn: Batch-Channel Normalization and Weight Standardization for OpenMMLab 2.x.

Importing this package registers into MMEngine's root registries (so the ``mmdet`` and
``mmseg`` scopes find them too):

* ``MODELS``: ``'BCN'`` / ``'BatchChannelNorm2d'`` (a norm layer) and ``'WSConv2d'`` (a conv);
* ``HOOKS``: ``'BCNUpdateRateHook'`` and ``'NormStatisticsHook'``.

It also makes MMEngine checkpoints load with ``weights_only=True`` wherever OpenMMLab loads
them (:mod:`mmbcn.checkpoints`), and makes mmcv's and MMEngine's conv-BN folding right for BCN
and WSConv2d or refuse them (:mod:`mmbcn.upstream_patches`).
"""

from . import torchvision_compat

torchvision_compat.install()  # before anything imports torchvision (mmpretrain does)

from . import checkpoints, upstream_patches  # noqa: E402
from .engine import BCNUpdateRateHook, NormStatisticsHook  # noqa: E402
from .layers import BatchChannelNorm2d, WSConv2d, convert_sync_batchnorm, revert_sync_batchnorm  # noqa: E402
from .ops import batch_channel_norm, weight_standardize  # noqa: E402
from .version import __version__  # noqa: E402

checkpoints.install()
upstream_patches.install()  # mmcv/MMEngine conv-BN folding made right for BCN and WS

__all__ = [
    'BatchChannelNorm2d', 'WSConv2d', 'BCNUpdateRateHook', 'batch_channel_norm',
    'weight_standardize', 'convert_sync_batchnorm', 'revert_sync_batchnorm', '__version__',
    'NormStatisticsHook'
]
