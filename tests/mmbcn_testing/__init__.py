"""What several tests use: float64 references, BCN cases, model building, processes, paths.

A package of its own (``tests/`` is on ``sys.path``: ``tests/conftest.py``), so that its
modules cannot clash with installed top-level modules of the same names (``models``, ``paths``).
The processes a test starts import it by putting :data:`~mmbcn_testing.paths.TESTS` on their
``PYTHONPATH`` (the hooks ``mmbcn_testing.kill_hook`` and ``mmbcn_testing.state_dump_hook`` through
a config's ``custom_imports``).
"""
