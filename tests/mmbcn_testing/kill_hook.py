"""A test-only hook: one worker SIGKILLs its own process, as the OOM killer or a lost node would.

Imported by the training processes through the test config's ``custom_imports``
(``mmbcn_testing.kill_hook``; tests/ is on PYTHONPATH in those processes).
"""

import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def attempt() -> int:
    """Which attempt of the launch this process is (torchrun's restart count; 0 first)."""
    return int(os.environ.get('TORCHELASTIC_RESTART_COUNT', 0))


@HOOKS.register_module()
class KillHook(Hook):
    """Kill rank ``rank`` with SIGKILL when iteration ``at_iter`` (0-based) is about to run.

    The batch has been drawn; the other ranks go on into the iteration and wait for the dead
    one in the gradient all-reduce until torchrun stops them.

    Args:
        at_iter: The iteration (``runner.iter``) before which the process dies.
        rank: The global rank that dies.
        every_attempt: Die in every attempt (a worker that can never succeed), not only the
            first (``TORCHELASTIC_RESTART_COUNT == 0``).
    """

    priority = 'HIGHEST'

    def __init__(self, at_iter: int, rank: int = 1, every_attempt: bool = False):
        self.at_iter = at_iter
        self.rank = rank
        self.every_attempt = every_attempt

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if (runner.iter == self.at_iter and int(os.environ.get('RANK', 0)) == self.rank
                and (self.every_attempt or attempt() == 0)):
            print(f'kill_hook: attempt {attempt()}, rank {self.rank}: SIGKILL before '
                  f'iteration {self.at_iter}', flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
