"""The tools' shared core: command line, distributed start-up, checkpoint loading."""

from .checkpoint import allow_training_checkpoints
from .cli import test, train
from .launcher import init_distributed, shutdown_distributed

__all__ = ['allow_training_checkpoints', 'init_distributed', 'shutdown_distributed', 'test',
           'train']
