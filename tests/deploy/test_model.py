"""Deploy conversion on real models from our configs: same outputs, plain convs and GroupNorm."""

import pytest
import torch
from mmbcn_testing.bcn_cases import randomize_bcn
from mmbcn_testing.paths import ROOT
from mmengine.config import Config
from mmengine.structures import InstanceData
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d
from mmbcn.deploy import ChannelAffineGroupNorm, deploy_model
from mmbcn.utils.config_files import build_model

DET_CONFIG = f'{ROOT}/configs/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py'
SEG_CONFIG = f'{ROOT}/configs/deeplabv3/deeplabv3_r50-d8_bcn-ws_8xb2-20k_voc12aug-512x512.py'


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def assert_deployed(model):
    assert count(model, BatchChannelNorm2d) == 0 and count(model, WSConv2d) == 0
    assert count(model, ChannelAffineGroupNorm) == 0  # every batch stage folded into a conv
    assert count(model, nn.GroupNorm) > 0


def test_sequential_and_unfoldable_layers():
    model = randomize_bcn(nn.Sequential(
        WSConv2d(3, 8, 3, padding=1), BatchChannelNorm2d(8, 2), nn.ReLU(),
        BatchChannelNorm2d(8, 4), WSConv2d(8, 8, 1, bias=True), BatchChannelNorm2d(8, 2)))
    x = torch.randn(2, 3, 7, 7)
    expected = model(x)
    deploy_model(model)
    assert count(model, ChannelAffineGroupNorm) == 1  # the BCN after the ReLU
    assert count(model, BatchChannelNorm2d) == 0 and count(model, WSConv2d) == 0
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_training_mode_is_a_clear_error():
    with pytest.raises(RuntimeError, match='needs a model in eval mode'):
        deploy_model(nn.Sequential(BatchChannelNorm2d(4, 2)))


@pytest.mark.mmcv_ops
def test_mask_rcnn_from_config_gives_the_same_outputs():
    cfg = Config.fromfile(DET_CONFIG)
    cfg.model.backbone.init_cfg = None
    model = randomize_bcn(build_model(cfg)).double()  # float64: folding is exact maths
    x = torch.randn(1, 3, 96, 128, dtype=torch.float64)
    proposals = InstanceData(bboxes=torch.tensor([[4., 8., 60., 70.], [30., 20., 120., 90.]],
                                                 dtype=torch.float64))

    def outputs():
        with torch.no_grad():
            feats = model.extract_feat(x)
            rpn = model.rpn_head(feats)
            roi = model.roi_head.forward(feats, [proposals])
        return [*feats, *rpn[0], *rpn[1], *roi]

    expected = outputs()
    deploy_model(model)
    assert_deployed(model)
    torch.testing.assert_close(outputs(), expected, rtol=1e-9, atol=1e-9)  # lengths too


@pytest.mark.mmcv_ops
def test_deeplabv3_from_config_gives_the_same_outputs():
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.pretrained = None
    model = randomize_bcn(build_model(cfg)).double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = model._forward(x)
        deploy_model(model)
        assert_deployed(model)
        torch.testing.assert_close(model._forward(x), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.mmcv_ops
def test_deployed_deeplabv3_exports_to_onnx_whole(tmp_path):
    from mmbcn.deploy import TensorForward, export_onnx, onnxruntime_max_error
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.pretrained = None
    model = deploy_model(randomize_bcn(build_model(cfg)))
    segmentor = TensorForward(model)
    path = export_onnx(segmentor, torch.randn(1, 3, 64, 64), str(tmp_path / 'seg.onnx'))
    assert onnxruntime_max_error(path, segmentor, torch.randn(1, 3, 96, 80)) < 1e-3  # dynamic


@pytest.mark.mmcv_ops
@pytest.mark.slow
def test_deploy_tool_exports_mask_rcnn_backbone(tmp_path):
    import subprocess
    import sys
    cfg = Config.fromfile(DET_CONFIG)
    cfg.model.backbone.init_cfg = None
    model = randomize_bcn(build_model(cfg))
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'trained.pth')
    result = subprocess.run(
        [sys.executable, f'{ROOT}/tools/deploy.py', DET_CONFIG, str(tmp_path / 'trained.pth'),
         '--onnx', str(tmp_path / 'backbone.onnx'), '--shape', '64', '96', '--out',
         str(tmp_path / 'deployed.pth')], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    error = float(result.stdout.split('max abs difference')[1].split()[0])
    assert error < 1e-3
    deployed = torch.load(tmp_path / 'deployed.pth', weights_only=False)
    assert_deployed(deployed)
