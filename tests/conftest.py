"""Shared fixtures: seeded randomness, importing the plugin once, and the helpers on sys.path.

The tests mirror the package (``layers/``, ``ops/``, ``engine/``, ``convert/``, ``tools/``);
what several of them use lives in ``helpers/``.
"""

import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'helpers'))

import mmbcn  # noqa: F401, E402  (registers the layers)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
    yield
