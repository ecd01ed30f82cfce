"""The measures through the public API on real mmdet, mmseg and mmpretrain models."""

import pytest
import torch

from mmbcn.analysis import NormStatisticsCollector, feed_kinds, find_stages, norm_statistics

NORMS = {
    'bn': (dict(type='BN'), None),
    'gn': (dict(type='GN', num_groups=8), None),
    'gn-ws': (dict(type='GN', num_groups=8), dict(type='WSConv2d')),
    'bcn-ws': (dict(type='BCN', num_groups=8, estimate=True), dict(type='WSConv2d')),
}
STAGES = ['layer1', 'layer2', 'layer3', 'layer4']


def mmdet_resnet(norm, depth=18):
    """A freshly initialized mmdet ResNet (zero_init_residual: each block's last norm at 0)."""
    from mmdet.models.backbones import ResNet
    norm_cfg, conv_cfg = NORMS[norm]
    model = ResNet(depth=depth, norm_cfg=norm_cfg, conv_cfg=conv_cfg, norm_eval=False)
    model.init_weights()
    return model


def stem_norm(model):
    return model.norm1_name


def eliminate_channels(norm_layer, norm):
    """Put a bias of -10 on some channels of a layer; return how many."""
    with torch.no_grad():
        if norm == 'bcn-ws':  # the channel stage's bias, one per group of 64 / 8 channels
            norm_layer.group_bias[:2] = -10
            return 2 * norm_layer.num_features // norm_layer.group_bias.numel()
        norm_layer.bias[:16] = -10
        return 16


@pytest.mark.parametrize('norm', list(NORMS))
def test_resnet18_feeds_and_stages(norm):
    model = mmdet_resnet(norm)
    feeds = feed_kinds(model)
    assert 'unknown' not in feeds.values()
    kinds = list(feeds.values())
    assert kinds.count('activation') == 1 + 8  # the stem and norm1 of 8 BasicBlocks
    assert kinds.count('residual') == 8 + 3  # norm2 of 8 blocks and 3 downsample norms
    assert feeds[stem_norm(model)] == 'activation'
    block = model.layer2[0]
    assert feeds[f'layer2.0.{block.norm1_name}'] == 'activation'
    assert feeds[f'layer2.0.{block.norm2_name}'] == 'residual'
    assert feeds['layer2.0.downsample.1'] == 'residual'
    assert find_stages(model) == {stage: stage for stage in STAGES}


@pytest.mark.parametrize('norm', list(NORMS))
def test_resnet18_statistics(norm):
    model = mmdet_resnet(norm)
    model.train()
    stem = getattr(model, stem_norm(model))
    eliminated = eliminate_channels(stem, norm)
    result = norm_statistics(model, [torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)])
    layers = result['layers']
    assert layers[stem_norm(model)]['eliminated_fraction'] == eliminated / 64
    assert result['model']['max_layer'] == stem_norm(model)
    assert result['model']['max_layer_eliminated_fraction'] == eliminated / 64
    activation_channels = sum(layer['num_channels'] for layer in layers.values()
                              if layer['feeds'] == 'activation')
    assert result['model']['num_channels'] == activation_channels
    assert result['model']['eliminated_fraction'] >= eliminated / activation_channels
    # zero_init_residual: each block's last norm outputs 0 everywhere
    for name, layer in layers.items():
        last_in_block = layer['feeds'] == 'residual' and 'downsample' not in name
        assert layer['constant_fraction'] == (1.0 if last_in_block else 0.0), name
    for stage in STAGES:
        figures = result['stages'][stage]
        assert figures['sample_pairs'] == 2 * (2 * 1)  # two batches of two samples
        assert -1e-12 <= figures['sample_similarity'] <= 1.0  # features after a ReLU


def test_stage_gradient_norm_is_that_of_the_stage_output():
    model = mmdet_resnet('gn-ws')
    collector = NormStatisticsCollector(model)
    with collector:
        outputs = model(torch.randn(2, 3, 32, 32))
        for output in outputs:
            output.retain_grad()
        sum((output * torch.randn_like(output)).sum() for output in outputs).backward()
    collector.end_batch()
    stages = collector.stage_statistics()
    assert len(outputs) == len(STAGES)
    for stage, output in zip(STAGES, outputs, strict=True):
        assert stages[stage]['grad_norm'] == pytest.approx(float(output.grad.norm()), rel=1e-6)


def test_bottleneck_deep_stem_and_conv_modules():
    from mmcv.cnn import ConvModule
    from mmdet.models.necks import FPN
    from mmpretrain.models.backbones import ResNet as PretrainResNet
    from mmseg.models.backbones import ResNetV1c

    feeds = feed_kinds(mmdet_resnet('bn', depth=50))
    assert feeds['layer1.0.bn1'] == feeds['layer1.0.bn2'] == 'activation'
    assert feeds['layer1.0.bn3'] == 'residual'
    deep_stem = feed_kinds(ResNetV1c(depth=18, norm_cfg=dict(type='BN')))
    assert [deep_stem[f'stem.{i}'] for i in (1, 4, 7)] == ['activation'] * 3
    assert 'unknown' not in deep_stem.values()
    pretrain = feed_kinds(PretrainResNet(depth=50))
    assert pretrain['layer4.2.bn3'] == 'residual' and pretrain['bn1'] == 'activation'
    fpn = feed_kinds(FPN([64, 128], 32, 2, norm_cfg=dict(type='GN', num_groups=8)))
    assert set(fpn.values()) == {'no_activation'}  # FPN convs have act_cfg=None
    conv = ConvModule(3, 8, 3, norm_cfg=dict(type='GN', num_groups=2))
    assert feed_kinds(conv) == {'gn': 'activation'}
