"""BCN over 2 real gloo processes holding different data and batch sizes."""

import pytest
import torch
from mmbcn_testing.dist_utils import run_in_processes
from mmbcn_testing.reference import bcn_reference

from mmbcn import BatchChannelNorm2d

pytestmark = pytest.mark.slow  # starts processes or trains

BATCH_SIZES = (3, 1)  # rank 0 holds 3 samples, rank 1 holds 1
STEPS = 2


def make_data(step):
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(sum(BATCH_SIZES), 8, 5, 4, generator=generator) * 2 + 1
    upstream = torch.randn(x.shape, generator=generator)
    return x, upstream


# (estimate, estimate_rule, r): large-batch mode, and both micro-batch rules at r < 1 and r = 1.
MODES = [(False, 'authors', 0.3), (True, 'authors', 0.3), (True, 'authors', 1.0),
         (True, 'batch_variance', 0.3), (True, 'batch_variance', 1.0)]
MODE_IDS = ['large-batch', 'authors-r0.3', 'authors-r1', 'batch-variance-r0.3',
            'batch-variance-r1']


def make_layer(estimate, estimate_rule='authors', rate=0.3):
    torch.manual_seed(0)
    layer = BatchChannelNorm2d(8, num_groups=4, momentum=rate, estimate=estimate,
                               estimate_rule=estimate_rule)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.normal_()
        layer.group_weight.uniform_(0.5, 1.5)
        layer.group_bias.normal_()
    return layer


def train_steps(layer, rank_slice):
    """Run STEPS forward/backward passes on this rank's slice; return what the test compares."""
    outs, grads = [], []
    for step in range(STEPS):
        x, upstream = make_data(step)
        x = x[rank_slice].clone().requires_grad_()
        out = layer(x)
        (out * upstream[rank_slice]).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    params = {n: p.grad.clone() for n, p in layer.named_parameters()}
    buffers = {n: b.clone() for n, b in layer.named_buffers()}
    return dict(outs=outs, grads=grads, param_grads=params, buffers=buffers)


def distributed_worker(rank, world_size, mode):
    start = sum(BATCH_SIZES[:rank])
    layer = make_layer(*mode)
    assert layer.synchronizes()
    return train_steps(layer, slice(start, start + BATCH_SIZES[rank]))


def float64_reference(mode):
    """The reference's outputs, input gradients and running statistics on the whole batch."""
    layer = make_layer(*mode)
    params = {n: p.detach().double().requires_grad_() for n, p in layer.named_parameters()}
    running = (layer.running_mean.double(), layer.running_var.double())
    outs, grads = [], []
    for step in range(STEPS):
        x, upstream = make_data(step)
        x = x.double().requires_grad_()
        out, *running = bcn_reference(x, params, 4, 'micro' if mode[0] else 'large', *running,
                                      rate=mode[2], estimate_rule=mode[1])
        (out * upstream.double()).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    return outs, grads, running


@pytest.mark.parametrize('mode', MODES, ids=MODE_IDS)
def test_two_processes_equal_one_process_on_the_concatenated_batch(mode):
    results = run_in_processes(distributed_worker, 2, mode)
    single = train_steps(make_layer(*mode), slice(None))
    ref_outs, ref_grads, (ref_mean, ref_var) = float64_reference(mode)

    for step in range(STEPS):
        torch.testing.assert_close(torch.cat([r['outs'][step] for r in results]),
                                   single['outs'][step], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.cat([r['grads'][step] for r in results]),
                                   single['grads'][step], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(torch.cat([r['outs'][step] for r in results]).double(),
                                   ref_outs[step], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(torch.cat([r['grads'][step] for r in results]).double(),
                                   ref_grads[step], rtol=1e-3, atol=1e-4)
    for rank in results:
        torch.testing.assert_close(rank['buffers']['running_mean'].double(), ref_mean,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(rank['buffers']['running_var'].double(), ref_var,
                                   rtol=1e-5, atol=1e-5)
    for name, grad in single['param_grads'].items():  # DDP sums (then averages) these
        torch.testing.assert_close(sum(r['param_grads'][name] for r in results), grad,
                                   rtol=1e-4, atol=1e-4)
    for name, buffer in single['buffers'].items():
        assert torch.equal(results[0]['buffers'][name], results[1]['buffers'][name]), name
        torch.testing.assert_close(results[0]['buffers'][name], buffer, rtol=1e-5, atol=1e-6)


def different_image_sizes_worker(rank, world_size):
    generator = torch.Generator().manual_seed(7)
    images = [torch.randn(2, 8, 6, 5, generator=generator) * 3 + 1,
              torch.randn(1, 8, 3, 9, generator=generator) - 2]  # rank 1: other size and count
    layer = make_layer(estimate=False)
    layer(images[rank])
    return dict(running_mean=layer.running_mean, running_var=layer.running_var)


def test_statistics_are_those_of_all_values_when_image_sizes_differ():
    results = run_in_processes(different_image_sizes_worker, 2)
    generator = torch.Generator().manual_seed(7)
    images = [torch.randn(2, 8, 6, 5, generator=generator) * 3 + 1,
              torch.randn(1, 8, 3, 9, generator=generator) - 2]
    values = torch.cat([x.transpose(0, 1).reshape(8, -1) for x in images], dim=1).double()
    momentum = 0.3
    expected_mean = momentum * values.mean(1)
    expected_var = (1 - momentum) + momentum * values.var(1, correction=1)
    for result in results:
        torch.testing.assert_close(result['running_mean'].double(), expected_mean, rtol=1e-5,
                                   atol=1e-6)
        torch.testing.assert_close(result['running_var'].double(), expected_var, rtol=1e-5,
                                   atol=1e-6)
