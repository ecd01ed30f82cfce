"""BCNUpdateRateHook during a short real MMEngine Runner training."""

from types import SimpleNamespace

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from mmbcn import BatchChannelNorm2d, BCNUpdateRateHook
from mmbcn.layers import BCNBatchStage


class TinyNet(BaseModel):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = BatchChannelNorm2d(8, 2, estimate=True, momentum=0.5)
        self.head = nn.Linear(8, 2)

    def forward(self, inputs, labels, mode='loss'):
        feats = self.norm(self.conv(inputs)).mean(dim=(2, 3))
        logits = self.head(feats)
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, labels))
        return logits


class RecordRate(Hook):
    """Records (iteration, lr, the layer's momentum r) when the layer runs: after the BCN hook
    has acted."""

    priority = 'LOWEST'

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        lr = runner.optim_wrapper.optimizer.param_groups[0]['lr']
        self.seen.append((runner.iter, lr, runner.model.norm.momentum))


def make_runner(tmp_path, hook_cfg):
    dataset = [dict(inputs=torch.randn(3, 8, 8), labels=torch.tensor(i % 2)) for i in range(8)]
    return Runner(
        model=TinyNet(), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=dataset, batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=8, val_interval=100),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        param_scheduler=[dict(type='MultiStepLR', by_epoch=False, milestones=[4], gamma=0.1)],
        custom_hooks=[hook_cfg], default_hooks=dict(checkpoint=None, logger=None),
        default_scope=None)


@pytest.mark.mmcv_ops
@pytest.mark.slow
def test_lr_policy_follows_the_learning_rate(tmp_path):
    runner = make_runner(tmp_path, dict(type='BCNUpdateRateHook', policy='lr', rate=0.2,
                                        warm_start=False))
    recorder = RecordRate()
    runner.register_hook(recorder)
    runner.train()
    assert len(recorder.seen) == 8
    for _, lr, momentum in recorder.seen:
        assert momentum == pytest.approx(0.2 * lr / 0.1)
    assert {round(r, 6) for _, _, r in recorder.seen} == {0.2, 0.02}
    assert runner.message_hub.get_scalar('train/bcn_update_rate').current() == pytest.approx(0.02)


@pytest.mark.mmcv_ops
@pytest.mark.slow
def test_constant_policy_with_warm_start(tmp_path):
    # rate=0.3: the warm start's floor 1/t is above it until iteration 3 and below it from
    # iteration 4, where the learning rate drops tenfold: r must stay 0.3 ('lr' would give 0.03,
    # floored at 1/t).
    runner = make_runner(tmp_path, dict(type='BCNUpdateRateHook', policy='constant', rate=0.3))
    recorder = RecordRate()
    runner.register_hook(recorder)
    runner.train()
    assert [lr for _, lr, _ in recorder.seen] == pytest.approx([0.1] * 4 + [0.01] * 4)
    momenta = [r for _, _, r in recorder.seen]
    assert momenta == pytest.approx([1.0, 1.0, 1 / 2, 1 / 3, 0.3, 0.3, 0.3, 0.3])
    assert runner.message_hub.get_scalar('train/bcn_update_rate').current() == pytest.approx(0.3)


def test_momentum_at_and_its_old_name():
    hook = BCNUpdateRateHook(policy='constant', rate=0.1)
    assert hook.momentum_at(100, lr=1.0) == pytest.approx(0.1)
    assert hook.momentum_at(3, lr=1.0) == pytest.approx(1 / 3)  # the warm start's floor
    with pytest.warns(FutureWarning, match='momentum_at'):
        assert hook.update_rate(100, lr=1.0) == hook.momentum_at(100, lr=1.0)


def test_bad_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="policy must be one of"):
        BCNUpdateRateHook(policy='cosine')


def test_the_batch_stage_ablation_layer_gets_the_momentum_of_micro_batch_bcn():
    model = nn.Sequential(BCNBatchStage(8), BatchChannelNorm2d(8, 2, estimate=True),
                          BatchChannelNorm2d(8, 2, estimate=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    runner = SimpleNamespace(model=model, iter=100, optim_wrapper=SimpleNamespace(
        optimizer=optimizer), message_hub=MessageHub.get_instance('test_batch_stage_momentum'))
    hook = BCNUpdateRateHook(policy='lr', rate=0.4)
    hook.before_train(runner)
    optimizer.param_groups[0]['lr'] = 0.05  # a scheduler halved it
    hook.before_train_iter(runner, batch_idx=100)
    batch_stage, micro, large = model
    assert batch_stage.momentum == micro.momentum == pytest.approx(0.2)  # 0.4 x 0.05 / 0.1
    assert large.momentum == 0.1 and hook._layers(runner) == [batch_stage, micro]
