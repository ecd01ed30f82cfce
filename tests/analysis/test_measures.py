"""mmbcn's measures on constructed cases whose answer is known exactly."""

import math

import pytest
import torch
from torch import nn

from mmbcn.analysis import (
    NormStatisticsCollector,
    channel_figures,
    channel_statistics,
    channel_sums,
    mean_pairwise_cosine,
    norm_statistics,
)


def eval_bn(channels, bias=None, weight=None):
    """A BatchNorm2d in eval mode with running statistics 0 / 1: z = weight * x + bias
    (up to the eps in the denominator)."""
    bn = nn.BatchNorm2d(channels, eps=0.0).eval()
    with torch.no_grad():
        if bias is not None:
            bn.bias.copy_(bias)
        if weight is not None:
            bn.weight.copy_(weight)
    return bn


@pytest.mark.parametrize('channels, eliminated', [(8, 3), (16, 1), (5, 0), (4, 4)])
def test_bias_minus_ten_on_k_channels_eliminates_exactly_k(channels, eliminated):
    bias = torch.zeros(channels)
    bias[:eliminated] = -10
    model = nn.Sequential(nn.Conv2d(3, channels, 1, bias=False), eval_bn(channels, bias),
                          nn.ReLU())
    with torch.no_grad():  # |conv output| <= 3 * 1 * 1 < 10 for inputs in [-1, 1]
        model[0].weight.uniform_(-1, 1)
    inputs = torch.rand(4, 3, 6, 6) * 2 - 1
    layer = channel_statistics(model, inputs)['1']
    assert layer['feeds'] == 'activation'
    assert layer['eliminated_fraction'] == eliminated / channels
    assert layer['eliminated_channels'] == eliminated
    assert layer['constant_fraction'] == 0.0
    assert layer['values_per_channel'] == 4 * 6 * 6
    if eliminated:
        assert layer['margin_p1'] < -2  # the eliminated channels sit many stds below 0


def test_zero_weight_conv_gives_constant_channels():
    model = nn.Sequential(nn.Conv2d(3, 6, 3, bias=False), eval_bn(6, torch.tensor(
        [0.5, -0.5, 0.0, 2.0, -3.0, 1.0])), nn.ReLU())
    nn.init.zeros_(model[0].weight)
    layer = channel_statistics(model, torch.randn(2, 3, 7, 7), per_channel=True)['1']
    assert layer['constant_fraction'] == 1.0
    # constant channels at <= 0 never pass the ReLU: eliminated too
    assert layer['eliminated_channels'] == 3
    assert all(math.isnan(m) for m in layer['channels']['margin'])
    assert math.isnan(layer['margin_p10'])  # no non-constant channel to take it over


def test_zero_weight_norm_gives_constant_channels_only_where_zero():
    weight = torch.tensor([0.0, 1.0, 0.0, 1.0])
    model = nn.Sequential(eval_bn(4, torch.tensor([1.0, 0.0, -1.0, 0.0]), weight), nn.ReLU())
    layer = channel_statistics(model, torch.randn(3, 4, 5, 5))['0']
    assert layer['constant_channels'] == 2
    assert layer['eliminated_channels'] == 1  # the one constant at -1


def test_channel_figures_match_their_definition():
    z = torch.randn(5, 3, 4, 4) * torch.tensor([1.0, 2.0, 0.5]).reshape(1, 3, 1, 1) \
        + torch.tensor([0.3, -1.0, 2.0]).reshape(1, 3, 1, 1)
    figures = channel_figures(channel_sums(z), threshold=0.2)
    per_channel = z.double().transpose(0, 1).reshape(3, -1)
    mean, std = per_channel.mean(dim=1), per_channel.std(dim=1, unbiased=False)
    torch.testing.assert_close(figures.mean, mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(figures.std, std, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(figures.margin, mean / std, rtol=1e-10, atol=1e-12)
    rate = (per_channel > 0).double().mean(dim=1)
    assert torch.equal(figures.activation_rate, rate)
    assert torch.equal(figures.eliminated, rate < 0.2)


def test_layer_norm_channels_are_the_last_dimension():
    norm = nn.LayerNorm(6)
    with torch.no_grad():
        norm.bias[:2] = -10
    layer = channel_statistics(nn.Sequential(norm, nn.GELU()), torch.randn(2, 9, 6))['0']
    assert layer['num_channels'] == 6 and layer['values_per_channel'] == 18
    assert layer['eliminated_fraction'] == 2 / 6


def test_identical_samples_have_similarity_one_orthogonal_zero():
    sample = torch.randn(1, 4, 3, 3)
    assert mean_pairwise_cosine(sample.expand(5, -1, -1, -1) * torch.tensor(
        [1.0, 2.0, 0.5, 3.0, 7.0]).reshape(5, 1, 1, 1)) == pytest.approx(1.0, abs=1e-12)
    assert mean_pairwise_cosine(torch.eye(6).reshape(6, 6, 1, 1)) == 0.0
    assert mean_pairwise_cosine(torch.cat([torch.ones(2, 4), -torch.ones(2, 4)])) \
        == pytest.approx(-1 / 3, abs=1e-12)  # 4 of the 12 ordered pairs agree, 8 are opposite


def test_similarity_matches_the_pairwise_reference():
    features = torch.randn(7, 5, 2, 2) + 0.5
    flat = features.reshape(7, -1).double()
    cosine = nn.functional.cosine_similarity(flat[:, None], flat[None], dim=2)
    reference = (cosine.sum() - cosine.diagonal().sum()) / (7 * 6)
    assert mean_pairwise_cosine(features) == pytest.approx(float(reference), abs=1e-12)


def test_two_batches_merge_into_one_batch():
    # float64: a float32 conv may pick another kernel for another batch size (another sum
    # order), which would move the sums by float32's precision, not float64's
    model = nn.Sequential(nn.Conv2d(3, 8, 3), eval_bn(8, torch.linspace(-3, 1, 8)),
                          nn.ReLU()).double()
    first = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    second = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    merged = NormStatisticsCollector(model)
    with torch.no_grad(), merged:
        model(first)
        model(second)
    whole = NormStatisticsCollector(model)
    with torch.no_grad(), whole:
        model(torch.cat([first, second]))
    torch.testing.assert_close(merged.sums['1'], whole.sums['1'], rtol=1e-12, atol=1e-10)
    assert torch.equal(merged.sums['1'][[0, 3]], whole.sums['1'][[0, 3]])  # counts: exact
    assert merged.layer_statistics()['1']['eliminated_fraction'] == \
        whole.layer_statistics()['1']['eliminated_fraction']


def test_similarity_pools_pairs_within_each_batch():
    class Stage(nn.Module):
        res_layers = ['layer1']

        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(4).eval()
            self.layer1 = nn.Identity()

        def forward(self, x):
            return self.layer1(self.norm(x))

    same, orthogonal = torch.ones(3, 4), torch.eye(4)[:2]
    result = norm_statistics(Stage(), [same, orthogonal])
    stage = result['stages']['layer1']
    assert stage['sample_pairs'] == 3 * 2 + 2 * 1
    assert stage['sample_similarity'] == pytest.approx((6 * 1.0 + 2 * 0.0) / 8, abs=1e-12)
    assert 'grad_norm' not in stage  # no backward under norm_statistics


def test_a_model_without_normalization_is_refused():
    with pytest.raises(ValueError, match='no normalization layer'):
        channel_statistics(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()), torch.randn(1, 3, 2, 2))


def test_feeds_overrides_are_checked_and_applied():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4))
    inputs = torch.randn(2, 3, 4, 4)
    assert channel_statistics(model, inputs)['1']['feeds'] == 'unknown'
    assert channel_statistics(model, inputs, feeds={'1': 'activation'})['1']['feeds'] \
        == 'activation'
    with pytest.raises(ValueError, match='must be one of'):
        channel_statistics(model, inputs, feeds={'1': 'relu'})


def test_inputs_of_an_unknown_kind_are_refused():
    with pytest.raises(TypeError, match='inputs must be a tensor'):
        channel_statistics(nn.BatchNorm2d(3), 'images')
