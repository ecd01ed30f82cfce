"""Where things are: the repository root, the tests, and this package of test helpers."""

import os.path as osp

HELPERS = osp.dirname(osp.abspath(__file__))
TESTS = osp.dirname(HELPERS)  # on PYTHONPATH, ``import mmbcn_testing`` works
ROOT = osp.dirname(TESTS)
