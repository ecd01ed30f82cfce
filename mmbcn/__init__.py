"""mmbcn: Batch-Channel Normalization and Weight Standardization for OpenMMLab 2.x.

Importing this package registers into MMEngine's root registries (so the ``mmdet``,
``mmseg`` and ``mmpretrain`` scopes find them too):

* ``MODELS``: ``'BCN'`` / ``'BatchChannelNorm2d'`` (a norm layer) and ``'WSConv2d'`` (a conv);
* ``HOOKS``: ``'BCNUpdateRateHook'`` and ``'NormStatisticsHook'``.

and applies mmbcn's declared changes to other packages (:mod:`mmbcn.patches`; ``python -m
mmbcn.collect_env`` lists each with its state): weights-only loading of MMEngine checkpoints
(:mod:`mmbcn.checkpoints`), torchvision's import on a CPU torch, and the BN special-casing of
mmcv, MMEngine, mmpretrain and torch made right for BCN and WSConv2d, or refused.
"""

from . import torchvision_compat

torchvision_compat.install()  # before anything imports torchvision (mmpretrain does)

from . import patches  # noqa: E402
from .engine import BCNUpdateRateHook, NormStatisticsHook  # noqa: E402
from .layers import BatchChannelNorm2d, WSConv2d, convert_sync_batchnorm, revert_sync_batchnorm  # noqa: E402
from .ops import batch_channel_norm, weight_standardize  # noqa: E402
from .version import __version__  # noqa: E402

patches.install()

__all__ = [
    'BatchChannelNorm2d', 'WSConv2d', 'BCNUpdateRateHook', 'batch_channel_norm',
    'weight_standardize', 'convert_sync_batchnorm', 'revert_sync_batchnorm', '__version__',
    'NormStatisticsHook'
]
