"""mmpretrain imports on this project's CPU torch once mmbcn is imported (torchvision_compat)."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # starts processes or trains


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def test_mmpretrain_imports_after_mmbcn_and_missing_ops_are_refused_not_faked():
    result = run("""
        import mmbcn
        import mmpretrain.datasets, mmpretrain.models  # noqa: F401  (import torchvision)
        import torch, torchvision
        if torchvision.extension._has_ops():
            print('torchvision ops load')
        else:
            try:
                torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
            except RuntimeError as error:
                assert "Couldn't load custom C++ ops" in str(error), error
                print('refused')
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] in ('torchvision ops load', 'refused')


def test_torchvision_imports_from_the_start_without_mmbcn():
    """The startup file tools/setup_env.sh writes: mmseg's get_flops.py imports mmseg.models
    (mmdet, torchvision) before it reads a config."""
    result = run("""
        import sys
        import mmseg.models  # noqa: F401
        import torchvision  # noqa: F401
        print('mmbcn imported:', 'mmbcn' in sys.modules)
        """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == 'mmbcn imported: False'
