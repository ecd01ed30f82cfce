"""Moved to :mod:`mmbcn.utils.feature_probes`; this path works, with a warning, until mmbcn 0.2."""

from .utils.deprecation import moved_module

moved_module(__name__, 'mmbcn.utils.feature_probes')
