"""The one version string of mmbcn."""

__version__ = '0.1.0'
