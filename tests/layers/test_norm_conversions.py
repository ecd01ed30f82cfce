"""Code that converts or recomputes every ``_BatchNorm``: SyncBN conversion and precise BN."""

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.model import convert_sync_batchnorm as mmengine_convert
from mmengine.registry import init_default_scope
from torch import nn
from torch.utils.data import DataLoader

from mmbcn import BatchChannelNorm2d
from mmbcn.errors import PreciseBNError


def bcn_and_bn():
    return nn.Sequential(nn.Conv2d(3, 8, 3), BatchChannelNorm2d(8, 2, sync_stats=False),
                         nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)))


@pytest.mark.parametrize('convert', [
    lambda model: mmengine_convert(model, 'torch'),  # cfg.sync_bn = 'torch' in the Runner
    nn.SyncBatchNorm.convert_sync_batchnorm,  # torch's own
])
def test_syncbn_conversion_keeps_bcn_and_makes_it_synchronize(convert):
    model = bcn_and_bn()
    bcn = model[1]
    converted = convert(model)
    assert converted[1] is bcn and bcn.sync_stats
    assert type(converted[2][1]) is nn.SyncBatchNorm  # plain BN still converted


def test_a_bcn_passed_directly_is_kept_too():
    bcn = BatchChannelNorm2d(8, 2, sync_stats=False)
    assert nn.SyncBatchNorm.convert_sync_batchnorm(bcn) is bcn and bcn.sync_stats


def classifier(estimate):
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    return MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BCN', num_groups=8,
                                                             estimate=estimate)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=512),
        data_preprocessor=dict(mean=[0, 0, 0], std=[255, 255, 255])))


def loader():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    return DataLoader([dict(inputs=image) for image in images], batch_size=4,
                      collate_fn=pseudo_collate)


def test_precise_bn_is_exact_for_large_batch_bcn():
    from mmpretrain.engine.hooks.precise_bn_hook import update_bn_stats

    model = classifier(estimate=False)
    stem = model.backbone.norm1
    means = []
    stem.register_forward_hook(lambda m, args, out: means.append(args[0].mean((0, 2, 3))))
    update_bn_stats(model, loader(), num_samples=16, logger='silent')
    expected = torch.stack(means).mean(0)  # the average of the 4 batches' means
    torch.testing.assert_close(stem.running_mean, expected, rtol=1e-5, atol=1e-6)
    assert stem.momentum == 0.1  # restored


def test_precise_bn_refuses_micro_batch_bcn_and_says_why():
    from mmpretrain.engine.hooks.precise_bn_hook import update_bn_stats

    model = classifier(estimate=True)
    before = model.backbone.norm1.running_var.clone()
    with pytest.raises(PreciseBNError, match='micro-batch BCN') as error:
        update_bn_stats(model, loader(), num_samples=16, logger='silent')
    assert 'Remove PreciseBNHook' in str(error.value)
    assert torch.equal(model.backbone.norm1.running_var, before)


def test_swa_update_bn_is_exact_for_large_batch_and_refuses_micro_batch_bcn():
    from torch.optim.swa_utils import update_bn

    batches = [torch.randn(4, 8, 5, 5) + i for i in range(3)]
    large = nn.Sequential(BatchChannelNorm2d(8, 2))
    update_bn(batches, large)
    torch.testing.assert_close(large[0].running_mean,
                               torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0))
    micro = nn.Sequential(BatchChannelNorm2d(8, 2, estimate=True))
    with pytest.raises(PreciseBNError, match='Skip update_bn'):
        update_bn(batches, micro)


def test_bcn_without_running_statistics_is_a_clear_error():
    model = nn.Sequential(BatchChannelNorm2d(8, 2))
    torch.func.replace_all_batch_norm_modules_(model)
    with pytest.raises(RuntimeError, match='has no running statistics'):
        model(torch.randn(2, 8, 3, 3))
