"""Generated data for the demo and the tests."""

from .synthetic import CLASSES, PALETTE, DemoDataSpec, ensure_demo_data, write_demo_data

__all__ = ['CLASSES', 'PALETTE', 'DemoDataSpec', 'ensure_demo_data', 'write_demo_data']
