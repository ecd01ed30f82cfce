"""``python -m mmbcn.collect_env``: the stack, whether it is a tested one, mmbcn's patches and
BCN's backend, for a bug report (OpenMMLab's ``collect_env`` convention).

:func:`collect_env` returns the same as an ordered dict of strings.
"""

import importlib
import os
import platform
import sys
from collections import OrderedDict
from typing import Dict, Optional

import torch

from . import openmmlab_family
from .patches import patch_states
from .utils import feature_probes
from .version import __version__

__all__ = ['bcn_backend', 'collect_env', 'tested_stack']

PACKAGES = ('numpy', 'torchvision', 'triton', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation',
            'mmpretrain')
IMPORT_NAMES = {'mmsegmentation': 'mmseg'}


def _version(package: str) -> Optional[str]:
    try:
        module = importlib.import_module(IMPORT_NAMES.get(package, package))
    except Exception:  # an installed package that fails to import is reported as missing
        return None
    return getattr(module, '__version__', 'unknown')


def installed_versions() -> Dict[str, Optional[str]]:
    """Python, torch (without its local build tag), the OpenMMLab family
    (:func:`mmbcn.openmmlab_family.installed_family`) and :data:`PACKAGES`; None: not
    importable."""
    versions = {'python': '.'.join(platform.python_version_tuple()[:2]),
                'torch': torch.__version__.split('+')[0],
                'family': openmmlab_family.installed_family()}
    versions.update((package, _version(package)) for package in PACKAGES)
    return versions


def tested_stack(versions: Dict[str, Optional[str]]) -> str:
    """The name of the tested stack ``versions`` matches, else how it differs from the
    nearest (:data:`mmbcn.utils.feature_probes.TESTED_STACKS`)."""
    differences = {}
    for name, stack in feature_probes.TESTED_STACKS.items():
        differs = [f'{package} {versions.get(package)} (tested: {wanted})'
                   for package, wanted in stack.items() if versions.get(package) != wanted]
        if not differs:
            return f'yes: {name}'
        differences[name] = differs
    nearest = min(differences, key=lambda name: len(differences[name]))
    return f'no; nearest is {nearest}, which differs in ' + ', '.join(differences[nearest])


def _mmcv_ops() -> str:
    problem = openmmlab_family.mmcv_ops_problem()
    if problem is None:
        return 'available'
    why = ("; this torch's headers require C++20, which mmcv's build does not ask for"
           if feature_probes.extensions_need_cxx20() else '')
    return f'not available ({problem[:120]}){why}'


def _package(package: str, version: Optional[str]) -> str:
    """The version and, where it differs from the import name's, the distribution."""
    if version is None:
        return 'not importable'
    module = IMPORT_NAMES.get(package, package)
    if module not in openmmlab_family.MODULES:
        return version
    found = openmmlab_family.distribution_of(module)
    return version if found is None or found[1] == package else f'{version} ({found[1]})'


def bcn_backend() -> str:
    """Where BCN runs in this process, and why (see :func:`mmbcn.ops.function.choose_backend`)."""
    if not torch.cuda.is_available():
        return 'PyTorch ops (no CUDA device; the Triton kernels are for CUDA)'
    problem = feature_probes.triton_problem()
    if problem is not None:
        return f'PyTorch ops on CUDA: {problem}'
    if os.environ.get('MMBCN_TRITON', '1') == '0':
        return 'PyTorch ops on CUDA (MMBCN_TRITON=0)'
    import triton

    return (f'Triton kernels on CUDA (Triton {triton.__version__}) for contiguous float16/'
            f'bfloat16/float32 inputs; PyTorch ops otherwise')


def collect_env() -> 'OrderedDict[str, str]':
    """The report as (heading, text) pairs."""
    versions = installed_versions()
    env = OrderedDict()
    env['sys.platform'] = sys.platform
    env['Python'] = sys.version.replace('\n', ' ')
    env['PyTorch'] = torch.__version__
    env['CUDA available'] = str(torch.cuda.is_available())
    if torch.cuda.is_available():
        env['GPU'] = ', '.join(sorted({torch.cuda.get_device_name(i)
                                       for i in range(torch.cuda.device_count())}))
        env['CUDA (torch build)'] = str(torch.version.cuda)
    env['OpenMMLab family'] = versions['family']
    for package in PACKAGES:
        env[package] = _package(package, versions[package])
    if versions['mmcv']:
        env['mmcv ops'] = _mmcv_ops()
    env['mmbcn'] = __version__
    env['tested stack'] = tested_stack(versions)
    problems = openmmlab_family.version_problems()
    if problems:
        env['outside the tested versions'] = '; '.join(problems)
    env['BCN backend'] = bcn_backend()
    for state in patch_states():
        reason = f': {state.reason}' if state.reason else ''
        env[f'patch {state.patch.target}'] = (
            f'{state.status} ({state.patch.package}, checked with {state.patch.checked}; '
            f'{state.patch.does}){reason}')
    return env


def main() -> None:
    for key, value in collect_env().items():
        print(f'{key}: {value}')


if __name__ == '__main__':
    main()
