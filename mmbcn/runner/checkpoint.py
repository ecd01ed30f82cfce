"""Resuming MMEngine training checkpoints under ``torch.load(weights_only=True)`` (torch >= 2.6).

MMEngine 0.10.7 saves its message hub in training checkpoints: ``HistoryBuffer`` objects holding
numpy arrays, each pickled with its bound statistics methods (``getattr(HistoryBuffer, 'min')``).
torch >= 2.6 loads with ``weights_only=True`` by default and refuses all of these, so
``--resume`` fails with ``Unsupported global: ...HistoryBuffer``.

The fix keeps weights-only loading on, for every load:

* ``HistoryBuffer`` is pickled as a constructor call with its arrays (``copyreg``), so newly
  saved checkpoints contain no ``getattr`` (allow-listing ``getattr`` would let a file reach any
  attribute of any allowed object, which is what weights-only loading exists to prevent);
* ``HistoryBuffer`` and the numpy array types are allow-listed with
  ``torch.serialization.add_safe_globals``.
"""

import copyreg
import os.path as osp
import pickle
from typing import Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

_installed = False


def _reduce_history_buffer(buffer: HistoryBuffer):
    log_history, count_history = buffer.data
    return HistoryBuffer, (log_history, count_history, buffer.max_length)


def _numpy_globals():
    """numpy's pickling entry points, under the module names numpy 1.x and 2.x write."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    entries = [np.ndarray, np.dtype]
    for module_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries.append((multiarray._reconstruct, f'{module_name}._reconstruct'))
        entries.append((multiarray.scalar, f'{module_name}.scalar'))
    entries.extend(type(np.dtype(code)) for code in '?bhilqBHILQefdgFDG')
    return entries


def allow_training_checkpoints() -> None:
    """Make MMEngine training checkpoints save and load with ``weights_only=True``. Idempotent."""
    global _installed
    if _installed:
        return
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    torch.serialization.add_safe_globals([HistoryBuffer, *_numpy_globals()])
    _installed = True


def checkpoint_problem(path: str) -> Optional[str]:
    """None when ``path`` loads as a checkpoint with ``weights_only=True``, else what is wrong.

    Memory-maps the file (torch's zip format), so a large checkpoint costs little to check; the
    tools call this before building anything.
    """
    if not osp.exists(path):
        return 'no such file'
    if not osp.isfile(path):
        return 'not a file'
    allow_training_checkpoints()
    try:
        torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ''
        return ('holds objects that weights-only loading refuses '
                f'({first_line[:200]}); use a checkpoint written by MMEngine, or one you have '
                f'checked and converted to plain tensors')
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        return (f'is not a readable torch checkpoint ({type(error).__name__}); it may be '
                f'truncated or not a checkpoint at all: copy or download it again')
    return None
