"""The study's Proxy-Normalization and Revisiting-BN presets: names, swaps, what the swapped models
build, the task with the image-pooling norm kept as GN, and one real study with both presets."""

import json
import os.path as osp
import subprocess
import sys

import pytest
from mmbcn_testing.paths import ROOT
from mmengine.config import Config

from mmbcn.study import PRESETS, StudyInputError, get_presets, swap_config
from mmbcn.study.swap import built_layers

STUDY = osp.join(ROOT, 'configs/study/deeplabv3_r18-d8_bcn-ws_2xb1-study-demo-shapes.py')
GN_POOL = osp.join(ROOT, 'configs/study/deeplabv3_r18-d8_gn-ws_2xb1-study-gn-pool-demo-shapes.py')
DET_BN = osp.join(ROOT, 'configs/mask_rcnn/mask-rcnn_r50_fpn_bn_8xb2-1x_coco.py')
CLS_BN = osp.join(ROOT, 'configs/imagenet/resnet50_bn_8xb32-90e_in1k.py')


def swapped(path, name, gpus=2):
    (preset, ) = get_presets([name])
    return swap_config(Config.fromfile(path), preset, gpus)


def test_the_presets_and_the_rbn_modifier_by_name():
    assert 'gn-pn' in PRESETS and 'bn-rbn' in PRESETS
    presets = get_presets(['gn-pn', 'bn-rbn', 'gn-ws-rbn', 'bcn-ws-rbn', 'syncbn-rbn'])
    assert [p.name for p in presets] == ['gn-pn', 'bn-rbn', 'gn-ws-rbn', 'bcn-ws-rbn',
                                         'syncbn-rbn']
    pn, bn_rbn, gn_ws_rbn, bcn_ws_rbn, _ = presets
    assert pn.proxy_norm and not pn.revisiting_bn and pn.norm_type == 'GN'
    assert bn_rbn.revisiting_bn and bn_rbn.norm_type == 'BN'
    assert gn_ws_rbn.weight_standardized and gn_ws_rbn.norm_type == 'GN'
    assert bcn_ws_rbn.rate_hook == PRESETS['bcn-ws'].rate_hook
    for name in ('gn-pn-rbn', 'bn-rbn-rbn', 'ln-rbn'):
        with pytest.raises(StudyInputError, match=rf"'{name}'; valid: .*'-rbn' after any of"):
            get_presets([name])


def test_gn_pn_swaps_in_the_pn_backbone_and_says_so():
    swap = swapped(STUDY, 'gn-pn')
    assert swap.cfg.model.backbone.type == 'ProxyNormResNetV1c'
    assert swap.backbone == 'ResNetV1c -> ProxyNormResNetV1c'
    assert "model.backbone.type: 'ResNetV1c' -> 'ProxyNormResNetV1c'" in swap.changes
    assert 'mmbcn.models.backbones.mmseg_resnet' in swap.cfg.custom_imports.imports
    assert swap.cfg.model.backbone.conv_cfg is None
    assert swap.cfg.model.decode_head.norm_cfg.type == 'GN'
    built = built_layers(swap.cfg)
    assert built['NormProxyAct'] == 3 + 8  # deep stem + norm1 of 8 BasicBlocks
    assert 'BatchChannelNorm2d' not in built and 'WSConv2d' not in built


def test_rbn_adds_the_recipe_to_any_preset_with_a_scale():
    for name in ('bn-rbn', 'gn-ws-rbn', 'bcn-ws-rbn'):
        swap = swapped(GN_POOL, name)
        cfg = swap.cfg
        assert cfg.model.init_cfg == [dict(type='RevisitingBNInit', scale=0.1)]
        assert cfg.model.data_preprocessor.type == 'InputNormDataPreprocessor'
        inner = cfg.model.data_preprocessor.preprocessor
        assert (inner.type, inner.mean, inner.std) == ('SegDataPreProcessor', None, None)
        assert cfg.optim_wrapper.constructor == 'RevisitingBNOptimWrapperConstructor'
        assert any(c.startswith('optim_wrapper.constructor: None -> ') for c in swap.changes)
        built = built_layers(cfg)
        assert built['InputBatchNorm'] == 1, name
    assert swapped(GN_POOL, 'bcn-ws-rbn').bcn_mode == 'micro-batch'


@pytest.mark.parametrize('path, kind', [(DET_BN, 'ProxyNormResNet'),
                                        (CLS_BN, 'ProxyNormResNet')])
def test_mmdet_and_mmpretrain_configs_take_both_presets(path, kind):
    assert swapped(path, 'gn-pn', 8).cfg.model.backbone.type == kind
    cfg = swapped(path, 'gn-ws-rbn', 8).cfg
    assert cfg.model.data_preprocessor.preprocessor.type in ('DetDataPreprocessor',
                                                             'ClsDataPreprocessor')
    assert built_layers(cfg)['InputBatchNorm'] == 1


def test_gn_pn_refuses_a_backbone_it_has_no_variant_of(tmp_path):
    config = tmp_path / 'swin.py'
    config.write_text(f"_base_ = '{STUDY}'\nmodel = dict(backbone=dict(type='SwinTransformer'))\n")
    with pytest.raises(StudyInputError, match="swaps model.backbone 'SwinTransformer'"):
        swapped(str(config), 'gn-pn')


def test_the_gn_pool_task_keeps_the_image_pooling_norm_for_every_preset():
    for name in ('bn', 'bcn-ws', 'gn-pn'):
        swap = swapped(GN_POOL, name)
        assert any(item.startswith('model.decode_head.image_pool_norm_cfg: GN(') for item in
                   swap.left)
        model_counts = built_layers(swap.cfg)
        assert model_counts['GroupNorm'] >= 1  # the image-pooling branch's
    bn = swapped(GN_POOL, 'bn')
    assert 'BatchNorm2d' in built_layers(bn.cfg)


@pytest.mark.slow
def test_a_real_study_runs_both_presets(tmp_path, monkeypatch):
    from mmbcn.datasets import ensure_demo_data
    monkeypatch.chdir(ROOT)
    ensure_demo_data()
    work_dir = tmp_path / 'study'
    command = [sys.executable, osp.join(ROOT, 'tools', 'norm_study.py'), GN_POOL,
               '--norms', 'gn-pn', 'bn-rbn', '--seeds', '0', '--gpus', '2', '--work-dir',
               str(work_dir), '--stats-interval', '2', '--cfg-options',
               'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
               'default_hooks.logger.interval=2']
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((work_dir / 'results.json').read_text())
    runs = {run['preset']: run for run in results['runs']}
    for name in ('gn-pn', 'bn-rbn'):
        assert runs[name]['status'] == 'ok', runs[name]['error']
        assert 0.0 <= runs[name]['final_metric'] <= 100.0
        assert [step for step, _ in runs[name]['curves']['loss']] == [2, 4]
    assert results['presets']['gn-pn']['built']['NormProxyAct'] == 11
    table = (work_dir / 'results.md').read_text()
    assert 'backbone ResNetV1c -> ProxyNormResNetV1c' in table
    assert '| gn-pn |' in table and '| bn-rbn |' in table
