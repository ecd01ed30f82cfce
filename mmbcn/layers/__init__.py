"""The layers: Batch-Channel Normalization and weight-standardized convolution."""

from .bcn import BatchChannelNorm2d
from .conv_ws import WSConv2d
from .functional import batch_channel_norm, weight_standardize
from .sync import convert_sync_batchnorm, revert_sync_batchnorm

__all__ = [
    'BatchChannelNorm2d', 'WSConv2d', 'batch_channel_norm', 'weight_standardize',
    'convert_sync_batchnorm', 'revert_sync_batchnorm'
]
