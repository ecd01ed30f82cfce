"""Shared fixtures: seeded randomness, importing the plugin once, and the helpers importable.

The tests mirror the package (``layers/``, ``ops/``, ``engine/``, ``convert/``, ``tools/``);
what several of them use lives in the package ``mmbcn_testing/`` (this folder on ``sys.path``).
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
