"""``tools/deploy.py`` refuses bad input with one ``error:`` line, before building anything (the
deployment itself: ``tests/deploy/test_model.py``)."""

import os.path as osp
import subprocess
import sys

import pytest
from mmbcn_testing.paths import ROOT

pytestmark = pytest.mark.slow  # each test runs the tool in a fresh interpreter

TOOL = osp.join(ROOT, 'tools', 'deploy.py')
CONFIG = osp.join(ROOT, 'configs', 'demo', 'deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py')


def error_line(*args):
    result = subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    (line, ) = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    return line


def test_a_config_of_another_codebase(tmp_path):
    config = tmp_path / 'ocr.py'
    config.write_text("default_scope = 'mmocr'\nmodel = dict(type='Recognizer')\n")
    line = error_line(config, tmp_path / 'any.pth')
    assert str(config) in line and "default_scope='mmocr'" in line


def test_a_missing_or_unreadable_checkpoint(tmp_path):
    assert 'no such file' in error_line(CONFIG, tmp_path / 'missing.pth')
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(b'not a checkpoint')
    line = error_line(CONFIG, broken)
    assert str(broken) in line and 'not a readable torch checkpoint' in line
