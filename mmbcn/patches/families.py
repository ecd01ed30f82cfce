"""Replacements for what the two OpenMMLab families do differently (:mod:`mmbcn.openmmlab_family`).

* MMEngine resolves a ``pkg::path`` base config through the *distribution* its table
  ``mmengine.config.utils.MODULE2PACKAGE`` names for the module ``pkg`` (``mmseg`` ->
  ``mmsegmentation``), then asks whether that distribution is installed. The onedl family
  installs ``mmseg`` as ``onedl-mmsegmentation``, so every ``mmseg::`` base failed to load
  ("mmsegmentation is not installed"), and ``mmengine.hub.get_config`` would ``pip install``
  upstream's package over it. ``mmengine_package_and_cfg_path`` names the distribution that
  provides the module instead; both families' ``is_installed`` / ``get_installed_path`` then
  find it (by its metadata's ``top_level.txt``).
* onedl-mmengine's checkpoint loaders call ``_safe_torch_load``, which loads weights-only and,
  when that refuses the file, loads it again with ``weights_only=False``: a checkpoint's pickled
  code runs. ``mmengine_safe_torch_load`` loads through mmbcn's weights-only loader
  (:func:`mmbcn.checkpoints.load_weights_only`), whose refusal names the fix, with no fallback
  (upstream MMEngine on torch >= 2.6 refuses the same files).
"""

import importlib.metadata
import importlib.util
import os
from typing import Callable, Optional, Tuple

from .. import checkpoints

__all__ = ['distribution_providing', 'mmengine_package_and_cfg_path', 'mmengine_safe_torch_load']


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


def mmengine_package_and_cfg_path(original: Callable) -> Callable:
    def _get_package_and_cfg_path(cfg_path: str) -> Tuple[str, str]:
        package, relative = original(cfg_path)
        return distribution_providing(cfg_path.split('::')[0], package), relative
    return _get_package_and_cfg_path


def mmengine_safe_torch_load(original: Callable) -> Callable:
    def _safe_torch_load(file, map_location=None, weights_only: Optional[bool] = None):
        if weights_only is False:  # the caller asked for full unpickling itself
            return original(file, map_location=map_location, weights_only=False)
        if isinstance(file, os.PathLike):
            file = os.fspath(file)
        return checkpoints.load_weights_only(file, map_location)
    return _safe_torch_load
