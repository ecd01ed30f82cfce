"""BCN and WSConv2d through OpenMMLab's public doors: registries, real backbones, settings."""

import pytest
import torch
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmbcn import BatchChannelNorm2d, WSConv2d, convert_sync_batchnorm, revert_sync_batchnorm

BCN_CFG = dict(type='BCN', num_groups=8, requires_grad=True)
WS_CFG = dict(type='WSConv2d')


def in_scope(scope):
    """Run in an OpenMMLab default scope (None: no scope)."""
    if scope == 'mmdet':
        import mmdet.models  # noqa: F401  (fills the mmdet registry)
    elif scope == 'mmseg':
        import mmseg.models  # noqa: F401
    elif scope == 'mmpretrain':
        import mmpretrain.models  # noqa: F401
    if scope is None:
        return DefaultScope.overwrite_default_scope(None)
    DefaultScope.get_instance(f'test-{scope}', scope_name=scope)
    return DefaultScope.overwrite_default_scope(scope)


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg', 'mmpretrain'])
def test_build_by_string_in_every_scope(scope):
    with in_scope(scope):
        name, layer = build_norm_layer(BCN_CFG, 32, postfix=1)
        conv = build_conv_layer(WS_CFG, 16, 32, 3, padding=1)
        by_class_name = build_norm_layer(dict(type='BatchChannelNorm2d', num_groups=4), 8)[1]
    assert name == 'bn1'  # _abbr_ keeps BN layer names, hence BN checkpoint keys
    assert isinstance(layer, BatchChannelNorm2d) and layer.num_groups == 8
    assert layer.eps == 1e-5
    assert isinstance(conv, WSConv2d) and conv.out_channels == 32
    assert isinstance(by_class_name, BatchChannelNorm2d)


def test_unknown_option_through_build_norm_layer_names_it():
    with pytest.raises(TypeError, match='num_grups'):
        build_norm_layer(dict(type='BCN', num_grups=8), 32)


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def loss_of(outputs):
    return sum(out.float().square().mean() for out in outputs)


def train_steps(model, x, steps=3):
    """``steps`` SGD steps on a fixed batch; the outputs of the first forward and each loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses, first_outputs = [], None
    for _ in range(steps):
        optimizer.zero_grad()
        outputs = model(x)
        loss = loss_of(outputs)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        first_outputs = first_outputs or outputs
    return first_outputs, losses


def test_mmdet_resnet50_with_bcn_and_ws_trains():
    from mmdet.models.backbones import ResNet
    with in_scope('mmdet'):
        model = ResNet(50, norm_cfg=BCN_CFG, conv_cfg=WS_CFG, norm_eval=False,
                       out_indices=(0, 1, 2, 3))
    assert count(model, BatchChannelNorm2d) == 53 and count(model, WSConv2d) == 53
    assert count(model, nn.BatchNorm2d) == 0
    assert 'layer1.0.bn2.group_weight' in model.state_dict()
    model.train()
    outputs, losses = train_steps(model, torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == [256, 512, 1024, 2048]
    assert model.layer4[2].bn3.group_weight.grad is not None
    assert model.conv1.weight.grad.abs().sum() > 0
    assert losses[-1] < losses[0], losses  # the steps lower the loss on the batch


def test_mmseg_resnetv1c_with_bcn_and_ws_trains_in_micro_batch_mode():
    from mmseg.models.backbones import ResNetV1c
    cfg = dict(BCN_CFG, estimate=True)
    with in_scope('mmseg'):
        model = ResNetV1c(depth=50, norm_cfg=cfg, conv_cfg=WS_CFG, norm_eval=False,
                          strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))
    # the deep stem has 3 convs + 3 norms
    assert count(model, BatchChannelNorm2d) == 55 and count(model, WSConv2d) == 55
    model.train()
    outputs, losses = train_steps(model, torch.randn(1, 3, 64, 64))  # one image per GPU
    assert all(torch.isfinite(o).all() for o in outputs)
    assert model.stem[1].running_mean.abs().sum() > 0  # the estimates moved
    assert int(model.stem[1].num_batches_tracked) == 3
    assert losses[-1] < losses[0], losses


def test_norm_eval_freezes_bcn_batch_statistics():
    from mmdet.models.backbones import ResNet
    with in_scope('mmdet'):
        model = ResNet(18, norm_cfg=BCN_CFG, norm_eval=True)
    model.train()
    bcn_layers = [m for m in model.modules() if isinstance(m, BatchChannelNorm2d)]
    assert bcn_layers and all(not m.training for m in bcn_layers)
    before = [m.running_mean.clone() for m in bcn_layers]
    train_steps(model, torch.randn(2, 3, 32, 32), steps=1)
    assert all(torch.equal(m.running_mean, b) for m, b in zip(bcn_layers, before, strict=True))
    assert bcn_layers[0].group_weight.grad is not None  # the affine parameters still train


def test_norm_decay_mult_applies_to_all_bcn_parameters():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), BatchChannelNorm2d(8, 2))
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
        paramwise_cfg=dict(norm_decay_mult=0.0)))
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    norm = model[1]
    for param in (norm.weight, norm.bias, norm.group_weight, norm.group_bias):
        assert decay[id(param)] == 0.0
    assert decay[id(model[0].weight)] == 1e-4


def test_bcn_is_a_norm_layer_for_mmcv():
    from mmcv.cnn.bricks import is_norm
    layer = BatchChannelNorm2d(8, 2)
    assert is_norm(layer) and isinstance(layer, _BatchNorm)


def test_convert_sync_batchnorm_keeps_bcn_and_converts_batchnorm():
    model = nn.Sequential(nn.BatchNorm2d(4), BatchChannelNorm2d(8, 2, sync_stats=False))
    converted = convert_sync_batchnorm(model)
    assert isinstance(converted[0], nn.SyncBatchNorm)
    assert isinstance(converted[1], BatchChannelNorm2d) and converted[1].sync_stats
    reverted = revert_sync_batchnorm(converted)
    assert type(reverted[0]) is not nn.SyncBatchNorm and isinstance(reverted[0], _BatchNorm)
    assert isinstance(reverted[1], BatchChannelNorm2d)
