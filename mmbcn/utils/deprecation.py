"""Old import paths kept for one release after a module moved.

A module that moved leaves a file at its old path holding one call, ``moved_module(__name__,
'new.path')``: importing the old path warns (``FutureWarning``, shown to users by default, since
configs and scripts hold these paths) and gives the new module itself, so both names refer to the
same objects (registries, ``isinstance`` checks and patches see one class). A package that moved
keeps its old folder with a shim per module; its ``__init__`` shim takes the new package's
public names (so ``old.sub`` still finds the shim of ``sub``, never a second copy of it).
"""

import importlib
import sys
import warnings
from types import ModuleType

__all__ = ['moved_module']

REMOVED_IN = 'mmbcn 0.2'


def moved_module(old: str, new: str) -> ModuleType:
    """Make ``import old`` give module ``new``, with a warning that names the new path."""
    warnings.warn(f'{old} moved to {new}; the old path works until {REMOVED_IN}. Import {new} '
                  f'instead.', FutureWarning, stacklevel=2)
    module = importlib.import_module(new)
    shim = sys.modules.get(old)
    if hasattr(shim, '__path__'):  # a package: keep it, for its modules' shims
        for name in getattr(module, '__all__', ()):
            setattr(shim, name, getattr(module, name))
    elif old != '__main__':
        sys.modules[old] = module
    return module
