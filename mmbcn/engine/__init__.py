"""OpenMMLab glue: hooks that drive BCN during MMEngine training."""

from .hooks import BCNUpdateRateHook

__all__ = ['BCNUpdateRateHook']
