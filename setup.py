"""Setuptools entry beside pyproject.toml (which holds the metadata).

Its one job: a wheel carries the configs in ``mmbcn/.mim/configs``, as mmdet's and mmseg's do,
so ``tools/`` and the demo find them when mmbcn is installed (see ``mmbcn/config_files.py``).
An editable install reads the checkout's ``configs/`` instead.
"""

import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))


class BuildWithConfigs(build_py):
    """``build_py`` that also copies ``configs/`` into the built package's ``.mim/configs``."""

    def run(self):
        super().run()
        if not self.editable_mode:
            shutil.copytree(osp.join(ROOT, 'configs'),
                            osp.join(self.build_lib, 'mmbcn', '.mim', 'configs'),
                            dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


setup(cmdclass={'build_py': BuildWithConfigs})
