"""BCN and WSConv2d under ``torch.fx``: leaf modules, or a refusal that names them.

``torch.fx.symbolic_trace`` (and torchvision's ``create_feature_extractor``, which subclasses
its tracer) records a module either as one ``call_module`` node (a *leaf*) or by tracing its
``forward`` with proxies. BCN's forward branches on its input (shape checks, the statistics'
update), which fx cannot trace. mmbcn makes torch's default ``Tracer.is_leaf_module`` answer
True for both layers (a declared patch, :mod:`mmbcn.patches`), so the graph calls the real
layer: exact in both modes. A tracer that does not ask the default (FX graph-mode
quantization's) traces into them and gets :func:`refuse_fx_tracing_through`'s error instead of
fx's generic one.
"""

import torch
import torch.fx
from torch import nn

__all__ = ['refuse_fx_tracing_through']


def refuse_fx_tracing_through(module: nn.Module, x) -> None:
    """Raise a clear error when a torch.fx tracer traces into ``module`` (x is a Proxy)."""
    if isinstance(x, torch.fx.Proxy):
        raise TypeError(
            f'{type(module).__name__} cannot be traced through by torch.fx (its forward '
            f'depends on its input). This tracer does not treat it as a leaf module: make its '
            f'is_leaf_module return True for BatchChannelNorm2d and WSConv2d (torch\'s default '
            f'Tracer does, with mmbcn imported), or trace a model without BCN/WSConv2d.')
