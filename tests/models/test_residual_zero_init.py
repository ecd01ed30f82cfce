"""Zero-initialized residual branches of mmdet/mmseg ResNets with BCN: the authors' init."""

import pytest
import torch
from mmengine.registry import init_default_scope

from mmbcn import BatchChannelNorm2d

BCN = dict(type='BCN', num_groups=8, estimate=True, requires_grad=True)


def build_resnet(scope, depth, zero_init_residual=True, seed=0):
    """A from-scratch ResNet of ``scope`` with BCN + WSConv2d, initialized by MMEngine."""
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='ResNet', depth=depth, norm_cfg=BCN,
                              conv_cfg=dict(type='WSConv2d'), norm_eval=False,
                              zero_init_residual=zero_init_residual))
    model.init_weights()
    return model


def last_norms(model):
    """The norm layer that closes each residual branch (``norm2`` or ``norm3``)."""
    return [block.norm3 if hasattr(block, 'norm3') else block.norm2
            for name in model.res_layers for block in getattr(model, name)]


def first_step_gradient_norm(model, seed=1):
    model.train()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 64, 64, generator=generator)
    outputs = model(x)
    loss = sum((out * torch.randn(out.shape, generator=generator)).sum() for out in outputs)
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()
                      if p.grad is not None]).norm().item()


@pytest.mark.parametrize('scope,depth', [('mmdet', 18), ('mmdet', 50), ('mmseg', 18)])
def test_zero_init_residual_zeroes_the_channel_stage_weight(scope, depth):
    model = build_resnet(scope, depth)
    zeroed = last_norms(model)
    assert zeroed and all(isinstance(norm, BatchChannelNorm2d) for norm in zeroed)
    for norm in zeroed:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
        assert torch.equal(norm.group_weight, torch.zeros_like(norm.group_weight))
    others = [m for m in model.modules()
              if isinstance(m, BatchChannelNorm2d) and all(m is not z for z in zeroed)]
    assert others and all(torch.equal(m.group_weight, torch.ones_like(m.group_weight))
                          and torch.equal(m.weight, torch.ones_like(m.weight)) for m in others)


@pytest.mark.parametrize('depth', [18, 50])
def test_first_step_gradient_is_that_of_the_authors_init(depth):
    ours_model = build_resnet('mmdet', depth)
    authors = build_resnet('mmdet', depth, zero_init_residual=False)
    with torch.no_grad():  # the authors' zero-init: each branch's last channel-stage weight
        for norm in last_norms(authors):
            norm.group_weight.zero_()
    expected = authors.state_dict()
    for name, value in ours_model.state_dict().items():  # the same weights, the same seed
        assert torch.equal(value, expected[name]), name
    ours = first_step_gradient_norm(ours_model)
    reference = first_step_gradient_norm(authors)
    assert ours == pytest.approx(reference, rel=1e-6)
    # What a plain Constant(0) of the batch stage gave (the channel stage dividing a constant
    # by sqrt(eps)): far off, so this test can tell the two apart.
    batch_zeroed = build_resnet('mmdet', depth, zero_init_residual=False)
    with torch.no_grad():
        for norm in last_norms(batch_zeroed):
            norm.weight.zero_()
            norm.bias.zero_()
    assert first_step_gradient_norm(batch_zeroed) / reference > 10


def test_a_trained_batch_stage_is_left_alone():
    layer = BatchChannelNorm2d(8, 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.fill_(0.5)  # a zero weight with a bias: not an init, keep it
    layer.init_weights()
    assert torch.equal(layer.weight, torch.zeros(8))
    assert torch.equal(layer.group_weight, torch.ones(2))
