"""The registered layers: Batch-Channel Normalization and weight-standardized convolution, and
the residual zero-init that suits them."""

from .bcn import (
                  BatchChannelNorm2d,
                  GroupCountMismatchError,
                  convert_sync_batchnorm,
                  revert_sync_batchnorm,
)
from .conv_ws import WSConv2d
from .residual_zero_init import ResidualZeroInit

__all__ = ['BatchChannelNorm2d', 'WSConv2d', 'ResidualZeroInit', 'GroupCountMismatchError',
           'convert_sync_batchnorm', 'revert_sync_batchnorm']
