"""mmbcn's figures leave the user's matplotlib alone: no pyplot, no backend chosen, nothing
imported until a figure is made."""

import subprocess
import sys

import pytest

CODE = """
import sys
import mmbcn, mmbcn.errors, mmbcn.analysis, mmbcn.commands.curves
assert 'matplotlib' not in sys.modules, 'imported matplotlib before any figure'
from mmbcn.commands.curves import Curves, write_curves, write_summary
curves = Curves('part', 'mIoU', [1, 2], [1.0, 0.5], [1, 2], [10.0, 20.0])
write_curves(curves, {one!r})
write_summary([curves, curves], {two!r}, 'two parts')
assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'
"""


@pytest.mark.slow  # a fresh interpreter importing mmbcn (about 10 s)
def test_curves_are_drawn_without_pyplot_and_matplotlib_is_imported_late(tmp_path):
    one, two = tmp_path / 'one.png', tmp_path / 'two.png'
    result = subprocess.run([sys.executable, '-c', CODE.format(one=str(one), two=str(two))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for path in (one, two):
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
