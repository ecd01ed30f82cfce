"""Train an mmdet, mmseg or mmpretrain config: ``python tools/train.py CONFIG [options]``."""

from mmbcn.commands import train

if __name__ == '__main__':
    train()
