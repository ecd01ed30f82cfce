"""Importing torchvision (for mmpretrain) on the CPU build of torch this project pins.

The torchvision 0.28.0 wheel on PyPI is built against CUDA torch. On a CPU torch its C++
extension does not load (it needs ``libc10_cuda.so``), and torchvision's import then fails
while registering fake kernels for two operators the extension would have defined
(``RuntimeError: operator torchvision::nms does not exist``, pytorch/vision issue 9085).
mmpretrain imports torchvision's Python transforms, which need none of its C++ ops.

:func:`install` puts a finder first on ``sys.meta_path``. The first time torchvision is
imported, the finder checks whether the extension loads; only when it does not, it declares the
schemas of those two operators, so the import completes. The C++ ops stay unavailable: calling
one raises torchvision's own error ("Couldn't load custom C++ ops"). With a torchvision that
matches its torch, the finder does nothing.
"""

import glob
import importlib.abc
import importlib.util
import os.path as osp
import sys

import torch

# The schemas of the operators torchvision's Python code registers fake kernels for, as its
# C++ extension declares them.
MISSING_OPERATOR_SCHEMAS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
_declared = []  # the torch.library.Library holding the schemas, kept alive


def _extension_loads(package_dir: str) -> bool:
    paths = glob.glob(osp.join(package_dir, '_C.*so')) + glob.glob(osp.join(package_dir, '_C.pyd'))
    if not paths:
        return False
    try:
        torch.ops.load_library(paths[0])
    except OSError:
        return False
    return True


def declare_missing_operators() -> None:
    """Declare (without kernels) the operators torchvision's import expects. Idempotent."""
    if _declared:
        return
    library = torch.library.Library('torchvision', 'DEF')
    for schema in MISSING_OPERATOR_SCHEMAS:
        library.define(schema)
    _declared.append(library)


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Runs once, on the first import of torchvision, then leaves the import to Python."""

    def find_spec(self, fullname, path, target=None):
        if fullname != 'torchvision':
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec('torchvision')
        if spec is not None and spec.submodule_search_locations:
            if not _extension_loads(list(spec.submodule_search_locations)[0]):
                declare_missing_operators()
        return None


def install() -> None:
    """Arrange for torchvision to import on a CPU torch; nothing when it is already imported."""
    if 'torchvision' in sys.modules:
        return
    if any(isinstance(finder, _TorchvisionFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())
