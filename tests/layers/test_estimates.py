"""Micro-batch estimates: the authors' rule against the population, warm start, momentum=None."""

import pytest
import torch
from mmbcn_testing.reference import bcn_reference

from mmbcn import BatchChannelNorm2d
from mmbcn.engine import BCNUpdateRateHook

CHANNELS = 512  # many channels: the checks average over them


def population(seed=0):
    """Per-channel mean and std of a stream of 1x1 features (one value per image and channel)."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.randn(CHANNELS, generator=generator, dtype=torch.float64) * 2
    std = torch.rand(CHANNELS, generator=generator, dtype=torch.float64) + 0.5
    return mean, std


def train_on_stream(layer, steps, momentum_of_step, images=1, size=1, seed=1):
    """Feed ``steps`` micro-batches drawn from :func:`population`; r from ``momentum_of_step``."""
    mean, std = population()
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        layer.momentum = momentum_of_step(step)
        noise = torch.randn(images, CHANNELS, size, size, generator=generator, dtype=torch.float64)
        layer(mean.reshape(1, -1, 1, 1) + std.reshape(1, -1, 1, 1) * noise)
    return std.square()


def hook_momentum(rate=0.1):
    """The hook's r (each layer's ``momentum``) of a step, under ``policy='constant'``."""
    hook = BCNUpdateRateHook(policy='constant', rate=rate)
    return lambda step: hook.momentum_at(step, lr=1.0)


def test_one_value_per_channel_estimates_the_population_variance():
    # ASPP image pooling with one image per process: every micro-batch holds one value per
    # channel. The authors' rule measures each value's spread around the previous estimate;
    # in the steady state that is var * (1 + r / (2 - r)) on average (the estimate of the mean
    # itself fluctuates), 1.053x at r = 0.1, and the typical channel is within a few percent.
    layer = BatchChannelNorm2d(CHANNELS, 32, estimate=True).double()
    true_var = train_on_stream(layer, 100, hook_momentum(0.1))
    ratio = layer.running_var / true_var
    steady_state_bias = 1 + 0.1 / (2 - 0.1)
    assert ratio.mean().item() == pytest.approx(steady_state_bias, rel=0.05)
    assert ratio.median().item() == pytest.approx(1.0, rel=0.05)


def test_batch_variance_rule_collapses_with_one_value_per_channel():
    # The comparison rule: one value per channel has batch variance 0, and so does the estimate
    # after the warm start's r = 1 (normalizing by sqrt(eps) from then on).
    layer = BatchChannelNorm2d(CHANNELS, 32, estimate=True, estimate_rule='batch_variance')
    train_on_stream(layer.double(), 100, hook_momentum(0.1))
    assert layer.running_var.abs().max().item() == 0.0


@pytest.mark.parametrize('rule,expected_ratio', [('authors', 1.0), ('batch_variance', 0.8)])
def test_one_image_of_many_positions_per_micro_batch(rule, expected_ratio):
    # Images whose means differ (spread 0.5 between images, 1 within): the population variance
    # is 1.25; one image's own variance is 1, so the batch-variance rule settles at 0.8x.
    generator = torch.Generator().manual_seed(3)
    layer = BatchChannelNorm2d(64, 8, estimate=True, estimate_rule=rule).double()
    momentum_of_step = hook_momentum(0.1)
    for step in range(100):
        layer.momentum = momentum_of_step(step)
        image_mean = 2.0 + 0.5 * torch.randn(1, 64, 1, 1, generator=generator,
                                             dtype=torch.float64)
        layer(image_mean + torch.randn(1, 64, 16, 16, generator=generator, dtype=torch.float64))
    ratio = (layer.running_var / 1.25).mean().item()
    assert ratio == pytest.approx(expected_ratio, rel=0.05)


def two_steps_with_warm_start(layer, seed=5):
    """Two micro-batches of mean 5, std 1 with the hook's warm start; the running var after each."""
    generator = torch.Generator().manual_seed(seed)
    momentum_of_step = hook_momentum(0.1)
    seen = []
    for step in range(2):
        layer.momentum = momentum_of_step(step)
        x = 5.0 + torch.randn(2, 16, 8, 8, generator=generator, dtype=torch.float64)
        out = layer(x)
        assert torch.isfinite(out).all()
        seen.append(layer.running_var.clone())
    return seen


def test_warm_start_from_fresh_buffers_forgets_the_initial_mean_at_the_second_step():
    layer = BatchChannelNorm2d(16, 4, estimate=True).double()  # running mean 0, var 1
    first, second = two_steps_with_warm_start(layer)
    # Step 0: the spread around the initial mean 0, var + mean^2 = 26: a safe over-estimate.
    assert first.mean().item() == pytest.approx(26.0, rel=0.1)
    # Step 1 (r = 1 again): the spread around step 0's batch mean, from the data alone.
    assert second.mean().item() == pytest.approx(1.0, rel=0.1)


def test_warm_start_from_checkpoint_statistics_is_sensible_at_once():
    layer = BatchChannelNorm2d(16, 4, estimate=True).double()
    with torch.no_grad():  # an ImageNet checkpoint's statistics, close to this data's
        layer.running_mean.fill_(4.8)
        layer.running_var.fill_(1.3)
    first, second = two_steps_with_warm_start(layer)
    for estimate in (first, second):  # spread around 4.8, then around the first batch mean
        assert estimate.mean().item() == pytest.approx(1.0, abs=0.15)


def test_warm_start_with_one_value_per_channel_never_divides_by_sqrt_eps():
    # Fresh buffers, one image of 1x1 maps: step 0's variance is x^2 (the spread around 0),
    # not the 0 of the batch-variance rule, so the input gradient stays of the order of 1 / |x|.
    layer = BatchChannelNorm2d(16, 4, estimate=True)
    layer.momentum = hook_momentum()(0)
    x = (torch.rand(1, 16, 1, 1) + 0.5).requires_grad_()
    layer(x).square().sum().backward()
    torch.testing.assert_close(layer.running_var, x.detach().reshape(-1).square())
    assert x.grad.abs().max().item() < 100


def test_momentum_none_in_micro_batch_mode_restarts_the_average_at_the_second_step():
    # r = 1, 1, 1/2, 1/3: the same estimates as the reference with those rates.
    layer = BatchChannelNorm2d(8, 2, estimate=True, momentum=None).double()
    mean, var = layer.running_mean.clone(), layer.running_var.clone()
    params = {name: getattr(layer, name).detach() for name in
              ('weight', 'bias', 'group_weight', 'group_bias')}
    generator = torch.Generator().manual_seed(9)
    for momentum in (1.0, 1.0, 1 / 2, 1 / 3):
        x = torch.randn(2, 8, 3, 3, generator=generator, dtype=torch.float64) * 2 + 1
        out = layer(x)
        expected, mean, var = bcn_reference(x, params, 2, 'micro', mean, var, momentum)
        torch.testing.assert_close(out, expected)
    torch.testing.assert_close(layer.running_mean, mean)
    torch.testing.assert_close(layer.running_var, var)
