"""MMEngine's FLOP counter and torch.jit tracing on BCN+WS models.

In eval mode a traced BCN is ``aten::batch_norm`` then ``aten::group_norm`` (exactly what it
computes), so the counter counts each BCN layer as a BatchNorm plus a GroupNorm of its shape.
"""

import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.analysis import FlopAnalyzer, get_model_complexity_info
from mmengine.registry import init_default_scope
from torch import nn

from mmbcn import BatchChannelNorm2d

BCN = dict(type='BCN', num_groups=8, estimate=True, requires_grad=True)


WS = dict(type='WSConv2d')


def resnet18(norm_cfg, conv_cfg=WS):
    init_default_scope('mmdet')
    model = MMDET_MODELS.build(dict(type='ResNet', depth=18, norm_cfg=norm_cfg,
                                    conv_cfg=conv_cfg, norm_eval=False))
    model.eval()
    return model


def bcn_inputs(model, x):
    """{layer name: input shape} of every BCN layer in one forward."""
    shapes, handles = {}, []

    def record(name):
        def hook(module, args, out):
            shapes.setdefault(name, args[0].shape)
        return hook

    for name, module in model.named_modules():
        if isinstance(module, BatchChannelNorm2d):
            handles.append(module.register_forward_hook(record(name)))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return shapes


def test_flop_counter_counts_each_bcn_as_batch_norm_plus_group_norm():
    model = resnet18(BCN)
    x = torch.randn(1, 3, 64, 64)
    per_module = FlopAnalyzer(model, (x, )).unsupported_ops_warnings(False).by_module()
    shapes = bcn_inputs(model, x)
    assert len(shapes) == 20  # stem, 8 blocks x 2, 3 downsample norms
    for name, shape in shapes.items():
        layer = model.get_submodule(name)
        z = torch.randn(shape)
        batch_norm = FlopAnalyzer(nn.BatchNorm2d(shape[1]).eval(), (z, )).total()
        group_norm = FlopAnalyzer(nn.GroupNorm(layer.num_groups, shape[1]), (z, )).total()
        assert batch_norm > 0 and group_norm > 0
        assert per_module[name] == batch_norm + group_norm, name


def test_get_model_complexity_info_runs_and_bcn_costs_more_than_gn():
    x_shape = (3, 64, 64)
    info = {name: get_model_complexity_info(resnet18(cfg), input_shape=x_shape,
                                            show_table=False, show_arch=False)
            for name, cfg in (('bcn', BCN), ('gn', dict(type='GN', num_groups=8)),
                              ('bn', dict(type='BN')))}
    assert info['bcn']['flops'] > info['gn']['flops'] > 0
    assert info['bcn']['flops'] > info['bn']['flops'] > 0
    # the channel stage adds 2 parameters per group and layer
    assert info['bcn']['params'] - info['bn']['params'] == 2 * 8 * 20


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_the_eval_trace_computes_what_bcn_computes(dtype):
    model = resnet18(BCN).to(dtype)
    with torch.no_grad():  # statistics away from the initial 0 / 1
        for module in model.modules():
            if isinstance(module, BatchChannelNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 64, 64, dtype=dtype)
    with torch.no_grad():
        traced = torch.jit.trace(model, (x, ))
        kinds = {node.kind() for node in traced.inlined_graph.nodes()}
        expected, got = model(x), traced(x)
    assert 'aten::group_norm' in kinds and 'aten::batch_norm' in kinds
    tolerance = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9,
                                                                              atol=1e-10)
    torch.testing.assert_close(got, expected, **tolerance)  # as many outputs, each close


def test_tracing_in_training_mode_is_a_clear_error():
    layer = BatchChannelNorm2d(8, 2)
    with pytest.raises(RuntimeError, match='Call model.eval'):
        torch.jit.trace(layer, (torch.randn(2, 8, 4, 4), ))


def test_mmcv_flop_counter_counts_ws_convs_and_both_bcn_stages():
    from mmcv.cnn import get_model_complexity_info as mmcv_complexity

    def flops(model):
        return mmcv_complexity(model, (3, 64, 64), print_per_layer_stat=False,
                               as_strings=False)[0]

    bcn_ws, bn_plain = resnet18(BCN), resnet18(dict(type='BN'), conv_cfg=None)
    channel_stages = sum(2 * torch.Size(shape).numel()
                         for shape in bcn_inputs(bcn_ws, torch.randn(1, 3, 64, 64)).values())
    assert flops(bcn_ws) == flops(bn_plain) + channel_stages


def test_torch_export_of_an_eval_bcn_model_is_exact():
    model = resnet18(BCN)
    x = torch.randn(1, 3, 64, 64)
    exported = torch.export.export(model, (x, ))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-4, atol=1e-4)
