"""Which backend BCN runs on: Triton kernels only with a Triton they were checked with."""

import logging
import sys
import types

import pytest

from mmbcn.ops import function
from mmbcn.utils import feature_probes


@pytest.fixture
def triton_version(monkeypatch):
    """Installs a stand-in ``triton`` module of a given version (and forgets the cached answer)."""
    def install(version):
        monkeypatch.setitem(sys.modules, 'triton', types.SimpleNamespace(__version__=version))
        feature_probes.triton_problem.cache_clear()
    yield install
    feature_probes.triton_problem.cache_clear()


@pytest.mark.parametrize('version, problem', [
    ('2.1.0', 'older than the 3.5'), ('3.4.0', 'older than the 3.5'), ('3.5.1', None),
    ('3.6.0', None), ('4.0.0+git1234', None), ('nightly', 'cannot read')])
def test_the_checked_triton_versions(triton_version, version, problem):
    triton_version(version)
    found = feature_probes.triton_problem()
    assert found is None if problem is None else problem in found


def test_an_unchecked_triton_leaves_cuda_on_pytorch_ops_and_says_so_once(triton_version,
                                                                         caplog):
    triton_version('2.1.0')
    function._logged_fallbacks.clear()
    cuda_input = types.SimpleNamespace(is_cuda=True)  # choose_backend reads only is_cuda first
    with caplog.at_level(logging.WARNING, logger='mmbcn'):
        for _ in range(3):
            assert function.choose_backend(cuda_input, settings=None) is function._TORCH
    messages = [record.getMessage() for record in caplog.records if record.name == 'mmbcn']
    assert messages == ['mmbcn: BCN runs on PyTorch ops on CUDA: Triton 2.1.0 is older than '
                        'the 3.5 the kernels were checked with']
