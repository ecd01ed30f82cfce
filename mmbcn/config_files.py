"""Moved to :mod:`mmbcn.utils.config_files`; this path (also ``python -m mmbcn.config_files``)
works, with a warning, until mmbcn 0.2."""

from .utils.deprecation import moved_module

_module = moved_module(__name__, 'mmbcn.utils.config_files')

if __name__ == '__main__':
    _module.main()
