"""Moved to :mod:`mmbcn.models.decode_heads.pool_norm_aspp_head`; this path works, with a
warning, until mmbcn 0.2."""

from ..utils.deprecation import moved_module

moved_module(__name__, 'mmbcn.models.decode_heads.pool_norm_aspp_head')
