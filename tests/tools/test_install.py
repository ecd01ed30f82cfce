"""Both installs find the configs: the editable one (this environment) and a built wheel."""

import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
from paths import ROOT

import mmbcn
from mmbcn.config_files import config_dir

DEMO = 'demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py'


def shipped_configs(folder):
    return sorted(osp.relpath(osp.join(d, f), folder) for d, _, files in os.walk(folder)
                  for f in files if f.endswith('.py'))


def test_editable_install_reads_the_checkout():
    assert osp.dirname(mmbcn.__file__) == osp.join(ROOT, 'mmbcn')
    assert config_dir() == osp.join(ROOT, 'configs')
    version = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()[-1]
    assert version == mmbcn.__version__


@pytest.fixture(scope='module')
def wheel_site(tmp_path_factory):
    """mmbcn built as a wheel and installed alone into a folder (its dependencies: this venv)."""
    root = tmp_path_factory.mktemp('wheel')
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run([*pip, 'wheel', '--no-deps', '--no-build-isolation', '-w', str(root), ROOT],
                   check=True, capture_output=True)
    wheel, = root.glob('mmbcn-*.whl')
    subprocess.run([*pip, 'install', '--no-deps', '--target', str(root / 'site'), str(wheel)],
                   check=True, capture_output=True)
    return root


def run_installed(root, code):
    """Run ``code`` with only the wheel's mmbcn importable, from outside the checkout."""
    env = dict(os.environ, PYTHONPATH=str(root / 'site'))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=root, env=env,
                          capture_output=True, text=True)


def test_wheel_carries_every_config_and_the_tools_find_them(wheel_site):
    result = run_installed(wheel_site, f"""
        import os.path as osp
        import mmbcn
        from mmbcn.config_files import config_dir
        from mmbcn.runner.cli import resolve_config
        from mmengine.config import Config
        assert mmbcn.__file__.startswith({str(wheel_site / 'site')!r}), mmbcn.__file__
        assert config_dir() == osp.join(osp.dirname(mmbcn.__file__), '.mim', 'configs')
        cfg = Config.fromfile(resolve_config({DEMO!r}))
        assert cfg.default_scope == 'mmdet' and cfg.model.backbone.depth == 18
        from mmbcn.config_files import config_path
        from mmbcn.runner.demo import DEMOS  # what `make demo` / tools/demo.py load
        for demo in DEMOS:
            assert Config.fromfile(config_path(demo.config)).model
        print(config_dir())
        """)
    assert result.returncode == 0, result.stderr
    packaged = result.stdout.strip().splitlines()[-1]
    assert shipped_configs(packaged) == shipped_configs(osp.join(ROOT, 'configs'))


def test_another_project_inherits_through_a_link(wheel_site):
    project = wheel_site / 'project'
    result = run_installed(wheel_site, f"""
        from mmbcn.config_files import main
        main(['link', {str(project / 'configs' / 'mmbcn')!r}])
        """)
    assert result.returncode == 0, result.stderr
    mine = project / 'configs' / 'my_detector.py'
    mine.write_text(f"_base_ = './mmbcn/{DEMO}'\ntrain_dataloader = dict(batch_size=1)\n")
    result = run_installed(wheel_site, f"""
        from mmengine.config import Config
        cfg = Config.fromfile({str(mine)!r})
        assert cfg.model.backbone.norm_cfg.type == 'BCN', cfg.model.backbone.norm_cfg
        assert cfg.train_dataloader.batch_size == 1
        """)
    assert result.returncode == 0, result.stderr
