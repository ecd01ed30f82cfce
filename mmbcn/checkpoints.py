"""MMEngine checkpoints under ``torch.load(weights_only=True)``, wherever OpenMMLab loads them.

torch >= 2.6 loads with ``weights_only=True`` by default: only tensors, plain containers and
allow-listed globals are unpickled. MMEngine 0.10.7's Runner saves its message hub in training
checkpoints (``HistoryBuffer`` objects holding numpy arrays), so every checkpoint it writes is
refused (``Unsupported global: ...HistoryBuffer``) by ``--resume``, by mmdet's, mmseg's and
mmpretrain's own ``tools/test.py``, by their ``init_detector`` / ``init_model`` / inferencers and
by ``mim test``. :func:`install` (run by ``import mmbcn``, hence by every mmbcn config through
``custom_imports`` before any checkpoint is read) keeps weights-only loading on and:

* allow-lists exactly these globals (``torch.serialization.add_safe_globals``): the class
  ``mmengine.logging.HistoryBuffer``, numpy's ``ndarray`` and ``dtype`` classes and its array and
  scalar reconstructors (under the module names numpy 1.x and 2.x write). None of them runs
  code chosen by the file: a ``HistoryBuffer`` is rebuilt from two arrays and an int, and the
  numpy entries rebuild arrays and scalars from their bytes;
* makes ``HistoryBuffer`` pickle as that constructor call (``copyreg``). MMEngine's own pickling
  of it also stores its statistics functions (``HistoryBuffer.min`` ...), which pickle protocol
  2 writes as ``getattr(HistoryBuffer, 'min')``; allow-listing ``getattr`` would let a file
  reach any attribute of any allowed object, so checkpoints saved with mmbcn imported contain
  no ``getattr`` at all;
* registers MMEngine's local-file checkpoint loader anew (``CheckpointLoader.register_scheme``,
  the registry MMEngine provides for loaders) so that a file still refused says why and what
  to do, instead of torch's advice to turn the safety off.

A checkpoint written by MMEngine *without* mmbcn imported holds those ``getattr`` calls and is
still refused, with a message naming :func:`convert`: ``python -m mmbcn.checkpoints convert IN
OUT`` reads it with one more stand-in, for ``builtins.getattr`` and for this read only, that
returns the four statistics functions of ``HistoryBuffer`` and refuses anything else, and
writes it back in the form above.
"""

import argparse
import copyreg
import os.path as osp
import pickle
from typing import Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['CONVERT_COMMAND', 'checkpoint_problem', 'convert', 'install', 'load_weights_only']

CONVERT_COMMAND = 'python -m mmbcn.checkpoints convert IN OUT'
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
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


def load_from_local(filename: str, map_location=None):
    """MMEngine's local-file loader, weights-only, with a refusal that names the fix (the name
    is MMEngine's: its log line reads the backend from it)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_weights_only(filename, map_location)


def install() -> None:
    """Allow-list what MMEngine checkpoints need (see the module doc). Idempotent."""
    global _installed
    if _installed:
        return
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    torch.serialization.add_safe_globals([HistoryBuffer, *_numpy_globals()])
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    _installed = True


def _refusal(path: str, error: pickle.UnpicklingError) -> str:
    """What is wrong with the file ``path`` weights-only loading refused, and what to do (a
    phrase that follows the file's name)."""
    text = str(error)
    first_line = text.strip().splitlines()[0][:200] if text.strip() else ''
    if 'getattr' in text:
        return (f'holds getattr calls (a checkpoint written by MMEngine without mmbcn '
                f'imported), which weights-only loading refuses. Rewrite it once, safely: '
                f'{CONVERT_COMMAND.replace("IN OUT", f"{path} <new file>")}')
    return (f'holds objects that weights-only loading refuses ({first_line}); use a '
            f'checkpoint written by MMEngine, or one you have checked and converted to plain '
            f'tensors.')


def load_weights_only(path: str, map_location=None, mmap: bool = False):
    """``torch.load(path, weights_only=True)``; a refusal is a ``pickle.UnpicklingError`` that
    names the problem and the fix (:func:`convert` for MMEngine's ``getattr`` form)."""
    install()
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(f'{path} {_refusal(path, error)}') from None


def checkpoint_problem(path: str) -> Optional[str]:
    """None when ``path`` loads as a checkpoint with ``weights_only=True``, else what is wrong.

    Memory-maps the file (torch's zip format), so a large checkpoint costs little to check; the
    tools call this before building anything.
    """
    if not osp.exists(path):
        return 'no such file'
    if not osp.isfile(path):
        return 'not a file'
    install()
    try:
        torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        return _refusal(path, error)
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        return (f'is not a readable torch checkpoint ({type(error).__name__}); it may be '
                f'truncated or not a checkpoint at all: copy or download it again')
    return None


def _history_buffer_statistic(owner, name: str):
    """Stands in for ``builtins.getattr`` in :func:`convert`: HistoryBuffer statistics only."""
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({getattr(owner, "__name__", type(owner).__name__)}, {name!r}): only '
        f'the statistics {HISTORY_BUFFER_STATISTICS} of mmengine HistoryBuffer are read.')


def convert(source: str, destination: str) -> None:
    """Rewrite an MMEngine checkpoint so that it loads with ``weights_only=True`` everywhere.

    Reads ``source`` weights-only, with ``builtins.getattr`` standing for
    :func:`_history_buffer_statistic` during this read only; writes ``destination`` with
    ``HistoryBuffer`` in its constructor form. Same tensors, same keys.
    """
    install()
    if osp.abspath(source) == osp.abspath(destination):
        raise ValueError('convert: write to a new file (keep the original until the new one '
                         'is checked).')
    with torch.serialization.safe_globals([(_history_buffer_statistic, 'builtins.getattr')]):
        checkpoint = torch.load(source, map_location='cpu', weights_only=True)
    torch.save(checkpoint, destination)
    load_weights_only(destination, map_location='cpu')  # the new file loads without the stand-in


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog='python -m mmbcn.checkpoints',
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    converter = commands.add_parser(
        'convert', help='rewrite an MMEngine checkpoint (getattr form) for weights-only loading')
    converter.add_argument('source')
    converter.add_argument('destination')
    args = parser.parse_args(argv)
    try:
        convert(args.source, args.destination)
    except (pickle.UnpicklingError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f'error: {error}') from None
    print(f'{args.destination}: loads with weights_only=True')


if __name__ == '__main__':
    main()
