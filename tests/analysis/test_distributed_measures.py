"""The collector's all-reduce: 2 real gloo processes give every rank the global batch's figures."""

import math

import pytest
import torch
from mmbcn_testing.dist_utils import run_in_processes

from mmbcn.analysis import NormStatisticsCollector, norm_statistics

pytestmark = pytest.mark.slow  # starts processes or trains

SAMPLES = 2  # one per process: every pair of samples spans the two processes


def eval_resnet():
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    model = ResNet(depth=18, norm_cfg=dict(type='BN'), norm_eval=False)
    with torch.no_grad():  # statistics that differ between channels
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.uniform_(-2, 1)
    model.eval()
    return model.double()  # float64: a batch of 1 and of 2 give the same activations


def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(SAMPLES, 3, 32, 32, generator=generator, dtype=torch.float64)


def measure(model, inputs, loss_weights):
    """Forward ``inputs``, backward sum_r w_r * (sum of the outputs of sample r)."""
    collector = NormStatisticsCollector(model)
    with collector:
        outputs = model(inputs)
        loss = sum((output.mean(dim=(1, 2, 3)) * loss_weights).sum() for output in outputs)
        loss.backward()
    collector.end_batch()
    collector.all_reduce()
    return dict(layers=collector.layer_statistics(per_channel=True),
                stages=collector.stage_statistics(),
                model=collector.model_statistics())


def batch_of_size(rank):
    """Two images per process, 32x32 on rank 0 and 64x64 on rank 1."""
    generator = torch.Generator().manual_seed(2 + rank)
    size = 32 * (rank + 1)
    return torch.randn(2, 3, size, size, generator=generator, dtype=torch.float64)


def worker(rank, world_size):
    # each process: its sample, and its loss L_r (DDP then optimizes the mean of the L_r)
    model = eval_resnet()
    same_size = measure(model, batch()[rank:rank + 1], torch.ones(1, dtype=torch.float64))
    collector = NormStatisticsCollector(model)
    with torch.no_grad(), collector:
        model(batch_of_size(rank))
    collector.end_batch()
    return same_size, collector.stage_statistics()


SUM_ERROR = 1e-13  # relative error of float64 sums of ~10^3 terms in another order (n * eps)


def conditioned_rel(margin, rel):
    """Tolerance of a channel's std or margin: ``std = sqrt(E[z^2] - mu^2)`` loses the relative
    precision of the sums times ``E[z^2] / var = 1 + margin^2`` (cancellation), so a
    near-constant channel (a large margin) is compared as loosely as its conditioning says."""
    if margin is None or math.isnan(margin):
        return rel
    return max(rel, SUM_ERROR * (1 + margin ** 2))


def assert_same(left, right, rel, key=None, margin=None):
    """``left == right`` up to ``rel``; ``std`` and ``margin`` figures up to their conditioning
    (``margin``: the reference's |mean| / std of the channel, or the percentile compared)."""
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for name in left:
            if name in ('std', 'margin') and 'mean' in right and 'std' in right:
                # mean / std of each channel, also where the margin is NaN (a channel taken
                # as constant: the worst conditioned of all)
                ratios = [abs(m) / s if s > 0 else math.inf
                          for m, s in zip(right['mean'], right['std'], strict=True)]
            else:
                ratios = right[name]
            assert_same(left[name], right[name], rel, name, ratios)
    elif isinstance(left, list):
        assert len(left) == len(right)
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same(a, b, rel, key, margin[i] if isinstance(margin, list) else margin)
    elif isinstance(left, float) and math.isnan(left):
        assert math.isnan(right)
    elif isinstance(left, float):
        conditioned = key in ('std', 'margin') or str(key).startswith('margin_p')
        tolerance = conditioned_rel(margin, rel) if conditioned and rel else rel
        assert left == pytest.approx(right, rel=tolerance, abs=1e-12), key
    else:
        assert left == right


def test_two_processes_give_both_ranks_the_global_batch():
    (rank0, mixed0), (rank1, mixed1) = run_in_processes(worker, 2)
    assert_same(rank0, rank1, rel=0)  # identical on every rank
    # one process with the whole batch, loss (L_0 + L_1) / 2: the loss DDP optimizes
    reference = measure(eval_resnet(), batch(), torch.full((SAMPLES, ), 0.5, dtype=torch.float64))
    assert_same(rank0, reference, rel=1e-9)
    for stage in rank0['stages'].values():
        assert stage['sample_pairs'] == 2  # pairs across the two processes
        assert 'grad_norm' in stage
    # feature maps of different shapes on the two processes: pairs only within each shape
    assert_same(mixed0, mixed1, rel=0)
    separate = norm_statistics(eval_resnet(), [batch_of_size(0), batch_of_size(1)])['stages']
    for stage, figures in mixed0.items():
        assert figures['sample_pairs'] == 2 + 2
        assert figures['sample_similarity'] == pytest.approx(
            separate[stage]['sample_similarity'], rel=1e-9)
