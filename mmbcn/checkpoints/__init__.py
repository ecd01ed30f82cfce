"""Checkpoints: loading them safely, and the authors' weights made loadable.

* :mod:`.weights_only`: every checkpoint mmbcn, MMEngine and the toolboxes load goes through
  ``torch.load(weights_only=True)`` with an allow-list; ``python -m mmbcn.checkpoints convert IN
  OUT`` rewrites a checkpoint that holds more (:func:`convert`);
* :mod:`.authors`: the authors' released ImageNet BCN+WS weights renamed to mmdet/mmseg ResNet
  keys (``python tools/convert_checkpoint.py``);
* :mod:`.backbones`: the backbones those weights are for, and file-level conversion.
"""

from .authors import CheckpointLayoutError, check_fits, convert_authors_bcn_ws, read_checkpoint
from .backbones import (
                        ARCHS,
                        BACKBONE_PREFIX,
                        build_bcn_ws_backbone,
                        convert_file,
                        load_matching,
                        read_backbone,
)
from .weights_only import (
                           CONVERT_COMMAND,
                           CheckpointRefusedError,
                           allowed_globals,
                           checkpoint_problem,
                           convert,
                           load_weights_only,
)

__all__ = [
    'ARCHS', 'BACKBONE_PREFIX', 'CONVERT_COMMAND', 'CheckpointLayoutError',
    'CheckpointRefusedError', 'allowed_globals', 'build_bcn_ws_backbone', 'check_fits',
    'checkpoint_problem', 'convert', 'convert_authors_bcn_ws', 'convert_file', 'load_matching',
    'load_weights_only', 'read_backbone', 'read_checkpoint'
]
