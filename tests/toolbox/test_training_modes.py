"""The training modes users turn on, each against the plain run, through the toolboxes' own code.

float64 runs unless a mode needs float32 (autocast); ResNet-18 on 32x32 images (64x64 in
large-batch mode, see :func:`input_shape`).

Cross-cutting (the toolboxes' backbones and MMEngine's wrappers with mmbcn's layers); the page
that lists the modes is docs/en/user_guides/training_modes.md. Activation checkpointing at the
layer level, both of torch's kinds and over gloo processes: tests/ops/test_recompute.py.
"""

import copy
import importlib

import pytest
import torch
from mmbcn_testing.plain_run import (
    assert_same_states,
    batches,
    loss_of,
    state_of,
    training_states,
    twin,
)
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.runner import turn_on_activation_checkpointing

from mmbcn import BatchChannelNorm2d

pytestmark = pytest.mark.slow  # trains ResNet-18s

MODES = {'micro-batch': True, 'large-batch': False}
BCN_WS = dict(norm_cfg=dict(type='BCN', num_groups=16, estimate=True, momentum=0.3),
              conv_cfg=dict(type='WSConv2d'), norm_eval=False)
INPUT = (1, 3, 32, 32)


def input_shape(estimate=True):
    """One 32x32 image in micro-batch mode. Large-batch mode normalizes with the batch's
    statistics, which need more than one value a channel (the last stage's maps are 1x1 at
    32x32) and are ill-conditioned with few: two 64x64 images, 8 values a channel there."""
    return INPUT if estimate else (2, 3, 64, 64)


def resnet(toolbox, kind='ResNet', estimate=True, **kwargs):
    """A float64 ResNet-18 of ``toolbox`` ('mmdet', 'mmseg', 'mmpretrain') with BCN + WS."""
    registry = importlib.import_module(f'{toolbox}.registry')
    if kind.startswith('ProxyNorm'):
        importlib.import_module(f'mmbcn.models.backbones.{toolbox}_resnet')
    cfg = copy.deepcopy(BCN_WS)
    cfg['norm_cfg']['estimate'] = estimate
    cfg.update(kwargs)
    if toolbox == 'mmpretrain':
        cfg.setdefault('out_indices', (0, 1, 2, 3))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(toolbox):  # whatever scope an earlier test left
        model = registry.MODELS.build(dict(type=kind, depth=18, **cfg))
    model.init_weights()
    model.double().train()  # mmdet's ResNet.train() returns None
    return model


def bcn_layers(model):
    return [m for m in model.modules() if isinstance(m, BatchChannelNorm2d)]


def assert_checkpointed_equals_plain(build, estimate=True, steps=2):
    """``build(with_cp)`` twice from the same seed: the checkpointed run equals the plain one,
    and each BCN layer counted each step once."""
    plain, checkpointed = build(False), build(True)
    checkpointed.load_state_dict(plain.state_dict())
    data = batches(input_shape(estimate), steps)
    assert_same_states(training_states(checkpointed, data), training_states(plain, data))
    assert all(int(m.num_batches_tracked) == steps for m in bcn_layers(checkpointed))


# Activation checkpointing through each toolbox's own with_cp (torch's reentrant checkpoint).
@pytest.mark.mmcv_ops
@pytest.mark.parametrize('estimate', MODES.values(), ids=MODES.keys())
@pytest.mark.parametrize('toolbox, kind', [('mmdet', 'ResNet'), ('mmseg', 'ResNetV1c')])
def test_with_cp_equals_the_plain_run_mmdet_mmseg(toolbox, kind, estimate):
    assert_checkpointed_equals_plain(
        lambda with_cp: resnet(toolbox, kind, estimate, with_cp=with_cp), estimate)


@pytest.mark.mmcv_ops
@pytest.mark.parametrize('toolbox', ['mmdet', 'mmseg', 'mmpretrain'])
def test_with_cp_equals_the_plain_run_proxy_norm_resnets(toolbox):
    """mmbcn's PN ResNets (GroupNorm + WS + PN: the gn-pn preset) keep the parent's with_cp."""
    gn = dict(type='GN', num_groups=16, requires_grad=True)
    assert_checkpointed_equals_plain(
        lambda with_cp: resnet(toolbox, 'ProxyNormResNet', with_cp=with_cp, norm_cfg=gn))


@pytest.mark.parametrize('estimate', MODES.values(), ids=MODES.keys())
def test_with_cp_equals_the_plain_run_mmpretrain(estimate):
    assert_checkpointed_equals_plain(
        lambda with_cp: resnet('mmpretrain', 'ResNet', estimate, with_cp=with_cp), estimate)


@pytest.mark.parametrize('estimate', MODES.values(), ids=MODES.keys())
def test_mmengine_activation_checkpointing_equals_the_plain_run(estimate):
    """The Runner's ``activation_checkpointing = ['layer1', ...]`` option, which wraps those
    modules' forward in torch's checkpoint."""
    def build(checkpointing):
        model = resnet('mmpretrain', 'ResNet', estimate)
        if checkpointing:
            turn_on_activation_checkpointing(model, ['layer1', 'layer2', 'layer3', 'layer4'])
        return model
    assert_checkpointed_equals_plain(build, estimate)


# Mixed precision.
def test_autocast_bfloat16_normalizes_in_float32():
    """Under autocast BCN computes on its input's values in float32 and returns the input's
    dtype: the running statistics are exactly those of the float32 layer on the same values,
    the output and the input gradient theirs rounded to bfloat16."""
    layer = BatchChannelNorm2d(16, num_groups=4, estimate=True, momentum=0.3)
    reference = twin(layer)
    x = (torch.randn(1, 16, 8, 8) * 3 + 40).to(torch.bfloat16).requires_grad_()
    x32 = x.detach().float().requires_grad_()
    upstream = torch.randn(1, 16, 8, 8).to(torch.bfloat16).float()  # exact in both dtypes
    for _ in range(2):
        x.grad = x32.grad = None
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = layer(x)
        expected = reference(x32)
        assert out.dtype == torch.bfloat16
        (out.float() * upstream).sum().backward()
        (expected * upstream).sum().backward()
        torch.testing.assert_close(out, expected.to(torch.bfloat16), rtol=0, atol=0)
        torch.testing.assert_close(x.grad, x32.grad.to(torch.bfloat16), rtol=0, atol=0)
    for name, buffer in layer.named_buffers():
        assert torch.equal(buffer, dict(reference.named_buffers())[name]), name


def test_autocast_bfloat16_training_follows_the_float32_run():
    """A ResNet-18 step under bfloat16 autocast: BCN's estimates and running statistics stay
    float32 and follow the float32 run's within what bfloat16 convolutions (8 significant bits)
    change in their inputs: up to 7 % (relative norm) in the last stage, measured; statistics
    computed in bfloat16 would be off by far more."""
    plain = resnet('mmpretrain', 'ResNet').float()
    mixed = twin(plain)
    data = batches(INPUT, 1, dtype=torch.float32)

    def autocast_forward(model, x):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return model(x)

    states = training_states(mixed, data, autocast_forward)
    expected = training_states(plain, data)
    for name, value in states[-1]['buffers'].items():
        reference = expected[-1]['buffers'][name]
        if name.endswith('num_batches_tracked'):
            assert torch.equal(value, reference), name
            continue
        assert value.dtype == torch.float32, name
        assert (value - reference).norm() <= 0.1 * reference.norm(), name


def amp_optim_wrapper_problem():
    """Why MMEngine's AmpOptimWrapper cannot be built here, or None."""
    from mmengine.optim import AmpOptimWrapper
    try:
        AmpOptimWrapper(optimizer=torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1))
    except AssertionError as error:
        return str(error)
    return None


@pytest.mark.skipif(amp_optim_wrapper_problem() is not None,
                    reason="needs CUDA (or NPU, MLU): MMEngine's AmpOptimWrapper refuses the CPU")
def test_amp_optim_wrapper_follows_the_float32_run():
    plain = resnet('mmpretrain', 'ResNet').float().cuda()
    from mmengine.optim import AmpOptimWrapper
    mixed = twin(plain)
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(mixed.parameters(), lr=0.05))
    x, projection = (t.float().cuda() for t in batches(INPUT, 1)[0])
    with wrapper.optim_context(mixed):
        loss = loss_of(mixed(x), projection)
    wrapper.update_params(loss)
    loss_of(plain(x), projection).backward()
    for name, value in mixed.named_buffers():
        torch.testing.assert_close(value, dict(plain.named_buffers())[name], rtol=0.05,
                                   atol=0.05)


# Gradient accumulation: BCN's estimates move at r on every forward, accumulated or not.
@pytest.mark.parametrize('estimate', MODES.values(), ids=MODES.keys())
def test_accumulation_moves_the_estimates_per_forward(estimate):
    """OptimWrapper(accumulative_counts=2) over 4 micro-batches equals the loop that runs each
    forward and backward with the loss halved and steps every second one; each BCN layer counts
    4 updates (r per forward), not 2."""
    accumulated = resnet('mmpretrain', 'ResNet', estimate)
    manual = twin(accumulated)
    data = batches(input_shape(estimate), 4)
    wrapper = OptimWrapper(torch.optim.SGD(accumulated.parameters(), lr=0.05),
                           accumulative_counts=2)
    optimizer = torch.optim.SGD(manual.parameters(), lr=0.05)
    for i, (x, projection) in enumerate(data):
        with wrapper.optim_context(accumulated):
            wrapper.update_params(loss_of(accumulated(x), projection))
        (loss_of(manual(x), projection) / 2).backward()
        if i % 2 == 1:
            optimizer.step()
            optimizer.zero_grad()
    assert_same_states([state_of(accumulated)], [state_of(manual)])
    assert all(int(m.num_batches_tracked) == 4 for m in bcn_layers(accumulated))


# Memory layout.
@pytest.mark.parametrize('estimate', MODES.values(), ids=MODES.keys())
def test_channels_last_equals_the_plain_run(estimate):
    plain = resnet('mmpretrain', 'ResNet', estimate)
    channels_last = twin(plain).to(memory_format=torch.channels_last)
    data = batches(input_shape(estimate), 2)
    last_data = [(x.to(memory_format=torch.channels_last), p) for x, p in data]
    # The convolutions sum in another order: float64 rounding, grown through 18 layers.
    assert_same_states(training_states(channels_last, last_data), training_states(plain, data),
                       rtol=1e-5, atol=1e-8)


# Frozen normalization.
def test_norm_eval_freezes_every_estimate():
    """norm_eval=True: BCN layers run in eval mode inside a training model, as BatchNorm's do:
    the plain run is the same model with each BCN layer put in eval mode by hand."""
    frozen = resnet('mmpretrain', 'ResNet', norm_eval=True)
    by_hand = resnet('mmpretrain', 'ResNet')
    by_hand.load_state_dict(frozen.state_dict())
    for layer in bcn_layers(by_hand):
        layer.eval()
    initial = {n: b.clone() for n, b in frozen.named_buffers()}
    data = batches(INPUT, 2)
    assert_same_states(training_states(frozen, data), training_states(by_hand, data))
    assert all(torch.equal(b, initial[n]) for n, b in frozen.named_buffers())


def test_frozen_stages_keep_their_estimates_and_weights():
    model = resnet('mmpretrain', 'ResNet', frozen_stages=1)
    initial = copy.deepcopy(model.state_dict())
    training_states(model, batches(INPUT, 2))
    frozen = ('conv1.', 'bn1.', 'layer1.')
    for name, value in model.state_dict().items():
        if name.startswith(frozen):
            assert torch.equal(value, initial[name]), name
    moved = [name for name, value in model.state_dict().items()
             if name.startswith('layer2.') and not torch.equal(value, initial[name])]
    assert any(name.endswith('running_mean') for name in moved)
    assert any(name.endswith('group_weight') for name in moved)


# Weight averaging.
@pytest.mark.mmcv_ops
def test_ema_model_copies_the_live_estimates():
    """mmdet's ExpMomentumEMA (update_buffers=False, its default) averages the parameters and
    copies the buffers: the EMA model's BCN estimates are the live model's, exactly."""
    from mmdet.models.layers import ExpMomentumEMA
    model = resnet('mmpretrain', 'ResNet')
    initial = copy.deepcopy(model.state_dict())
    ema = ExpMomentumEMA(model, momentum=0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for x, projection in batches(INPUT, 2):
        optimizer.zero_grad()
        loss_of(model(x), projection).backward()
        optimizer.step()
        ema.update_parameters(model)
    live, averaged = model.state_dict(), ema.module.state_dict()
    for name, _ in model.named_buffers():
        assert torch.equal(averaged[name], live[name]), name
    weight = 'layer1.0.bn1.group_weight'
    assert not torch.equal(averaged[weight], live[weight])
    assert not torch.equal(averaged[weight], initial[weight])


# Compilation.
@pytest.mark.slow
@pytest.mark.parametrize('estimate, with_cp', [(True, False), (True, True), (False, True)],
                         ids=['micro-batch', 'micro-batch-with_cp', 'large-batch-with_cp'])
def test_compiled_model_equals_the_eager_run(estimate, with_cp):
    """torch.compile of the whole model (MMEngine's compile=True), trained then evaluated, with
    and without activation checkpointing; 'aot_eager' traces as the default backend does,
    without a C++ compiler. Micro-batch training calls run eagerly between compiled regions
    (compiled checkpointing recomputed them from moved estimates: 35 % off, before)."""
    eager = resnet('mmpretrain', 'ResNet', estimate, with_cp=with_cp)
    compiled_model = twin(eager)
    torch._dynamo.reset()
    compiled = torch.compile(compiled_model, backend='aot_eager')
    data = batches(input_shape(estimate), 2)
    assert_same_states(training_states(compiled_model, data, lambda _, x: compiled(x)),
                       training_states(eager, data), rtol=1e-9, atol=1e-11)
    eager.eval()
    compiled_model.eval()
    x = data[0][0]
    for out, expected in zip(compiled(x), eager(x), strict=True):
        torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-11)
