"""ONNX export of deployed models (see :mod:`mmbcn.deploy`), checked with onnxruntime."""

import torch
from torch import nn

from ..utils.feature_probes import onnx_export_options

__all__ = ['TensorForward', 'export_onnx', 'onnxruntime_max_error']


class TensorForward(nn.Module):
    """Exposes an OpenMMLab model's tensor-only forward (``model._forward``) for export."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model._forward(inputs)


def export_onnx(module: nn.Module, example: torch.Tensor, path: str, opset: int = 17) -> str:
    """Export ``module`` (eval mode, deployed) to ``path`` with a dynamic batch and image size.

    Uses torch's TorchScript-based exporter (``dynamo=False``), which handles mmdet/mmseg
    backbones and mmseg segmentors as they are.
    """
    module.eval()
    dims = {0: 'batch', 2: 'height', 3: 'width'}
    with torch.no_grad():
        torch.onnx.export(module, (example,), path, input_names=['image'], opset_version=opset,
                          dynamic_axes={'image': dims}, **onnx_export_options())
    return path


def onnxruntime_max_error(path: str, module: nn.Module, example: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's outputs on ``example``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {'image': example.numpy()})
    with torch.no_grad():
        expected = module.eval()(example)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    if len(got) != len(expected):
        raise RuntimeError(f'onnxruntime returned {len(got)} outputs, PyTorch {len(expected)}.')
    return max(float((torch.from_numpy(g) - e).abs().max())
               for g, e in zip(got, expected, strict=True))
