"""Where things are: the repository root and this folder of test helpers."""

import os.path as osp

HELPERS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HELPERS))
