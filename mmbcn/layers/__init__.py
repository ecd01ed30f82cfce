"""The registered layers: Batch-Channel Normalization and weight-standardized convolution."""

from .bcn import BatchChannelNorm2d, convert_sync_batchnorm, revert_sync_batchnorm
from .conv_ws import WSConv2d

__all__ = ['BatchChannelNorm2d', 'WSConv2d', 'convert_sync_batchnorm', 'revert_sync_batchnorm']
