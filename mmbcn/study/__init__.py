"""Which normalization for my task? A config re-run with each normalization swapped in.

``tools/norm_study.py CONFIG --norms bn syncbn gn gn-ws bcn-ws --seeds 0 1 2 --gpus 2``:
presets (:mod:`.presets`), the one swap rule (:mod:`.swap`), the runs through the real
distributed runner (:mod:`.runs`), the table (:mod:`.table`) and the summary PNG (:mod:`.plot`),
put together in :mod:`.study`. ``--pretrain CLS_CONFIG``: the papers' protocol, each preset
pretrained on a classification config and the task fine-tuned from its backbone, loaded strictly
(:mod:`.pretrained`).
"""

from .cli import main
from .errors import StudyInputError
from .presets import PRESETS, Preset, bcn_micro_batch, get_presets
from .pretrained import (
    PretrainedBackboneError,
    PretrainedNormMismatchError,
    StrictPretrainedBackboneHook,
)
from .study import plan_study, run_study
from .swap import Swap, swap_config

__all__ = ['PRESETS', 'Preset', 'PretrainedBackboneError', 'PretrainedNormMismatchError',
           'StrictPretrainedBackboneHook', 'StudyInputError', 'Swap', 'bcn_micro_batch',
           'get_presets', 'main', 'plan_study', 'run_study', 'swap_config']
