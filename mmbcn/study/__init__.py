"""Which normalization for my task? A config re-run with each normalization swapped in.

``tools/norm_study.py CONFIG --norms bn syncbn gn gn-ws bcn-ws --seeds 0 1 2 --gpus 2``:
presets (:mod:`.presets`), the one swap rule (:mod:`.swap`), the runs through the real
distributed runner (:mod:`.runs`), the table (:mod:`.table`) and the summary PNG (:mod:`.plot`),
put together in :mod:`.study`.
"""

from .cli import main
from .errors import StudyInputError
from .presets import PRESETS, Preset, bcn_micro_batch, get_presets
from .study import plan_study, run_study
from .swap import Swap, swap_config

__all__ = ['PRESETS', 'Preset', 'StudyInputError', 'Swap', 'bcn_micro_batch', 'get_presets',
           'main', 'plan_study', 'run_study', 'swap_config']
