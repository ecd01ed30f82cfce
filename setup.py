"""Setuptools entry beside pyproject.toml (which holds the metadata).

Its one job: ``mmbcn/.mim`` holds what OpenMMLab's tools look for in a package, as mmdet's and
mmseg's do: ``configs/`` (with a ``metafile.yml`` per folder), ``tools/`` (``mim train`` and
``mim test`` run ``.mim/tools/train.py`` and ``test.py``) and ``model-index.yml`` (``mim search``).
In a checkout, and so in an editable install, these are relative links to the top-level
folders (committed); a wheel gets real copies of them instead (see ``mmbcn/utils/config_files.py``).
"""

import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
# name in mmbcn/.mim -> what is left out of its copy
MIM_CONTENTS = {
    'configs': ('__pycache__', '*.pyc'),
    # setup_env.sh and constraints.txt build a checkout's environment, not an installed one.
    'tools': ('__pycache__', '*.pyc', 'setup_env.sh', 'constraints.txt'),
    'model-index.yml': (),
}


def _remove(path: str) -> None:
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


class BuildWithMim(build_py):
    """``build_py`` that fills the built package's ``.mim`` with copies, not links."""

    def run(self):
        super().run()
        if self.editable_mode:
            return  # the checkout's links serve an editable install
        mim = osp.join(self.build_lib, 'mmbcn', '.mim')
        if osp.islink(mim):
            os.remove(mim)
        for name, left_out in MIM_CONTENTS.items():
            source, target = osp.join(ROOT, name), osp.join(mim, name)
            _remove(target)  # never copy through a link into the checkout
            if osp.isdir(source):
                shutil.copytree(source, target, ignore=shutil.ignore_patterns(*left_out))
            else:
                os.makedirs(mim, exist_ok=True)
                shutil.copyfile(source, target)


setup(cmdclass={'build_py': BuildWithMim})
