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

Scripts that import torchvision before any mmbcn config is read (mmseg's
``tools/analysis_tools/get_flops.py`` imports ``mmseg.models``, hence mmdet and torchvision,
first) need the finder from the interpreter's start: :func:`write_startup_file` (run by
``tools/setup_env.sh``) writes a ``.pth`` file into site-packages that loads this file alone,
by its path, without importing mmbcn or torch, and calls :func:`install`. This module imports
torch only when torchvision is first imported.
"""

import glob
import importlib.abc
import importlib.util
import os.path as osp
import site
import sys

# The schemas of the operators torchvision's Python code registers fake kernels for, as its
# C++ extension declares them.
MISSING_OPERATOR_SCHEMAS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
_declared = []  # the torch.library.Library holding the schemas, kept alive


def _extension_fails(package_dir: str) -> bool:
    """Whether torchvision's C++ extension is there and does not load (torchvision 0.28 and
    older name it ``_C.so``, 0.29 ``_C_stable.so``). No extension at all: nothing to fix."""
    paths = glob.glob(osp.join(package_dir, '_C*.so')) + glob.glob(osp.join(package_dir, '_C*.pyd'))
    if not paths:
        return False
    import torch

    try:
        torch.ops.load_library(paths[0])
    except OSError:
        return True
    return False


def _schema_exists(torch, name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(name, '')
    except RuntimeError:
        return False
    return True


def declare_missing_operators() -> None:
    """Declare (without kernels) the operators torchvision's import expects. Idempotent, also
    when this file is loaded twice (by the startup ``.pth``, and as mmbcn's module)."""
    import torch

    if _declared or _schema_exists(torch, 'torchvision::nms'):
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
            if _extension_fails(list(spec.submodule_search_locations)[0]):
                declare_missing_operators()
        return None


def install() -> None:
    """Arrange for torchvision to import on a CPU torch; nothing when it is already imported."""
    if 'torchvision' in sys.modules:
        return
    if any(type(finder).__name__ == _TorchvisionFinder.__name__ for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())


STARTUP_FILE = 'mmbcn_torchvision_compat.pth'


def startup_line(path: str = osp.abspath(__file__)) -> str:
    """The ``.pth`` line that loads the file ``path`` as a module of its own and installs it."""
    name = 'mmbcn_torchvision_startup'  # kept in sys.modules: it holds the declared schemas
    return (f"import sys, importlib.util as u; s = u.spec_from_file_location({name!r}, "
            f"{path!r}); m = sys.modules[{name!r}] = u.module_from_spec(s); "
            "s.loader.exec_module(m); m.install()\n")


def write_startup_file(site_packages: str = None) -> str:
    """Write :data:`STARTUP_FILE` into ``site_packages`` (default: this interpreter's)."""
    folder = site_packages or site.getsitepackages()[0]
    path = osp.join(folder, STARTUP_FILE)
    with open(path, 'w') as f:
        f.write(startup_line())
    return path

