"""Checkpoint conversion: the authors' ImageNet BCN+WS weights into mmdet/mmseg backbones."""

from .authors import CheckpointLayoutError, check_fits, convert_authors_bcn_ws, read_checkpoint
from .backbones import (
                        ARCHS,
                        BACKBONE_PREFIX,
                        build_bcn_ws_backbone,
                        convert_file,
                        load_matching,
                        read_backbone,
)

__all__ = [
    'ARCHS', 'CheckpointLayoutError', 'build_bcn_ws_backbone', 'check_fits',
    'convert_authors_bcn_ws', 'convert_file', 'load_matching', 'read_backbone',
    'read_checkpoint', 'BACKBONE_PREFIX'
]
