"""tools/analyze_norm.py as a subprocess on checkpoints of the demo configs (BN, GN+WS, BCN+WS
classifiers; the BCN+WS segmentor and detector) and on bad input."""

import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmbcn_testing.paths import ROOT
from mmengine.config import Config

from mmbcn.datasets import ensure_demo_data
from mmbcn.utils.config_files import build_model

pytestmark = pytest.mark.slow  # starts processes or trains

CLS_DEMO = osp.join(ROOT, 'configs/demo/resnet18_bcn-ws_1xb16-demo-shapes.py')
SEG_DEMO = osp.join(ROOT, 'configs/demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py')
DET_DEMO = osp.join(ROOT, 'configs/demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py')
CLS_VARIANTS = {
    'bn': "model = dict(backbone=dict(norm_cfg=dict(_delete_=True, type='BN'), conv_cfg=None))",
    'gn-ws': "model = dict(backbone=dict(norm_cfg=dict(_delete_=True, type='GN', num_groups=8)))",
    'bcn-ws': '',
}
DEAD = 5  # stem channels given a bias of -10 before the checkpoint is saved


@pytest.fixture(scope='module', autouse=True)
def demo_data():
    ensure_demo_data(osp.join(ROOT, 'data', 'mmbcn_demo'))  # where the demo configs read it


def write_config(folder, name, base, body=''):
    path = osp.join(folder, f'{name}.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = '{base}'\n{body}\n")
    return path


def save_checkpoint(config, path, dead=0):
    """A freshly built model's weights as {'state_dict': ...}; ``dead`` stem channels at -10."""
    model = build_model(Config.fromfile(config))
    if dead:
        stem = model.backbone.norm1
        with torch.no_grad():
            if hasattr(stem, 'group_bias'):  # BCN: the channel stage's bias, 8 channels a group
                stem.group_bias[:dead // 8] = -10
            else:
                stem.bias[:dead] = -10
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def run_tool(*args):
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'analyze_norm.py'),
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def analyzed(config, checkpoint, out, *options):
    result = run_tool(config, checkpoint, '--out', out, *options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert osp.getsize(osp.join(out, 'norm_statistics.png')) > 10_000
    with open(osp.join(out, 'norm_statistics.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(osp.join(out, 'norm_statistics.json')) as f:
        return json.load(f), result.stdout


@pytest.mark.parametrize('variant', list(CLS_VARIANTS))
def test_report_of_a_classifier(tmp_path, variant):
    config = write_config(tmp_path, variant, CLS_DEMO, CLS_VARIANTS[variant])
    dead = 8 if variant == 'bcn-ws' else DEAD
    checkpoint = save_checkpoint(config, tmp_path / 'model.pth', dead=dead)
    report, stdout = analyzed(config, checkpoint, tmp_path / 'out', '--num-batches', '2')
    layers = report['layers']
    expected_type = {'bn': 'BatchNorm2d', 'gn-ws': 'GroupNorm',
                     'bcn-ws': 'BatchChannelNorm2d'}[variant]
    assert len(layers) == 20 and {layer['type'] for layer in layers.values()} == {expected_type}
    feeds = [layer['feeds'] for layer in layers.values()]
    assert feeds.count('activation') == 9 and feeds.count('residual') == 11
    assert all(layer['values_per_channel'] > 0 for layer in layers.values())
    stem_name = 'backbone.gn1' if variant == 'gn-ws' else 'backbone.bn1'
    stem = layers[stem_name]
    assert stem['eliminated_fraction'] == dead / 64  # the checkpoint's weights were measured
    assert len(stem['channels']['margin']) == 64
    assert report['model']['max_layer_eliminated_fraction'] >= dead / 64
    assert report['settings']['num_batches'] == 2 and report['settings']['split'] == 'val'
    assert list(report['stages']) == ['layer1', 'layer2', 'layer3', 'layer4']
    assert report['stages']['layer4']['sample_pairs'] == 2 * 16 * 15  # 2 batches of 16
    assert f'| {stem_name} | ' in stdout and 'sample similarity' in stdout


@pytest.mark.parametrize('demo', [SEG_DEMO, DET_DEMO])
def test_report_reaches_the_heads_of_a_segmentor_and_a_detector(tmp_path, demo):
    checkpoint = save_checkpoint(demo, tmp_path / 'model.pth')
    report, _ = analyzed(demo, checkpoint, tmp_path / 'out', '--num-batches', '1')
    head = 'decode_head' if demo == SEG_DEMO else 'roi_head.mask_head'
    reached = [name for name, layer in report['layers'].items()
               if name.startswith(head) and layer['values_per_channel'] > 0]
    assert reached and all(report['layers'][name]['feeds'] == 'activation' for name in reached)
    assert report['model']['layers'] > 9  # backbone and heads


def test_a_config_without_normalization_is_refused(tmp_path):
    config = write_config(tmp_path, 'lenet', CLS_DEMO, (
        "model = dict(_delete_=True, type='ImageClassifier', neck=None,\n"
        "             backbone=dict(type='LeNet5', num_classes=3), head=dict(type='ClsHead'))"))
    checkpoint = save_checkpoint(write_config(tmp_path, 'bn', CLS_DEMO, CLS_VARIANTS['bn']),
                                 tmp_path / 'model.pth')
    result = run_tool(config, checkpoint, '--out', tmp_path / 'out')
    assert result.returncode != 0
    assert 'has no normalization layer' in result.stderr and 'norm_cfg' in result.stderr
    assert not osp.exists(tmp_path / 'out')


@pytest.mark.parametrize('body, problem', [
    (CLS_VARIANTS['gn-ws'], 'missing key(s) (backbone.gn1.bias, backbone.gn1.weight'),
    ("model = dict(backbone=dict(norm_cfg=dict(num_groups=4)))",
     "key(s) of another shape (backbone.bn1.group_bias: checkpoint (8,), model (4,))"),
])
def test_a_checkpoint_of_another_config_is_refused(tmp_path, body, problem):
    source = 'bn' if 'GN' in body else 'bcn-ws'
    checkpoint = save_checkpoint(write_config(tmp_path, source, CLS_DEMO, CLS_VARIANTS[source]),
                                 tmp_path / 'model.pth')
    result = run_tool(write_config(tmp_path, 'other', CLS_DEMO, body), checkpoint,
                      '--out', tmp_path / 'out')
    assert result.returncode != 0
    (line, ) = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert 'does not match config' in line and problem in line, result.stderr[-2000:]
    assert 'Give the checkpoint this config trained' in line
    assert not osp.exists(tmp_path / 'out')
