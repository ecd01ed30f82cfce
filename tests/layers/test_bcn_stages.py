"""BCN's two stages apart (mmbcn/layers/bcn_stages.py) against the real BCN layer.

Equivalences in float64: BCN computes its output in one pass over float64 coefficients, the
stage layers with ATen's ``batch_norm`` / ``group_norm``; the same function by different op
orders agrees to rounding, checked at 1e-10. The estimates come from the same maths functions
fed the moments of the same ATen kernel, so they agree to 1e-12.
"""

import copy

import pytest
import torch
from mmbcn_testing.dist_utils import run_in_processes
from mmcv.cnn import build_norm_layer
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmbcn import BatchChannelNorm2d
from mmbcn.layers import BCNBatchStage, BCNChannelStage
from mmbcn.ops.recompute import CheckpointReplayError

OUTPUT_TOL = dict(rtol=1e-10, atol=1e-10)
ESTIMATE_TOL = dict(rtol=1e-12, atol=1e-12)
SHAPES_AND_GROUPS = [((2, 8, 5, 7), 4), ((3, 16, 1, 1), 8), ((4, 6, 3), 3), ((5, 12), 2)]


def randomized(layer):
    """``layer`` in float64 with parameters away from their initial 1 and 0."""
    layer = layer.double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5 + 1.0)
    return layer


def shared_parameters(source, target):
    """Copy ``source``'s parameters of the same names into ``target``."""
    with torch.no_grad():
        for name, parameter in target.named_parameters():
            parameter.copy_(getattr(source, name))


@pytest.mark.parametrize('shape,groups', SHAPES_AND_GROUPS)
def test_channel_stage_is_bcn_in_eval_with_identity_statistics(shape, groups):
    # BCN in eval with mean 0, var 1 - eps: its batch stage is x * w + b exactly.
    stage = randomized(BCNChannelStage(shape[1], groups))
    bcn = randomized(BatchChannelNorm2d(shape[1], groups)).eval()
    shared_parameters(stage, bcn)
    with torch.no_grad():
        bcn.running_mean.zero_()
        bcn.running_var.fill_(1 - bcn.eps)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    upstream = torch.randn(shape, dtype=torch.float64)
    grads = {}
    for layer in (stage, bcn):
        out = layer(x)
        (out * upstream).sum().backward()
        grads[layer] = dict(out=out.detach(), x=x.grad.clone(),
                            **{n: p.grad.clone() for n, p in layer.named_parameters()})
        x.grad = None
    assert set(grads[stage]) == set(grads[bcn])  # the same parameters, by name
    for name, value in grads[stage].items():
        torch.testing.assert_close(value, grads[bcn][name], **OUTPUT_TOL, msg=name)
    # the per-channel bias matters (it moves channels of one group apart): not a plain GN
    assert not torch.allclose(grads[stage]['bias'], torch.zeros_like(grads[stage]['bias']))


def test_channel_stage_has_bcns_parameters_and_zero_init_and_no_buffers():
    stage, bcn = BCNChannelStage(8, 4), BatchChannelNorm2d(8, 4)
    assert [n for n, _ in stage.named_parameters()] == [n for n, _ in bcn.named_parameters()]
    assert list(stage.buffers()) == []
    for layer in (stage, bcn):  # a Constant(val=0) init of a residual branch's last norm
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
        layer.init_weights()
    for name, parameter in stage.named_parameters():
        torch.testing.assert_close(parameter, getattr(bcn, name), rtol=0, atol=0, msg=name)
    assert stage.weight.eq(1).all() and stage.group_weight.eq(0).all()


def test_channel_stage_group_rule_is_bcns():
    assert BCNChannelStage(48, 32, group_rule='at_most').num_groups == 24
    with pytest.raises(ValueError, match='not divisible by num_groups'):
        BCNChannelStage(48, 32)


def training_pair(channels, momentum, rule):
    """A micro-batch BCN and a batch stage with its batch-stage parameters."""
    bcn = randomized(BatchChannelNorm2d(channels, 4, momentum=momentum, estimate=True,
                                        estimate_rule=rule))
    stage = BCNBatchStage(channels, momentum=momentum, estimate_rule=rule).double()
    shared_parameters(bcn, stage)
    return bcn, stage


@pytest.mark.parametrize('channels_last', [False, True], ids=['contiguous', 'channels-last'])
@pytest.mark.parametrize('rule', ['authors', 'batch_variance'])
@pytest.mark.parametrize('momentum', [0.3, 1.0, None])
def test_batch_stage_moves_bcns_estimates_and_composes_to_bcn(momentum, rule, channels_last):
    bcn, stage = training_pair(8, momentum, rule)
    generator = torch.Generator().manual_seed(1)
    for step in range(4):
        x = torch.randn(2, 8, 5, 4, generator=generator, dtype=torch.float64) * 2 + step
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = bcn(x)
        batch_staged = stage(x)
        torch.testing.assert_close(stage.running_mean, bcn.running_mean, **ESTIMATE_TOL)
        torch.testing.assert_close(stage.running_var, bcn.running_var, **ESTIMATE_TOL)
        assert int(stage.num_batches_tracked) == int(bcn.num_batches_tracked) == step + 1
        torch.testing.assert_close(bcn.channel_stage_forward(batch_staged), out, **OUTPUT_TOL)
    # the estimates moved away from the initial 0 / 1
    assert stage.running_mean.abs().min() > 0.1
    bcn.eval()
    stage.eval()
    torch.testing.assert_close(bcn.channel_stage_forward(stage(x)), bcn(x), **OUTPUT_TOL)
    assert int(stage.num_batches_tracked) == 4  # eval moves nothing


def test_batch_stage_input_gradient_has_no_term_through_the_statistics():
    _, stage = training_pair(8, 0.3, 'authors')
    x = (torch.randn(3, 8, 4, 4, dtype=torch.float64) * 2 + 1).requires_grad_()
    upstream = torch.randn(x.shape, dtype=torch.float64)
    (stage(x) * upstream).sum().backward()
    # dL/dx = g * w / sqrt(var + eps) with the estimates it used (the moved buffers); a path
    # through the statistics (BatchNorm's in training) would add per-channel terms in g and x
    scale = stage.weight / torch.sqrt(stage.running_var + stage.eps)
    torch.testing.assert_close(x.grad, upstream * scale.reshape(1, -1, 1, 1), **OUTPUT_TOL)


def test_large_batch_mode_is_refused_as_syncbn():
    with pytest.raises(ValueError, match=r"is \(Sync\)BatchNorm.*type='SyncBN'.*'syncbn'"):
        BCNBatchStage(8, estimate=False)


@pytest.mark.parametrize('use_reentrant', [True, False], ids=['reentrant', 'non-reentrant'])
def test_batch_stage_refuses_a_checkpoint_recompute(use_reentrant):
    block = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), BCNBatchStage(8), nn.ReLU())
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    out = checkpoint(block, x, use_reentrant=use_reentrant)
    with pytest.raises(CheckpointReplayError, match='BCNBatchStage.*with_cp=False'):
        out.sum().backward()


def test_the_stages_build_from_norm_cfgs_with_bns_names():
    name, batch = build_norm_layer(dict(type='BCNBatchStage', estimate=True, sync_stats=True,
                                        momentum=None, requires_grad=False), 16)
    assert name == 'bn' and isinstance(batch, BCNBatchStage) and batch.momentum is None
    assert not any(p.requires_grad for p in batch.parameters())
    name, channel = build_norm_layer(dict(type='BCNChannelStage', num_groups=4), 16, postfix=1)
    assert name == 'bn1' and isinstance(channel, BCNChannelStage) and channel.num_groups == 4
    # BN checkpoints load into the batch stage: the same keys
    assert set(batch.state_dict()) == set(nn.BatchNorm2d(16).state_dict())


BATCH_SIZES = (3, 1)  # rank 0 holds 3 samples, rank 1 holds 1


def distributed_batches():
    generator = torch.Generator().manual_seed(7)
    return [torch.randn(sum(BATCH_SIZES), 8, 3, 3, generator=generator, dtype=torch.float64) * 2
            + 1 for _ in range(3)]


def estimates_in_process(rank, world_size):
    torch.manual_seed(0)
    bcn, stage = training_pair(8, 0.3, 'authors')
    assert stage.synchronizes() and bcn.synchronizes()
    start = sum(BATCH_SIZES[:rank])
    for x in distributed_batches():
        local = x[start:start + BATCH_SIZES[rank]]
        bcn(local)
        stage(local)
    return dict(bcn=(bcn.running_mean, bcn.running_var),
                stage=(stage.running_mean, stage.running_var))


@pytest.mark.slow
def test_synchronized_estimates_equal_bcns_in_two_processes():
    ranks = run_in_processes(estimates_in_process, 2)
    for result in ranks:
        for stage_buffer, bcn_buffer in zip(result['stage'], result['bcn'], strict=True):
            torch.testing.assert_close(stage_buffer, bcn_buffer, **ESTIMATE_TOL)
    for ours, theirs in zip(ranks[0]['stage'], ranks[1]['stage'], strict=True):
        torch.testing.assert_close(ours, theirs, **ESTIMATE_TOL)
    # the estimates are the global batch's: one process with the whole batch gives them
    torch.manual_seed(0)
    _, whole = training_pair(8, 0.3, 'authors')
    alone = copy.deepcopy(whole)
    for x in distributed_batches():
        whole(x)
        alone(x[:BATCH_SIZES[0]])
    torch.testing.assert_close(ranks[1]['stage'][0], whole.running_mean, **ESTIMATE_TOL)
    torch.testing.assert_close(ranks[1]['stage'][1], whole.running_var, **ESTIMATE_TOL)
    assert not torch.allclose(ranks[0]['stage'][1], alone.running_var)
