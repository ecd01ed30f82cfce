"""Either OpenMMLab family: what mmbcn's metadata requires (nothing of either), what ``import
mmbcn`` checks, ``pkg::`` base configs through whichever distribution provides the module, and
the onedl MMEngine's checkpoint fallback closed (mmbcn.openmmlab_family, mmbcn.patches.families).
"""

import os
import os.path as osp
import re
import site
import subprocess
import sys
import textwrap

import pytest
import torch
from mmbcn_testing.paths import ROOT
from mmengine.config import Config
from packaging.requirements import Requirement

from mmbcn import openmmlab_family, patches
from mmbcn.checkpoints import CheckpointRefusedError
from mmbcn.collect_env import collect_env
from mmbcn.openmmlab_family import (
    CXX20_NOTE,
    FAMILIES,
    family_of,
    installed_family,
    mmcv_ops_problem,
    require_mmcv_ops,
)
from mmbcn.patches import config_bases
from mmbcn.utils.feature_probes import extensions_need_cxx20

try:
    import tomllib
except ImportError:  # Python 3.10 (the oldest stack): pip's own copy of the same parser
    from pip._vendor import tomli as tomllib

# Every distribution of either family that installs an OpenMMLab import name.
OPENMMLAB = {d for family in FAMILIES.values() for ds in family.distributions.values()
             for d in ds}
PYPROJECT = tomllib.load(open(osp.join(ROOT, 'pyproject.toml'), 'rb'))['project']


def requirements(names):
    """The requirements of mmbcn's extras ``names``, with mmbcn's own extras expanded."""
    found = []
    for name in names:
        for line in PYPROJECT['optional-dependencies'][name]:
            requirement = Requirement(line)
            if requirement.name == 'mmbcn':
                found += requirements(requirement.extras)
            else:
                found.append(requirement)
    return found


def run(code, env=None):
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300, env=env)
    return result


def test_no_requirement_but_a_family_extra_names_an_openmmlab_package():
    """pip install mmbcn (or with det, seg, pretrain, tests, ...) replaces no OpenMMLab package
    of either family: only the extras named after a family name theirs."""
    base = {Requirement(line).name for line in PYPROJECT['dependencies']}
    assert base == {'torch', 'numpy', 'packaging'}
    for extra in PYPROJECT['optional-dependencies']:
        names = {r.name for r in requirements([extra])}
        if extra in FAMILIES:
            assert names == set(
                FAMILIES[extra].distributions[m][0] for m in FAMILIES[extra].distributions)
        else:
            assert not names & OPENMMLAB, (extra, names & OPENMMLAB)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_family_extras_and_mminstall_files_are_the_tested_ranges(family):
    tested = FAMILIES[family].tested
    extra = {r.name: str(r.specifier) for r in requirements([family])}
    by_module = {module: extra[FAMILIES[family].distributions[module][0]] for module in tested}
    assert {m: set(s.split(',')) for m, s in by_module.items()} == \
        {m: set(s.split(',')) for m, s in tested.items()}
    name = 'mminstall.txt' if family == 'upstream' else f'mminstall-{family}.txt'
    lines = [line for line in open(osp.join(ROOT, 'requirements', name)).read().splitlines()
             if line and not line.startswith('#')]
    assert {Requirement(line).name: str(Requirement(line).specifier) for line in lines} == \
        {d: s for d, s in extra.items() if d in {FAMILIES[family].distributions[m][0]
                                                 for m in ('mmengine', 'mmcv')}}


def test_this_environment_is_one_family_named_by_collect_env():
    family = installed_family()
    assert family in FAMILIES
    for module in ('mmengine', 'mmcv'):
        assert family_of(module) == family
    env = collect_env()
    assert env['OpenMMLab family'] == family
    assert env['tested stack'].startswith('yes'), env['tested stack']
    if family == 'onedl':
        assert env['mmsegmentation'].endswith('(onedl-mmsegmentation)')


def test_without_mmcv_import_mmbcn_names_the_install_command_of_the_family():
    result = run("""
        import sys
        sys.modules['mmcv'] = None  # mmcv cannot be imported
        try:
            import mmbcn
        except ImportError as error:
            print(type(error).__name__, error)
    """)
    family = FAMILIES[installed_family()]
    assert result.stdout.startswith('OpenMMLabMissingError'), result.stdout + result.stderr
    assert 'Cannot import: mmcv' in result.stdout
    assert family.install in result.stdout and f'mmbcn[{family.extra}]' in result.stdout


def test_an_untested_version_warns_once_naming_the_tested_range():
    result = run("""
        import warnings
        import mmengine
        mmengine.__version__ = '0.9.0'
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import mmbcn
        print([str(w.message) for w in caught if 'tested versions' in str(w.message)])
    """)
    tested = FAMILIES[installed_family()].tested['mmengine']
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'mmengine 0.9.0 ({installed_family()} family; mmbcn is tested with {tested})' \
        in result.stdout
    assert result.stdout.count('tested versions') == 1


def test_mmcv_ops_are_asked_for_by_the_feature_that_needs_them():
    if mmcv_ops_problem() is None:
        require_mmcv_ops('Mask R-CNN')  # nothing to say
    else:
        with pytest.raises(ImportError, match='Mask R-CNN needs mmcv with its compiled ops'):
            require_mmcv_ops('Mask R-CNN')
    result = run("""
        import sys
        sys.modules['mmcv.ops'] = None  # as mmcv built without its ops
        import mmbcn
        from mmbcn.openmmlab_family import require_mmcv_ops
        try:
            require_mmcv_ops('DeepLabV3')
        except ImportError as error:
            print(error)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'DeepLabV3 needs mmcv with its compiled ops' in result.stdout
    # Where the released mmcv cannot build its ops (torch 2.14+), no build command is offered.
    advice = CXX20_NOTE if extensions_need_cxx20() else FAMILIES[installed_family()].install
    assert advice in result.stdout


def test_on_a_torch_that_needs_cxx20_the_missing_ops_are_explained_not_a_build(monkeypatch):
    from mmbcn import collect_env as collect_env_module
    from mmbcn.utils import feature_probes

    monkeypatch.setattr(openmmlab_family, 'mmcv_ops_problem',
                        lambda: "ModuleNotFoundError: No module named 'mmcv._ext'")
    monkeypatch.setattr(feature_probes, 'extensions_need_cxx20', lambda header=None: True)
    with pytest.raises(ImportError) as raised:
        require_mmcv_ops('Mask R-CNN')
    message = str(raised.value)
    assert "Mask R-CNN needs mmcv with its compiled ops, which do not load here " \
           "(ModuleNotFoundError: No module named 'mmcv._ext'). " + CXX20_NOTE == message
    assert all(family.install not in message for family in FAMILIES.values())
    assert collect_env_module._mmcv_ops().endswith('require C++20, which mmcv\'s build does '
                                                   'not ask for')


def fake_toolbox(root, module, distribution):
    """A toolbox installed the way pip installs one (a package and its dist-info with
    top_level.txt) under a distribution name that is not MMEngine's table's: ``module`` ships
    ``.mim/configs/base/model.py`` and a model index that lists no metafile."""
    configs = root / module / '.mim' / 'configs' / 'base'
    configs.mkdir(parents=True)
    (root / module / '.mim' / 'model-index.yml').write_text('Import: []\n')
    (root / module / '__init__.py').write_text("__version__ = '1.0.0'\n")
    (configs / 'model.py').write_text("model = dict(type='FromTheToolbox', depth=18)\n")
    if distribution is not None:
        info = root / f'{distribution.replace("-", "_")}-1.0.0.dist-info'
        info.mkdir()
        (info / 'METADATA').write_text(
            f'Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0.0\n')
        (info / 'top_level.txt').write_text(f'{module}\n')
        (info / 'RECORD').write_text('')


# mmaction: a module that no tested stack installs, which MMEngine's table maps to another
# distribution name (mmaction2), as it maps mmseg to mmsegmentation.
@pytest.mark.parametrize('distribution', ['onedl-mmaction2', None],
                         ids=['another-distribution', 'no-distribution'])
def test_a_pkg_base_config_resolves_through_the_distribution_that_provides_it(
        tmp_path, distribution):
    site = tmp_path / 'site'
    fake_toolbox(site, 'mmaction', distribution)
    config = tmp_path / 'config.py'
    config.write_text("_base_ = 'mmaction::base/model.py'\nmodel = dict(depth=50)\n")
    code = f"""
        import mmbcn
        from mmengine.config import Config
        cfg = Config.fromfile({str(config)!r})
        print(cfg.model.type, cfg.model.depth)
    """
    env = dict(os.environ, PYTHONPATH=str(site))
    result = run(code, env)
    assert result.stdout.split() == ['FromTheToolbox', '50'], result.stderr[-2000:]
    # MMEngine's own function names the distribution mmaction2, which is not installed.
    unpatched = run("""
        import mmbcn
        from mmengine.config import utils
        from mmengine.utils import is_installed
        package, _ = utils._get_package_and_cfg_path.__wrapped__('mmaction::base/model.py')
        print(package, is_installed(package))
    """, env)
    assert unpatched.stdout.split() == ['mmaction2', 'False'], unpatched.stderr[-2000:]


def test_a_config_read_before_mmbcn_is_imported_resolves_its_bases(tmp_path):
    """mmseg's own tools/train.py and test.py parse a config, its _base_ included, before its
    custom_imports import mmbcn: the startup file tools/setup_env.sh and tools/setup_stack.sh
    write patches MMEngine from the interpreter's start, without importing mmbcn."""
    assert any(osp.isfile(osp.join(folder, config_bases.STARTUP_FILE))
               for folder in site.getsitepackages())
    site_dir = tmp_path / 'site'
    fake_toolbox(site_dir, 'mmaction', 'onedl-mmaction2')
    config = tmp_path / 'config.py'
    config.write_text("_base_ = 'mmaction::base/model.py'\nmodel = dict(depth=50)\n")
    result = run(f"""
        import sys
        from mmengine.config import Config
        cfg = Config.fromfile({str(config)!r})
        print(cfg.model.type, cfg.model.depth, 'mmbcn' in sys.modules, 'torch' in sys.modules)
    """, dict(os.environ, PYTHONPATH=str(site_dir)))
    assert result.stdout.split() == ['FromTheToolbox', '50', 'False', 'False'], \
        result.stdout + result.stderr[-2000:]


def test_the_config_patch_is_applied_and_the_toolboxes_bases_load():
    states = {s.patch.target: s for s in patches.patch_states()}
    assert states['mmengine.config.utils:_get_package_and_cfg_path'].status == 'applied'
    for base in ('mmdet::_base_/models/mask-rcnn_r50_fpn.py',
                 'mmseg::_base_/models/deeplabv3_r50-d8.py'):
        module = base.split('::')[0]
        if family_of(module) is None:
            continue
        cfg = Config.fromstring(f"_base_ = '{base}'\n", '.py')
        assert cfg.model.backbone.type.startswith('ResNet'), base


def test_onedl_mmengine_checkpoint_fallback_refuses_a_hostile_pickle(tmp_path):
    """onedl-mmengine's _safe_torch_load loads again with weights_only=False when weights-only
    loading refuses a file; with mmbcn it refuses, and the file's code does not run."""
    state = {s.patch.target: s for s in patches.patch_states()}[
        'mmengine.runner.checkpoint:_safe_torch_load']
    if installed_family() != 'onedl':
        assert state.status == 'skipped' and 'upstream' in state.reason
        return
    assert state.status == 'applied', state
    from mmengine.runner import checkpoint

    marker = tmp_path / 'ran'

    class Hostile:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    path = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {}, 'x': Hostile()}, path)
    with pytest.raises(CheckpointRefusedError, match=r'holds (posix|os)\.system'):
        checkpoint._safe_torch_load(str(path), map_location='cpu')
    with pytest.raises(CheckpointRefusedError):
        checkpoint._safe_torch_load(open(path, 'rb'))  # a buffer, as the pavi/ceph loaders pass
    assert not marker.exists()
    torch.save({'state_dict': {'w': torch.ones(2)}}, tmp_path / 'plain.pth')
    assert torch.equal(checkpoint._safe_torch_load(tmp_path / 'plain.pth')['state_dict']['w'],
                       torch.ones(2))


def test_setup_stack_dry_run_check_names_torch_and_every_openmmlab_package():
    """The pattern tools/setup_stack.sh greps pip's dry run with (it must fail the stack's set-up
    when pip plans to install any of these over the stack's)."""
    text = open(osp.join(ROOT, 'tools', 'setup_stack.sh')).read()
    kept = re.search(r"^KEPT='([^']+)'", text, re.M).group(1)
    planned = re.compile(rf'^({kept})-[0-9]', re.I)
    for name in ['torch-2.15.0', 'mmcv-2.1.0', 'mmcv_lite-2.1.0', 'mmengine-0.10.7',
                 'mmdet-3.3.0', 'mmsegmentation-1.2.2', 'mmpretrain-1.2.0', 'onedl-mmcv-2.3.6',
                 'onedl_mmengine-0.10.12', 'onedl-mmsegmentation-1.4.2']:
        assert planned.match(name), name
    for name in ['mmbcn-0.1.0', 'openmim-0.3.8', 'torchvision-0.28.0', 'pycocotools-2.0.8',
                 'mmdet3d-1.4.0']:
        assert not planned.match(name), name
