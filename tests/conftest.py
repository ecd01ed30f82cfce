"""Shared fixtures: seeded randomness, importing the plugin once, and the helpers importable.

The tests mirror the package (``layers/``, ``ops/``, ``engine/``, ``convert/``, ``tools/``);
what several of them use lives in the package ``mmbcn_testing/`` (this folder on ``sys.path``).

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
