"""``tools/convert_checkpoint.py`` as users run it: the authors' checkpoint in, a file that loads
strictly into the BCN+WS backbone out; ``--report`` on a BN checkpoint; bad input named."""

import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmbcn_testing.authors_layout import write_authors_checkpoint
from mmbcn_testing.paths import ROOT

from mmbcn.checkpoints import build_bcn_ws_backbone, read_backbone

pytestmark = pytest.mark.slow  # each test runs the tool in a fresh interpreter

TOOL = osp.join(ROOT, 'tools', 'convert_checkpoint.py')


def run(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True)


def test_the_tool_writes_a_checkpoint_the_backbone_loads_strictly(tmp_path):
    source, destination = tmp_path / 'rn50-bcn-ws.pth.tar', tmp_path / 'converted.pth'
    write_authors_checkpoint(source)
    result = run(source, destination, '--arch', 'resnet50')
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'to {destination} (num_groups=32; dropped: fc.weight, fc.bias)' in result.stdout
    backbone = build_bcn_ws_backbone('resnet50')
    loaded = backbone.load_state_dict(read_backbone(str(destination)), strict=True)
    assert not loaded.missing_keys and not loaded.unexpected_keys


def test_the_report_counts_what_a_bn_checkpoint_leaves_fresh(tmp_path):
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):  # no global scope left behind
        bn = MODELS.build(dict(type='ResNet', depth=50, norm_cfg=dict(type='BN')))
    path = tmp_path / 'bn.pth'
    torch.save(bn.state_dict(), path)
    result = run(path, '--report', '--arch', 'resnet50')
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(': ', 1) for line in result.stdout.splitlines())
    fresh = build_bcn_ws_backbone('resnet50').state_dict().keys() - bn.state_dict().keys()
    assert lines['fresh'].startswith(f'{len(fresh)} (')  # the channel stages' group affine
    assert lines['unused'] == '0' and lines['mis_shaped'] == '0'
    assert int(lines['loaded']) == len(bn.state_dict())


def test_a_file_of_another_layout_is_an_error_not_a_traceback(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'weight': torch.ones(3)}, path)
    result = run(path, tmp_path / 'out.pth', '--arch', 'resnet50')
    assert result.returncode != 0
    assert result.stderr.startswith('error: ') and 'Traceback' not in result.stderr
    assert not (tmp_path / 'out.pth').exists()
