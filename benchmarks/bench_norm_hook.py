"""Benchmark: the cost of NormStatisticsHook on a training step of a demo config.

Times one real training step (``model.train_step``: data preprocessor, forward, backward, SGD
step) of the model built from a demo config on a fixed batch of its own training data, plain
and measured by the hook (its ``before_train_iter`` / ``after_train_iter`` around the step, at
``interval=1``, logging through a visualizer with MMEngine's ``LocalVisBackend``), interleaved,
and prints the medians, their ratio and what that makes at the hook's default interval:
``(measured / plain - 1) / interval``.

    python benchmarks/bench_norm_hook.py [--config demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py]
        [--repeats 15]
"""

import argparse
import importlib
import os
import os.path as osp
import platform
import statistics
import tempfile
import time
from types import SimpleNamespace

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.visualization import Visualizer

import mmbcn  # noqa: F401  (registers BCN, WSConv2d)
from mmbcn.datasets import ensure_demo_data
from mmbcn.engine.hooks.norm_statistics_hook import DEFAULT_INTERVAL, NormStatisticsHook
from mmbcn.utils.config_files import config_path

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = 'demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py'


def build_step(config: str, work_dir: str):
    """(plain step, measured step) callables on one fixed batch of the config's training data."""
    cfg = Config.fromfile(config_path(config))
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = importlib.import_module(f'{cfg.default_scope}.registry').MODELS.build(cfg.model)
    model.train()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    visualizer = Visualizer(name='bench_norm_hook', save_dir=work_dir,
                            vis_backends=[dict(type='LocalVisBackend')])
    runner = SimpleNamespace(model=model, iter=0, visualizer=visualizer,
                             message_hub=MessageHub.get_instance('bench_norm_hook'),
                             logger=MMLogger.get_instance('bench_norm_hook'))
    hook = NormStatisticsHook(interval=1)
    hook.before_train(runner)

    def plain():
        model.train_step(batch, optim_wrapper)

    def measured():
        hook.before_train_iter(runner, 0, batch)
        model.train_step(batch, optim_wrapper)
        hook.after_train_iter(runner, 0, batch)
        runner.iter += 1
    return plain, measured


def interleaved_medians(runs: dict, repeats: int) -> dict:
    """Median seconds of each callable, all run in turn ``repeats`` times after a warm-up."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--repeats', type=int, default=15)
    args = parser.parse_args()
    os.chdir(ROOT)  # the demo configs read data/mmbcn_demo relative to the repository
    ensure_demo_data()
    with tempfile.TemporaryDirectory() as work_dir:
        plain, measured = build_step(args.config, work_dir)
        times = interleaved_medians({'plain': plain, 'measured': measured}, args.repeats)
    ratio = times['measured'] / times['plain']
    print(f'# NormStatisticsHook overhead: torch {torch.__version__}, cpu '
          f'({platform.processor() or "cpu"}), {torch.get_num_threads()} threads, '
          f'{osp.basename(args.config)}, median of {args.repeats}, steps interleaved\n')
    print('| training step | step s | / plain |')
    print('|---|---:|---:|')
    print(f'| plain | {times["plain"]:.3f} | 1.000 |')
    print(f'| measured by the hook | {times["measured"]:.3f} | {ratio:.3f} |')
    print(f'\nat the default interval ({DEFAULT_INTERVAL}): '
          f'{(ratio - 1) / DEFAULT_INTERVAL:+.2%} per training step')


if __name__ == '__main__':
    main()
