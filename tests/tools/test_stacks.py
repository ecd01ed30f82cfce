"""The tested stacks named in code (mmbcn.compat.TESTED_STACKS, read by collect_env) are the
ones the stack files install: tools/constraints.txt (main) and tools/stacks/*.txt."""

import os.path as osp
import re

from mmbcn_testing.paths import ROOT

from mmbcn.compat import TESTED_STACKS

FILES = {'main': 'tools/constraints.txt', 'torch2.1 (oldest)': 'tools/stacks/torch2.1.txt',
         'torch2.15 (newest)': 'tools/stacks/torch2.15.txt'}


def pins(path):
    text = open(osp.join(ROOT, path)).read()
    found = dict(re.findall(r'^([A-Za-z0-9_.-]+)==([^\s#]+)', text, re.M))
    python = re.search(r'^# python: *(\S+)', text, re.M)
    return {k.lower(): v for k, v in found.items()}, python.group(1) if python else None


def test_every_tested_stack_is_what_its_file_installs():
    assert set(TESTED_STACKS) == set(FILES)
    for name, stack in TESTED_STACKS.items():
        versions, python = pins(FILES[name])
        for package, version in stack.items():
            if package == 'python':
                assert python in (None, version), (name, python, version)
            else:
                assert versions.get(package) == version, (name, package, versions.get(package))
