"""Training a shipped config for a few iterations on a few demo images, with MMEngine's Runner:
it trains (finite losses, parameters move), not how well."""

import os.path as osp

from mmengine.config import Config

from .paths import ROOT


def train_briefly(path, work_dir, images=4, iterations=3):
    """Train the config at ``path`` on ``images`` demo images (2 per batch) for ``iterations``
    iterations (iteration-based configs) or one epoch; no validation, test or checkpoint.
    Returns the Runner after training; its message hub holds ``train/loss``."""
    from mmengine.runner import Runner

    from mmbcn.datasets import ensure_demo_data
    ensure_demo_data()  # relative to the working directory: the caller chdirs to ROOT
    assert osp.samefile('.', ROOT), 'call from the repository root (the configs read data/)'
    cfg = Config.fromfile(path)
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader.dataset.indices = images
    cfg.train_dataloader.batch_size = 2
    if cfg.train_cfg.get('max_iters'):
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iterations, val_interval=1000)
    else:
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1000)
    cfg.param_scheduler = []
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    cfg.custom_hooks = []
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.experiment_name = f'brief_{osp.splitext(osp.basename(path))[0]}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner
