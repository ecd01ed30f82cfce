"""Convert the authors' ImageNet BCN+WS checkpoint for mmdet/mmseg ResNet backbones:
``python tools/convert_checkpoint.py SRC.pth DST.pth --arch resnet50`` (``--report`` for BN or
GN+WS files; see mmbcn/commands/convert_checkpoint.py)."""

from mmbcn.commands.convert_checkpoint import main

if __name__ == '__main__':
    main()
