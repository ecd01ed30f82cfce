"""The commands behind ``tools/``: what each script runs, and what they share.

* ``cli``: ``tools/train.py`` and ``tools/test.py``, one command line for mmdet, mmseg and
  mmpretrain configs; ``analyze``: ``tools/analyze_norm.py``; ``demo`` (with ``curves``):
  ``tools/demo.py``;
* ``launcher``: distributed start-up and shutdown; ``restarts``: a restarted training process
  resumes its launch's latest checkpoint (and its random streams continue where they left off:
  :class:`mmbcn.engine.hooks.RandomStateHook`, which ``cli`` adds);
* ``input_checks``: a config's datasets and pretrained files checked before anything is built;
  ``deploy``: ``tools/deploy.py``; ``convert_checkpoint``: ``tools/convert_checkpoint.py``.

Not MMEngine's ``Runner``: the commands build one from the config (``cli.build_runner``).
"""

from .cli import test, train
from .launcher import init_distributed, shutdown_distributed

__all__ = ['init_distributed', 'shutdown_distributed', 'test',
           'train']
