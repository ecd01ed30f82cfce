"""``mmbcn.batch_channel_norm``'s arguments: ``momentum`` (r), its old name, ``estimate_rule``."""

import inspect
import warnings

import pytest
import torch

from mmbcn import BatchChannelNorm2d, batch_channel_norm
from mmbcn.ops.maths import DEFAULT_ESTIMATE_RULE

GROUPS = 2


def inputs(seed=0):
    """x (2, 4, 3, 3), fresh running statistics and the four affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 3, 3, generator=generator) * 2 + 1
    running = [torch.zeros(4), torch.ones(4)]
    params = [torch.rand(4, generator=generator) + 0.5, torch.randn(4, generator=generator),
              torch.rand(GROUPS, generator=generator) + 0.5,
              torch.randn(GROUPS, generator=generator)]
    return x, running, params


def one_step(rate_keyword, estimate):
    """Output and running statistics of a training call with r = 0.3 passed as ``rate_keyword``."""
    x, running, params = inputs()
    out = batch_channel_norm(x, *running, *params, GROUPS, True, estimate, eps=1e-5,
                             **{rate_keyword: 0.3})
    return [out, *running]


@pytest.mark.parametrize('estimate', [False, True], ids=['large-batch', 'micro-batch'])
def test_update_rate_keyword_warns_and_computes_what_momentum_computes(estimate):
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # momentum= itself warns about nothing
        expected = one_step('momentum', estimate)
    with pytest.warns(FutureWarning, match=r'batch_channel_norm\(momentum=\.\.\.\)') as caught:
        got = one_step('update_rate', estimate)
    assert caught[0].filename == __file__  # it names the line that passed update_rate=
    assert not torch.equal(expected[1], torch.zeros(4))  # the running mean moved
    for tensor, reference in zip(got, expected, strict=True):
        assert torch.equal(tensor, reference)


@pytest.mark.parametrize('momentum_as', ['keyword', 'positional'])
def test_momentum_and_update_rate_together_is_a_type_error(momentum_as):
    x, running, params = inputs()
    positional = (x, *running, *params, GROUPS, True, True)
    with pytest.raises(TypeError, match='both momentum and update_rate'):
        if momentum_as == 'keyword':
            batch_channel_norm(*positional, momentum=0.3, update_rate=0.3, eps=1e-5)
        else:
            batch_channel_norm(*positional, 0.3, 1e-5, update_rate=0.3)
    assert torch.equal(running[0], torch.zeros(4))  # refused before anything moved


def test_estimate_rule_has_one_default_and_one_check():
    functional = inspect.signature(batch_channel_norm).parameters['estimate_rule'].default
    layer = inspect.signature(BatchChannelNorm2d).parameters['estimate_rule'].default
    assert functional == layer == DEFAULT_ESTIMATE_RULE == 'authors'
    x, running, params = inputs()
    with pytest.raises(ValueError, match="estimate_rule must be one of .* got 'batch'") as caught:
        batch_channel_norm(x, *running, *params, GROUPS, True, True, 0.3, 1e-5,
                           estimate_rule='batch')
    with pytest.raises(ValueError) as from_layer:
        BatchChannelNorm2d(4, GROUPS, estimate=True, estimate_rule='batch')
    assert str(caught.value) == str(from_layer.value)
    # A rule set on a built layer meets the same check at its next call.
    layer = BatchChannelNorm2d(4, GROUPS, estimate=True)
    layer.estimate_rule = 'batch'
    with pytest.raises(ValueError, match='estimate_rule must be one of'):
        layer(x)
