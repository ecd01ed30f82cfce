"""The tested stacks named in code (mmbcn.utils.feature_probes.TESTED_STACKS, read by
collect_env) are the ones the stack files install: tools/constraints.txt (main) and
tools/stacks/*.txt, each with its OpenMMLab family's distribution names (mmbcn.openmmlab_family)."""

import glob
import os.path as osp
import re

from mmbcn_testing.paths import ROOT

from mmbcn.openmmlab_family import FAMILIES
from mmbcn.utils.feature_probes import TESTED_STACKS

FILES = {'main': 'tools/constraints.txt', 'torch2.1 (oldest)': 'tools/stacks/torch2.1.txt',
         'torch2.15 (newest)': 'tools/stacks/torch2.15.txt', 'onedl': 'tools/stacks/onedl.txt'}
# TESTED_STACKS names packages by upstream's distribution names; their import names:
MODULES = {'mmengine': 'mmengine', 'mmcv': 'mmcv', 'mmdet': 'mmdet', 'mmsegmentation': 'mmseg',
           'mmpretrain': 'mmpretrain'}


def pins(path):
    text = open(osp.join(ROOT, path)).read()
    found = dict(re.findall(r'^([A-Za-z0-9_.-]+)==([^\s#]+)', text, re.M))
    header = dict(re.findall(r'^# (python|family|mmcv ops): *(\S+)', text, re.M))
    return {k.lower(): v for k, v in found.items()}, header


def test_every_tested_stack_is_what_its_file_installs():
    assert set(TESTED_STACKS) == set(FILES)
    stack_files = sorted(glob.glob(osp.join(ROOT, 'tools', 'stacks', '*.txt')))
    assert sorted(osp.join(ROOT, f) for f in FILES.values() if 'stacks' in f) == stack_files
    for name, stack in TESTED_STACKS.items():
        versions, header = pins(FILES[name])
        family = FAMILIES[stack['family']]
        assert header.get('family', 'upstream') == family.name, name
        for package, version in stack.items():
            if package == 'family':
                continue
            if package == 'python':
                assert header.get('python') in (None, version), (name, header, version)
                continue
            if package in MODULES:  # the family's distribution of that import name
                package = family.distributions[MODULES[package]][0]
            assert versions.get(package) == version, (name, package, versions.get(package))


def test_only_stacks_of_the_onedl_family_build_mmcv_with_ops_through_setup_stack():
    """tools/setup_stack.sh builds upstream mmcv without ops (a minute) and onedl-mmcv with
    them (its setup.py builds them whenever torch imports)."""
    for name, path in FILES.items():
        if 'stacks' in path:
            _, header = pins(path)
            ops = header.get('mmcv ops', 'no')
            assert ops == ('yes' if header.get('family') == 'onedl' else 'no'), name


def test_a_stack_that_leaves_out_the_torch_only_tests_has_the_main_stacks_torch():
    """tools/test_stacks.sh leaves the tests of what only torch decides (TORCH_ONLY) out on a
    stack with mmcv's ops, because the main stack's whole suite runs them on the same torch and
    Python."""
    script = open(osp.join(ROOT, 'tools', 'test_stacks.sh')).read()
    assert '"${SUBSET[@]:${#TORCH_ONLY[@]}}"' in script
    assert re.search(r'^SUBSET=\(\n    "\$\{TORCH_ONLY\[@\]\}"\n', script, re.M)
    main = TESTED_STACKS['main']
    for name, path in FILES.items():
        if 'stacks' in path and pins(path)[1].get('mmcv ops') == 'yes':
            stack = TESTED_STACKS[name]
            assert (stack['torch'], stack['python']) == (main['torch'], main['python']), name
