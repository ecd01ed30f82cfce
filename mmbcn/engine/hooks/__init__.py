"""MMEngine hooks: one module per hook, as in OpenMMLab's ``engine/hooks/*_hook.py``.

* :class:`BCNUpdateRateHook` (registered in ``HOOKS``): sets BCN's update rate r from the
  learning rate or a schedule;
* :class:`NormStatisticsHook` (registered): measures every norm layer's statistics during
  training (eliminated channels);
* :class:`RandomStateHook`: the random streams of a resumed run continue where the interrupted
  run's left off; ``tools/train.py`` adds it to every run (not registered: it is not a config
  option).
"""

from .bcn_update_rate_hook import BCNUpdateRateHook
from .norm_statistics_hook import NormStatisticsHook
from .random_state_hook import RandomStateHook

__all__ = ['BCNUpdateRateHook', 'NormStatisticsHook', 'RandomStateHook']
