"""``pkg::`` base configs through whichever distribution provides the module ``pkg``.

MMEngine resolves ``_base_ = 'mmseg::...'`` through the distribution its table
``mmengine.config.utils.MODULE2PACKAGE`` names for the module (``mmseg`` -> ``mmsegmentation``)
and asks whether that distribution is installed. The onedl family installs ``mmseg`` as
``onedl-mmsegmentation``: every ``mmseg::`` base failed to load ("mmsegmentation is not
installed"), and ``mmengine.hub.get_config`` would ``pip install`` upstream's package over it.
:func:`package_and_cfg_path` names the distribution that provides the module instead; both
families' ``is_installed`` / ``get_installed_path`` then find it (by its ``top_level.txt``).

``import mmbcn`` applies it as a declared patch (:mod:`mmbcn.patches.declared`). A config is
parsed, its ``_base_`` included, *before* its ``custom_imports`` import mmbcn, so scripts that
read mmbcn's configs without importing mmbcn first (mmseg's own ``tools/train.py`` and
``test.py``, ``mim train mmseg``) need it from the interpreter's start: :func:`write_startup_file`
writes a ``.pth`` file into site-packages that loads this file alone, by its path (standard
library only: no mmbcn, torch or MMEngine import), and :func:`install` patches
``mmengine.config.utils`` right after that module first runs, before ``mmengine.config.config``
and ``mmengine.hub`` bind the name.
"""

import functools
import importlib.abc
import importlib.metadata
import importlib.util
import os.path as osp
import site
import sys
from typing import Callable, Optional, Tuple

__all__ = ['STARTUP_FILE', 'TARGET', 'distribution_providing', 'install',
           'package_and_cfg_path', 'patch', 'startup_line', 'write_startup_file']

TARGET = 'mmengine.config.utils:_get_package_and_cfg_path'
STARTUP_FILE = 'mmbcn_config_bases.pth'


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def distribution_providing(module: str, named: str) -> str:
    """The distribution to ask for the importable ``module``: ``named`` (MMEngine's table's
    entry) when it is installed, else the installed distribution that provides ``module``, else
    ``module`` itself when it imports from a path no distribution records (a source checkout on
    ``PYTHONPATH``: both families' MMEngine then find it by ``find_spec``), else ``named`` (and
    MMEngine's own "not installed" error follows)."""
    if _installed(named):
        return named
    providers = importlib.metadata.packages_distributions().get(module, [])
    for distribution in providers:
        if _installed(distribution):
            return distribution
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.origin is not None:
        return module
    return named


def package_and_cfg_path(original: Callable) -> Callable:
    """The replacement of MMEngine's ``_get_package_and_cfg_path`` built from ``original``."""
    def _get_package_and_cfg_path(cfg_path: str) -> Tuple[str, str]:
        package, relative = original(cfg_path)
        return distribution_providing(cfg_path.split('::')[0], package), relative
    return _get_package_and_cfg_path


def patch(utils) -> None:
    """Replace the function in the module ``mmengine.config.utils`` (idempotent; marked as the
    declared patch marks its replacements, so ``import mmbcn`` finds it applied)."""
    original = getattr(utils, '_get_package_and_cfg_path', None)
    if original is None or getattr(original, '__mmbcn_patch__', None) == TARGET:
        return
    replacement = functools.wraps(original)(package_and_cfg_path(original))
    replacement.__mmbcn_patch__ = TARGET
    utils._get_package_and_cfg_path = replacement


class _ConfigUtilsFinder(importlib.abc.MetaPathFinder):
    """Patches ``mmengine.config.utils`` right after it first runs."""

    name = 'mmengine.config.utils'

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Patch ``mmengine.config.utils`` now if it is imported, else right after its import."""
    if _ConfigUtilsFinder.name in sys.modules:
        patch(sys.modules[_ConfigUtilsFinder.name])
    elif not any(type(f).__name__ == _ConfigUtilsFinder.__name__ for f in sys.meta_path):
        sys.meta_path.insert(0, _ConfigUtilsFinder())


def startup_line(path: str = osp.abspath(__file__)) -> str:
    """The ``.pth`` line that loads the file ``path`` as a module of its own and installs it."""
    name = 'mmbcn_config_bases_startup'
    return (f"import sys, importlib.util as u; s = u.spec_from_file_location({name!r}, "
            f"{path!r}); m = sys.modules[{name!r}] = u.module_from_spec(s); "
            "s.loader.exec_module(m); m.install()\n")


def write_startup_file(site_packages: Optional[str] = None) -> str:
    """Write :data:`STARTUP_FILE` into ``site_packages`` (default: this interpreter's)."""
    folder = site_packages or site.getsitepackages()[0]
    path = osp.join(folder, STARTUP_FILE)
    with open(path, 'w') as f:
        f.write(startup_line())
    return path
