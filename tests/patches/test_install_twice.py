"""What ``import mmbcn`` installs, installed again, changes nothing.

A second ``install()`` (a reload, or a tool calling it before loading a checkpoint) must not
wrap an upstream function twice, add a second import hook, or allow-list anything twice: every
entry point a user calls is the same object afterwards, and behaves as before.
"""

import copyreg
import importlib
import sys

import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d, patches


def entry_points() -> dict:
    """The upstream functions mmbcn replaces, as a user reaches them, and its import hooks."""
    import mmcv.cnn.bricks.conv_module as conv_module
    import mmcv.cnn.utils.flops_counter as flops_counter
    fuse_conv_bn = importlib.import_module('mmcv.cnn.utils.fuse_conv_bn')
    import mmengine.model.efficient_conv_bn_eval as efficient_conv_bn_eval
    import mmengine.model.utils as model_utils
    from torch.nn.utils import fusion
    from torch.optim import swa_utils

    return {
        'mmcv _fuse_conv_bn': fuse_conv_bn._fuse_conv_bn,
        'mmcv efficient_conv_bn_eval_forward': conv_module.efficient_conv_bn_eval_forward,
        'mmcv get_modules_mapping': flops_counter.get_modules_mapping,
        'mmengine turn_on_efficient_conv_bn_eval_for_single_model':
            efficient_conv_bn_eval.turn_on_efficient_conv_bn_eval_for_single_model,
        'mmengine convert_sync_batchnorm': model_utils.convert_sync_batchnorm,
        'torch convert_sync_batchnorm': nn.SyncBatchNorm.__dict__['convert_sync_batchnorm'],
        'torch fuse_conv_bn_eval': fusion.fuse_conv_bn_eval,
        'torch update_bn': swa_utils.update_bn,
        'import hooks': [type(finder) for finder in sys.meta_path],
    }


def checkpoint_state() -> dict:
    return {
        'safe globals': list(getattr(torch.serialization, 'get_safe_globals', list)()),
        'HistoryBuffer pickling': copyreg.dispatch_table.get(HistoryBuffer),
        'local loader': CheckpointLoader._schemes[''],
    }


def test_second_install_leaves_every_entry_point_as_it_was():
    patched, loading = entry_points(), checkpoint_state()
    patches.install()
    patches.install()
    assert entry_points() == patched
    assert checkpoint_state() == loading


def test_patches_still_work_after_a_second_install():
    from torch.nn.utils import fuse_conv_bn_eval

    patches.install()
    model = nn.Sequential(WSConv2d(3, 8, 3), nn.BatchNorm2d(8)).double().eval()
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    fused = fuse_conv_bn_eval(model[0], model[1])
    assert type(fused) is nn.Conv2d
    torch.testing.assert_close(fused(x), model(x), rtol=1e-9, atol=1e-10)
    bcn = BatchChannelNorm2d(8, 2, sync_stats=False)
    assert nn.SyncBatchNorm.convert_sync_batchnorm(bcn) is bcn and bcn.sync_stats
