"""``tools/deploy.py``: a trained BCN+WS model as plain convs + GroupNorm, optionally in ONNX.

    python tools/deploy.py CONFIG CHECKPOINT --out deployed.pth [--onnx model.onnx]
        [--onnx-part backbone|model] [--shape 512 512]

``--out`` saves the whole deployed module (``torch.load(..., weights_only=False)`` for files you
trust). ONNX: ``model`` exports an mmseg segmentor whole (logits); ``backbone`` exports the
backbone (+ neck for detectors: mmdet's post-processing needs mmdeploy). The export is checked
against PyTorch with onnxruntime (:mod:`mmbcn.deploy`).
"""

import argparse
from typing import List, Optional

import torch
from mmengine.runner import load_checkpoint

from ..deploy import TensorForward, deploy_model, export_onnx, onnxruntime_max_error
from ..utils.config_files import build_model
from .input_checks import load_tool_config, require_checkpoint


class Features(torch.nn.Module):
    """Backbone (+ neck) of a detector or segmentor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model.extract_feat(image)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', help='save the deployed module here')
    parser.add_argument('--onnx', help='export to this ONNX file')
    parser.add_argument('--onnx-part', choices=('backbone', 'model'), default='backbone')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'))
    args = parser.parse_args(argv)
    _, cfg = load_tool_config(args.config)
    require_checkpoint(args.checkpoint)
    model = build_model(cfg)
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    deploy_model(model)
    if args.out:
        torch.save(model, args.out)
        print(f'deployed model saved to {args.out}')
    if args.onnx:
        part = Features(model) if args.onnx_part == 'backbone' else TensorForward(model)
        example = torch.randn(1, 3, *args.shape)
        export_onnx(part, example, args.onnx)
        error = onnxruntime_max_error(args.onnx, part, example)
        print(f'ONNX ({args.onnx_part}) written to {args.onnx}; onnxruntime vs PyTorch max abs '
              f'difference {error:.2e}')
