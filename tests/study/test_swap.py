"""The study's one swap rule on real mmseg, mmdet and mmpretrain configs, and its bad input."""

import glob
import os.path as osp
import re

import pytest
from mmbcn_testing.paths import ROOT
from mmengine.config import Config

from mmbcn.study import PRESETS, StudyInputError, bcn_micro_batch, get_presets, swap_config
from mmbcn.study.swap import built_layers, norm_owners

SEG_DEMO = osp.join(ROOT, 'configs/demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py')
SEG_SYNCBN = osp.join(
    ROOT, 'configs/deeplabv3/deeplabv3_r50-d8_syncbn_8xb2-20k_voc12aug-512x512.py')
DET_BCN = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py')
DET_BN = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_r50_fpn_bn_8xb2-1x_coco.py')
CLS_BN = osp.join(ROOT, 'configs/imagenet/resnet50_bn_8xb32-90e_in1k.py')


def swapped(path, preset, gpus, **kwargs):
    return swap_config(Config.fromfile(path), PRESETS[preset], gpus, **kwargs)


def norm_types(swap):
    owners, _ = norm_owners(swap.cfg.model)
    return {path: owner['norm_cfg']['type'] for path, owner in owners}


def hook_types(cfg):
    return [h['type'] for h in cfg.custom_hooks]


def test_seg_demo_to_gn_ws_swaps_every_norm_and_builds_no_other_norm():
    swap = swapped(SEG_DEMO, 'gn-ws', 2, stats_interval=5)
    assert norm_types(swap) == {'model.backbone': 'GN', 'model.decode_head': 'GN',
                                'model.auxiliary_head': 'GN'}
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        assert swap.cfg.model[part].norm_cfg == dict(type='GN', num_groups=8, requires_grad=True)
        assert swap.cfg.model[part].conv_cfg == dict(type='WSConv2d')
        assert f'model.{part}.norm_cfg: BCN(' in '\n'.join(swap.changes)
    assert hook_types(swap.cfg) == ['NormStatisticsHook']  # the rate hook went with BCN
    assert swap.cfg.custom_hooks[0]['interval'] == 5
    assert swap.cfg.default_hooks.logger.log_metric_by_epoch is False
    assert any(b['type'] == 'LocalVisBackend' for b in swap.cfg.visualizer.vis_backends)
    built = built_layers(swap.cfg)
    assert built['GroupNorm'] > 20 and built['WSConv2d'] > 20
    assert 'BatchChannelNorm2d' not in built and 'BatchNorm2d' not in built
    # the input config is untouched
    assert Config.fromfile(SEG_DEMO).model.backbone.norm_cfg.type == 'BCN'


def test_seg_demo_to_bn_removes_ws_everywhere():
    swap = swapped(SEG_DEMO, 'bn', 2)
    assert set(norm_types(swap).values()) == {'BN'}
    assert all(swap.cfg.model[p].conv_cfg is None
               for p in ('backbone', 'decode_head', 'auxiliary_head'))
    assert 'model.backbone.conv_cfg: WSConv2d() -> None' in swap.changes
    built = built_layers(swap.cfg)
    assert 'WSConv2d' not in built and built['BatchNorm2d'] > 20 and built['Conv2d'] > 20


BCN_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*_bcn-ws_*.py'), recursive=True))


@pytest.mark.parametrize('path', BCN_CONFIGS, ids=[osp.basename(c) for c in BCN_CONFIGS])
def test_the_mode_rule_gives_every_shipped_bcn_config_its_own_mode(path):
    cfg = Config.fromfile(path)
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)-', osp.basename(path)).groups())
    owners, _ = norm_owners(cfg.model)
    assert {o['norm_cfg']['estimate'] for _, o in owners} == {
        bcn_micro_batch(gpus * per_gpu, cfg.default_scope)}


def test_bcn_mode_follows_the_global_batch_as_the_configs_choose_it():
    assert bcn_micro_batch(2, 'mmseg') and bcn_micro_batch(7, 'mmpretrain')
    assert not bcn_micro_batch(8, 'mmseg') and not bcn_micro_batch(16, 'mmpretrain')
    assert bcn_micro_batch(16, 'mmdet')
    micro = swapped(SEG_DEMO, 'bcn-ws', 2)  # 2 images x 2 processes = 4
    assert micro.bcn_mode == 'micro-batch' and micro.global_batch == 4
    assert micro.cfg.model.backbone.norm_cfg == dict(type='BCN', num_groups=8, estimate=True,
                                                     sync_stats=True, requires_grad=True)
    assert hook_types(micro.cfg) == ['BCNUpdateRateHook']
    large = swapped(SEG_DEMO, 'bcn-ws', 4)  # 2 x 4 = 8
    assert large.bcn_mode == 'large-batch'
    assert large.cfg.model.decode_head.norm_cfg.estimate is False
    assert hook_types(large.cfg) == []  # no rate hook for large-batch BCN


def test_rate_presets_run_micro_batch_at_any_batch():
    for name, policy in (('bcn-ws-lr', 'lr'), ('bcn-ws-constant', 'constant')):
        swap = swapped(SEG_DEMO, name, 8)
        assert swap.bcn_mode == 'micro-batch'
        assert swap.cfg.custom_hooks == [dict(type='BCNUpdateRateHook', policy=policy,
                                              rate=0.1)]
    cma = swapped(SEG_DEMO, 'bcn-ws-cma', 8)
    assert cma.cfg.model.backbone.norm_cfg.momentum is None
    assert cma.cfg.model.backbone.norm_cfg.estimate is True
    assert hook_types(cma.cfg) == []


def test_mask_rcnn_bcn_config_to_gn_swaps_backbone_neck_and_both_heads():
    swap = swapped(DET_BCN, 'gn', 8)
    assert norm_types(swap) == {
        'model.backbone': 'GN', 'model.neck': 'GN', 'model.roi_head.bbox_head': 'GN',
        'model.roi_head.mask_head': 'GN'}
    assert swap.cfg.model.neck.norm_cfg.num_groups == 32  # the config's own group count
    built = built_layers(swap.cfg)
    assert 'WSConv2d' not in built and 'BatchChannelNorm2d' not in built
    assert built['GroupNorm'] > 50


def test_mask_rcnn_bn_config_swaps_its_backbone_and_keeps_norm_eval():
    swap = swapped(DET_BN, 'bcn-ws', 8)  # 16 images, detection: micro-batch BCN
    assert norm_types(swap) == {'model.backbone': 'BCN'} and swap.bcn_mode == 'micro-batch'
    assert hook_types(swap.cfg) == ['BCNUpdateRateHook']
    assert swap.cfg.model.backbone.norm_cfg.requires_grad is True
    assert swap.cfg.model.backbone.norm_eval is True  # the config's choice, not the preset's
    assert swap.cfg.model.backbone.conv_cfg == dict(type='WSConv2d')
    built = built_layers(swap.cfg)
    assert built['BatchChannelNorm2d'] > 50 and 'BatchNorm2d' not in built


def test_mmseg_syncbn_config_to_bcn_ws_takes_32_groups_and_large_batch():
    swap = swapped(SEG_SYNCBN, 'bcn-ws', 8)
    assert swap.bcn_mode == 'large-batch'
    assert {o['norm_cfg']['num_groups'] for _, o in norm_owners(swap.cfg.model)[0]} == {32}
    assert set(norm_types(swap).values()) == {'BCN'}


def test_mmpretrain_config_to_gn_ws():
    swap = swapped(CLS_BN, 'gn-ws', 8)
    assert norm_types(swap) == {'model.backbone': 'GN'}
    built = built_layers(swap.cfg)
    assert built['GroupNorm'] > 50 and built['WSConv2d'] > 50 and 'BatchNorm2d' not in built


def test_modules_without_norm_and_other_norm_types_are_left_and_listed():
    cfg = Config.fromfile(SEG_DEMO)
    cfg.merge_from_dict({'model.auxiliary_head.norm_cfg': None})
    swap = swap_config(cfg, PRESETS['gn'], 2)
    assert swap.cfg.model.auxiliary_head.norm_cfg is None
    assert swap.left == ['model.auxiliary_head.norm_cfg: None (the module is built without a '
                         'norm)']
    cfg = Config.fromfile(SEG_DEMO)
    cfg.merge_from_dict({'model.auxiliary_head.norm_cfg': dict(_delete_=True, type='LN')})
    assert swap_config(cfg, PRESETS['gn'], 2).left == [
        "model.auxiliary_head.norm_cfg: LN() (not a 2-d feature norm)"]


def test_a_config_without_norm_layers_is_refused_by_name(tmp_path):
    (tmp_path / 'lenet.py').write_text("_base_ = 'mmpretrain::lenet/lenet5_mnist.py'\n")
    cfg = Config.fromfile(tmp_path / 'lenet.py')
    with pytest.raises(StudyInputError, match='lenet5_mnist.py: its model has no normalization'):
        swap_config(cfg, PRESETS['gn'], 2, name='lenet5_mnist.py')


def test_unknown_and_repeated_presets_are_refused_with_the_valid_names():
    with pytest.raises(StudyInputError, match=r"'bcn'; valid: bn, syncbn, gn, gn-ws, bcn-ws"):
        get_presets(['gn', 'bcn'])
    with pytest.raises(StudyInputError, match='named twice: gn'):
        get_presets(['gn', 'gn'])


STUDY_DEFAULT = osp.join(ROOT, 'configs/study/deeplabv3_r18-d8_bcn-ws_2xb1-study-demo-shapes.py')


def test_bcns_stage_presets_swap_into_the_default_study_and_build_their_layers():
    bcn = swapped(STUDY_DEFAULT, 'bcn-ws', 2, stats_interval=5)
    batch = swapped(STUDY_DEFAULT, 'bcn-ws-batch', 2, stats_interval=5)
    channel = swapped(STUDY_DEFAULT, 'bcn-ws-channel', 2, stats_interval=5)
    assert (batch.bcn_mode, batch.num_groups) == ('micro-batch', None)
    assert (channel.bcn_mode, channel.num_groups) == (None, 8)
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        assert batch.cfg.model[part].norm_cfg == dict(type='BCNBatchStage', estimate=True,
                                                      sync_stats=True, requires_grad=True)
        assert channel.cfg.model[part].norm_cfg == dict(type='BCNChannelStage', num_groups=8,
                                                        requires_grad=True)
        assert batch.cfg.model[part].conv_cfg == channel.cfg.model[part].conv_cfg == dict(
            type='WSConv2d')
    # the batch stage gets bcn-ws's rate hook; neither gets NormStatisticsHook, which would
    # find no norm layer it measures in them
    assert bcn.cfg.custom_hooks == [dict(type='BCNUpdateRateHook'),
                                    dict(type='NormStatisticsHook', interval=5)]
    assert batch.cfg.custom_hooks == [dict(type='BCNUpdateRateHook')]
    assert channel.cfg.custom_hooks == []
    # one ablation layer wherever BCN was, and nothing else changed
    built = built_layers(bcn.cfg)
    assert built_layers(batch.cfg) == dict(BCNBatchStage=built['BatchChannelNorm2d'],
                                           WSConv2d=built['WSConv2d'], Conv2d=built['Conv2d'])
    assert built_layers(channel.cfg) == dict(BCNChannelStage=built['BatchChannelNorm2d'],
                                             WSConv2d=built['WSConv2d'], Conv2d=built['Conv2d'])


def test_bcns_stage_presets_are_listed_and_have_no_revisiting_bn_variant():
    with pytest.raises(StudyInputError, match=r"valid: .*bcn-ws-batch, bcn-ws-channel, "):
        get_presets(['bcn-ws-stages'])
    with pytest.raises(StudyInputError, match="'bcn-ws-batch-rbn'"):
        get_presets(['bcn-ws-batch-rbn'])
