"""Moved to :mod:`mmbcn.deploy.onnx_export`; this path works, with a warning, until mmbcn 0.2."""

from .utils.deprecation import moved_module

moved_module(__name__, 'mmbcn.deploy.onnx_export')
