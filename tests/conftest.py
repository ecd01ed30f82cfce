"""Shared fixtures: seeded randomness and importing the plugin once."""

import pytest
import torch

import mmbcn  # noqa: F401  (registers the layers)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
    yield
