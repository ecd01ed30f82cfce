"""MMEngine checkpoints, loaded weights-only on every supported torch.

MMEngine 0.10's Runner saves its message hub in training checkpoints (``HistoryBuffer`` objects
holding numpy arrays). torch >= 2.6 loads with ``weights_only=True`` by default, which refuses
them (``Unsupported global: ...HistoryBuffer``) in ``--resume``, in mmdet's, mmseg's and
mmpretrain's own ``tools/test.py``, their ``init_*`` APIs and inferencers, and ``mim test``.
mmbcn keeps weights-only loading on and lets exactly these objects through (the *allow-list*,
:func:`allowed_globals`): tensors and plain containers as torch allows them, the class
``mmengine.logging.HistoryBuffer`` (and :func:`history_buffer_with_statistics`), numpy's
``ndarray`` and ``dtype`` classes and its array and scalar reconstructors. None of them runs
code chosen by the file: a ``HistoryBuffer`` is rebuilt from two arrays and an int, the numpy
entries rebuild arrays and scalars from their bytes.

How the allow-list is enforced depends on what torch offers (:mod:`mmbcn.utils.feature_probes`):

* torch >= 2.6 (``torch.serialization.add_safe_globals`` with ``(object, name)`` pairs, needed
  to allow numpy's reconstructors under the module names both numpy 1.x and 2.x write): mmbcn's
  entries are added to torch's own weights-only unpickler, so a plain ``torch.load`` (torch's
  default there is ``weights_only=True``) loads these files too;
* torch 2.1 - 2.5 (no allow-list, or one without names): mmbcn's loader reads through its own
  unpickler (:class:`RestrictedUnpickler`), which resolves only the names of
  :func:`allowed_globals` plus torch's tensor-rebuilding functions, dtypes and layouts, and
  refuses every other global (the "restricting globals" scheme of Python's ``pickle``
  documentation). A plain ``torch.load`` there keeps torch's default (``weights_only=False``:
  full unpickling); OpenMMLab's loaders go through mmbcn's (:func:`load_from_local`).

``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch's own switch) turns the check off for mmbcn's
loader too, with one warning: the file's pickled code then runs.

Saving: ``HistoryBuffer`` pickles as a constructor call (:func:`reduce_history_buffer`, through
``copyreg``) instead of MMEngine's form, which stores the statistics functions and reaches them
with ``getattr`` (allow-listing ``getattr`` would let a file reach any attribute of any allowed
object). Statistics registered with ``HistoryBuffer.register_statistics`` are kept by name.

A checkpoint written by MMEngine *without* mmbcn imported holds those ``getattr`` calls and is
refused with a message naming :data:`CONVERT_COMMAND`, which rewrites it once, reading it with a
stand-in for ``builtins.getattr`` that returns only ``HistoryBuffer``'s statistics functions.
"""

import _compat_pickle
import argparse
import collections
import os.path as osp
import pickle
import re
import types
import warnings
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ..utils import feature_probes

__all__ = ['CONVERT_COMMAND', 'CheckpointRefusedError', 'RestrictedUnpickler',
           'allowed_globals', 'checkpoint_problem', 'convert', 'history_buffer_with_statistics',
           'load_from_local', 'load_weights_only', 'reduce_history_buffer',
           'register_allow_list']

CONVERT_COMMAND = 'python -m mmbcn.checkpoints convert IN OUT'
TRUSTED_CONVERT_COMMAND = 'python -m mmbcn.checkpoints convert --trusted IN OUT'
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
_warned: set = set()


class CheckpointRefusedError(pickle.UnpicklingError):
    """Weights-only loading refused a checkpoint; the message names what and the fix.

    Attributes:
        path: the file.
        refused: the dotted name of the global the file asked for, when known.
    """

    def __init__(self, message: str, path: str, refused: Optional[str]):
        super().__init__(message)
        self.path, self.refused = path, refused


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)


# ----------------------------------------------------------------------------------- saving

def history_buffer_with_statistics(log_history, count_history, max_length: int,
                                   statistics: Tuple[str, ...]) -> HistoryBuffer:
    """A ``HistoryBuffer`` saved while the statistics named ``statistics`` were registered.

    The functions are not in the file (loading them would run code the file names): they are
    the ones registered in this process under those names. A name not registered here is
    reported once; ``buffer.statistics(name)`` raises MMEngine's ``KeyError`` until the code
    that registers it is imported.
    """
    buffer = HistoryBuffer(log_history, count_history, max_length)
    missing = sorted(set(statistics) - set(HistoryBuffer._statistics_methods))
    if missing:
        _warn_once(f'mmbcn: the checkpoint was saved with HistoryBuffer statistics {missing} '
                   f'registered, which are not registered in this process: import the module '
                   f'that registers them (HistoryBuffer.register_statistics) before loading.')
    return buffer


def reduce_history_buffer(buffer: HistoryBuffer):
    """``HistoryBuffer``'s pickled form: its constructor call, plus the names of registered
    statistics beyond MMEngine's four when there are any."""
    log_history, count_history = buffer.data
    registered = tuple(sorted(set(buffer._statistics_methods) - set(HISTORY_BUFFER_STATISTICS)))
    if registered:
        return history_buffer_with_statistics, (log_history, count_history, buffer.max_length,
                                                registered)
    return HistoryBuffer, (log_history, count_history, buffer.max_length)


# ------------------------------------------------------------------------------- allow-list

def _numpy_globals() -> Dict[str, Any]:
    """numpy's pickling entry points, under the module names numpy 1.x and 2.x write."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    entries = {'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype}
    for module_name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries[f'{module_name}._reconstruct'] = multiarray._reconstruct
        entries[f'{module_name}.scalar'] = multiarray.scalar
    for code in '?bhilqBHILQefdgFDG':
        dtype_class = type(np.dtype(code))
        entries[f'{dtype_class.__module__}.{dtype_class.__name__}'] = dtype_class
    return entries


def allowed_globals() -> Dict[str, Any]:
    """What mmbcn lets through beyond torch's own weights-only globals: dotted name -> object."""
    return {'mmengine.logging.history_buffer.HistoryBuffer': HistoryBuffer,
            f'{__name__}.history_buffer_with_statistics': history_buffer_with_statistics,
            **_numpy_globals()}


def _torch_weights_globals() -> Dict[str, Any]:
    """The globals a tensor checkpoint needs, as torch's weights-only loader allows them:
    containers, tensor rebuilders, sizes, devices, dtypes and layouts (storages are resolved by
    torch before any unpickler is asked)."""
    entries: Dict[str, Any] = {
        'collections.OrderedDict': collections.OrderedDict,
        'torch.Size': torch.Size, 'torch.device': torch.device,
        'torch.nn.parameter.Parameter': torch.nn.Parameter,
        'torch._tensor._rebuild_from_type_v2': torch._tensor._rebuild_from_type_v2,
        '_codecs.encode': __import__('_codecs').encode,
        'builtins.set': set, 'builtins.frozenset': frozenset, 'builtins.bytearray': bytearray,
        'builtins.complex': complex, 'builtins.slice': slice,
    }
    for name in dir(torch._utils):
        if name.startswith('_rebuild_'):
            entries[f'torch._utils.{name}'] = getattr(torch._utils, name)
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
            entries[f'torch.{name}'] = value
    return entries


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in :attr:`allowed` (see the module doc)."""

    allowed: Dict[str, Any] = {}

    def find_class(self, module: str, name: str):
        # pickle protocol 2 (torch.save's) names Python 3 modules by their Python 2 names
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f'{module}.{name}'
        if qualified in self.allowed:
            return self.allowed[qualified]
        raise pickle.UnpicklingError(
            f'Unsupported global: GLOBAL {qualified} is not in mmbcn\'s allow-list')


def _restricted_pickle_module(extra: Dict[str, Any]) -> types.ModuleType:
    """A stand-in for the ``pickle`` module whose ``Unpickler`` is restricted (for
    ``torch.load(pickle_module=...)``), allowing ``extra`` on top of the usual names."""
    unpickler = type('Unpickler', (RestrictedUnpickler,),
                     {'allowed': {**_torch_weights_globals(), **allowed_globals(), **extra}})
    module = types.ModuleType('mmbcn_restricted_pickle')
    module.Unpickler = unpickler
    module.load = lambda file, **kwargs: unpickler(file, **kwargs).load()
    return module


_registered_with_torch = False


def register_allow_list() -> None:
    """Add :func:`allowed_globals` to torch's weights-only unpickler, each under its dotted name
    (torch >= 2.6, :func:`mmbcn.utils.feature_probes.safe_globals_take_names`; applied as a
    declared patch, :mod:`mmbcn.patches`). Idempotent."""
    global _registered_with_torch
    torch.serialization.add_safe_globals(
        [(value, name) for name, value in allowed_globals().items()])
    _registered_with_torch = True


# ---------------------------------------------------------------------------------- loading

def _torch_load(path: str, map_location, mmap: bool, extra: Optional[Dict[str, Any]] = None):
    """``torch.load`` of ``path`` with the allow-list enforced the way this torch allows."""
    options = dict(map_location=map_location)
    if mmap and feature_probes.load_accepts_mmap():
        options['mmap'] = True
    if feature_probes.weights_only_disabled_by_user():
        _warn_once('mmbcn: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set, so checkpoints load with '
                   'weights_only=False: any code a file pickled runs. Unset it to load only '
                   'tensors and the MMEngine objects mmbcn allows.')
        return torch.load(path, weights_only=False, **options)
    if extra is None and _registered_with_torch:
        return torch.load(path, weights_only=True, **options)
    return torch.load(path, weights_only=False,
                      pickle_module=_restricted_pickle_module(extra or {}), **options)


def _refused_global(text: str) -> Optional[str]:
    match = re.search(r'GLOBAL ([\w.]+)', text)
    return match.group(1) if match else None


def _refusal(path: str, error: pickle.UnpicklingError) -> CheckpointRefusedError:
    """What is wrong with the file ``path`` weights-only loading refused, and what to do."""
    text = str(error)
    refused = _refused_global(text)
    if refused == 'builtins.getattr' or (refused is None and 'getattr' in text):
        message = (f'{path} holds getattr calls (a checkpoint written by MMEngine without '
                   f'mmbcn imported), which weights-only loading refuses. Rewrite it once, '
                   f'safely: {CONVERT_COMMAND.replace("IN OUT", f"{path} <new file>")}')
    else:
        what = refused or 'an object'
        reason = '' if refused else f' ({text.strip().splitlines()[0] if text.strip() else ""})'
        message = (f'{path} holds {what}{reason}, which weights-only loading refuses: mmbcn '
                   f'loads tensors, plain containers, numpy arrays and MMEngine\'s '
                   f'HistoryBuffer. If you trust where the file comes from, rewrite it once '
                   f'without what is refused (this runs its pickled code, once): '
                   f'{TRUSTED_CONVERT_COMMAND.replace("IN OUT", f"{path} <new file>")}')
    return CheckpointRefusedError(message, path, refused)


def load_weights_only(path: str, map_location=None, mmap: bool = False):
    """Load the checkpoint ``path`` weights-only (see the module doc): every loader of mmbcn's
    goes through here. A refusal is a :class:`CheckpointRefusedError` (a
    ``pickle.UnpicklingError``) that names what was refused and the command that fixes the
    file."""
    try:
        return _torch_load(path, map_location, mmap)
    except pickle.UnpicklingError as error:
        raise _refusal(path, error) from None


def load_from_local(filename: str, map_location=None):
    """MMEngine's local-file checkpoint loader, weights-only (:func:`load_weights_only`); the
    name is MMEngine's: its log line reads the backend from it."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_weights_only(filename, map_location)


def checkpoint_problem(path: str) -> Optional[str]:
    """None when ``path`` loads as a checkpoint weights-only, else what is wrong.

    Memory-maps the file where torch can, so a large checkpoint costs little to check; the
    tools call this before building anything.
    """
    if not osp.exists(path):
        return 'no such file'
    if not osp.isfile(path):
        return 'not a file'
    try:
        _torch_load(path, 'cpu', mmap=True)
    except pickle.UnpicklingError as error:
        return str(_refusal(path, error)).replace(f'{path} ', '', 1)
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        return (f'is not a readable torch checkpoint ({type(error).__name__}); it may be '
                f'truncated or not a checkpoint at all: copy or download it again')
    return None


# ------------------------------------------------------------------------------- conversion

def _history_buffer_statistic(owner, name: str):
    """Stands in for ``builtins.getattr`` in :func:`convert`: HistoryBuffer statistics only."""
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({getattr(owner, "__name__", type(owner).__name__)}, {name!r}): only '
        f'the statistics {HISTORY_BUFFER_STATISTICS} of mmengine HistoryBuffer are read.')


def _loadable(value, where: str, dropped: List[str]):
    """``value`` with everything weights-only loading refuses left out (named in
    ``dropped``): tensors, numpy arrays, HistoryBuffers, plain scalars and containers stay."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic, HistoryBuffer, str, bytes,
                          int, float, bool, complex, type(None), torch.dtype, torch.device,
                          torch.Size)):
        return value
    if isinstance(value, dict):
        kept = type(value)() if isinstance(value, collections.OrderedDict) else {}
        for key, item in value.items():
            if isinstance(key, (str, int, float, bool, tuple)):
                kept[key] = _loadable(item, f'{where}[{key!r}]', dropped)
            else:
                dropped.append(f'{where}[{key!r}]')
        return kept
    for container in (list, tuple, set, frozenset):  # a namedtuple is kept as a tuple
        if isinstance(value, container):
            return container(_loadable(item, f'{where}[{i}]', dropped)
                             for i, item in enumerate(value))
    dropped.append(f'{where} ({type(value).__module__}.{type(value).__qualname__})')
    return None


def convert(source: str, destination: str, trusted: bool = False) -> List[str]:
    """Rewrite a checkpoint so that it loads weights-only everywhere; returns what was left out.

    Without ``trusted``: reads ``source`` through the restricted unpickler with
    ``builtins.getattr`` standing for :func:`_history_buffer_statistic` (MMEngine's own
    pickling of ``HistoryBuffer``), for this read only; same tensors, same keys, nothing left
    out. With ``trusted``: reads ``source`` with full unpickling (its pickled code runs, once:
    only for a file you trust) and leaves out every value weights-only loading refuses.
    The written file is checked by loading it weights-only.
    """
    if osp.abspath(source) == osp.abspath(destination):
        raise ValueError('convert: write to a new file (keep the original until the new one '
                         'is checked).')
    dropped: List[str] = []
    if trusted:
        checkpoint = _loadable(torch.load(source, map_location='cpu', weights_only=False),
                               'checkpoint', dropped)
    else:
        try:
            checkpoint = _torch_load(
                source, 'cpu', mmap=False,
                extra={'builtins.getattr': _history_buffer_statistic})
        except pickle.UnpicklingError as error:
            if 'refusing getattr' in str(error):
                raise
            raise _refusal(source, error) from None
    torch.save(checkpoint, destination)
    load_weights_only(destination, map_location='cpu')  # loads without any stand-in
    return dropped


def main(argv: Optional[Iterable[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog='python -m mmbcn.checkpoints',
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    converter = commands.add_parser(
        'convert', help='rewrite a checkpoint for weights-only loading (MMEngine\'s getattr '
                        'form; with --trusted, any file you trust)')
    converter.add_argument('source')
    converter.add_argument('destination')
    converter.add_argument('--trusted', action='store_true',
                           help='read the file with full unpickling (runs its pickled code) '
                                'and leave out what weights-only loading refuses')
    args = parser.parse_args(argv)
    try:
        dropped = convert(args.source, args.destination, trusted=args.trusted)
    except (pickle.UnpicklingError, ValueError, FileNotFoundError) as error:
        raise SystemExit(f'error: {error}') from None
    for entry in dropped:
        print(f'left out: {entry}')
    print(f'{args.destination}: loads with weights_only=True')


