"""Every config in configs/ loads, builds its model, and is what its file name says."""

import glob
import os.path as osp
import re

import pytest
from mmbcn_testing.paths import ROOT
from mmengine.config import Config
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d
from mmbcn.layers.proxy_norm import NormProxyAct
from mmbcn.study import bcn_micro_batch
from mmbcn.utils.config_files import build_model

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))
# The authors' DeepLabV3 recipe, one config per row of the paper's VOC table.
PAPER_RECIPE = r'deeplabv3_r101-d16_(bcn-ws|gn-ws|syncbn)_8xb2-50e_voc12aug-513x513\.py'


def count(model, cls, prefix=''):
    return sum(isinstance(m, cls) for name, m in model.named_modules() if name.startswith(prefix))


def test_there_are_configs_for_every_model_and_norm():
    names = [osp.basename(c) for c in CONFIGS]
    for pattern, number in (
            (r'mask-rcnn_r(50|101)_fpn_(bcn-ws|gn-ws|bn)_8xb2-(1x|2x)_coco\.py', 12),
            (r'deeplabv3_r(50|101)-d8_(bcn-ws|gn-ws|syncbn)_8xb[12]-\d+k_voc12aug', 12),
            (PAPER_RECIPE, 3),
            (r'resnet(50_(bcn-ws|gn-ws|bn)_8xb32-90e|101_(bcn-ws|gn-ws|bn)_8xb16-100e)_in1k\.py',
             6)):
        assert len([n for n in names if re.match(pattern, n)]) == number, pattern


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
        parts = {'mmdet': ('backbone', 'neck', 'roi_head.bbox_head', 'roi_head.mask_head'),
                 'mmseg': ('backbone', 'decode_head', 'decode_head.image_pool')
                 + (('auxiliary_head',) if cfg.model.get('auxiliary_head') else ()),
                 'mmpretrain': ('backbone',)}[cfg.default_scope]
        for part in parts:
            assert count(model, BatchChannelNorm2d, part) > 0, part
            assert count(model, WSConv2d, part) > 0, part
        assert not cfg.model.backbone.get('norm_eval', False)
        estimate = {m.estimate for m in model.modules() if isinstance(m, BatchChannelNorm2d)}
        # The mode of the global batch the name states (GPUs x images per GPU), by mmbcn's rule:
        # micro-batch for detection and the 2-4 images of the demos, large-batch synchronized
        # for the 8-16 images of the segmentation configs and the 16-256 of ImageNet; the hook
        # only for the micro-batch mode it drives.
        micro_batch = bcn_micro_batch(gpus * per_gpu, cfg.default_scope)
        assert estimate == {micro_batch}
        hooks = [h.type for h in cfg.get('custom_hooks', [])]
        assert ('BCNUpdateRateHook' in hooks) == estimate.pop()
    elif '_gn-ws_' in name:
        assert gn > 0 and ws > 0 and bcn == 0 and bn == 0
    elif '_gn-pn_' in name:  # GroupNorm without affine + Proxy Normalization, plain convs
        assert count(model, NormProxyAct) > 0 and gn > 0 and bn == 0 and bcn == 0 and ws == 0
    else:
        assert bn > 0 and bcn == 0 and ws == 0
    depth = int(re.search(r'(?:^|_)r(?:esnet)?(\d+)', name).group(1))
    assert cfg.model.backbone.depth == depth


@pytest.mark.parametrize('path', [c for c in CONFIGS if re.match(PAPER_RECIPE, osp.basename(c))])
def test_paper_recipe_configs_follow_the_authors_deeplabv3(path):
    cfg = Config.fromfile(path)
    model = build_model(cfg)
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    assert backbone.type == 'ResNet' and backbone.depth == 101  # plain 7x7 stem
    assert backbone.strides == (1, 2, 2, 1) and backbone.dilations == (1, 1, 1, 2)  # OS16
    assert backbone.contract_dilation  # layer4's first block dilated by 1, as theirs
    assert head.type == 'ASPPHead' and head.dilations == (1, 6, 12, 18)
    assert head.channels == 256 and head.dropout_ratio == 0 and head.align_corners
    assert cfg.model.auxiliary_head is None and not model.with_auxiliary_head
    assert cfg.crop_size == (513, 513) and cfg.model.data_preprocessor.size == (513, 513)
    crops = [t for d in cfg.train_dataloader.dataset.datasets for t in d.pipeline
             if t.type == 'RandomCrop']
    assert len(crops) == 2 and all(t.crop_size == (513, 513) for t in crops)
    assert [d.ann_file for d in cfg.train_dataloader.dataset.datasets] == [
        'ImageSets/Segmentation/train.txt', 'ImageSets/Segmentation/aug.txt']
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum, optimizer.weight_decay) == (
        'SGD', 0.007, 0.9, 1e-4)
    poly, = cfg.param_scheduler
    assert poly.type == 'PolyLR' and poly.power == 0.9 and poly.eta_min == 0 and poly.end == 50
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop' and cfg.train_cfg.max_epochs == 50
    norms = [m for m in model.modules()
             if isinstance(m, (BatchChannelNorm2d, nn.GroupNorm, nn.SyncBatchNorm))]
    name = osp.basename(path)
    if '_bcn-ws_' in name:  # large-batch BCN over the synchronized global batch
        assert all(isinstance(m, BatchChannelNorm2d) and not m.estimate and m.sync_stats
                   and m.momentum == 0.1 for m in norms)
    if '-ws_' in name:  # WS as the authors' DeepLabV3 code: std + eps
        convs = [m for m in model.modules() if isinstance(m, WSConv2d)]
        assert convs and all(m.eps_on == 'std' for m in convs)
