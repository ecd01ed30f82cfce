"""The Proxy-Normalization ResNets of mmdet, mmseg and mmpretrain: where PN sits, the parent's
checkpoint keys, zero-init, frozen stages and norm_eval, and training in the demo configs."""

import importlib
import math
import os.path as osp

import pytest
import torch
from mmbcn_testing.paths import ROOT
from mmbcn_testing.short_training import train_briefly
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

import mmbcn.models.backbones.mmdet_resnet  # noqa: F401  (registers the PN ResNets)
import mmbcn.models.backbones.mmpretrain_resnet  # noqa: F401
import mmbcn.models.backbones.mmseg_resnet  # noqa: F401
from mmbcn.layers.proxy_norm import NormProxyAct
from mmbcn.utils.config_files import build_model

TOOLBOXES = ('mmdet', 'mmseg', 'mmpretrain')
GN = dict(type='GN', num_groups=8, requires_grad=True)
PROXY_KEYS = ('proxy_weight', 'proxy_bias')


def build(toolbox, kind, **kwargs):
    init_default_scope(toolbox)
    registry = importlib.import_module(f'{toolbox}.registry').MODELS
    parent = {'ResNetV1c': dict(type='ResNet', deep_stem=True, avg_down=False),
              'ResNetV1d': dict(type='ResNet', deep_stem=True, avg_down=True)}.get(
                  kind, dict(type=kind))
    if kind.startswith('ProxyNorm'):
        parent = dict(type=kind)
    return registry.build(dict(parent, **dict(dict(norm_cfg=GN), **kwargs)))


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize('toolbox', TOOLBOXES)
@pytest.mark.parametrize('kind, depth, activated', [
    ('ResNet', 18, 1 + 8), ('ResNetV1c', 18, 3 + 8), ('ResNetV1d', 50, 3 + 2 * 16)])
def test_pn_after_every_norm_followed_by_a_relu_and_the_parents_keys(toolbox, kind, depth,
                                                                      activated):
    parent = build(toolbox, kind, depth=depth)
    model = build(toolbox, f'ProxyNorm{kind}', depth=depth)
    assert count(model, NormProxyAct) == activated  # stem (1 or 3) + norm1 (+ norm2) per block
    # the last norm of each branch and the downsample norms stay plain GN with affine
    plain = [m for m in model.modules() if type(m) is nn.GroupNorm and m.affine]
    assert len(plain) == count(parent, nn.GroupNorm) - activated
    # no ReLU in the stem but the PN's own activation (phi, applied before the proxy's stats)
    assert all(name.endswith('.activation') for name, m in _stem(model).named_modules()
               if isinstance(m, nn.ReLU))
    # every parent key is there under the same name; the new ones are the proxies'
    parent_keys, keys = set(parent.state_dict()), set(model.state_dict())
    assert parent_keys <= keys
    assert {k.rsplit('.', 1)[-1] for k in keys - parent_keys} == set(PROXY_KEYS)
    assert len(keys - parent_keys) == 2 * activated
    # a parent checkpoint loads: gamma and beta of each NormProxyAct are the parent's norm affine
    with torch.no_grad():
        for param in parent.parameters():
            param.uniform_(0.5, 1.5)
    missing, unexpected = model.load_state_dict(parent.state_dict(), strict=False)
    assert unexpected == [] and {k.rsplit('.', 1)[-1] for k in missing} == set(PROXY_KEYS)
    name, norm = next((n, m) for n, m in model.named_modules() if isinstance(m, NormProxyAct))
    torch.testing.assert_close(norm.weight, parent.get_submodule(name).weight)
    out = model(torch.randn(2, 3, 64, 64))
    assert all(torch.isfinite(o).all() for o in out)


def _stem(model):
    return model.stem if model.deep_stem else nn.ModuleList([model.conv1, model.norm1,
                                                            model.relu])


@pytest.mark.parametrize('toolbox', TOOLBOXES)
def test_block_forward_is_conv_norm_pn_then_plain_norm_residual_and_relu(toolbox):
    model = build(toolbox, 'ProxyNormResNet', depth=18)
    block = model.layer2[0]
    with torch.no_grad():
        for param in block.parameters():
            param.uniform_(-0.5, 0.5)
    x = torch.randn(2, 64, 8, 8)
    branch = block.norm2(block.conv2(block.norm1(block.conv1(x))))
    torch.testing.assert_close(block(x), torch.relu(branch + block.downsample(x)))
    assert isinstance(block.norm1, NormProxyAct) and type(block.norm2) is nn.GroupNorm


@pytest.mark.parametrize('toolbox', TOOLBOXES)
@pytest.mark.parametrize('depth', [18, 50])
def test_zero_init_residual_zeroes_the_last_plain_norm_as_the_parents(toolbox, depth):
    model = build(toolbox, 'ProxyNormResNetV1c', depth=depth)
    model.init_weights()
    last = 'norm2' if depth == 18 else 'norm3'
    blocks = [m for m in model.modules() if hasattr(m, 'downsample')]
    assert blocks and all(torch.count_nonzero(getattr(b, last).weight) == 0 for b in blocks)
    assert all(torch.equal(b.norm1.weight, torch.ones_like(b.norm1.weight)) for b in blocks)
    kept = build(toolbox, 'ProxyNormResNetV1c', depth=depth, zero_init_residual=False)
    kept.init_weights()
    assert all(torch.count_nonzero(getattr(b, last).weight) > 0
               for b in kept.modules() if hasattr(b, 'downsample'))


@pytest.mark.parametrize('toolbox', TOOLBOXES)
@pytest.mark.parametrize('kind', ['ProxyNormResNet', 'ProxyNormResNetV1d'])
def test_frozen_stages_freeze_the_proxy_normalized_stem_and_norm_eval_keeps_its_meaning(
        toolbox, kind):
    model = build(toolbox, kind, depth=18, frozen_stages=1)
    stem = model.stem if model.deep_stem else nn.ModuleList([model.conv1, model.norm1])
    assert not any(p.requires_grad for p in stem.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    bn = build(toolbox, kind, depth=18, norm_cfg=dict(type='BN', requires_grad=True),
               norm_eval=True)
    bn.train()
    inner = [m.norm for m in bn.modules() if isinstance(m, NormProxyAct)]
    assert inner and all(isinstance(n, nn.BatchNorm2d) and not n.training for n in inner)


DEMOS = sorted((osp.join(ROOT, 'configs', 'proxy_norm', name) for name in (
    'deeplabv3_r18-d8_gn-pn_2xb2-demo-shapes.py', 'mask-rcnn_r18_fpn_gn-pn_2xb2-demo-shapes.py',
    'resnet18_gn-pn_1xb16-demo-shapes.py')))


@pytest.mark.parametrize('path', DEMOS, ids=osp.basename)
def test_demo_configs_build_the_pn_backbone(path):
    cfg = Config.fromfile(path)
    model = build_model(cfg)
    assert type(model.backbone).__name__.startswith('ProxyNormResNet')
    assert count(model.backbone, NormProxyAct) > 0
    assert count(model, nn.modules.batchnorm._BatchNorm) == 0


@pytest.mark.slow
@pytest.mark.parametrize('path', DEMOS, ids=osp.basename)
def test_demo_configs_train(path, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = train_briefly(path, tmp_path)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
    proxies = [m.proxy_bias for m in runner.model.modules() if isinstance(m, NormProxyAct)]
    assert any(torch.count_nonzero(p) > 0 for p in proxies)  # the proxies were trained
