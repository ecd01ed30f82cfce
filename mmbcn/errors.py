"""The errors mmbcn raises that a user may want to catch, in one place (each is defined beside
the code that raises it)."""

from .checkpoints.authors import CheckpointLayoutError
from .checkpoints.weights_only import CheckpointRefusedError
from .datasets.class_folders import ClassFolderError
from .layers.bcn import GroupCountMismatchError
from .ops.recompute import CheckpointReplayError
from .patches.errors import (
                             EfficientConvBNEvalError,
                             PreciseBNError,
                             ReparameterizationError,
                             UnpatchedUpstreamError,
)
from .study.errors import StudyInputError

__all__ = ['CheckpointLayoutError', 'CheckpointRefusedError', 'CheckpointReplayError',
           'ClassFolderError',
           'EfficientConvBNEvalError', 'GroupCountMismatchError', 'PreciseBNError',
           'ReparameterizationError', 'StudyInputError', 'UnpatchedUpstreamError']
