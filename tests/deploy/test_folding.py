"""OpenMMLab's conv-BN folding on BCN and WSConv2d: the right answer, or a refusal naming BCN.

Each path is reached as a user reaches it (``from mmcv.cnn import fuse_conv_bn``,
``ConvModule(efficient_conv_bn_eval=True)``, MMEngine's ``efficient_conv_bn_eval`` config key)
and compared in float64 with the unfused model in eval mode.
"""

import copy
import re

import pytest
import torch
from mmbcn_testing.bcn_cases import randomize_bcn
from mmcv.cnn import ConvModule, fuse_conv_bn
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.model.efficient_conv_bn_eval import turn_on_efficient_conv_bn_eval
from mmengine.registry import init_default_scope
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d
from mmbcn.errors import EfficientConvBNEvalError

BCN = dict(type='BCN', num_groups=8, estimate=True, requires_grad=True)
BN = dict(type='BN', requires_grad=True)
WS = dict(type='WSConv2d')
VARIANTS = {'bcn-ws': (BCN, WS), 'bcn': (BCN, None), 'bn-ws': (BN, WS)}


def resnet18_fpn(norm_cfg, conv_cfg):
    """An mmdet ResNet-18 + FPN (ConvModules) with the given layers everywhere, float64."""
    init_default_scope('mmdet')
    backbone = MMDET_MODELS.build(dict(type='ResNet', depth=18, norm_cfg=norm_cfg,
                                       conv_cfg=conv_cfg, norm_eval=False))
    neck = MMDET_MODELS.build(dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=32,
                                   num_outs=4, norm_cfg=norm_cfg, conv_cfg=conv_cfg))
    return randomize_bcn(nn.Sequential(backbone, neck)).double()


def outputs(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize('variant', VARIANTS)
def test_mmcv_fuse_conv_bn_keeps_the_function(variant):
    model = resnet18_fpn(*VARIANTS[variant])
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    expected = outputs(model, x)
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, (BatchChannelNorm2d, WSConv2d, nn.BatchNorm2d))
                   for m in fused[0].modules() if not isinstance(m, nn.Identity))
    # on two sequences, assert_close checks their lengths first: no output goes uncompared
    torch.testing.assert_close(outputs(fused, x), expected, rtol=1e-9, atol=1e-10)
    if variant.startswith('bcn'):  # every BCN of the backbone kept its channel stage
        bcn_count = sum(isinstance(m, BatchChannelNorm2d) for m in model[0].modules())
        assert sum(isinstance(m, nn.GroupNorm) for m in fused[0].modules()) == bcn_count


def conv_module(norm_cfg, conv_cfg, efficient):
    module = ConvModule(8, 16, 3, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                        efficient_conv_bn_eval=efficient)
    return randomize_bcn(module).double()


def forward_and_gradients(module, x):
    x = x.clone().requires_grad_()
    out = module(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    return out.detach(), x.grad, grads


@pytest.mark.parametrize('variant', [*VARIANTS, 'bn'])
def test_conv_module_efficient_conv_bn_eval_is_exact_with_gradients(variant):
    norm_cfg, conv_cfg = VARIANTS.get(variant, (BN, None))
    plain = conv_module(norm_cfg, conv_cfg, efficient=False)
    efficient = conv_module(norm_cfg, conv_cfg, efficient=True)
    efficient.load_state_dict(plain.state_dict())
    assert efficient.efficient_conv_bn_eval_forward is not None  # the feature is really on
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    out, grad_x, grads = forward_and_gradients(efficient, x)
    want_out, want_grad_x, want_grads = forward_and_gradients(plain, x)
    torch.testing.assert_close(out, want_out, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grad_x, want_grad_x, rtol=1e-9, atol=1e-10)
    assert grads.keys() == want_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], want_grads[name], rtol=1e-8, atol=1e-10,
                                   msg=name)


def test_mmengine_efficient_conv_bn_eval_refuses_bcn_and_names_the_alternatives():
    model = resnet18_fpn(BCN, WS)
    with pytest.raises(EfficientConvBNEvalError, match='BCN or WSConv2d') as error:
        turn_on_efficient_conv_bn_eval(model, '0')
    assert 'efficient_conv_bn_eval=True' in str(error.value)
    assert 'tools/deploy.py' in str(error.value)


def test_mmengine_efficient_conv_bn_eval_still_works_on_plain_bn():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    randomize_bcn(model).double()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    expected = outputs(model, x)
    turn_on_efficient_conv_bn_eval(model, [])  # nothing named: unchanged
    holder = nn.Sequential(model)
    turn_on_efficient_conv_bn_eval(holder, '0')
    torch.testing.assert_close(outputs(holder, x), expected, rtol=1e-9, atol=1e-10)


def test_torch_fuse_conv_bn_eval_folds_the_standardized_weight_and_refuses_bcn():
    from torch.nn.utils import fuse_conv_bn_eval

    model = randomize_bcn(nn.Sequential(WSConv2d(3, 8, 3), nn.BatchNorm2d(8))).double()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    fused = fuse_conv_bn_eval(model[0], model[1])
    assert type(fused) is nn.Conv2d
    torch.testing.assert_close(outputs(fused, x), outputs(model, x), rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="cannot fold a BCN layer"):
        fuse_conv_bn_eval(nn.Conv2d(3, 8, 3).eval(), BatchChannelNorm2d(8, 2).eval())


@pytest.mark.parametrize('conv_cfg,norm_cfg,layer_type', [
    (WS, BN, WSConv2d),
    (None, dict(type='BCN', num_groups=8), BatchChannelNorm2d),
], ids=['ws', 'bcn'])
def test_mmpretrain_reparameterization_refuses_ws_and_bcn(conv_cfg, norm_cfg, layer_type):
    # mmbcn's refusal, naming a layer, for both: mmpretrain's own assertion that its norms are
    # BatchNorm (an AssertionError) would also stop a BCN block, but says nothing of BCN.
    from mmpretrain.registry import MODELS

    from mmbcn.errors import ReparameterizationError

    init_default_scope('mmpretrain')
    block = MODELS.build(dict(type='RepVGG', arch='A0', conv_cfg=conv_cfg,
                              norm_cfg=norm_cfg)).stem
    layers = [name for name, module in block.named_modules() if isinstance(module, layer_type)]
    assert layers
    with pytest.raises(ReparameterizationError, match=re.escape(repr(layers[0]))):
        block.switch_to_deploy()
    assert [name for name, module in block.named_modules()
            if isinstance(module, layer_type)] == layers  # nothing was folded
