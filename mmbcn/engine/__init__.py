"""OpenMMLab glue: hooks that drive BCN and measure normalization during MMEngine training."""

from .bcn_update_rate_hook import BCNUpdateRateHook
from .norm_statistics_hook import NormStatisticsHook

__all__ = ['BCNUpdateRateHook', 'NormStatisticsHook']
