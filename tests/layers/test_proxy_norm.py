"""Proxy Normalization: the proxy statistics against the closed forms of a Gaussian through ReLU,
the output on the proxy's own distribution, gradients through the proxy statistics, the
registered module and the block-side ``NormProxyAct``."""

import math

import pytest
import torch
from mmengine.registry import MODELS
from torch import nn

from mmbcn.layers.proxy_norm import (
    NormProxyAct,
    ProxyNormAct,
    gaussian_quantiles,
    proxy_norm_activation,
    proxy_statistics,
)


def relu_gaussian_moments(mean: float, std: float):
    """E[relu(X)] and Var[relu(X)] for X ~ N(mean, std^2), in closed form."""
    alpha = mean / std
    pdf = math.exp(-alpha * alpha / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(alpha / math.sqrt(2)))
    first = mean * cdf + std * pdf
    second = (mean * mean + std * std) * cdf + mean * std * pdf
    return first, second - first * first


def quantile_deficit(num_samples: int) -> float:
    """1 - mean_k u_k^2: how much variance of N(0, 1) the K mid-point quantiles miss (the tails).
    It bounds the error of the proxy's moments of any 1-Lipschitz activation, scaled by std^2."""
    return 1.0 - gaussian_quantiles(num_samples).square().mean().item()


def test_quantiles_are_symmetric_mid_probability_points_of_the_standard_gaussian():
    u = gaussian_quantiles(200)
    assert u.shape == (200, ) and u.dtype == torch.float64
    torch.testing.assert_close(u, -u.flip(0), rtol=0, atol=1e-12)
    normal = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(normal.cdf(u), (torch.arange(200, dtype=torch.float64) + 0.5) / 200,
                               rtol=0, atol=1e-7)
    assert 0.0 < quantile_deficit(200) < 0.02  # the tails beyond +-2.8 are cut
    with pytest.raises(ValueError, match='at least 2'):
        gaussian_quantiles(1)


@pytest.mark.parametrize('gamma, beta, proxy_gamma, proxy_beta', [
    (1.0, 0.0, 0.0, 0.0), (1.3, 0.5, 0.0, 0.0), (0.7, -1.0, 0.0, 0.0), (1.0, 0.0, 0.5, 0.3),
    (2.0, 0.2, -0.4, -0.6)])
@pytest.mark.parametrize('num_samples', [200, 5000])
def test_proxy_mean_and_variance_are_those_of_a_gaussian_through_relu(
        gamma, beta, proxy_gamma, proxy_beta, num_samples):
    # phi(gamma * y~ + beta), y~ ~ N(beta~, (1 + gamma~)^2): relu of N(m, s^2) with
    # m = gamma * beta~ + beta and s = gamma * (1 + gamma~)
    mean_in, std_in = gamma * proxy_beta + beta, gamma * (1 + proxy_gamma)
    expected_mean, expected_var = relu_gaussian_moments(mean_in, std_in)
    params = [torch.tensor([value], dtype=torch.float64)
              for value in (gamma, beta, proxy_gamma, proxy_beta)]
    mean, var = proxy_statistics(*params, torch.relu, gaussian_quantiles(num_samples))
    # the quantiles miss the tails: at most std^2 x the variance they miss, in both moments
    tolerance = std_in * std_in * quantile_deficit(num_samples)
    assert abs(mean.item() - expected_mean) <= tolerance
    assert abs(var.item() - expected_var) <= tolerance
    assert var.item() <= expected_var  # the missing tails only ever lower it


def test_the_200_quantile_error_shrinks_with_more_quantiles():
    errors = []
    for num_samples in (200, 2000, 20000):
        mean, var = proxy_statistics(*[torch.tensor([v], dtype=torch.float64)
                                       for v in (1.0, 0.0, 0.0, 0.0)],
                                     torch.relu, gaussian_quantiles(num_samples))
        errors.append(relu_gaussian_moments(0.0, 1.0)[1] - var.item())
    assert errors[0] > 5 * errors[1] > 25 * errors[2] > 0


@pytest.mark.parametrize('proxy_gamma, proxy_beta', [(0.0, 0.0), (0.4, -0.5), (-0.3, 0.8)])
def test_output_on_the_proxys_own_distribution_is_normalized(proxy_gamma, proxy_beta):
    channels, eps = 3, 0.03
    weight = torch.tensor([1.0, 1.5, 0.6], dtype=torch.float64)
    bias = torch.tensor([0.0, -0.4, 0.7], dtype=torch.float64)
    proxy_weight = torch.full((channels, ), proxy_gamma, dtype=torch.float64)
    proxy_bias = torch.full((channels, ), proxy_beta, dtype=torch.float64)
    # a large sample of y ~ N(beta~, (1 + gamma~)^2) per channel
    sample = proxy_beta + (1 + proxy_gamma) * torch.randn(400, channels, 64, 64,
                                                          dtype=torch.float64)
    out = proxy_norm_activation(sample, weight, bias, proxy_weight, proxy_bias, eps=eps)
    _, proxy_var = proxy_statistics(weight, bias, proxy_weight, proxy_bias, torch.relu,
                                    gaussian_quantiles(200))
    per_channel = out.transpose(0, 1).reshape(channels, -1)
    # 1.6M values per channel: the sample's mean and variance within ~1e-3 of the population's;
    # the quantiles' own error (quantile_deficit) adds up to ~1 %
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(channels, dtype=torch.float64),
                               rtol=0, atol=0.02)
    torch.testing.assert_close(per_channel.var(1), proxy_var / (proxy_var + eps), rtol=0.02,
                               atol=0)


def test_gradients_flow_through_the_proxy_statistics_float64_gradcheck():
    channels = 3
    x = torch.randn(2, channels, 3, 4, dtype=torch.float64, requires_grad=True)
    params = [torch.tensor(values, dtype=torch.float64, requires_grad=True) for values in (
        [1.2, 0.8, 1.0], [0.1, -0.3, 0.2], [0.2, -0.1, 0.05], [-0.2, 0.3, 0.1])]
    assert torch.autograd.gradcheck(
        lambda *inputs: proxy_norm_activation(*inputs, num_samples=50), (x, *params))
    # the gradient of a parameter includes the path through mu~ and s~^2: for a constant input
    # x = 0 the activation is relu(beta) alone, yet d out / d beta~ (proxy only) is not zero
    out = proxy_norm_activation(torch.zeros(1, channels, 1, 1, dtype=torch.float64), *params)
    (proxy_bias_grad, ) = torch.autograd.grad(out.sum(), params[3])
    assert proxy_bias_grad.abs().min() > 1e-3


def test_registered_module_builds_from_a_config_and_starts_as_the_authors_init():
    module = MODELS.build(dict(type='ProxyNormAct', num_features=4))
    assert isinstance(module, ProxyNormAct)
    assert (module.num_samples, module.eps, module.act_cfg) == (200, 0.03, dict(type='ReLU'))
    torch.testing.assert_close(module.weight.detach(), torch.ones(4))
    for name in ('bias', 'proxy_weight', 'proxy_bias'):
        assert torch.count_nonzero(getattr(module, name)) == 0
    x = torch.randn(2, 4, 5, 5)
    # at init the proxy is relu(N(0, 1)): its closed-form moments, to the quantiles' accuracy
    # (the 200 quantiles miss 0.8 % of the variance: the output is up to ~0.5 % larger)
    mean, var = relu_gaussian_moments(0.0, 1.0)
    expected = (torch.relu(x) - mean) / math.sqrt(var + 0.03)
    torch.testing.assert_close(module(x), expected, rtol=1e-2, atol=1e-3)
    assert not module.activation.inplace  # the input is used twice: never in place
    built = MODELS.build(dict(type='ProxyNormAct', num_features=4,
                              act_cfg=dict(type='ReLU', inplace=True)))
    assert not built.activation.inplace


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_statistics_in_float32_and_the_output_in_the_input_dtype(dtype):
    module = ProxyNormAct(8, act_cfg=dict(type='SiLU'))
    with torch.no_grad():
        module.bias.uniform_(-0.5, 0.5)
        module.proxy_bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last)
    out = module(x.to(dtype))
    assert out.dtype == dtype
    reference = proxy_norm_activation(x.double(), *(p.double() for p in module.parameters()),
                                      activation=nn.functional.silu)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2,
                                                                                atol=2e-2)
    torch.testing.assert_close(out.double(), reference, **tolerance)


def test_norm_proxy_act_is_group_norm_without_affine_then_proxy_norm():
    module = NormProxyAct(8, dict(type='GN', num_groups=4, requires_grad=True))
    assert isinstance(module.norm, nn.GroupNorm) and module.norm.weight is None
    assert sorted(n for n, _ in module.named_parameters()) == [
        'bias', 'proxy_bias', 'proxy_weight', 'weight']
    x = torch.randn(2, 8, 5, 5)
    expected = proxy_norm_activation(nn.functional.group_norm(x, 4), module.weight, module.bias,
                                     module.proxy_weight, module.proxy_bias)
    torch.testing.assert_close(module(x), expected)
    frozen = NormProxyAct(8, dict(type='GN', num_groups=4, requires_grad=False))
    assert not any(p.requires_grad for p in frozen.parameters())


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match='eps must be > 0'):
        ProxyNormAct(4, eps=0.0)
    with pytest.raises(ValueError, match=r'expected \(N, 4, \.\.\.\)'):
        ProxyNormAct(4)(torch.randn(2, 3, 2, 2))
