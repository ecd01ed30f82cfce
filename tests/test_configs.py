"""Every config in configs/ loads, builds its model, and is what its file name says."""

import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))


def build_model(cfg):
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(cfg.model)


def count(model, cls, prefix=''):
    return sum(isinstance(m, cls) for name, m in model.named_modules() if name.startswith(prefix))


def test_there_are_configs_for_every_model_and_norm():
    names = [osp.basename(c) for c in CONFIGS]
    for pattern in (r'mask-rcnn_r(50|101)_fpn_(bcn-ws|gn-ws|bn)_8xb2-(1x|2x)_coco\.py',
                    r'deeplabv3_r(50|101)-d8_(bcn-ws|gn-ws|syncbn)_8xb[12]-\d+k_voc12aug'):
        assert len([n for n in names if re.match(pattern, n)]) == 12, pattern


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(c, ROOT) for c in CONFIGS])
def test_config_builds_what_its_name_says(path):
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)-', name).groups())
    assert cfg.train_dataloader.batch_size == per_gpu
    assert 'mmbcn' in cfg.custom_imports.imports

    model = build_model(cfg)
    bcn, ws = count(model, BatchChannelNorm2d), count(model, WSConv2d)
    gn, bn = count(model, nn.GroupNorm), count(model, nn.modules.batchnorm._BatchNorm) - bcn
    if '_bcn-ws_' in name:
        assert bcn > 0 and ws > 0 and gn == 0 and bn == 0
        parts = (('backbone', 'neck', 'roi_head.bbox_head', 'roi_head.mask_head')
                 if cfg.default_scope == 'mmdet' else
                 ('backbone', 'decode_head', 'auxiliary_head', 'decode_head.image_pool'))
        for part in parts:
            assert count(model, BatchChannelNorm2d, part) > 0, part
            assert count(model, WSConv2d, part) > 0, part
        assert not cfg.model.backbone.get('norm_eval', False)
        assert any(h.type == 'BCNUpdateRateHook' for h in cfg.custom_hooks)
    elif '_gn-ws_' in name:
        assert gn > 0 and ws > 0 and bcn == 0 and bn == 0
    else:
        assert bn > 0 and bcn == 0 and ws == 0
    depth = int(re.search(r'_r(\d+)', name).group(1))
    assert cfg.model.backbone.depth == depth
