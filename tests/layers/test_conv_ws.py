"""WSConv2d against the float64 reference, its caching, and mmcv ConvWS checkpoints."""

import pytest
import torch
import torch.nn.functional as F
from mmbcn_testing.reference import weight_standardize_reference

from mmbcn import WSConv2d, weight_standardize


@pytest.mark.parametrize('in_channels,out_channels,kernel,groups', [
    (4, 8, 3, 1), (6, 6, 1, 2), (8, 4, (3, 1), 4), (3, 5, 5, 1),
])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('eps_on', ['variance', 'std'])
def test_matches_conv2d_with_reference_standardized_weight(in_channels, out_channels, kernel,
                                                           groups, channels_last, eps_on):
    conv = WSConv2d(in_channels, out_channels, kernel, padding=1, groups=groups, bias=True,
                    eps_on=eps_on)
    x = torch.randn(2, in_channels, 7, 6)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x64 = x.double().requires_grad_()
    w64 = conv.weight.detach().double().requires_grad_()
    expected = F.conv2d(x64, weight_standardize_reference(w64, eps_on=eps_on), conv.bias.double(),
                        padding=1, groups=groups)
    x.requires_grad_()
    out = conv(x)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(conv.weight.grad.double(), w64.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-4)


def test_standardized_filters_have_zero_mean_unit_unbiased_variance():
    weight = torch.randn(16, 8, 3, 3) * 5 + 3
    standardized = weight_standardize(weight).reshape(16, -1)
    torch.testing.assert_close(standardized.mean(1), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(standardized.var(1, correction=1), torch.ones(16), atol=1e-4,
                               rtol=0)


def test_the_two_eps_forms_differ_where_the_filter_std_is_small():
    # Filters of std 0.003 (std^2 = 9e-6, next to eps = 1e-5): the forms differ by tens of
    # percent; Kaiming-initialized 3x3 filters of a 256-channel conv (std 0.029) by about 0.5%.
    small = torch.randn(16, 8, 3, 3, dtype=torch.float64) * 0.003
    kaiming = torch.randn(256, 64, 3, 3, dtype=torch.float64) * (2 / (256 * 9)) ** 0.5
    for weight, low, high in ((small, 0.2, 1.0), (kaiming, 1e-3, 1e-2)):
        by_variance = weight_standardize(weight, eps_on='variance')
        by_std = weight_standardize(weight, eps_on='std')
        difference = ((by_std - by_variance).norm() / by_variance.norm()).item()
        assert low < difference < high


def test_bad_eps_form_is_a_clear_error():
    with pytest.raises(ValueError, match="eps_on must be one of"):
        WSConv2d(4, 4, 3, eps_on='sqrt')


def test_channels_last_weight_stays_channels_last():
    weight = torch.randn(8, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    assert weight_standardize(weight).is_contiguous(memory_format=torch.channels_last)


def test_constant_filter_gives_zeros_not_nan():
    weight = torch.ones(2, 3, 3, 3)
    assert torch.equal(weight_standardize(weight), torch.zeros_like(weight))


def test_gradcheck_float64():
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(weight_standardize, (weight,))


@pytest.mark.parametrize('update', ['in_place', 'through_data', 'load_state_dict'])
def test_eval_sees_every_weight_update(update):
    """Teachers and moving averages (MeanTeacherHook, EMAHook) write through ``.data``."""
    conv = WSConv2d(4, 4, 3).eval()
    other = WSConv2d(4, 4, 3)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        before = conv(x)
        if update == 'in_place':
            conv.weight.mul_(2).add_(other.weight)
        elif update == 'through_data':
            conv.weight.data.lerp_(other.weight.data, 0.5)
        else:
            conv.load_state_dict(other.state_dict())
        expected = F.conv2d(x, weight_standardize(conv.weight), conv.bias)
        torch.testing.assert_close(conv(x), expected)
    assert not torch.allclose(conv(x), before)


def test_training_recomputes_with_gradient():
    conv = WSConv2d(4, 4, 3)
    out = conv(torch.randn(1, 4, 5, 5))
    out.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_autocast_standardizes_in_float32():
    conv = WSConv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 6, 6)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), conv(x), rtol=5e-2, atol=5e-2)


def test_loads_mmcv_convws_checkpoint_with_the_same_keys():
    from mmcv.cnn.bricks.conv_ws import ConvWS2d
    mmcv_conv = ConvWS2d(4, 8, 3, bias=True)
    conv = WSConv2d(4, 8, 3, bias=True)
    conv.load_state_dict(mmcv_conv.state_dict(), strict=True)
    assert torch.equal(conv.weight, mmcv_conv.weight)
    assert torch.equal(conv.bias, mmcv_conv.bias)


def test_single_value_filters_are_a_clear_error():
    with pytest.raises(ValueError, match='standardizing a single value is undefined'):
        WSConv2d(4, 4, 1, groups=4)
