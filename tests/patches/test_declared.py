"""mmbcn's declared patches: applied all-or-nothing, once, and refusing when they cannot apply.

The mechanism is tested on a module made here (so each case is isolated), and on the real
upstream targets in fresh interpreters: a target whose signature differs from the one checked
is skipped, and the entry point users call then refuses a BCN model, naming the patch.
"""

import json
import re
import subprocess
import sys
import textwrap
import types

import pytest
from torch import nn

from mmbcn import BatchChannelNorm2d, patches
from mmbcn.openmmlab_family import installed_family
from mmbcn.patches.declared import AFTER_IMPORT, MMBCN_LAYERS, PATCHES
from mmbcn.patches.mechanism import APPLIED, SKIPPED, FunctionPatch, RegistrationPatch
from mmbcn.utils import feature_probes


@pytest.fixture
def upstream(monkeypatch):
    """A stand-in upstream module: ``fuse(model, flag)``, an alias of it, an entry point that
    calls it by name, and a class with a classmethod."""
    module = types.ModuleType('mmbcn_fake_upstream')

    def fuse(model, flag=False):
        return 'upstream'

    class Converter:
        @classmethod
        def convert(cls, module, group=None):
            return 'upstream'

    module.fuse, module.alias, module.Converter = fuse, fuse, Converter
    module.entry = lambda model: module.fuse(model)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def mmbcn_fuse(original):
    def fuse(model, flag=False):
        return 'mmbcn' if isinstance(model, BatchChannelNorm2d) else original(model, flag)
    return fuse


def fuse_patch(parameters=('model', 'flag')):
    return FunctionPatch('fake', 'mmbcn_fake_upstream:fuse', 'fake 1.0', 'fuses BCN',
                         parameters=parameters, replace=mmbcn_fuse,
                         also_at=('mmbcn_fake_upstream:alias',),
                         refuses=MMBCN_LAYERS, guards=('mmbcn_fake_upstream:entry',))


def test_a_function_patch_replaces_the_target_and_its_aliases(upstream):
    original = upstream.fuse
    state = fuse_patch().apply()
    assert state.status == APPLIED and state.reason == ''
    assert upstream.fuse is upstream.alias and upstream.fuse is not original
    assert upstream.entry(BatchChannelNorm2d(8, 2)) == 'mmbcn'
    assert upstream.entry(nn.BatchNorm2d(8)) == 'upstream'  # other cases: upstream's code


def test_applying_twice_changes_nothing(upstream):
    fuse_patch().apply()
    patched = upstream.fuse
    assert fuse_patch().apply().status == APPLIED
    assert upstream.fuse is patched and upstream.alias is patched


def test_a_classmethod_stays_a_classmethod(upstream):
    patch = FunctionPatch('fake', 'mmbcn_fake_upstream:Converter.convert', 'fake 1.0', 'keeps',
                          parameters=('cls', 'module', 'group'),
                          replace=lambda original: lambda cls, module, group=None: 'mmbcn')
    assert patch.apply().status == APPLIED
    assert isinstance(upstream.Converter.__dict__['convert'], classmethod)
    assert upstream.Converter.convert(nn.Identity()) == 'mmbcn'


def test_a_changed_signature_skips_the_patch_and_the_entry_point_refuses_bcn(upstream):
    original = upstream.fuse
    state = fuse_patch(parameters=('model', 'flag', 'other')).apply()
    assert state.status == SKIPPED and "takes ('model', 'flag')" in state.reason
    assert upstream.fuse is original and upstream.alias is original  # nothing half-applied
    with pytest.raises(patches.UnpatchedUpstreamError,
                       match=r'mmbcn_fake_upstream:entry .*patch of mmbcn_fake_upstream:fuse'):
        upstream.entry(nn.Sequential(nn.Conv2d(3, 8, 1), BatchChannelNorm2d(8, 2)))
    assert upstream.entry(nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8))) == 'upstream'


def test_a_missing_target_is_skipped_not_an_import_error(upstream):
    del upstream.fuse
    state = fuse_patch().apply()
    assert state.status == SKIPPED and 'mmbcn_fake_upstream:fuse is missing' in state.reason


def test_a_registration_reports_why_it_was_not_made():
    made = []
    patch = RegistrationPatch('fake', 'fake:registry', 'fake 1.0', 'registers',
                              available=lambda: 'fake has no registry', register=made.append)
    assert patch.apply() == (patch, SKIPPED, 'fake has no registry') and made == []


def test_every_declared_patch_says_what_where_and_against_which_versions():
    targets = [patch.target for patch in PATCHES]
    assert len(set(targets)) == len(targets)
    for patch in PATCHES:
        assert patch.package and patch.checked and patch.does
        assert re.split(r'[.: ]', patch.target)[0] in (patch.package, 'copyreg')


def run(code):
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_patch_waits_only_for_its_module_and_then_applies_on_a_supported_stack():
    """In a fresh interpreter: after ``import mmbcn``, a patch is 'waiting' only when its
    module is one mmbcn leaves to its user to import (``AFTER_IMPORT``) and is not imported
    yet; once every such module whose package is installed is imported, no patch of an
    installed package waits, and each is applied, or skipped where the stack lacks its
    upstream API, with the reason."""
    result = json.loads(run("""
        import importlib, importlib.util, json, sys
        import mmbcn
        from mmbcn.patches import patch_states
        from mmbcn.patches.declared import AFTER_IMPORT
        def states():
            return {s.patch.target: [s.status, s.reason] for s in patch_states()}
        at_import = states()
        imported_at_import = [m for m in AFTER_IMPORT if m in sys.modules]
        # the top-level package only: finding a submodule would import its parents
        installed = {m: importlib.util.find_spec(m.split('.')[0]) is not None
                     for m in AFTER_IMPORT}
        for module in AFTER_IMPORT:
            if installed[module]:
                importlib.import_module(module)
        print(json.dumps(dict(at_import=at_import, imported_at_import=imported_at_import,
                              installed=installed, after=states())))
    """).splitlines()[-1])
    targets = [patch.target for patch in PATCHES]
    assert list(result['at_import']) == targets and list(result['after']) == targets
    for patch in PATCHES:
        status, reason = result['at_import'][patch.target]
        waits = (patch.module_name in AFTER_IMPORT
                 and patch.module_name not in result['imported_at_import'])
        assert (status == 'waiting') == waits, (patch, status, reason)
        if waits:
            assert reason == f'applied when {patch.module_name} is imported', patch
    # mmbcn imports none of AFTER_IMPORT itself (declared.py says so): the wait is exercised
    assert any(status == 'waiting' for status, _ in result['at_import'].values())

    expected = {'torch.serialization:add_safe_globals':
                'applied' if feature_probes.safe_globals_take_names() else 'skipped',
                # onedl-mmengine's fallback to full unpickling, which upstream MMEngine lacks
                'mmengine.runner.checkpoint:_safe_torch_load':
                'applied' if installed_family() == 'onedl' else 'skipped'}
    for patch in PATCHES:
        status, reason = result['after'][patch.target]
        if patch.module_name in AFTER_IMPORT and not result['installed'][patch.module_name]:
            assert status == 'waiting', patch  # its package is not installed: never imported
            continue
        assert status == expected.get(patch.target, 'applied'), (patch, status, reason)
        assert bool(reason) == (status == 'skipped'), (patch, reason)  # a skip says why


def test_mmcv_fuse_conv_bn_refuses_bcn_when_its_patch_cannot_apply():
    """A real upstream target with another signature (as a future mmcv might have): mmcv's
    fuse_conv_bn, which would drop BCN's channel stage, refuses instead of fusing wrongly."""
    output = run("""
        import importlib
        module = importlib.import_module('mmcv.cnn.utils.fuse_conv_bn')
        original = module._fuse_conv_bn
        def _fuse_conv_bn(conv, bn, inplace=False):  # a changed signature
            return original(conv, bn)
        module._fuse_conv_bn = _fuse_conv_bn
        import torch
        from torch import nn
        import mmbcn
        from mmcv.cnn import fuse_conv_bn
        from mmbcn.collect_env import collect_env
        print(collect_env()['patch mmcv.cnn.utils.fuse_conv_bn:_fuse_conv_bn'])
        bcn = nn.Sequential(nn.Conv2d(3, 8, 3), mmbcn.BatchChannelNorm2d(8, 2)).eval()
        try:
            fuse_conv_bn(bcn)
        except mmbcn.patches.UnpatchedUpstreamError as error:
            print('refused:', error)
        bn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).eval()
        x = torch.randn(1, 3, 8, 8)
        expected = bn(x)
        print('bn fused:', torch.allclose(fuse_conv_bn(bn)(x), expected, atol=1e-5))
    """)
    assert 'skipped' in output and "not the ('conv', 'bn')" in output
    assert 'refused: mmcv.cnn:fuse_conv_bn would treat BCN' in output
    assert 'patch of mmcv.cnn.utils.fuse_conv_bn:_fuse_conv_bn' in output
    assert 'bn fused: True' in output


def test_a_missing_upstream_function_is_skipped_at_import():
    output = run("""
        import importlib
        module = importlib.import_module('mmengine.model.efficient_conv_bn_eval')
        del module.turn_on_efficient_conv_bn_eval_for_single_model  # as a future MMEngine might
        import mmbcn
        for state in mmbcn.patches.patch_states():
            if 'efficient_conv_bn_eval:' in state.patch.target:
                print(state.status, state.reason)
    """)
    assert output.startswith('skipped') and 'is missing' in output


def test_collect_env_names_the_stack_every_patch_and_the_backend():
    output = run('import runpy; runpy.run_module("mmbcn.collect_env", run_name="__main__")')
    assert 'tested stack: yes' in output
    assert 'BCN backend: PyTorch ops' in output
    for patch in PATCHES:
        assert f'patch {patch.target}: ' in output
