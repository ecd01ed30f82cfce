"""Which OpenMMLab family provides ``mmengine``, ``mmcv``, ``mmdet``, ``mmseg`` and ``mmpretrain``.

Two families install the same import names under different distribution names:

* ``upstream``: OpenMMLab's own releases (``mmengine``, ``mmcv``, ``mmdet``,
  ``mmsegmentation``, ``mmpretrain``), last released 2024-2025; prebuilt mmcv wheels stop at
  torch 2.1 (mmcv 2.1.0, the newest mmdet 3.3 and mmseg 1.2 accept);
* ``onedl``: the maintained continuation (``onedl-mmengine``, ``onedl-mmcv``,
  ``onedl-mmdetection``, ``onedl-mmsegmentation``, ``onedl-mmpretrain``), for torch >= 2.4
  and Python >= 3.10.

mmbcn's package metadata requires neither (``pip install mmbcn`` must never replace a user's
OpenMMLab with the other family's packages); ``import mmbcn`` asks this module instead
(:func:`check_core`): MMEngine and mmcv must import, and a version outside the family's tested
range (:data:`FAMILIES`) gives one warning. mmcv's compiled ops are asked for only by what needs
them (:func:`require_mmcv_ops`). The ranges here are the extras ``upstream`` and ``onedl`` of
``pyproject.toml`` and ``requirements/mminstall*.txt`` (a test checks they agree).
"""

import functools
import importlib
import importlib.metadata
import warnings
from typing import Dict, List, NamedTuple, Optional, Tuple

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = ['FAMILIES', 'CORE', 'MODULES', 'Family', 'OpenMMLabMissingError', 'check_core',
           'distribution_of', 'family_of', 'installed_family', 'mmcv_ops_problem',
           'require_mmcv_ops', 'version_problems']

# The import names mmbcn uses; the first two every ``import mmbcn`` needs.
CORE = ('mmengine', 'mmcv')
MODULES = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain')


class Family(NamedTuple):
    """One family: its distribution names and tested ranges per import name, and how to install
    its core (the install commands the error messages name).

    Attributes:
        name: ``'upstream'`` or ``'onedl'``.
        distributions: import name -> the distribution names that provide it in this family.
        tested: import name -> the version range mmbcn is tested with.
        install: how to install MMEngine and mmcv with its compiled ops into an environment
            that has its torch.
        extra: mmbcn's extra that names this family's packages.
    """
    name: str
    distributions: Dict[str, Tuple[str, ...]]
    tested: Dict[str, str]
    install: str
    extra: str


FAMILIES: Dict[str, Family] = {
    'upstream': Family(
        'upstream',
        distributions={'mmengine': ('mmengine',), 'mmcv': ('mmcv', 'mmcv-lite'),
                       'mmdet': ('mmdet',), 'mmseg': ('mmsegmentation',),
                       'mmpretrain': ('mmpretrain',)},
        # mmdet 3.3 and mmseg 1.2 accept mmcv < 2.2.0 only.
        tested={'mmengine': '>=0.10.3,<0.11', 'mmcv': '>=2.1.0,<2.2.0', 'mmdet': '>=3.3,<3.4',
                'mmseg': '>=1.2,<1.3', 'mmpretrain': '>=1.2,<1.3'},
        install=('pip install "mmengine>=0.10.3,<0.11" && MMCV_WITH_OPS=1 pip install '
                 '--no-build-isolation "mmcv>=2.1.0,<2.2.0" (on torch 2.0 or 2.1, '
                 '`mim install "mmcv>=2.1.0,<2.2.0"` takes a prebuilt mmcv)'),
        extra='upstream'),
    'onedl': Family(
        'onedl',
        distributions={'mmengine': ('onedl-mmengine',), 'mmcv': ('onedl-mmcv',),
                       'mmdet': ('onedl-mmdetection',), 'mmseg': ('onedl-mmsegmentation',),
                       'mmpretrain': ('onedl-mmpretrain',)},
        tested={'mmengine': '>=0.10.12,<0.11', 'mmcv': '>=2.3.6,<2.4', 'mmdet': '>=3.5,<3.6',
                'mmseg': '>=1.4,<1.5', 'mmpretrain': '>=1.3,<1.4'},
        install=('pip install "onedl-mmengine>=0.10.12,<0.11" && pip install '
                 '--no-build-isolation "onedl-mmcv>=2.3.6,<2.4"'),
        extra='onedl'),
}


class OpenMMLabMissingError(ImportError):
    """MMEngine or mmcv cannot be imported; the message names which and how to install it."""


def _installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def distribution_of(module: str) -> Optional[Tuple[str, str]]:
    """(family name, distribution name) of the installed distribution that provides ``module``,
    or None when no distribution of either family does (a source checkout on ``PYTHONPATH``, or
    not installed). When both families' distributions are installed (one overwrote the other's
    files), the upstream one is named: see :func:`installed_family`."""
    for family in FAMILIES.values():
        for distribution in family.distributions[module]:
            if _installed_version(distribution) is not None:
                return family.name, distribution
    return None


def family_of(module: str) -> Optional[str]:
    """The family whose distribution provides ``module``, or None."""
    found = distribution_of(module)
    return found[0] if found else None


def installed_family() -> str:
    """``'upstream'``, ``'onedl'``, ``'mixed: ...'`` (each module named with its family) or
    ``'unknown'`` (no distribution of either family provides MMEngine or mmcv)."""
    families = {}
    for module in MODULES:
        providers = [family.name for family in FAMILIES.values()
                     if any(_installed_version(d) is not None
                            for d in family.distributions[module])]
        if providers:
            families[module] = '+'.join(providers)
    names = set(families.values())
    if not names or not any(module in families for module in CORE):
        return 'unknown'
    if len(names) == 1 and '+' not in next(iter(names)):
        return names.pop()
    return 'mixed: ' + ', '.join(f'{module} {name}' for module, name in families.items())


def _family_found() -> Optional[Family]:
    """The family that provides any of :data:`MODULES`, or None."""
    for module in MODULES:
        name = family_of(module)
        if name is not None:
            return FAMILIES[name]
    return None


def _install_advice() -> str:
    """How to install MMEngine and mmcv: the found family's command, else both families'."""
    family = _family_found()
    if family is not None:
        return (f'Install them from the {family.name} family, which the rest of your OpenMMLab '
                f'is from: {family.install}; or pip install "mmbcn[{family.extra}]".')
    onedl, upstream = FAMILIES['onedl'], FAMILIES['upstream']
    return (f'Install one family. For torch 2.4 and newer, the onedl family: {onedl.install}; '
            f'or pip install "mmbcn[{onedl.extra}]". For torch 2.1 - 2.3, upstream OpenMMLab: '
            f'{upstream.install}; or pip install "mmbcn[{upstream.extra}]".')


def _module_version(module: str) -> Optional[str]:
    try:
        return getattr(importlib.import_module(module), '__version__', None)
    except ImportError:
        return None


def version_problems(modules=MODULES) -> List[str]:
    """For each of ``modules`` that imports, why its version is outside its family's tested
    range (its family: the distribution that provides it; a module no distribution provides is
    taken to be of the family of the rest)."""
    problems = []
    default = _family_found() or FAMILIES['upstream']
    for module in modules:
        version = _module_version(module)
        if version is None:
            continue
        family = FAMILIES.get(family_of(module) or '', default)
        tested = family.tested[module]
        try:
            inside = Version(version) in SpecifierSet(tested, prereleases=True)
        except InvalidVersion:
            inside = False
        if not inside:
            problems.append(f'{module} {version} ({family.name} family; mmbcn is tested with '
                            f'{tested})')
    return problems


def check_core() -> None:
    """What ``import mmbcn`` checks: MMEngine and mmcv import (else
    :class:`OpenMMLabMissingError` naming the install command of the family found, or of both
    when none is), and their versions lie in their family's tested range (else one
    warning). mmcv's compiled ops are not asked for here (:func:`require_mmcv_ops`)."""
    missing = []
    for module in CORE:
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append(f'{module} ({type(error).__name__}: {error})')
    if missing:
        raise OpenMMLabMissingError(
            f"mmbcn needs MMEngine and mmcv, which it does not install itself (pip would "
            f"replace another family's packages of the same import names). Cannot import: "
            f"{'; '.join(missing)}. {_install_advice()}")
    problems = version_problems(CORE)
    if problems:
        warnings.warn('mmbcn runs outside its tested versions: ' + '; '.join(problems) +
                      ' (python -m mmbcn.collect_env shows the whole stack).', stacklevel=3)


@functools.lru_cache(maxsize=None)
def mmcv_ops_problem() -> Optional[str]:
    """None when mmcv's compiled ops load, else why not (asked once per process)."""
    try:
        from mmcv.ops import nms  # noqa: F401
    except Exception as error:  # mmcv built without ops (mmcv-lite) or against another torch
        return f'{type(error).__name__}: {str(error)[:200]}'
    return None


# What stands in for the build command where the released mmcv cannot build its ops.
CXX20_NOTE = ("This torch's C++ headers require C++20 and mmcv's build (2.1.0; onedl-mmcv "
              '2.3.6) compiles its ops with -std=c++17, so as released they do not build against '
              'it: use torch 2.13 or older for the models that need them (docs: Compatibility, '
              '"Torch 2.14 and newer: no mmcv ops").')


def require_mmcv_ops(feature: str) -> None:
    """Raise :class:`OpenMMLabMissingError` when mmcv's compiled ops do not load, naming
    ``feature`` (what needs them) and how to build mmcv with them for the installed family, or,
    on a torch whose headers require C++20, that the released mmcv builds do not build them
    there (:data:`CXX20_NOTE`)."""
    from .utils.feature_probes import extensions_need_cxx20  # imports torch

    problem = mmcv_ops_problem()
    if problem is None:
        return
    family = _family_found() or FAMILIES['onedl']
    raise OpenMMLabMissingError(
        f'{feature} needs mmcv with its compiled ops, which do not load here ({problem}). '
        + (CXX20_NOTE if extensions_need_cxx20() else
           f'Build mmcv with its ops against your torch ({family.name} family): '
           f'{family.install}.'))
