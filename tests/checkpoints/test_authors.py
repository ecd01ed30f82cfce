"""Authors' BCN+WS checkpoint layout -> mmdet ResNet with BCN + WSConv2d: same features."""

import pytest
import torch
from mmbcn_testing.authors_layout import GROUPS, write_authors_checkpoint
from torch import nn

from mmbcn.checkpoints import (
    CheckpointLayoutError,
    build_bcn_ws_backbone,
    convert_file,
    read_backbone,
    read_checkpoint,
)


@pytest.fixture(scope='module')
def authors_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('authors') / 'resnet50_bcn_ws.pth.tar'
    return write_authors_checkpoint(path), path


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
    from mmbcn_testing.paths import ROOT
    from mmengine.config import Config

    from mmbcn.utils.config_files import build_model
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
