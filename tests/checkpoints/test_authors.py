"""Authors' BCN+WS checkpoint layout -> mmdet ResNet with BCN + WSConv2d: same features."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmbcn.checkpoints import (
    CheckpointLayoutError,
    build_bcn_ws_backbone,
    convert_file,
    read_backbone,
    read_checkpoint,
)

GROUPS = 32


class AuthorsNorm(nn.Module):
    """The release's layout: batch stage ``pbn``; per-group affine of shape (1, G, 1)."""

    def __init__(self, channels):
        super().__init__()
        self.pbn = nn.BatchNorm2d(channels)
        self.weight = nn.Parameter(torch.ones(1, GROUPS, 1))
        self.bias = nn.Parameter(torch.zeros(1, GROUPS, 1))

    def forward(self, x):
        y = self.pbn(x).reshape(x.shape[0], GROUPS, -1)
        mean = y.mean(2, keepdim=True)
        var = y.var(2, correction=0, keepdim=True)
        return ((y - mean) / torch.sqrt(var + 1e-5) * self.weight + self.bias).reshape(x.shape)


class AuthorsConv(nn.Conv2d):
    def forward(self, x):
        w = self.weight.reshape(self.out_channels, -1)
        w = (w - w.mean(1, keepdim=True)) / torch.sqrt(w.var(1, keepdim=True) + 1e-5)
        return F.conv2d(x, w.reshape(self.weight.shape), None, self.stride, self.padding)


class AuthorsBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = AuthorsConv(inplanes, planes, 1, bias=False), AuthorsNorm(planes)
        self.conv2 = AuthorsConv(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = AuthorsNorm(planes)
        self.conv3 = AuthorsConv(planes, planes * 4, 1, bias=False)
        self.bn3 = AuthorsNorm(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(
                AuthorsConv(inplanes, planes * 4, 1, stride, bias=False), AuthorsNorm(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class AuthorsResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = AuthorsConv(3, 64, 7, 2, 3, bias=False)
        self.bn1 = AuthorsNorm(64)
        inplanes, layers = 64, []
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers.append(nn.Sequential(*[
                AuthorsBottleneck(inplanes if i == 0 else planes * 4, planes, stride if i == 0
                                  else 1) for i in range(blocks)]))
            inplanes = planes * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@pytest.fixture(scope='module')
def authors_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = AuthorsResNet50()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, AuthorsNorm):
                module.pbn.weight.uniform_(0.5, 1.5)
                module.pbn.bias.normal_(0, 0.1)
                module.pbn.running_mean.normal_(0, 0.1)
                module.pbn.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    path = tmp_path_factory.mktemp('authors') / 'resnet50_bcn_ws.pth.tar'
    state = {f'module.{k}': v for k, v in model.state_dict().items()}  # DataParallel keys
    torch.save({'state_dict': state, 'epoch': 90}, path)
    return model.eval(), path


def test_converted_checkpoint_gives_the_same_features(authors_checkpoint, tmp_path):
    authors_model, path = authors_checkpoint
    summary = convert_file(str(path), str(tmp_path / 'converted.pth'), 'resnet50')
    assert summary['dropped'] == ['fc.weight', 'fc.bias'] and summary['num_groups'] == GROUPS
    backbone = build_bcn_ws_backbone('resnet50')
    result = backbone.load_state_dict(read_backbone(str(tmp_path / 'converted.pth')),
                                      strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    backbone.eval()  # mmdet ResNet.train() returns None: no chaining
    backbone.double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)  # float64: the maths, not fp32 rounding
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[-1], authors_model.double()(x), rtol=1e-9,
                                   atol=1e-9)


def test_readme_layout_converts_to_the_same_checkpoint(authors_checkpoint, tmp_path):
    # The BCNorm of the authors' README: batch stage `bn` (an EstBN with its update rate stored
    # as `bn.estbn_moving_speed`) instead of the released files' `pbn`.
    _, path = authors_checkpoint
    released = torch.load(path, weights_only=True)['state_dict']
    readme = {k.replace('.pbn.', '.bn.'): v for k, v in released.items()}
    for key in [k for k in readme if k.endswith('.bn.running_mean')]:
        readme[key.replace('running_mean', 'estbn_moving_speed')] = torch.tensor([0.1])
    readme_path = tmp_path / 'readme_layout.pth'
    torch.save(readme, readme_path)
    convert_file(str(path), str(tmp_path / 'released.pth'), 'resnet50')
    summary = convert_file(str(readme_path), str(tmp_path / 'readme.pth'), 'resnet50')
    speeds = [k for k in summary['dropped'] if k.endswith('estbn_moving_speed')]
    assert len(speeds) == 53  # every norm layer of a ResNet-50
    expected = read_checkpoint(str(tmp_path / 'released.pth'))
    converted = read_checkpoint(str(tmp_path / 'readme.pth'))
    assert converted.keys() == expected.keys()
    assert all(torch.equal(converted[k], expected[k]) for k in expected)


def test_wrong_architecture_is_a_clear_error(authors_checkpoint, tmp_path):
    _, path = authors_checkpoint
    with pytest.raises(CheckpointLayoutError, match=r'does not fit an mmdet resnet101.*missing'):
        convert_file(str(path), str(tmp_path / 'out.pth'), 'resnet101')


def test_not_an_authors_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / 'bn.pth'
    torch.save(nn.BatchNorm2d(4).state_dict(), path)
    with pytest.raises(CheckpointLayoutError, match='not an authors'):
        convert_file(str(path), str(tmp_path / 'out.pth'), 'resnet50')


def test_truncated_file_is_a_clear_error(authors_checkpoint, tmp_path):
    _, path = authors_checkpoint
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(path.read_bytes()[:100000])
    with pytest.raises(CheckpointLayoutError, match='truncated'):
        read_checkpoint(str(truncated))


@pytest.mark.parametrize('config', [
    'configs/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py',
    'configs/deeplabv3/deeplabv3_r50-d8_bcn-ws_8xb2-20k_voc12aug-512x512.py',
])
def test_converted_checkpoint_loads_into_the_backbones_of_our_configs(authors_checkpoint,
                                                                       tmp_path, config):
    from mmbcn_testing.models import build_model
    from mmbcn_testing.paths import ROOT
    from mmengine.config import Config
    _, path = authors_checkpoint
    convert_file(str(path), str(tmp_path / 'converted.pth'), 'resnet50')
    backbone = build_model(Config.fromfile(f'{ROOT}/{config}')).backbone
    result = backbone.load_state_dict(read_backbone(str(tmp_path / 'converted.pth')))
    assert not result.missing_keys and not result.unexpected_keys


def build_mmdet_resnet50(norm_cfg, conv_cfg=None):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    return MODELS.build(dict(type='ResNet', depth=50, norm_cfg=norm_cfg, conv_cfg=conv_cfg))


def test_bn_checkpoint_loads_with_only_the_channel_stage_fresh():
    from mmbcn.checkpoints import load_matching
    bn_state = build_mmdet_resnet50(dict(type='BN')).state_dict()
    backbone = build_bcn_ws_backbone('resnet50')
    result = load_matching(backbone, bn_state)
    assert result['unused'] == [] and result['mis_shaped'] == []
    assert result['fresh'] and all(k.endswith(('group_weight', 'group_bias'))
                                   for k in result['fresh'])
    assert torch.equal(backbone.layer1[0].bn1.running_var, bn_state['layer1.0.bn1.running_var'])


def test_gn_ws_checkpoint_loads_its_convs_and_reports_its_gn_layers():
    from mmbcn.checkpoints import load_matching
    gn_state = build_mmdet_resnet50(dict(type='GN', num_groups=32),
                                    dict(type='ConvWS')).state_dict()
    result = load_matching(build_bcn_ws_backbone('resnet50'), gn_state)
    assert 'layer4.2.conv3.weight' in result['loaded']
    assert 'layer1.0.gn1.weight' in result['unused']
    assert 'layer1.0.bn1.running_mean' in result['fresh']
