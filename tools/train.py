"""Train an mmdet or mmseg config with mmbcn: ``python tools/train.py CONFIG [options]``."""

from mmbcn.commands import train

if __name__ == '__main__':
    train()
