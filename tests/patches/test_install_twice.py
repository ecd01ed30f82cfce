"""What ``import mmbcn`` installs, installed again, changes nothing.

A second ``install()`` (a reload, or a tool calling it before loading a checkpoint) must not
wrap an upstream function twice, add a second import hook, or allow-list anything twice: for
every declared patch (:data:`mmbcn.patches.PATCHES`), its state and everything it installed (the
function at its target and at each alias, the guards of a skipped one, what a registration
registered) are the same objects afterwards, and behave as before.
"""

import copyreg
import json
import subprocess
import sys
import textwrap
from inspect import getsource

import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d, patches, torchvision_compat
from mmbcn.patches.declared import AFTER_IMPORT, PATCHES
from mmbcn.patches.mechanism import FunctionPatch

NOT_IMPORTED = '<module not imported>'
MISSING = '<missing>'


def bound(name: str):
    """What ``module:attribute.path`` is bound to now, as stored (a classmethod object, not
    the function it holds). A module not imported yet is not imported here: that would apply
    the patches waiting for it."""
    module, _, path = name.partition(':')
    if module not in sys.modules:
        return NOT_IMPORTED
    owner = sys.modules[module]
    *parents, attribute = path.split('.')
    try:
        for parent in parents:
            owner = getattr(owner, parent)
        return vars(owner)[attribute] if attribute in vars(owner) else getattr(owner, attribute)
    except (AttributeError, TypeError):
        return MISSING


def times_wrapped(function, marker: str, target: str) -> int:
    """How many functions in ``function``'s ``__wrapped__`` chain carry ``marker == target``
    (mmbcn's replacements carry ``__mmbcn_patch__``, its guards ``__mmbcn_guard__``)."""
    function = getattr(function, '__func__', function)  # a classmethod's function
    count = 0
    for _ in range(100):  # a chain of upstream decorators is short; no cycles
        if function is None:
            break
        count += getattr(function, marker, None) == target
        function = getattr(function, '__wrapped__', None)
    return count


# What each registration registers, read where upstream keeps it.
REGISTERED = {
    'torchvision (its first import)': lambda: (
        [finder for finder in sys.meta_path
         if type(finder).__name__ == torchvision_compat._TorchvisionFinder.__name__],
        list(torchvision_compat._declared)),
    'copyreg:dispatch_table[HistoryBuffer]': lambda: copyreg.dispatch_table.get(HistoryBuffer),
    'torch.serialization:add_safe_globals':
        lambda: list(getattr(torch.serialization, 'get_safe_globals', list)()),
    'mmengine.runner.checkpoint:CheckpointLoader (local files)':
        lambda: dict(CheckpointLoader._schemes),
}


def installed() -> dict:
    """{target: ((status, reason), what the patch installed)} for every declared patch, and
    the import hooks (the finders themselves, in order)."""
    states = {state.patch.target: (state.status, state.reason)
              for state in patches.patch_states()}
    result = {}
    for patch in PATCHES:
        if isinstance(patch, FunctionPatch):
            what = {name: bound(name) for name in (patch.target, *patch.also_at, *patch.guards)}
        else:
            what = REGISTERED[patch.target]()  # a new kind of registration needs its reader
        result[patch.target] = (states.get(patch.target), what)
    result['import hooks'] = list(sys.meta_path)
    return result


def test_second_install_leaves_every_patch_and_what_it_installed_as_it_was():
    before = installed()
    assert [patch for patch in PATCHES if before[patch.target][0] is None] == []  # all stated
    patches.install()
    patches.install()
    after = installed()
    assert after.keys() == before.keys()
    for target in before:  # one assertion per patch names the one that changed
        assert after[target] == before[target], target


def test_each_upstream_function_is_wrapped_once():
    """An applied patch's target holds exactly one mmbcn replacement (its aliases the same
    function); a skipped one's guards refuse once; after a second install too."""
    patches.install()
    states = {state.patch.target: state.status for state in patches.patch_states()}
    checked = 0
    for patch in PATCHES:
        if not isinstance(patch, FunctionPatch) or bound(patch.target) == NOT_IMPORTED:
            continue
        if states[patch.target] == 'applied':
            function = bound(patch.target)
            assert times_wrapped(function, '__mmbcn_patch__', patch.target) == 1, patch
            for alias in patch.also_at:
                if bound(alias) not in (NOT_IMPORTED, MISSING):
                    assert getattr(bound(alias), '__mmbcn_patch__', None) == patch.target, alias
            checked += 1
        else:
            for guard in patch.guards:
                if bound(guard) not in (NOT_IMPORTED, MISSING):
                    assert times_wrapped(bound(guard), '__mmbcn_guard__', patch.target) == 1
    assert checked >= 10  # the torch, mmcv and mmengine patches, applied on the tested stack


def run(code):
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_patches_waiting_for_an_import_are_applied_once_after_a_second_install():
    """In a fresh interpreter, mmbcn's import leaves the patches of mmpretrain's modules
    waiting; two more installs before those modules are imported must not make them apply
    twice (two import hooks would wrap each function twice)."""
    result = run(textwrap.dedent(getsource(times_wrapped)) + textwrap.dedent("""
        import importlib, json, sys
        import mmbcn
        from mmbcn import patches
        from mmbcn.patches.declared import AFTER_IMPORT, PATCHES
        waiting = [s.patch.target for s in patches.patch_states() if s.status == 'waiting']
        patches.install()
        patches.install()
        for module in AFTER_IMPORT:
            importlib.import_module(module)
        states = {s.patch.target: s.status for s in patches.patch_states()}
        wrapped = {}
        for patch in PATCHES:
            if patch.target in waiting:
                module, _, path = patch.target.partition(':')
                owner, function = sys.modules[module], None
                for part in path.split('.'):
                    owner = function = getattr(owner, part)
                wrapped[patch.target] = times_wrapped(function, '__mmbcn_patch__', patch.target)
        hooks = [type(f).__name__ for f in sys.meta_path if type(f).__name__ == '_AfterImport']
        print(json.dumps(dict(waiting=waiting, states=states, wrapped=wrapped, hooks=hooks)))
    """))
    on_later_imports = [p.target for p in PATCHES if p.module_name in AFTER_IMPORT]
    assert result['waiting'] == on_later_imports
    assert {t: result['states'][t] for t in on_later_imports} == dict.fromkeys(
        on_later_imports, 'applied')
    assert result['wrapped'] == dict.fromkeys(on_later_imports, 1)
    assert result['hooks'] == []  # every module it waited for came: it removed itself


def test_patches_still_work_after_a_second_install():
    from torch.nn.utils import fuse_conv_bn_eval

    patches.install()
    model = nn.Sequential(WSConv2d(3, 8, 3), nn.BatchNorm2d(8)).double().eval()
    with torch.no_grad():
        model[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    fused = fuse_conv_bn_eval(model[0], model[1])
    assert type(fused) is nn.Conv2d
    torch.testing.assert_close(fused(x), model(x), rtol=1e-9, atol=1e-10)
    bcn = BatchChannelNorm2d(8, 2, sync_stats=False)
    assert nn.SyncBatchNorm.convert_sync_batchnorm(bcn) is bcn and bcn.sync_stats
