"""BCN's Triton kernels (passes and coefficient maths) under Triton's CPU interpreter: no GPU.

One fresh process runs every case (``mmbcn_testing/triton_interpreted.py``: ``TRITON_INTERPRET``
must be set before the kernels are defined); each case is then its own test here.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from mmbcn_testing.paths import TESTS
from mmbcn_testing.triton_cases import LAYER_CASES, PASS_CASES, PRECISION_CASES, TENSOR_RATE_CASES

from mmbcn.utils.feature_probes import triton_problem

pytestmark = pytest.mark.slow  # starts processes or trains

if triton_problem() is not None:  # the kernels are used (and tested) with a checked Triton only
    pytest.skip(f'needs the Triton the kernels were checked with: {triton_problem()}',
                allow_module_level=True)


@pytest.fixture(scope='module')
def interpreted(tmp_path_factory):
    out = tmp_path_factory.mktemp('interpreted') / 'errors.json'
    env = dict(os.environ, TRITON_INTERPRET='1',
               PYTHONPATH=os.pathsep.join([TESTS, os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run([sys.executable, '-m', 'mmbcn_testing.triton_interpreted',
                             str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize('case', PASS_CASES)
def test_pass_kernels_match_pytorch_ops(interpreted, case):
    # moments, x A + B, the two gradient sums, the input gradient
    tolerance = 1e-4 if PASS_CASES[case][1] == torch.float32 else 1e-2
    assert max(interpreted[case]) < tolerance, interpreted[case]


@pytest.mark.parametrize('case', [*LAYER_CASES, *TENSOR_RATE_CASES])
def test_layer_on_triton_matches_float64(interpreted, case):
    # Output, dL/dx, running mean and var, parameter gradients: the float32 kernels against
    # float64, within 1e-4 relative, or within 3x the PyTorch backend's own float32 error where
    # the case is ill-conditioned (one value per channel: dL/dx cancels to ~1e-3).
    errors = interpreted[case]
    assert len(errors['triton']) == len(errors['torch_float32']), errors
    for index, (triton, torch_float32) in enumerate(zip(errors['triton'],
                                                         errors['torch_float32'], strict=True)):
        assert triton < max(1e-4, 3 * torch_float32), (index, errors)


@pytest.mark.parametrize('case', PRECISION_CASES)
def test_layer_on_triton_keeps_precision_when_the_mean_dwarfs_the_std(interpreted, case):
    # |mean| / std up to 1e5: the output is written centred on each row's mean, (x - m) A + C,
    # so its error stays at the PyTorch backend's (which float32 statistics set, ~1e-3 at 1e5)
    # instead of growing with |mean| / std as x A + B did (8e-3 at 1e3 / 1e-2).
    errors = interpreted[case]
    output, torch_output = errors['triton'][0], errors['torch_float32'][0]
    assert output < max(1e-5, 2 * torch_output), errors
    assert output < 5e-3, errors
