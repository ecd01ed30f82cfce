"""Convert the authors' ImageNet BCN+WS checkpoint for mmdet/mmseg ResNet backbones.

    python tools/convert_checkpoint.py SRC.pth DST.pth --arch resnet50

The result loads with no missing or unexpected keys into mmdet's ResNet/ResNeXt (and mmseg's
ResNet, same names) built with norm_cfg=dict(type='BCN') and conv_cfg=dict(type='WSConv2d').
"""

import argparse
import sys

from mmbcn.convert import ARCHS, CheckpointLayoutError, convert_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('source', help="the authors' checkpoint (.pth / .pth.tar)")
    parser.add_argument('destination', help='where to write the converted checkpoint')
    parser.add_argument('--arch', required=True, choices=sorted(ARCHS))
    args = parser.parse_args(argv)
    try:
        summary = convert_file(args.source, args.destination, args.arch)
    except CheckpointLayoutError as error:
        sys.exit(f'error: {error}')
    print(f'wrote {summary["tensors"]} tensors to {args.destination} '
          f'(num_groups={summary["num_groups"]}; dropped: {", ".join(summary["dropped"]) or "-"})')


if __name__ == '__main__':
    main()
