"""BCN under activation checkpointing (mmbcn/ops/recompute.py) equals the plain run.

Each test trains the same float64 network twice from the same weights on the same data, once
plainly and once with its blocks checkpointed, and compares every gradient, running statistic
and ``num_batches_tracked`` after each step: in float64 both runs compute the same sums in the
same order, so they agree to rounding (1e-10).
"""

import copy

import pytest
import torch
from mmbcn_testing.dist_utils import run_in_processes
from mmbcn_testing.plain_run import FLOAT64, assert_same_states, batches, training_states
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmbcn import BatchChannelNorm2d, WSConv2d
from mmbcn.ops.recompute import CheckpointReplayError, ForwardRecords, can_see_saved_tensor_hooks

MODES = {'micro-batch': dict(estimate=True), 'large-batch': dict(estimate=False)}
CHECKPOINTS = {'reentrant': True, 'non-reentrant': False}


class Block(nn.Sequential):
    def __init__(self, channels, **bcn):
        super().__init__(WSConv2d(channels, channels, 3, padding=1, bias=False),
                         BatchChannelNorm2d(channels, num_groups=4, momentum=0.3, **bcn),
                         nn.ReLU())


class Net(nn.Module):
    """A stem, two blocks (each checkpointed when ``use_reentrant`` is given) and a head."""

    def __init__(self, **bcn):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList([Block(8, **bcn), Block(8, **bcn)])
        self.head = nn.Conv2d(8, 2, 1)
        self.use_reentrant = None

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            if self.use_reentrant is None:
                x = block(x)
            else:
                x = checkpoint(block, x, use_reentrant=self.use_reentrant)
        return self.head(x)


def state_after_steps(model, steps=3, size=1, call=None):
    """Gradients and buffers after each of ``steps`` SGD steps on ``size`` images a step."""
    return training_states(model, batches((size, 3, 6, 5), steps), call)


def plain_and_checkpointed(use_reentrant, **bcn):
    torch.manual_seed(0)
    plain = Net(**bcn).double()
    checkpointed = copy.deepcopy(plain)
    checkpointed.use_reentrant = use_reentrant
    return plain, checkpointed


@pytest.mark.parametrize('use_reentrant', CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
@pytest.mark.parametrize('bcn', MODES.values(), ids=MODES.keys())
def test_checkpointed_training_equals_the_plain_run(bcn, use_reentrant):
    plain, checkpointed = plain_and_checkpointed(use_reentrant, **bcn)
    expected = state_after_steps(plain)
    assert_same_states(state_after_steps(checkpointed), expected)
    bcn_layers = [m for m in checkpointed.modules() if isinstance(m, BatchChannelNorm2d)]
    assert [int(m.num_batches_tracked) for m in bcn_layers] == [3, 3]
    assert all(len(m.checkpoint_records) == 0 for m in bcn_layers)  # every record replayed


@pytest.mark.parametrize('use_reentrant', CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
def test_momentum_none_counts_each_step_once(use_reentrant):
    plain, checkpointed = plain_and_checkpointed(use_reentrant, estimate=True)
    for model in (plain, checkpointed):
        for module in model.modules():
            if isinstance(module, BatchChannelNorm2d):
                module.momentum = None  # r from num_batches_tracked
    assert_same_states(state_after_steps(checkpointed), state_after_steps(plain))


@pytest.mark.parametrize('use_reentrant', CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
def test_eval_mode_moves_nothing_under_checkpointing(use_reentrant):
    plain, checkpointed = plain_and_checkpointed(use_reentrant, estimate=True)
    state_after_steps(plain, steps=1)  # running statistics other than the initial ones
    checkpointed.load_state_dict(plain.state_dict())
    before = copy.deepcopy(checkpointed.state_dict())
    plain.eval()
    checkpointed.eval()
    assert_same_states(state_after_steps(checkpointed, steps=2), state_after_steps(plain, steps=2))
    buffers = {n: b for n, b in checkpointed.state_dict().items() if 'running' in n
               or 'num_batches' in n}
    for name, value in buffers.items():
        assert torch.equal(value, before[name]), name


def twice_then_backward(model, x):
    """Two forwards of one model (two views), then one backward through both."""
    return model(x) + 0.5 * model(x.flip(-1) * 0.7)


@pytest.mark.parametrize('use_reentrant', CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
@pytest.mark.parametrize('bcn', MODES.values(), ids=MODES.keys())
def test_two_forwards_before_one_backward_replay_their_own_records(bcn, use_reentrant):
    """Each BCN layer is called twice before the backward, whose recomputes may come in any
    order: each takes the record of its own call (a last-in-first-out rule would not)."""
    plain, checkpointed = plain_and_checkpointed(use_reentrant, **bcn)
    expected = state_after_steps(plain, call=twice_then_backward)
    assert_same_states(state_after_steps(checkpointed, call=twice_then_backward), expected)


def shared_layer_forward(model, x):
    """The first block applied twice inside one checkpointed function."""
    def twice(y):
        return model.blocks[0](model.blocks[0](y))
    y = model.stem(x)
    if model.use_reentrant is not None:
        return model.head(checkpoint(twice, y, use_reentrant=model.use_reentrant))
    return model.head(twice(y))


@pytest.mark.parametrize('use_reentrant', CHECKPOINTS.values(), ids=CHECKPOINTS.keys())
def test_a_layer_called_twice_in_one_checkpoint(use_reentrant):
    plain, checkpointed = plain_and_checkpointed(use_reentrant, estimate=True)
    expected = state_after_steps(plain, call=shared_layer_forward)
    assert_same_states(state_after_steps(checkpointed, call=shared_layer_forward), expected)


def test_a_recompute_of_another_input_is_refused():
    """Dropout before BCN without preserve_rng_state: the recompute sees another input."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Dropout(0.5), BatchChannelNorm2d(8, num_groups=4, estimate=True))
    x = torch.randn(1, 8, 4, 4, requires_grad=True)
    out = checkpoint(block, x, use_reentrant=False, preserve_rng_state=False)
    torch.randn(10)  # the generator moves on, as training does
    with pytest.raises(CheckpointReplayError, match='preserve_rng_state'):
        out.sum().backward()


def test_a_training_call_inside_a_backward_without_a_record_is_refused():
    layer = BatchChannelNorm2d(8, num_groups=4, estimate=True)

    class CallsTheLayerInBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            layer(torch.randn(1, 8, 2, 2))
            return grad

    x = torch.randn(2, requires_grad=True)
    with pytest.raises(CheckpointReplayError, match='no checkpointed forward'):
        CallsTheLayerInBackward.apply(x).sum().backward()


def test_records_keep_at_most_the_limit_and_copies_start_empty():
    layer = BatchChannelNorm2d(8, num_groups=4, estimate=True)
    with torch.no_grad():  # a training call without gradients is recorded, never replayed
        for _ in range(ForwardRecords.limit + 3):
            layer(torch.randn(1, 8, 2, 2))
    assert len(layer.checkpoint_records) == ForwardRecords.limit
    assert len(copy.deepcopy(layer).checkpoint_records) == 0
    assert 'checkpoint_records' not in str(layer.state_dict().keys())


def test_plain_training_keeps_no_record():
    """None where torch tells a non-reentrant checkpoint's first run from a plain call; torch
    2.1 cannot, and the one record is pushed out by later ones."""
    layer = BatchChannelNorm2d(8, num_groups=4, estimate=True)
    for _ in range(ForwardRecords.limit + 1):
        layer(torch.randn(1, 8, 2, 2, requires_grad=True)).sum().backward()
    expected = 0 if can_see_saved_tensor_hooks() else ForwardRecords.limit
    assert len(layer.checkpoint_records) == expected


# Distributed: each rank holds one image; the statistics are the global batch's (sync_stats).
def distributed_states(rank, world_size, bcn, checkpoint_of_rank):
    """The plain and the checkpointed run on this rank's image of each step's batch."""
    plain, checkpointed = plain_and_checkpointed(checkpoint_of_rank[rank], **bcn)
    for model in (plain, checkpointed):
        assert all(m.synchronizes() for m in model.modules()
                   if isinstance(m, BatchChannelNorm2d)) == (world_size > 1)

    def this_ranks_image(model, x):
        return model(x[rank:rank + 1])

    return (state_after_steps(plain, size=world_size, call=this_ranks_image),
            state_after_steps(checkpointed, size=world_size, call=this_ranks_image))


@pytest.mark.slow
@pytest.mark.parametrize('bcn', MODES.values(), ids=MODES.keys())
@pytest.mark.parametrize('world_size, checkpoint_of_rank', [
    (1, [True]), (2, [True, True]), (2, [False, False]),
    (2, [True, None])],  # rank 1 does not checkpoint: a recompute must add no collective
    ids=['1-process', '2-reentrant', '2-non-reentrant', '2-only-rank0-checkpoints'])
def test_distributed_checkpointed_training_equals_the_plain_run(bcn, world_size,
                                                                checkpoint_of_rank):
    results = run_in_processes(distributed_states, world_size, bcn, checkpoint_of_rank)
    for plain, checkpointed in results:
        assert_same_states(checkpointed, plain)
    if world_size == 2:  # the statistics are shared: the ranks' buffers agree
        for name, value in results[0][1][-1]['buffers'].items():
            torch.testing.assert_close(value, results[1][1][-1]['buffers'][name], **FLOAT64)
