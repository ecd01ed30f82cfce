"""Shared fixtures: seeded randomness, importing the plugin once, and the helpers importable.

The tests mirror the package: ``tests/<package>/test_<module>.py`` tests
``mmbcn/<package>/<module>.py`` (``tests/test_<module>.py`` a top-level module), where that
module has something of its own to test. Three folders are not packages of mmbcn and say what
they hold: ``toolbox/`` (cross-cutting: mmbcn inside the toolboxes' own entry points, training
modes, FLOPs, the ImageNet configs), ``tools/`` (the scripts of ``tools/``, the configs, the
install and the stacks) and ``docs/`` (the documentation site). What several tests use lives in
the package ``mmbcn_testing/`` (this folder on ``sys.path``).

Tests that start processes or train a model are marked ``slow`` (registered in pyproject.toml):
``pytest -m "not slow"`` is the quick loop, ``make test`` runs everything. A whole module of them
says so once, ``pytestmark = pytest.mark.slow``.
"""

import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # import mmbcn_testing

import mmbcn  # noqa: F401, E402  (registers the layers)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
    yield
