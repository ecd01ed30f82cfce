"""The registered layers: Batch-Channel Normalization and weight-standardized convolution (the
initializers that suit them are in :mod:`mmbcn.models`), and BCN's two stages apart, mmbcn's
ablation layers (:mod:`.bcn_stages`)."""

from .bcn import (
                  BatchChannelNorm2d,
                  GroupCountMismatchError,
                  convert_sync_batchnorm,
                  revert_sync_batchnorm,
)
from .bcn_stages import BCNBatchStage, BCNChannelStage
from .conv_ws import WSConv2d

__all__ = ['BatchChannelNorm2d', 'WSConv2d', 'GroupCountMismatchError',
           'convert_sync_batchnorm', 'revert_sync_batchnorm', 'BCNBatchStage',
           'BCNChannelStage']


def __getattr__(name: str):
    """``mmbcn.layers.ResidualZeroInit``, which moved to :mod:`mmbcn.models`, until mmbcn 0.2."""
    if name == 'ResidualZeroInit':
        from ..utils.deprecation import moved_module
        return moved_module(f'{__name__}.residual_zero_init',
                            'mmbcn.models.residual_zero_init').ResidualZeroInit
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
