"""Models with BCN and WSConv2d leave PyTorch through each exporter the installed torch has.

On a plain model (no mmdet or mmseg, so every supported stack runs these): the TorchScript-based
ONNX exporter (every torch; :func:`mmbcn.deploy.export_onnx`, checked with onnxruntime),
``torch.export`` and ``torch.fx`` symbolic tracing, deployed or not.
"""

import inspect

import pytest
import torch
import torch.fx
from mmbcn_testing.bcn_cases import randomize_bcn
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d
from mmbcn.deploy import deploy_model, export_onnx, onnxruntime_max_error


def bcn_ws_model():
    torch.manual_seed(0)
    return randomize_bcn(nn.Sequential(
        WSConv2d(3, 8, 3, padding=1), BatchChannelNorm2d(8, 2), nn.ReLU(),
        WSConv2d(8, 8, 3, padding=1), BatchChannelNorm2d(8, 4), nn.ReLU())).eval()


@pytest.mark.parametrize('deployed', [False, True], ids=['as trained', 'deployed'])
def test_onnx_export_matches_pytorch_in_onnxruntime(tmp_path, deployed):
    pytest.importorskip('onnxruntime', reason='needs onnxruntime (the deploy extra)')
    model = bcn_ws_model()
    if deployed:
        deploy_model(model)
    x = torch.randn(2, 3, 16, 12)
    path = export_onnx(model, x, str(tmp_path / 'model.onnx'))
    assert onnxruntime_max_error(path, model, x) < 1e-4
    other_size = torch.randn(1, 3, 20, 24)  # dynamic batch and image size
    assert onnxruntime_max_error(path, model, other_size) < 1e-4


def test_torch_export_of_an_eval_model_is_exact():
    model, x = bcn_ws_model(), torch.randn(2, 3, 16, 12)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_fx_symbolic_trace_keeps_bcn_and_ws_as_leaves(mode):
    model = bcn_ws_model().train(mode == 'train')
    reference = bcn_ws_model().train(mode == 'train')
    traced = torch.fx.symbolic_trace(model)
    called = [node.target for node in traced.graph.nodes if node.op == 'call_module']
    assert called == ['0', '1', '2', '3', '4', '5']
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(traced(x), reference(x))
    if mode == 'train':  # the running statistics moved as the eager model's did
        torch.testing.assert_close(model[1].running_var, reference[1].running_var)


def test_a_tracer_that_traces_into_bcn_gets_an_error_naming_it():
    class Through(torch.fx.Tracer):
        def is_leaf_module(self, module, name):
            return False  # traces every module's forward, as FX quantization's tracer may

    with pytest.raises(TypeError, match='BatchChannelNorm2d cannot be traced through by '
                                        'torch.fx'):
        Through().trace(nn.Sequential(nn.Conv2d(3, 8, 1), BatchChannelNorm2d(8, 2)))


def test_the_exporter_mmbcn_uses_is_chosen_by_what_torch_offers():
    from mmbcn.utils.feature_probes import onnx_export_options
    has_dynamo = 'dynamo' in inspect.signature(torch.onnx.export).parameters
    assert onnx_export_options() == ({'dynamo': False} if has_dynamo else {})
