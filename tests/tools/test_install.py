"""Both installs find the configs: the editable one (this environment) and a built wheel."""

import os
import os.path as osp
import subprocess
import sys
import textwrap
import zipfile

import pytest
from mmbcn_testing.paths import ROOT

import mmbcn
from mmbcn.utils.config_files import config_dir

DEMO = 'demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py'


def shipped_configs(folder):
    return sorted(osp.relpath(osp.join(d, f), folder) for d, _, files in os.walk(folder)
                  for f in files if f.endswith('.py'))


@pytest.mark.slow
def test_editable_install_reads_the_checkout():
    assert osp.dirname(mmbcn.__file__) == osp.join(ROOT, 'mmbcn')
    assert config_dir() == osp.join(ROOT, 'configs')
    version = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()[-1]
    assert version == mmbcn.__version__


def install_wheel(root):
    """Build mmbcn's wheel into ``root`` and install it alone into ``root / 'site'``."""
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run([*pip, 'wheel', '--no-deps', '--no-build-isolation', '-w', str(root), ROOT],
                   check=True, capture_output=True)
    wheel, = root.glob('mmbcn-*.whl')
    subprocess.run([*pip, 'install', '--no-deps', '--target', str(root / 'site'), str(wheel)],
                   check=True, capture_output=True)
    return root


@pytest.fixture(scope='module')
def wheel_site(tmp_path_factory):
    """mmbcn built as a wheel and installed alone into a folder (its dependencies: this venv)."""
    return install_wheel(tmp_path_factory.mktemp('wheel'))


def run_installed(root, code):
    """Run ``code`` with only the wheel's mmbcn importable, from outside the checkout."""
    env = dict(os.environ, PYTHONPATH=str(root / 'site'))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=root, env=env,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_wheel_carries_every_config_and_the_tools_find_them(wheel_site):
    result = run_installed(wheel_site, f"""
        import os.path as osp
        import mmbcn
        from mmbcn.utils.config_files import config_dir
        from mmbcn.utils.config_files import resolve_config
        from mmengine.config import Config
        assert mmbcn.__file__.startswith({str(wheel_site / 'site')!r}), mmbcn.__file__
        assert config_dir() == osp.join(osp.dirname(mmbcn.__file__), '.mim', 'configs')
        cfg = Config.fromfile(resolve_config({DEMO!r}))
        assert cfg.default_scope == 'mmdet' and cfg.model.backbone.depth == 18
        from mmbcn.utils.config_files import config_path
        from mmbcn.commands.demo import DEMOS  # what `make demo` / tools/demo.py load
        for demo in DEMOS:
            assert Config.fromfile(config_path(demo.config)).model
        print(config_dir())
        """)
    assert result.returncode == 0, result.stderr
    packaged = result.stdout.strip().splitlines()[-1]
    assert shipped_configs(packaged) == shipped_configs(osp.join(ROOT, 'configs'))


@pytest.mark.slow
def test_another_project_inherits_through_a_link(wheel_site):
    project = wheel_site / 'project'
    result = run_installed(wheel_site, f"""
        from mmbcn.utils.config_files import main
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


MIM_CONTENTS = ('configs', 'tools', 'model-index.yml')  # what mim looks for in mmbcn/.mim


def test_checkout_links_the_mim_folder_to_its_top_level_files():
    for name in MIM_CONTENTS:
        path = osp.join(ROOT, 'mmbcn', '.mim', name)
        assert osp.islink(path) and not osp.isabs(os.readlink(path)), path
        assert osp.realpath(path) == osp.join(ROOT, name)


@pytest.mark.slow
def test_wheel_carries_the_mim_tools_model_index_and_metafiles(wheel_site):
    wheel, = wheel_site.glob('mmbcn-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    metafiles = {f'mmbcn/.mim/configs/{osp.relpath(d, osp.join(ROOT, "configs"))}/metafile.yml'
                 for d, _, files in os.walk(osp.join(ROOT, 'configs')) if 'metafile.yml' in files}
    assert metafiles and metafiles <= names
    assert {'mmbcn/.mim/tools/train.py', 'mmbcn/.mim/tools/test.py',
            'mmbcn/.mim/model-index.yml'} <= names
    assert 'mmbcn/.mim/tools/setup_env.sh' not in names  # a checkout's script, not shipped
    result = run_installed(wheel_site, """
        import os.path as osp
        import mmbcn
        from modelindex.load_model_index import load
        mim = osp.join(osp.dirname(mmbcn.__file__), '.mim')
        assert not any(osp.islink(osp.join(mim, name)) for name in ('configs', 'tools'))
        index = load(osp.join(mim, 'model-index.yml'))
        assert index.check(silent=True) == [], index.check(silent=True)
        missing = [m.config for m in index.models if not osp.isfile(osp.join(mim, m.config))]
        assert not missing, missing  # mim reads Config relative to PKG/.mim
        print(len(index.models))
        """)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == len(shipped_configs(osp.join(ROOT, 'configs')))
