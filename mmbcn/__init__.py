"""mmbcn: Batch-Channel Normalization and Weight Standardization for OpenMMLab 2.x.

Importing this package registers into MMEngine's root registries (so the ``mmdet`` and
``mmseg`` scopes find them too):

* ``MODELS``: ``'BCN'`` / ``'BatchChannelNorm2d'`` (a norm layer) and ``'WSConv2d'`` (a conv);
* ``HOOKS``: ``'BCNUpdateRateHook'``.
"""

from .engine import BCNUpdateRateHook
from .layers import BatchChannelNorm2d, WSConv2d, convert_sync_batchnorm, revert_sync_batchnorm
from .ops import batch_channel_norm, weight_standardize
from .version import __version__

__all__ = [
    'BatchChannelNorm2d', 'WSConv2d', 'BCNUpdateRateHook', 'batch_channel_norm',
    'weight_standardize', 'convert_sync_batchnorm', 'revert_sync_batchnorm', '__version__'
]
