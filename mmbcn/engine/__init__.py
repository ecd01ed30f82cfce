"""OpenMMLab glue for training: the hooks that drive BCN and measure normalization
(:mod:`.hooks`) and the optimizer wrapper constructor of the Revisiting-BN recipe
(:mod:`.optimizers`)."""

from .hooks import BCNUpdateRateHook, NormStatisticsHook, RandomStateHook

__all__ = ['BCNUpdateRateHook', 'NormStatisticsHook', 'RandomStateHook']
