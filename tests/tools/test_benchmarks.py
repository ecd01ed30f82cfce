"""The benchmark scripts run and print complete tables (their figures are not asserted)."""

import re
import subprocess
import sys

import pytest
from mmbcn_testing.paths import ROOT

pytestmark = pytest.mark.slow  # starts processes or trains


def run_script(*args):
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_prints_every_layer_and_conv_row():
    out = run_script('benchmarks/bench_bcn.py', '--quick', '--only', 'layers', 'conv',
                     '--repeats', '2')
    for layer in ('BCN large-batch', 'BCN micro-batch', 'naive BCN', 'GroupNorm',
                  'BatchNorm2d'):
        figures = r' \| [\d.]+' * 4
        rows = re.findall(rf'^\| \([\d, ]+\) \| {layer}{figures} \|$', out, flags=re.MULTILINE)
        assert len(rows) == 2, (layer, out)  # one per quick shape
    assert re.findall(r'\| GroupNorm \| [\d.]+ \| [\d.]+ \| 1\.00 \| 1\.00 \|', out)
    assert re.search(r'^\| \(.*\) \| WSConv2d \| [\d.]+ \| [\d.]+ \|$', out, flags=re.MULTILINE)


def test_profile_prints_a_table():
    out = run_script('benchmarks/profile_bcn.py', '--device', 'cpu', '--shape', '2', '64', '8',
                     '8', '--repeats', '2')
    assert 'BCN (2, 64, 8, 8) on cpu, 2 forward+backward' in out
    assert 'BatchChannelNormFunction' in out  # the layer's own rows are in the table
