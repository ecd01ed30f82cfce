"""NormStatisticsHook in short real MMEngine Runner trainings of an mmdet ResNet-18 classifier."""

import glob
import json
import os
import os.path as osp
import uuid

import pytest
import torch
from mmbcn_testing.dist_utils import run_in_processes
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from mmbcn import NormStatisticsHook

STAGES = ('layer1', 'layer2', 'layer3', 'layer4')
MODEL_KEYS = ('norm/eliminated_fraction', 'norm/constant_fraction', 'norm/margin_p10',
              'norm/max_layer_eliminated_fraction')
STAGE_KEYS = tuple(f'norm/{stage}/{key}' for stage in STAGES
                   for key in ('sample_similarity', 'grad_norm'))


class ResNetClassifier(BaseModel):
    """mmdet's ResNet-18 with a linear head; the stem norm's bias at -10 on ``dead`` channels."""

    def __init__(self, norm_cfg=None, dead=0):
        from mmdet.models.backbones import ResNet
        super().__init__()
        self.backbone = ResNet(depth=18, norm_cfg=norm_cfg or dict(type='BN'), norm_eval=False)
        self.head = nn.Linear(512, 2)
        self.dead = dead

    def init_weights(self):  # the Runner initializes the model: the bias after that
        super().init_weights()
        with torch.no_grad():
            self.backbone.norm1.bias[:self.dead] = -10

    def forward(self, inputs, labels, mode='loss'):
        logits = self.head(self.backbone(inputs)[-1].mean(dim=(2, 3)))
        return dict(loss=nn.functional.cross_entropy(logits, labels))


class NoNorm(BaseModel):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, inputs, labels, mode='loss'):
        return dict(loss=nn.functional.cross_entropy(self.conv(inputs).mean((2, 3)), labels))


def runner_cfg(work_dir, model, hook, iters=4, batch_size=2, **extra):
    dataset = [dict(inputs=torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i)),
                    labels=torch.tensor(i % 2)) for i in range(8)]
    return dict(
        model=model, work_dir=str(work_dir),
        train_dataloader=dict(dataset=dataset, batch_size=batch_size,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=iters, val_interval=100),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        custom_hooks=[hook], default_hooks=dict(checkpoint=None, logger=None),
        visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]),
        default_scope=None, experiment_name=f'norm-stats-{uuid.uuid4().hex}', **extra)


def read_scalars(work_dir):
    (path, ) = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


def log_text(work_dir):
    (path, ) = glob.glob(osp.join(str(work_dir), '*', '*.log'))
    with open(path) as f:
        return f.read()


@pytest.mark.slow
def test_scalars_reach_scalars_json(tmp_path):
    runner = Runner(**runner_cfg(tmp_path, ResNetClassifier(), dict(
        type='NormStatisticsHook', interval=2), iters=4))
    runner.train()
    lines = read_scalars(tmp_path)
    assert [line['step'] for line in lines] == [1, 2, 4]  # the first, then every 2nd
    for line in lines:
        assert set(line) == {'step', *MODEL_KEYS, *STAGE_KEYS}
        assert 0.0 <= line['norm/eliminated_fraction'] <= line[
            'norm/max_layer_eliminated_fraction'] <= 1.0
        assert all(line[f'norm/{stage}/grad_norm'] > 0 for stage in STAGES)
    hub = runner.message_hub
    for key in (*MODEL_KEYS, *STAGE_KEYS):
        assert hub.get_scalar(f'train/{key}').current() == lines[-1][key]
    assert not runner.model.backbone.norm1._forward_hooks  # detached after each measurement


@pytest.mark.slow
def test_warning_names_the_layer_once(tmp_path):
    runner = Runner(**runner_cfg(tmp_path, ResNetClassifier(dead=40), dict(
        type='NormStatisticsHook', interval=1, warn_threshold=0.5), iters=3))
    runner.train()
    text = log_text(tmp_path)
    assert text.count('NormStatisticsHook: at iteration') == 1
    assert '62.5% of the channels of backbone.bn1 are eliminated' in text
    assert read_scalars(tmp_path)[0]['norm/max_layer_eliminated_fraction'] == 40 / 64


def test_a_model_without_normalization_is_refused_before_training(tmp_path):
    runner = Runner(**runner_cfg(tmp_path, NoNorm(), dict(type='NormStatisticsHook')))
    with pytest.raises(ValueError, match='no normalization layer.*Remove NormStatisticsHook'):
        runner.train()


def test_bad_interval_is_refused():
    with pytest.raises(ValueError, match='interval must be a positive integer'):
        NormStatisticsHook(interval=0)


def distributed_training(rank, world_size, work_dir):
    os.environ['LOCAL_RANK'] = str(rank)
    torch.manual_seed(0)
    runner = Runner(**runner_cfg(
        work_dir, ResNetClassifier(dict(type='GN', num_groups=8)),  # BN needs 2 values
        dict(type='NormStatisticsHook', interval=2), iters=3,
        batch_size=1, launcher='pytorch',
        cfg=dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None,
                                        broadcast_buffers=False))))
    runner.train()
    return {key: runner.message_hub.get_scalar(f'train/{key}').data[0].tolist()
            for key in (*MODEL_KEYS, *STAGE_KEYS)}


@pytest.mark.slow
def test_two_processes_log_identical_figures_of_the_global_batch(tmp_path):
    rank0, rank1 = run_in_processes(distributed_training, 2, str(tmp_path))
    assert rank0 == rank1
    assert len(rank0['norm/eliminated_fraction']) == 2  # iterations 1 and 2
    # one image per process: the sample pairs exist only across the two processes
    assert len(rank0['norm/layer1/sample_similarity']) == 2
    assert [line['step'] for line in read_scalars(tmp_path)] == [1, 2]  # written by rank 0
