"""Convert the authors' ImageNet BCN+WS checkpoint for mmdet/mmseg ResNet backbones.

``tools/convert_checkpoint.py``, over :mod:`mmbcn.checkpoints`::

    python tools/convert_checkpoint.py SRC.pth DST.pth --arch resnet50
    python tools/convert_checkpoint.py SRC.pth --report --arch resnet50   # BN / GN+WS files

The result has the layout of the checkpoints the ImageNet configs write (mmpretrain's classifier:
keys ``backbone.*``) and loads with no missing or unexpected keys into mmdet's ResNet/ResNeXt (and
mmseg's, same names) built with norm_cfg=dict(type='BCN') and conv_cfg=dict(type='WSConv2d'),
through ``init_cfg=dict(type='Pretrained', checkpoint=DST.pth, prefix='backbone.')``.
"""

import argparse
import sys
from typing import List, Optional

from ..checkpoints import (
    ARCHS,
    CheckpointLayoutError,
    build_bcn_ws_backbone,
    convert_file,
    load_matching,
    read_checkpoint,
)


def report(source, arch):
    """What of a BN or GN+WS checkpoint loads into a BCN+WS backbone, and what starts fresh."""
    result = load_matching(build_bcn_ws_backbone(arch), read_checkpoint(source))
    for label in ('loaded', 'fresh', 'unused', 'mis_shaped'):
        keys = result[label]
        shown = ', '.join(keys[:8]) + (' ...' if len(keys) > 8 else '')
        print(f'{label}: {len(keys)}' + (f' ({shown})' if keys and label != 'loaded' else ''))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('source', help="the authors' checkpoint (.pth / .pth.tar)")
    parser.add_argument('destination', nargs='?', help='where to write the converted checkpoint')
    parser.add_argument('--report', action='store_true',
                        help='only report what of SRC (e.g. a BN or GN+WS checkpoint) loads')
    parser.add_argument('--arch', required=True, choices=sorted(ARCHS))
    args = parser.parse_args(argv)
    if args.report:
        return report(args.source, args.arch)
    if args.destination is None:
        parser.error('give DESTINATION, or --report')
    try:
        summary = convert_file(args.source, args.destination, args.arch)
    except CheckpointLayoutError as error:
        sys.exit(f'error: {error}')
    print(f'wrote {summary["tensors"]} tensors to {args.destination} '
          f'(num_groups={summary["num_groups"]}; dropped: {describe_dropped(summary["dropped"])})')


def describe_dropped(keys):
    """The dropped keys, with the README layout's per-layer update-rate buffers counted."""
    speeds = [k for k in keys if k.endswith('estbn_moving_speed')]
    named = [k for k in keys if k not in speeds]
    if speeds:
        named.append(f'{len(speeds)} x estbn_moving_speed (the update rate r: set it with '
                     f'momentum or BCNUpdateRateHook)')
    return ', '.join(named) or '-'

