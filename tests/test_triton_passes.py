"""The Triton kernels of the fused BCN (passes and coefficient maths), run under Triton's CPU
interpreter: no GPU needed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('triton', reason='needs Triton (installed with the tests extra on Linux)')


def test_triton_kernels_match_pytorch_ops_under_the_interpreter():
    script = Path(__file__).with_name('triton_interpreted.py')
    env = dict(os.environ, TRITON_INTERPRET='1')
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(': ok') == 5 + 11, result.stdout
