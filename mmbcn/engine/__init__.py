"""OpenMMLab glue: hooks that drive BCN and measure normalization during MMEngine training."""

from .hooks import BCNUpdateRateHook
from .norm_statistics_hook import NormStatisticsHook

__all__ = ['BCNUpdateRateHook', 'NormStatisticsHook']
