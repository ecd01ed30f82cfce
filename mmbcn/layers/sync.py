"""Converting BatchNorm layers to SyncBatchNorm without touching BCN layers."""

from mmengine.model import revert_sync_batchnorm
from torch import nn

from .bcn import BatchChannelNorm2d

__all__ = ['convert_sync_batchnorm', 'revert_sync_batchnorm']


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Like ``nn.SyncBatchNorm.convert_sync_batchnorm``, but BCN layers stay BCN layers.

    torch's converter replaces every ``_BatchNorm`` instance, BCN included, by a plain
    ``SyncBatchNorm`` and so would silently drop BCN's channel stage. BCN layers already
    synchronize their batch statistics (``sync_stats=True``); here they are kept and switched to
    synchronize over ``process_group``, and every other BatchNorm becomes a SyncBatchNorm.
    ``mmengine.model.revert_sync_batchnorm`` (re-exported here) leaves BCN layers alone.
    """
    if isinstance(module, BatchChannelNorm2d):
        module.sync_stats = True
        module.process_group = process_group
        return module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child, process_group)
        if converted is not child:
            module.add_module(name, converted)
    return module
