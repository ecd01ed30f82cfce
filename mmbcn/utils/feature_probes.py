"""What the installed torch and Triton offer, asked in one place.

mmbcn supports torch 2.1 to 2.15 (``pyproject.toml``; the stacks tested at both ends are
:data:`TESTED_STACKS`). Code elsewhere asks this module instead of comparing version strings:
each question is answered by looking for the feature itself (``hasattr``, a signature), except
Triton's kernels, whose correctness no attribute can tell (:func:`triton_problem`).

Features that came after torch 2.1 and what mmbcn does without them:

* ``torch.serialization.add_safe_globals`` taking ``(object, name)`` pairs (2.6): no allow-list
  mmbcn can extend for ``torch.load(weights_only=True)``; :mod:`mmbcn.checkpoints` enforces its
  allow-list with its own restricted unpickler;
* ``torch.compiler.is_exporting`` (2.7): :func:`is_exporting` answers False. BCN takes its
  graph-friendly eval formulation under any Dynamo capture in eval mode (:func:`is_compiling`),
  which covers ``torch.export`` of an eval model on those versions; what it cannot see there is
  an export in training mode, which fails inside torch instead of with BCN's refusal;
* ``torch.onnx.export(dynamo=...)`` (2.5): :func:`onnx_export_options` passes it only where it
  exists (the TorchScript-based exporter is the only one on older torch).

And one that went the other way: from torch 2.14 its C++ headers require C++20
(:func:`extensions_need_cxx20`), which the released mmcv builds (upstream 2.1.0, onedl-mmcv 2.3.6)
do not ask for, so their compiled ops do not build against it.
"""

import functools
import inspect
import os
import os.path as osp
from typing import Dict, Optional, Tuple

import torch

__all__ = ['TESTED_STACKS', 'TRITON_CHECKED', 'disable_compilation', 'extensions_need_cxx20',
           'is_compiling', 'is_exporting', 'load_accepts_mmap', 'onnx_export_options',
           'safe_globals_take_names', 'triton_problem', 'weights_only_disabled_by_user']

# The stacks CI runs (tools/constraints.txt, tools/stacks/*.txt; a test checks they agree):
# Python, torch, numpy and the OpenMMLab family (mmbcn.openmmlab_family) with each package's
# version, named by upstream's distribution names (the onedl family installs them as
# onedl-mmcv, onedl-mmsegmentation, ...).
TESTED_STACKS: Dict[str, Dict[str, str]] = {
    'torch2.1 (oldest)': dict(python='3.10', torch='2.1.2', numpy='1.26.4', family='upstream',
                              mmengine='0.10.3', mmcv='2.1.0', mmpretrain='1.2.0'),
    'main': dict(python='3.11', torch='2.13.0', numpy='2.4.6', family='upstream',
                 mmengine='0.10.7', mmcv='2.1.0', mmdet='3.3.0', mmsegmentation='1.2.2',
                 mmpretrain='1.2.0', triton='3.5.1'),
    'torch2.15 (newest)': dict(python='3.12', torch='2.15.0', numpy='2.4.6', family='upstream',
                               mmengine='0.10.7', mmcv='2.1.0', mmpretrain='1.2.0'),
    'onedl': dict(python='3.11', torch='2.13.0', numpy='2.4.6', family='onedl',
                  mmengine='0.10.12', mmcv='2.3.6', mmdet='3.5.1', mmsegmentation='1.4.2',
                  mmpretrain='1.3.6'),
}

# The oldest Triton the kernels in mmbcn/ops/triton_kernels.py were checked with (their tests run
# them under its CPU interpreter): major, minor.
TRITON_CHECKED: Tuple[int, int] = (3, 5)


def safe_globals_take_names() -> bool:
    """Whether torch's weights-only loader takes an allow-list of ``(object, dotted name)``
    pairs (torch >= 2.6; 2.4 and 2.5 take objects only, allowed under their own module name,
    and the annotation of ``add_safe_globals`` says which)."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    return add is not None and 'tuple' in str(inspect.signature(add)).lower()


def load_accepts_mmap() -> bool:
    """Whether ``torch.load`` memory-maps (``mmap=True``) a file."""
    return 'mmap' in inspect.signature(torch.load).parameters


def weights_only_disabled_by_user() -> bool:
    """``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set to a true value, as torch reads it."""
    value = os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0')
    return value.strip().lower() in ('1', 'y', 'yes', 'true')


def is_compiling() -> bool:
    """Whether Dynamo (``torch.compile``, ``torch.export``) is tracing the current call.

    Written for Dynamo to trace (attribute look-ups only): torch < 2.3 has the question in
    ``torch._dynamo``, which is imported once anything compiles.
    """
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_compiling'):
        return compiler.is_compiling()
    if hasattr(torch, '_dynamo'):
        return torch._dynamo.is_compiling()
    return False


def is_exporting() -> bool:
    """Whether ``torch.export`` is tracing the current call; False where torch cannot tell
    (no ``torch.compiler.is_exporting``, torch < 2.7: see the module doc)."""
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_exporting'):
        return compiler.is_exporting()
    return False


def onnx_export_options() -> Dict[str, bool]:
    """Keyword arguments that select torch's TorchScript-based ONNX exporter."""
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        return {'dynamo': False}
    return {}  # torch < 2.5: the TorchScript-based exporter is the only one


@functools.lru_cache(maxsize=None)
def triton_problem() -> Optional[str]:
    """None when Triton imports and is one the kernels were checked with, else why not (asked
    once per process)."""
    try:
        import triton
    except ImportError:
        return 'Triton is not installed'
    try:
        major, minor = (int(part) for part in triton.__version__.split('.')[:2])
    except ValueError:
        return f'Triton {triton.__version__} has a version mmbcn cannot read'
    if (major, minor) < TRITON_CHECKED:
        return (f'Triton {triton.__version__} is older than the {TRITON_CHECKED[0]}.'
                f'{TRITON_CHECKED[1]} the kernels were checked with')
    return None


def extensions_need_cxx20(header: Optional[str] = None) -> bool:
    """Whether a C++ extension built against this torch must be compiled as C++20 or later.

    torch 2.14's ``ATen/ATen.h`` stops any compile below C++20 (``__cplusplus < 202002L``:
    ``#error C++20 or later compatible compiler is required to use ATen``); mmcv's ``setup.py``
    (2.1.0, and onedl-mmcv 2.3.6) passes ``-std=c++17``, which torch's extension builder keeps,
    so mmcv's compiled ops do not build against such a torch. Read from the header itself
    (``header``: another ``ATen.h``, for tests); False when torch ships no headers.
    """
    if header is None:
        header = osp.join(osp.dirname(torch.__file__), 'include', 'ATen', 'ATen.h')
    try:
        with open(header) as file:
            return '202002L' in file.read()
    except OSError:
        return False


def disable_compilation(fn):
    """``fn`` run eagerly when called from code Dynamo compiles (``torch.compiler.disable``; torch
    2.1 has it as ``torch._dynamo.disable``): the compiled graph ends before the call."""
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'disable'):
        return compiler.disable(fn)
    from torch import _dynamo
    return _dynamo.disable(fn)
