"""Replacements for what the two OpenMMLab families do differently (:mod:`mmbcn.openmmlab_family`).

* ``pkg::`` base configs: :mod:`mmbcn.patches.config_bases` (also installed at the
  interpreter's start, for scripts that read a config before importing mmbcn).
* onedl-mmengine's checkpoint loaders call ``_safe_torch_load``, which loads weights-only and,
  when that refuses the file, loads it again with ``weights_only=False``: a checkpoint's pickled
  code runs. ``mmengine_safe_torch_load`` loads through mmbcn's weights-only loader
  (:func:`mmbcn.checkpoints.load_weights_only`), whose refusal names the fix, with no fallback
  (upstream MMEngine on torch >= 2.6 refuses the same files).
"""

import os
from typing import Callable, Optional

from ..checkpoints.weights_only import load_weights_only

__all__ = ['mmengine_safe_torch_load']


def mmengine_safe_torch_load(original: Callable) -> Callable:
    def _safe_torch_load(file, map_location=None, weights_only: Optional[bool] = None):
        if weights_only is False:  # the caller asked for full unpickling itself
            return original(file, map_location=map_location, weights_only=False)
        if isinstance(file, os.PathLike):
            file = os.fspath(file)
        return load_weights_only(file, map_location)
    return _safe_torch_load
