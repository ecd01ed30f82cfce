"""Moved to :mod:`mmbcn.engine.hooks.norm_statistics_hook`; this path works, with a
warning, until mmbcn 0.2."""

from ..utils.deprecation import moved_module

moved_module(__name__, 'mmbcn.engine.hooks.norm_statistics_hook')
