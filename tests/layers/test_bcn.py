"""BatchChannelNorm2d against the float64 reference, its equivalences, and its errors."""

import pytest
import torch
import torch.nn.functional as F
from mmbcn_testing.bcn_cases import ESTIMATE_RULE_OF_MODE, MODES, make_layer, reference_of
from mmbcn_testing.reference import batch_stage, bcn_reference, channel_stage
from torch import nn

from mmbcn import BatchChannelNorm2d

SHAPES_AND_GROUPS = [
    ((2, 8, 5, 7), 4),
    ((3, 16, 1, 1), 8),
    ((4, 6, 3), 3),
    ((2, 32, 4, 4), 32),
    ((5, 12), 1),
    ((1, 8, 3, 2), 2),
]
CASES = [(shape, groups, mode, channels_last)
         for shape, groups in SHAPES_AND_GROUPS for mode in MODES
         for channels_last in ([False, True] if len(shape) == 4 else [False])]


@pytest.mark.parametrize('shape,groups,mode,channels_last', CASES)
def test_forward_backward_match_float64_reference(shape, groups, mode, channels_last):
    layer = make_layer(shape[1], groups, mode)
    x = torch.randn(shape) * 2 + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x64 = x.detach().double().requires_grad_()
    ref_out, ref_mean, ref_var, ref_params = reference_of(layer, x64, mode)

    x.requires_grad_()
    out = layer(x)
    upstream = torch.randn(shape)
    (out * upstream).sum().backward()
    (ref_out * upstream.double()).sum().backward()

    torch.testing.assert_close(out.double(), ref_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.running_mean.double(), ref_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.running_var.double(), ref_var, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-3, atol=1e-4)
    for name, ref_param in ref_params.items():
        torch.testing.assert_close(
            getattr(layer, name).grad.double(), ref_param.grad, rtol=1e-3, atol=1e-4,
            msg=lambda m, n=name: f'{n}: {m}')
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('channels_last', [False, True])
def test_output_can_be_modified_in_place(channels_last):
    # ResNets follow BCN with nn.ReLU(inplace=True): the output must not be an autograd view of
    # a tensor made inside the custom Function, and the gradient must see the in-place op.
    layer = make_layer(8, 4, 'large')
    x = torch.randn(2, 8, 5, 7, requires_grad=True)
    if channels_last:
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    upstream = torch.randn(2, 8, 5, 7)
    (layer(x).relu_() * upstream).sum().backward()
    expected_x = x.detach().clone().requires_grad_()
    (layer(expected_x).relu() * upstream).sum().backward()
    torch.testing.assert_close(x.grad, expected_x.grad)


@pytest.mark.parametrize('mode', MODES)
def test_gradcheck_float64(mode):
    # Micro-batch mode defines no gradient through the moved estimates; with r = 0 they do not
    # move, so finite differences see the same function the analytic gradient differentiates.
    layer = make_layer(6, 3, mode, rate=0.0 if mode in ESTIMATE_RULE_OF_MODE else 0.3).double()
    x = torch.randn(3, 6, 2, 3, dtype=torch.float64, requires_grad=True)
    params = [layer.weight, layer.bias, layer.group_weight, layer.group_bias]
    buffers = {k: v.clone() for k, v in layer.named_buffers()}

    def run(inp, *_):
        for name, value in buffers.items():  # same running statistics at every evaluation
            getattr(layer, name).copy_(value)
        return layer(inp)

    assert torch.autograd.gradcheck(run, (x, *params), eps=1e-6, atol=1e-5)


def test_large_batch_equals_batchnorm_then_group_norm():
    bcn = make_layer(16, 4, 'large')
    bn = nn.BatchNorm2d(16, momentum=bcn.momentum)
    bn.load_state_dict({k: v for k, v in bcn.state_dict().items() if not k.startswith('group_')})
    x = torch.randn(4, 16, 6, 5)
    expected = F.group_norm(bn(x), 4, bcn.group_weight.repeat_interleave(4),
                            bcn.group_bias.repeat_interleave(4), eps=bcn.eps)
    torch.testing.assert_close(bcn(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bcn.running_mean, bn.running_mean)
    torch.testing.assert_close(bcn.running_var, bn.running_var)
    assert bcn.num_batches_tracked == bn.num_batches_tracked == 1


def test_eval_equals_batchnorm_eval_then_group_norm():
    bcn = make_layer(16, 8, 'eval')
    bn = nn.BatchNorm2d(16).eval()
    bn.load_state_dict({k: v for k, v in bcn.state_dict().items() if not k.startswith('group_')})
    x = torch.randn(2, 16, 3, 3)
    expected = F.group_norm(bn(x), 8, bcn.group_weight.repeat_interleave(2),
                            bcn.group_bias.repeat_interleave(2), eps=bcn.eps)
    before = bcn.running_mean.clone()
    torch.testing.assert_close(bcn(x), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(bcn.running_mean, before)


def test_batchnorm_checkpoint_loads_into_batch_stage():
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    bcn = BatchChannelNorm2d(8, num_groups=2)
    result = bcn.load_state_dict(bn.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == ['group_bias', 'group_weight']
    assert set(bn.state_dict()) | {'group_weight', 'group_bias'} == set(bcn.state_dict())
    bn.eval(), bcn.eval()
    x = torch.randn(2, 8, 4, 4)
    expected = F.group_norm(bn(x), 2, eps=bcn.eps)  # channel stage starts at identity affine
    torch.testing.assert_close(bcn(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('mode', ESTIMATE_RULE_OF_MODE)
def test_micro_batch_one_sample_1x1_and_no_gradient_through_statistics(mode):
    # One value per channel: the batch statistics are functions of x alone. Micro-batch mode
    # normalizes with the moved estimates m', v' taken as constants by autograd, so the gradient
    # is the reference's (which detaches them), and not that of the same formula with m' and v'
    # left as functions of x.
    layer = make_layer(8, 2, mode, rate=0.5)
    x = torch.randn(1, 8, 1, 1, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    ref_out, _, _, params = reference_of(layer, x64, mode)
    mean, var = layer.running_mean.double().clone(), layer.running_var.double().clone()
    out = layer(x)
    upstream = torch.randn(out.shape).double()  # not out.sum(): a group norm's sum has no gradient
    (out * upstream).sum().backward()
    (ref_out * upstream).sum().backward()
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-5)

    through = x64.detach().clone().requires_grad_()
    values, r = through.reshape(-1), layer.momentum
    target = (values - mean) ** 2 if layer.estimate_rule == 'authors' else 0 * values
    moved_mean, moved_var = (1 - r) * mean + r * values, (1 - r) * var + r * target
    y = batch_stage(through, moved_mean, moved_var, params['weight'], params['bias'], layer.eps)
    out_through = channel_stage(y, 2, params['group_weight'], params['group_bias'], layer.eps)
    (out_through * upstream).sum().backward()
    torch.testing.assert_close(out_through, ref_out)  # the same values, another gradient
    assert not torch.allclose(x.grad.double(), through.grad, rtol=1e-2, atol=1e-3)


def test_large_batch_single_value_per_channel_is_a_clear_error():
    layer = BatchChannelNorm2d(4, 2)
    with pytest.raises(ValueError, match='more than one value per channel'):
        layer(torch.randn(1, 4, 1, 1))


def test_momentum_none_is_a_cumulative_average_like_batchnorm():
    bcn = BatchChannelNorm2d(4, 2, momentum=None)
    bn = nn.BatchNorm2d(4, momentum=None)
    for _ in range(3):
        x = torch.randn(3, 4, 2, 2) * 3 + 1
        bcn(x), bn(x)
    torch.testing.assert_close(bcn.running_mean, bn.running_mean)
    torch.testing.assert_close(bcn.running_var, bn.running_var)


@pytest.mark.parametrize('mode', MODES)
def test_constant_input_gives_finite_output_and_gradient(mode):
    # Zero batch variance (large-batch mode): eps alone keeps the division finite; the values
    # and the gradient are the reference's, not just finite.
    layer = make_layer(4, 2, mode)
    x = torch.full((2, 4, 3, 3), 7.0, requires_grad=True)
    x64 = x.detach().double().requires_grad_()
    ref_out, _, _, _ = reference_of(layer, x64, mode)
    out = layer(x)
    upstream = torch.randn(out.shape)  # not out.sum(): a group norm's sum has no gradient
    (out * upstream).sum().backward()
    (ref_out * upstream.double()).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-4, atol=1e-4)
    # Large-batch mode: 1 / sqrt(eps) scales dL/dx up to ~1e4, so float32 is exact to ~1e-4
    # of its largest entry, not of each.
    largest = x64.grad.abs().max().item()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-3, atol=1e-3 * largest)


@pytest.mark.parametrize('mode', MODES)
def test_some_constant_channels_match_the_reference(mode):
    # Dead channels (all zero after a ReLU) or constant ones next to live ones: their rows
    # standardize to NaN in the statistics pass and must come out as A * m + B.
    layer = make_layer(8, 4, mode)
    x = torch.randn(3, 8, 4, 5, dtype=torch.float64)
    x[:, 1] = 0.0
    x[0, 5] = 2.5
    x[2, 6] = -1.0
    ref_out, ref_mean, _, _ = reference_of(layer, x, mode)
    out = layer(x.float())
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.running_mean.double(), ref_mean, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('mean,std', [(1e3, 1e-2), (1e2, 1e-3), (-1e4, 1.0)])
def test_large_mean_small_variance_keeps_group_norms_precision(mean, std, channels_last):
    # |mean| / std up to 1e5: float32 statistics limit any float32 norm layer; BCN writes its
    # output centred on each row's mean, so its error stays within a small factor of
    # F.group_norm's on the same data, both against float64.
    layer = BatchChannelNorm2d(8, 4)
    x = (torch.randn(2, 8, 16, 16, dtype=torch.float64) * std + mean).float()
    if channels_last:  # the general path: moments, then (x - m) A + C
        x = x.contiguous(memory_format=torch.channels_last)
    x64 = x.double()
    params = {k: getattr(layer, k).detach().double() for k in
              ('weight', 'bias', 'group_weight', 'group_bias')}
    ref, _, _ = bcn_reference(x64, params, 4, 'large', torch.zeros(8, dtype=torch.float64),
                              torch.ones(8, dtype=torch.float64), 0.1)
    bcn_error = (layer(x).double() - ref).abs().max().item()
    # (on contiguous data: ATen's channels_last CPU kernel is itself unstable here)
    group_norm_error = (F.group_norm(x.contiguous(), 8).double()
                        - F.group_norm(x64, 8)).abs().max().item()
    assert bcn_error < 3 * group_norm_error + 1e-5, (bcn_error, group_norm_error)


@pytest.mark.parametrize('dtype', [torch.bfloat16])
def test_autocast_computes_statistics_in_float32(dtype):
    layer = make_layer(16, 4, 'large')
    x = torch.randn(2, 16, 8, 8) * 3 + 2
    expected = make_layer(16, 4, 'large')
    expected.load_state_dict(layer.state_dict())
    with torch.autocast('cpu', dtype=dtype):
        out = layer(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected(x.to(dtype).float()), rtol=2e-2, atol=2e-2)
    assert layer.running_mean.dtype == torch.float32


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_features=30, num_groups=32), 'not divisible by num_groups=32'),
    (dict(num_features=32, num_groups=0), 'num_groups must be a positive int'),
    (dict(num_features=32, eps=0.0), 'eps must be > 0'),
    (dict(num_features=32, momentum=1.5), r'momentum .* must be in \[0, 1\]'),
    (dict(num_features=32, estimate=True, estimate_rule='batch'), 'estimate_rule must be one of'),
])
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchChannelNorm2d(**kwargs)


@pytest.mark.parametrize('shape,message', [
    ((2, 6, 4, 4), 'built for 8 channels but got an input with 6 channels'),
    ((8,), 'at least 2 dimensions'),
])
def test_bad_input_is_a_clear_error(shape, message):
    with pytest.raises(ValueError, match=message):
        BatchChannelNorm2d(8, 2)(torch.randn(shape))


def test_unknown_option_is_a_clear_error():
    with pytest.raises(TypeError, match='num_grups'):
        BatchChannelNorm2d(8, num_grups=2)


def test_torch_compile_gives_the_eager_result_in_training_and_eval():
    # MMEngine's `compile=True` wraps the model in torch.compile; 'aot_eager' traces it as the
    # default backend does, without needing a C++ compiler on the test machine.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), BatchChannelNorm2d(8, 2),
                          nn.ReLU(inplace=True))
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    expected.sum().backward()
    expected_grad = model[0].weight.grad.clone()
    model.zero_grad()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='aot_eager')
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(model[0].weight.grad, expected_grad)
    model.eval()  # eval mode: BCN's graph form, with the statistics the training steps left
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize('mode', MODES)
def test_strided_input_equals_its_contiguous_copy(mode):
    # A slice is neither contiguous nor channels_last: the general path, not the row kernels.
    layer = make_layer(8, 4, mode)
    expected_layer = make_layer(8, 4, mode)
    expected_layer.load_state_dict(layer.state_dict())
    x = torch.randn(2, 8, 10, 7)[:, :, ::2].requires_grad_()
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    x_copy = x.detach().contiguous().requires_grad_()
    upstream = torch.randn(2, 8, 5, 7)
    out, expected = layer(x), expected_layer(x_copy)
    (out * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_copy.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.running_var, expected_layer.running_var)
