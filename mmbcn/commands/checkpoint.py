"""The tools' view of checkpoints: weights-only loading, set up by :mod:`mmbcn.checkpoints`."""

from ..checkpoints import checkpoint_problem
from ..patches import install as allow_training_checkpoints

__all__ = ['allow_training_checkpoints', 'checkpoint_problem']
