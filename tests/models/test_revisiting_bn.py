"""The Revisiting-BN recipe: the 0.1 init survives init_weights(), the optimizer groups (read from
the built optimizer), the input BatchNorm, and the three demo configs."""

import math
import os.path as osp

import pytest
import torch
from mmbcn_testing.paths import ROOT
from mmbcn_testing.short_training import train_briefly
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from torch import nn

import mmbcn  # noqa: F401  (registers the constructor)
import mmbcn.models  # noqa: F401  (registers RevisitingBNInit, InputNormDataPreprocessor)
from mmbcn.engine.optimizers import is_scale
from mmbcn.layers import BatchChannelNorm2d
from mmbcn.models import InputBatchNorm, InputNormDataPreprocessor, revisiting_bn_init
from mmbcn.utils.config_files import build_model

CONFIGS = osp.join(ROOT, 'configs', 'revisiting_bn')
SEG = osp.join(CONFIGS, 'deeplabv3_r18-d8_bn-rbn_2xb2-demo-shapes.py')
DET = osp.join(CONFIGS, 'mask-rcnn_r18_fpn_bn-rbn_2xb2-demo-shapes.py')
CLS = osp.join(CONFIGS, 'resnet18_bn-rbn_1xb16-demo-shapes.py')
BN = nn.modules.batchnorm._BatchNorm


def norms(model, cls=BN):
    return [m for m in model.modules() if isinstance(m, cls) and not isinstance(m, InputBatchNorm)]


@pytest.mark.parametrize('path', [SEG, DET, CLS], ids=osp.basename)
def test_the_scale_init_survives_init_weights_and_replaces_the_residual_zero_init(path):
    cfg = Config.fromfile(path)
    model = build_model(cfg)
    bns = norms(model)
    assert len(bns) >= 20
    model.init_weights()
    for norm in bns:  # backbone (last norms of blocks included), neck, heads
        torch.testing.assert_close(norm.weight.detach(), torch.full_like(norm.weight, 0.1))
        assert torch.count_nonzero(norm.bias) == 0
    input_norm = model.data_preprocessor.input_norm
    torch.testing.assert_close(input_norm.weight.detach(), torch.full((3, ), 0.1 * 0.58))
    assert not input_norm.bias.requires_grad and torch.count_nonzero(input_norm.bias) == 0
    # the model's own init ran before it: Kaiming convs, not torch's default uniform init
    conv = model.backbone.layer1[0].conv1
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(conv.weight.std().item() / (2 / fan_out) ** 0.5 - 1) < 0.1


def test_norms_under_a_pretrained_init_keep_their_weights(tmp_path):
    cfg = Config.fromfile(SEG)
    backbone = build_model(cfg).backbone
    with torch.no_grad():
        for norm in norms(backbone):
            norm.weight.fill_(0.7)
    torch.save({'state_dict': backbone.state_dict()}, tmp_path / 'backbone.pth')
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'backbone.pth'))
    model = build_model(cfg)
    model.init_weights()
    assert all(torch.all(n.weight == 0.7) for n in norms(model.backbone))
    assert all(torch.all(n.weight == 0.1) for n in norms(model.decode_head))


def test_bcn_gets_the_scale_on_its_channel_stage():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), BatchChannelNorm2d(8, num_groups=4),
                          nn.GroupNorm(4, 8))
    with torch.no_grad():
        model[1].weight.zero_()  # as a zero_init_residual that zeroed the batch stage
    assert revisiting_bn_init(model, 0.1) == 2
    assert torch.all(model[1].group_weight == 0.1) and torch.all(model[1].weight == 1.0)
    assert torch.all(model[2].weight == 0.1)


def test_optimizer_groups_have_the_recipes_lrs_and_decays():
    cfg = Config.fromfile(SEG)
    model = build_model(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr, decay = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.weight_decay
    assert lr > 0 and decay > 0
    group_of = {id(p): g for g in optim_wrapper.optimizer.param_groups for p in g['params']}
    names = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert len(group_of) == len(names)  # every trained parameter in one group
    # the input BatchNorm's bias is frozen: MMEngine leaves it out of the optimizer
    assert id(model.data_preprocessor.input_norm.bias) not in group_of
    seen = {'scale': 0, 'flat': 0, 'other': 0}
    for name, param in names.items():
        group = group_of[id(param)]
        if param.dim() == 1 and name.endswith('weight'):
            kind, expected = 'scale', (lr / 100, 0.0)
        elif param.dim() == 1:
            kind, expected = 'flat', (lr, 0.0)
        else:
            kind, expected = 'other', (lr, decay)
        assert (group['lr'], group['weight_decay']) == pytest.approx(expected), name
        assert is_scale(name, param) == (kind == 'scale')
        seen[kind] += 1
    assert min(seen.values()) > 10
    assert 'data_preprocessor.input_norm.weight' in names  # the input BN's scale: lr / 100


def test_input_batch_norm_replaces_the_fixed_normalization():
    cfg = Config.fromfile(SEG)
    model = build_model(cfg)
    preprocessor = model.data_preprocessor
    assert isinstance(preprocessor, InputNormDataPreprocessor)
    assert not preprocessor.preprocessor._enable_normalize  # its own mean/std are off
    assert preprocessor.size == (64, 64)  # the wrapped one's options read through
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(4)]
    from mmseg.structures import SegDataSample
    samples = [SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
               for _ in images]
    preprocessor.train()
    out = preprocessor(dict(inputs=images, data_samples=samples), training=True)['inputs']
    assert out.shape == (4, 3, 64, 64)
    # per channel over the batch: mean 0 (bias 0) and std 0.1 x 0.58 (the scale)
    channels = out.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(channels.mean(1), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(channels.std(1, unbiased=False), torch.full((3, ), 0.058),
                               rtol=1e-3, atol=0)
    assert isinstance(preprocessor.input_norm, InputBatchNorm)
    assert preprocessor.input_norm.num_batches_tracked == 1


@pytest.mark.parametrize('path', [SEG, DET, CLS], ids=osp.basename)
def test_a_recipe_config_takes_an_optimizer_step(path):
    cfg = Config.fromfile(path)
    model = build_model(cfg)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    scales = [p for n, p in model.named_parameters() if is_scale(n, p)]
    before = [p.detach().clone() for p in scales]
    params = [p for p in model.parameters() if p.requires_grad]
    loss = sum((p * torch.randn_like(p)).sum() for p in params)  # any loss with a gradient
    optim_wrapper.update_params(loss)
    assert max((p - b).abs().max().item() for p, b in zip(scales, before, strict=True)) > 0
    assert torch.count_nonzero(model.data_preprocessor.input_norm.bias) == 0  # frozen


@pytest.mark.slow
@pytest.mark.parametrize('path', [SEG, DET, CLS], ids=osp.basename)
def test_recipe_configs_train_with_the_runner(path, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = train_briefly(path, tmp_path)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
    model = runner.model
    input_norm = model.data_preprocessor.input_norm
    assert input_norm.num_batches_tracked >= 2  # the input BN ran in front of every step
    assert torch.count_nonzero(input_norm.bias) == 0
    assert not torch.allclose(input_norm.weight, torch.full((3, ), 0.058))  # trained
    # the Runner's init ran the recipe: the scales moved from 0.1 by about lr / 100 steps
    assert all((n.weight - 0.1).abs().max() < 0.05 for n in norms(model))
