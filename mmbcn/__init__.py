"""mmbcn: Batch-Channel Normalization and Weight Standardization for OpenMMLab 2.x.

Importing this package registers into MMEngine's root registries (so the ``mmdet`` and
``mmseg`` scopes find them too):

* ``MODELS``: ``'BCN'`` / ``'BatchChannelNorm2d'`` (a norm layer) and ``'WSConv2d'`` (a conv);
* ``HOOKS``: ``'BCNUpdateRateHook'``.
"""

from . import torchvision_compat

torchvision_compat.install()  # before anything imports torchvision (mmpretrain does)

from .engine import BCNUpdateRateHook  # noqa: E402
from .layers import BatchChannelNorm2d, WSConv2d, convert_sync_batchnorm, revert_sync_batchnorm  # noqa: E402
from .ops import batch_channel_norm, weight_standardize  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    'BatchChannelNorm2d', 'WSConv2d', 'BCNUpdateRateHook', 'batch_channel_norm',
    'weight_standardize', 'convert_sync_batchnorm', 'revert_sync_batchnorm', '__version__'
]
