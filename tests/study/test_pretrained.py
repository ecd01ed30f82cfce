"""The pretrained protocol (tools/norm_study.py --pretrain): a classifier pretrained with each
preset loads strictly into that preset's fine-tuning backbone; another preset's, a missing or an
unexpected key is refused; and one real tiny study (pretraining 1 epoch, fine-tuning 4
iterations)."""

import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmbcn_testing.paths import ROOT

from mmbcn.datasets import ensure_demo_data
from mmbcn.study import StudyInputError, plan_study
from mmbcn.study.pretrained import (
    PretrainedBackboneError,
    PretrainedNormMismatchError,
    deep_stem_renames,
    load_backbone_strictly,
    write_pretrained_backbone,
)
from mmbcn.study.study import finetune_config
from mmbcn.utils.config_files import build_model

pytestmark = pytest.mark.mmcv_ops  # builds mmseg models

TASK = osp.join(ROOT, 'configs/study/deeplabv3_r18-d8_bcn-ws_2xb1-study-demo-shapes.py')
CLASSIFIER = osp.join(ROOT, 'configs/study/resnet18-v1c_bcn-ws_1xb16-study-pretrain-demo-shapes.py')
PRESETS = ['bn', 'syncbn', 'gn', 'gn-ws', 'bcn-ws', 'gn-pn']


@pytest.fixture(scope='module')
def plan():
    return plan_study(TASK, PRESETS, [0], 2, pretrain_config=CLASSIFIER)


def pretrained_file(plan, preset, folder):
    """A classifier of ``preset`` with random (not initial) weights, saved as the Runner saves
    it, then written as the study writes the backbone it fine-tunes from."""
    classifier = build_model(plan.pretrain.swaps[preset].cfg)
    with torch.no_grad():
        for value in classifier.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value))
    checkpoint = osp.join(folder, f'{preset}_epoch_1.pth')
    torch.save(dict(state_dict=classifier.state_dict(), meta=dict(epoch=1)), checkpoint)
    backbone = osp.join(folder, f'{preset}_backbone.pth')
    record = write_pretrained_backbone(checkpoint, backbone, preset,
                                       plan.swaps[preset].num_groups,
                                       plan.pretrain.task_backbone_keys[preset])
    return classifier, backbone, record


def test_the_deep_stem_of_mmpretrain_is_renamed_into_mmsegs():
    source = ['stem.0.conv.weight', 'stem.0.bn.weight', 'stem.2.gn.proxy_bias', 'layer1.0.bn1.bias']
    target = ['stem.0.weight', 'stem.1.weight', 'stem.7.proxy_bias', 'layer1.0.bn1.bias']
    assert deep_stem_renames(source, target) == {
        'stem.0.conv.weight': 'stem.0.weight', 'stem.0.bn.weight': 'stem.1.weight',
        'stem.2.gn.proxy_bias': 'stem.7.proxy_bias'}
    assert deep_stem_renames(target, target) == {}


@pytest.mark.parametrize('preset', PRESETS)
def test_a_pretrained_backbone_of_each_preset_loads_strictly_into_its_fine_tuning(
        plan, preset, tmp_path):
    classifier, backbone, record = pretrained_file(plan, preset, str(tmp_path))
    assert len(record['renamed']) == len([k for k in classifier.state_dict()
                                          if k.startswith('backbone.stem.')])
    cfg = finetune_config(plan.swaps[preset], backbone, preset)
    hook = cfg.custom_hooks[-1]
    assert (hook['type'], hook['preset'], hook['checkpoint']) == (
        'StrictPretrainedBackboneHook', preset, osp.abspath(backbone))
    model = build_model(cfg)
    model.init_weights()  # as the Runner does before the hook loads
    loaded = load_backbone_strictly(model.backbone, backbone, preset, hook['num_groups'])
    state = model.backbone.state_dict()
    assert loaded == len(state) == len(record['renamed']) + len(
        [k for k in classifier.state_dict() if k.startswith('backbone.')
         and not k.startswith('backbone.stem.')])
    pretrained = {k[len('backbone.'):]: v for k, v in classifier.state_dict().items()
                  if k.startswith('backbone.')}
    renames = dict(line.split(' -> ') for line in record['renamed'])
    for key, value in pretrained.items():
        torch.testing.assert_close(state[renames.get(key, key)], value, rtol=0, atol=0)


@pytest.mark.parametrize('pretrained_with, fine_tuned_with', [
    ('gn-ws', 'bcn-ws'),  # other keys too
    ('gn', 'gn-ws'),  # the same keys: only the record tells them apart
])
def test_a_backbone_pretrained_with_another_preset_is_refused(plan, tmp_path, pretrained_with,
                                                              fine_tuned_with):
    _, backbone, _ = pretrained_file(plan, pretrained_with, str(tmp_path))
    model = build_model(plan.swaps[fine_tuned_with].cfg)
    with pytest.raises(PretrainedNormMismatchError) as error:
        load_backbone_strictly(model.backbone, backbone, fine_tuned_with)
    message = str(error.value)
    assert (f"pretrained with preset '{pretrained_with}'" in message
            and f"has preset '{fine_tuned_with}'" in message and 'Pretrain with' in message)


def test_a_missing_or_unexpected_key_is_refused_not_warned(plan, tmp_path):
    _, backbone, _ = pretrained_file(plan, 'bcn-ws', str(tmp_path))
    model = build_model(plan.swaps['bcn-ws'].cfg)
    content = torch.load(backbone, weights_only=True)
    state = content['state_dict']
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}

    state.pop('backbone.layer4.1.bn2.group_weight')
    torch.save(content, backbone)
    with pytest.raises(PretrainedBackboneError, match=r'missing: layer4\.1\.bn2\.group_weight'):
        load_backbone_strictly(model.backbone, backbone, 'bcn-ws')

    state['backbone.layer4.1.bn2.group_weight'] = torch.ones(8)
    state['backbone.fc.weight'] = torch.ones(3, 512)
    torch.save(content, backbone)
    with pytest.raises(PretrainedBackboneError, match=r'unexpected: fc\.weight'):
        load_backbone_strictly(model.backbone, backbone, 'bcn-ws')
    for key, value in model.backbone.state_dict().items():  # nothing was loaded
        assert torch.equal(value, before[key]), key


def test_a_pretraining_config_that_does_not_fit_the_task_is_refused_before_any_run(tmp_path):
    # the demo's classifier has mmpretrain's ResNet (7x7 stem), the task mmseg's ResNetV1c
    demo = osp.join(ROOT, 'configs/demo/resnet18_bcn-ws_1xb16-demo-shapes.py')
    with pytest.raises(StudyInputError, match=r"preset 'gn-ws': the backbone of .* does not "
                                              r'fit .*unexpected: conv1\.weight'):
        plan_study(TASK, ['gn-ws'], [0], 2, str(tmp_path / 'w'), pretrain_config=demo)
    with pytest.raises(StudyInputError, match=r'a classification config \(mmpretrain\)'):
        plan_study(TASK, ['gn-ws'], [0], 2, str(tmp_path / 'w'), pretrain_config=TASK)
    assert not (tmp_path / 'w').exists()


@pytest.mark.slow
def test_a_real_pretrained_study(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo configs read data/mmbcn_demo relative to the repository
    ensure_demo_data()
    work_dir = tmp_path / 'study'
    command = [sys.executable, osp.join(ROOT, 'tools', 'norm_study.py'), TASK,
               '--norms', 'bcn-ws', '--seeds', '0', '--gpus', '2', '--work-dir', str(work_dir),
               '--stats-interval', '2', '--pretrain', CLASSIFIER,
               '--pretrain-cfg-options', 'train_cfg.max_epochs=1',
               '--cfg-options', 'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
               'default_hooks.logger.interval=2']
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((work_dir / 'results.json').read_text())
    [pretraining], [run] = results['pretrain']['runs'], results['runs']
    assert (pretraining['status'], run['status']) == ('ok', 'ok'), (pretraining, run)
    assert 0.0 <= pretraining['final_metric'] <= 100.0
    assert run['pretrain_metric'] == pretraining['final_metric']
    assert results['pretrain']['presets']['bcn-ws']['bcn_mode'] == 'large-batch'
    assert results['presets']['bcn-ws']['bcn_mode'] == 'micro-batch'
    log = (work_dir / 'bcn-ws' / 'seed0' / 'run.log').read_text()
    assert 'StrictPretrainedBackboneHook: loaded 176 tensors into model.backbone, strictly' in log
    row = next(line for line in (work_dir / 'results.md').read_text().splitlines()
               if line.startswith('| bcn-ws |'))
    assert f'| {pretraining["final_metric"]:.1f} ' in row and '(1/1) | 1/1 |' in row
