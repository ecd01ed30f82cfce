"""configs/imagenet: the authors' recipe, a CPU training run, and checkpoints that load strictly
into the BCN+WS detection and segmentation configs."""

import glob
import os.path as osp
import re
import shutil

import pytest
import torch
from mmbcn_testing.paths import ROOT
from mmengine.config import Config
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d
from mmbcn.checkpoints import read_backbone
from mmbcn.commands import cli
from mmbcn.commands.curves import epoch_curves, load_scalars, write_curves
from mmbcn.datasets import DemoDataSpec
from mmbcn.datasets.class_folders import ClassFolderError
from mmbcn.datasets.synthetic import write_classification_data
from mmbcn.layers import GroupCountMismatchError
from mmbcn.models.residual_zero_init import last_norm
from mmbcn.utils.config_files import build_model

IMAGENET = sorted(glob.glob(osp.join(ROOT, 'configs', 'imagenet', '*.py')))
R50_BCN = osp.join(ROOT, 'configs/imagenet/resnet50_bcn-ws_8xb32-90e_in1k.py')
R101_BCN = osp.join(ROOT, 'configs/imagenet/resnet101_bcn-ws_8xb16-100e_in1k.py')
# The BCN+WS configs an ImageNet BCN+WS checkpoint of each depth starts.
DOWNSTREAM = {
    R50_BCN: ['configs/mask_rcnn/mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py',
              'configs/deeplabv3/deeplabv3_r50-d8_bcn-ws_8xb2-20k_voc12aug-512x512.py'],
    R101_BCN: ['configs/mask_rcnn/mask-rcnn_r101_fpn_bcn-ws_8xb2-1x_coco.py',
               'configs/deeplabv3/deeplabv3_r101-d8_bcn-ws_8xb1-40k_voc12aug-512x512.py',
               'configs/deeplabv3/deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513.py'],
}
CLASSES = ('ellipse', 'rectangle', 'triangle')


@pytest.mark.parametrize('path', IMAGENET, ids=[osp.basename(p) for p in IMAGENET])
def test_imagenet_configs_follow_the_authors(path):
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    r50 = name.startswith('resnet50_')
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.momentum, optimizer.weight_decay) == (
        'SGD', 0.1, 0.9, 1e-4)
    assert cfg.train_cfg.max_epochs == (90 if r50 else 100)
    assert cfg.param_scheduler.milestones == ([30, 60] if r50 else [30, 60, 90])
    assert cfg.train_dataloader.batch_size * 8 == (256 if r50 else 128)
    assert cfg.train_dataloader.dataset.type == 'CheckedImageNet'
    model = build_model(cfg)
    model.init_weights()
    norms = [m for m in model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm,
                                                         nn.GroupNorm))]
    if '_bcn-ws_' in name:  # large-batch BCN over the synchronized global batch
        assert all(isinstance(m, BatchChannelNorm2d) and not m.estimate and m.sync_stats
                   and m.momentum == 0.1 and m.num_groups == 32 for m in norms)
    if '-ws_' in name:  # WS as the authors' ImageNet conv: sqrt(var + eps)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert all(isinstance(m, WSConv2d) and m.eps_on == 'variance' for m in convs)
    lasts = [last_norm(m) for m in model.backbone.modules() if last_norm(m) is not None]
    assert len(lasts) == (16 if r50 else 33)
    for norm in lasts:  # each residual branch starts at zero, BCN by its channel stage
        if isinstance(norm, BatchChannelNorm2d):
            assert not norm.group_weight.any() and (norm.weight == 1).all()
        else:
            assert not norm.weight.any()
    others = [m for m in norms if all(m is not n for n in lasts)]
    assert all((m.weight == 1).all() for m in others)


@pytest.fixture(scope='module')
def small_imagenet(tmp_path_factory):
    """A generated set in ImageNet's folder layout: 3 classes, 3 + 1 images each, 32x32."""
    root = tmp_path_factory.mktemp('generated')
    write_classification_data(str(root), DemoDataSpec(num_train_per_class=3,
                                                      num_val_per_class=1, class_image_size=32))
    return root / 'imagenet'


def small_run_cfg(config: str, data_root, work_dir) -> Config:
    """``config`` on the small generated set: one epoch of 3 steps of 3 images, then validation."""
    cfg = Config.fromfile(config)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomResizedCrop', scale=32),
                dict(type='PackInputs')]
    cfg.merge_from_dict(dict(
        model=dict(data_preprocessor=dict(num_classes=3), head=dict(num_classes=3, topk=(1,))),
        train_cfg=dict(max_epochs=1), val_evaluator=dict(topk=(1,)), test_evaluator=None,
        default_hooks=dict(logger=dict(interval=1)), work_dir=str(work_dir),
        randomness=dict(seed=0)))
    for split in ('train', 'val'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=3, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data_root), metainfo=dict(classes=CLASSES),
                              pipeline=pipeline if split == 'train' else pipeline[:1] + [
                                  dict(type='PackInputs')])
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator
    return cfg


@pytest.fixture(scope='module')
def trained_r50(small_imagenet, tmp_path_factory):
    """The R50 BCN+WS ImageNet config trained for one epoch on CPU: (checkpoint, log dir)."""
    from mmengine.runner import Runner

    work_dir = tmp_path_factory.mktemp('r50')
    runner = Runner.from_cfg(small_run_cfg(R50_BCN, small_imagenet, work_dir))
    runner.train()
    return work_dir / 'epoch_1.pth', runner.log_dir


@pytest.mark.slow
def test_imagenet_config_trains_on_cpu_and_logs_loss_and_top1(trained_r50):
    checkpoint, log_dir = trained_r50
    records = load_scalars(osp.join(log_dir, 'vis_data', 'scalars.json'))
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    top1 = [r['accuracy/top1'] for r in records if 'accuracy/top1' in r]
    assert len(top1) == 1 and 0 <= top1[0] <= 100
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    running = [v for k, v in state.items() if k.endswith('running_var')]
    assert running and not all(torch.equal(v, torch.ones_like(v)) for v in running)


@pytest.mark.slow
def test_curves_are_drawn_from_the_logged_scalars(trained_r50, tmp_path):
    _, log_dir = trained_r50
    records = load_scalars(osp.join(log_dir, 'vis_data', 'scalars.json'))
    curves = epoch_curves(records, 'accuracy/top1', 3, 'R50', 'top-1')
    losses = [r['loss'] for r in records if 'loss' in r]
    assert curves.loss_epochs == [1] and curves.loss == pytest.approx([sum(losses) / 3])
    assert curves.metric_epochs == [1] and len(curves.metric) == 1
    png = write_curves(curves, str(tmp_path / 'curves.png'))
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def checkpoint_of(config: str, trained, tmp_path) -> str:
    """The R50 trained above, or an initialized R101 saved as MMEngine saves a classifier."""
    if config == R50_BCN:
        return str(trained[0])
    path = str(tmp_path / 'r101.pth')
    model = build_model(Config.fromfile(config))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


@pytest.mark.mmcv_ops
@pytest.mark.slow
@pytest.mark.parametrize('source,target', [(s, t) for s, ts in DOWNSTREAM.items() for t in ts],
                         ids=lambda p: osp.basename(p))
def test_checkpoint_starts_the_detection_and_segmentation_configs(source, target, trained_r50,
                                                                  tmp_path):
    checkpoint = checkpoint_of(source, trained_r50, tmp_path)
    cfg = Config.fromfile(osp.join(ROOT, target))
    cfg.model.backbone.init_cfg.checkpoint = checkpoint  # the config's own Pretrained init
    model = build_model(cfg)
    model.init_weights()
    saved = read_backbone(checkpoint)
    result = model.backbone.load_state_dict(saved, strict=True)  # no missing or unexpected key
    assert not result.missing_keys and not result.unexpected_keys
    fresh = build_model(cfg.copy()).backbone.state_dict()  # before init_weights
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert any(not torch.equal(fresh[k], saved[k]) for k in saved if k.endswith('conv1.weight'))


@pytest.mark.mmcv_ops
@pytest.mark.slow
def test_another_group_count_is_refused_with_the_fix(trained_r50, tmp_path, monkeypatch):
    checkpoint = str(trained_r50[0])
    target = osp.join(ROOT, DOWNSTREAM[R50_BCN][0])
    cfg = Config.fromfile(target)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    cfg.model.backbone.norm_cfg.num_groups = 16
    model = build_model(cfg)
    with pytest.raises(GroupCountMismatchError,
                       match=r'bn1.group_weight: the checkpoint has 32 .* this BCN layer 16.*'
                             r'set num_groups=32'):
        model.init_weights()
    monkeypatch.chdir(tmp_path)
    argv = [target, '--cfg-options', f'model.backbone.init_cfg.checkpoint={checkpoint}',
            'model.backbone.norm_cfg.num_groups=16']
    monkeypatch.setattr(cli, 'build_runner', lambda cfg: pytest.fail('built a runner'))
    with pytest.raises(SystemExit, match=f'error: model.backbone.init_cfg checkpoint '
                                         f'{re.escape(checkpoint)}: .*32 channel-stage groups'):
        cli.train(argv)
    assert not (tmp_path / 'work_dirs').exists()


def broken_copy(small_imagenet, tmp_path, breakage):
    root = tmp_path / 'imagenet'
    shutil.copytree(small_imagenet, root)
    breakage(root)
    return root


BREAKAGES = {
    'class folder missing in val': (
        lambda root: shutil.rmtree(root / 'val' / 'triangle'),
        'val_dataloader: .*val: class folder.s. missing: triangle.*add the missing classes'),
    'class folder with no images': (
        lambda root: [p.unlink() for p in (root / 'train' / 'ellipse').iterdir()],
        r'train_dataloader: .*train/ellipse: no images.*Add images'),
}


@pytest.mark.parametrize('breakage', BREAKAGES)
def test_bad_class_folders_are_clear_errors_before_anything_is_written(
        breakage, small_imagenet, tmp_path, monkeypatch):
    damage, message = BREAKAGES[breakage]
    root = broken_copy(small_imagenet, tmp_path, damage)
    cfg = small_run_cfg(R50_BCN, root, tmp_path / 'work')
    split = 'val' if 'val' in breakage else 'train'
    from mmpretrain.registry import DATASETS
    with pytest.raises(ClassFolderError, match=message.split(': ', 1)[1]):
        DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    cfg.dump(str(tmp_path / 'broken.py'))
    monkeypatch.setattr(cli, 'build_runner', lambda cfg: pytest.fail('built a runner'))
    with pytest.raises(SystemExit, match='error: ' + message):
        cli.train([str(tmp_path / 'broken.py')])
    assert not (tmp_path / 'work').exists()
