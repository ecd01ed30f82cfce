"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [options]``."""

from mmbcn.commands import test

if __name__ == '__main__':
    test()
