"""A test-only hook: dumps each rank's BCN statistics and optimizer state, and can crash a run.

Imported by the training processes through the test config's ``custom_imports``
(``mmbcn_testing.state_dump_hook``; tests/ is on PYTHONPATH in those processes).
"""

import os
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmbcn import BatchChannelNorm2d


def bcn_buffers(model):
    model = model.module if is_model_wrapper(model) else model
    return {f'{name}.{buffer_name}': buffer.detach().clone()
            for name, module in model.named_modules() if isinstance(module, BatchChannelNorm2d)
            for buffer_name, buffer in module.named_buffers()}


@HOOKS.register_module()
class StateDumpHook(Hook):
    priority = 'LOWEST'  # after the CheckpointHook has saved

    def __init__(self, crash_after_iter=None):
        self.crash_after_iter = crash_after_iter

    def _dump(self, runner, phase):
        rank = int(os.environ.get('RANK', 0))
        torch.save(dict(iter=runner.iter, bcn=bcn_buffers(runner.model),
                        optimizer=runner.optim_wrapper.state_dict()),
                   osp.join(runner.work_dir, f'state_{phase}_rank{rank}.pt'))

    def before_train(self, runner):
        self._dump(runner, 'before_train')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.crash_after_iter is not None and runner.iter + 1 == self.crash_after_iter:
            os._exit(17)  # as a killed job: no clean-up, no final checkpoint

    def after_train(self, runner):
        self._dump(runner, 'after_train')
