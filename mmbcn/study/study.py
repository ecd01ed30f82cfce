"""A normalization study: one config re-run with each preset swapped in, over seeds.

:func:`plan_study` checks everything (presets, config, the swap of every preset, that each
swapped model builds) before anything is written; :func:`run_study` then writes, into the work
dir, per preset ``<preset>/config.py`` (the swapped config, runnable on its own) and per seed
``<preset>/seed<S>/`` (the run's MMEngine work dir and ``run.log``), and at the end
``results.json`` (every run: preset, seed, status, error, final metric, curves),
``results.md`` (the table and each preset's swap) and ``summary.png``.
"""

import json
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config
from mmengine.registry import HOOKS

from ..config_files import config_scope, resolve_config
from .errors import StudyInputError
from .plot import write_summary_png
from .presets import Preset, get_presets
from .runs import RunResult, skipped, train_once
from .swap import STATS_HOOK, Swap, built_layers, swap_config
from .table import format_table, summarize_all

# scope: (scalar key, label, scale to the table's unit)
METRICS = {'mmseg': ('mIoU', 'mIoU', 1.0), 'mmdet': ('coco/bbox_mAP', 'COCO bbox AP', 100.0),
           'mmpretrain': ('accuracy/top1', 'top-1 accuracy', 1.0)}
DEFAULT_STATS_INTERVAL = 10


def _say(text: str) -> None:
    print(text, flush=True)


@dataclass
class StudyPlan:
    config: str
    gpus: int
    seeds: List[int]
    presets: Sequence[Preset]
    swaps: Dict[str, Swap]
    built: Dict[str, dict]
    metric_key: str
    metric_label: str
    metric_scale: float
    fraction: float
    stats_interval: int
    work_dir: str


def load_study_config(path: str, cfg_options: Optional[dict]) -> Config:
    try:
        cfg = Config.fromfile(resolve_config(path))
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        config_scope(cfg)
    except (FileNotFoundError, ValueError) as error:
        raise StudyInputError(str(error)) from None
    return cfg


def _stats_interval(cfg: Config, interval: Optional[int]) -> int:
    if interval is None:
        interval = cfg.get('default_hooks', {}).get('logger', {}).get('interval',
                                                                      DEFAULT_STATS_INTERVAL)
    if interval < 0:
        raise StudyInputError(f'--stats-interval must be 0 (off) or more, got {interval}')
    if interval and HOOKS.get(STATS_HOOK) is None:
        raise StudyInputError(f'{STATS_HOOK} is not registered (this mmbcn has no '
                              f'mmbcn.engine.{STATS_HOOK}): update mmbcn, or run with '
                              f'--stats-interval 0 (no eliminated-channel figures)')
    return interval


def plan_study(config: str, norms: Sequence[str], seeds: Sequence[int], gpus: int,
               work_dir: Optional[str] = None, cfg_options: Optional[dict] = None,
               metric: Optional[str] = None, fraction: float = 0.9,
               stats_interval: Optional[int] = None,
               num_groups: Optional[int] = None) -> StudyPlan:
    """Check every input and prepare each preset's config; writes nothing.

    Raises:
        StudyInputError: one line naming what is wrong and what to do.
    """
    if gpus < 1:
        raise StudyInputError(f'--gpus must be 1 or more (processes per run), got {gpus}')
    if not seeds:
        raise StudyInputError('--seeds needs at least one seed')
    if not 0.0 < fraction <= 1.0:
        raise StudyInputError(f'--fraction must be in (0, 1], got {fraction}')
    presets = get_presets(norms)
    cfg = load_study_config(config, cfg_options)
    metric_key, metric_label, metric_scale = METRICS[cfg.default_scope]
    if metric:
        metric_key, metric_label, metric_scale = metric, metric, 1.0
    interval = _stats_interval(cfg, stats_interval)
    swaps = {p.name: swap_config(cfg, p, gpus, interval, num_groups, name=config)
             for p in presets}
    built = {}
    for name, swap in swaps.items():
        try:
            built[name] = built_layers(swap.cfg)
        except Exception as error:  # a model the swap broke: say which preset, before any run
            raise StudyInputError(f'{config} with preset {name!r}: the swapped model does not '
                                  f'build ({type(error).__name__}: {error})') from None
    work_dir = work_dir or osp.join(
        'work_dirs', 'norm_study', osp.splitext(osp.basename(config))[0])
    return StudyPlan(config, gpus, list(seeds), presets, swaps, built, metric_key, metric_label,
                     metric_scale, fraction, interval, work_dir)


def swap_report(plan: StudyPlan, preset: Preset) -> str:
    swap = plan.swaps[preset.name]
    lines = [f'### {preset.name}: {preset.description}', '',
             f'global batch {swap.global_batch} = {swap.images_per_gpu} image(s) per GPU x '
             f'{plan.gpus} GPU(s)' + (f'; BCN {swap.bcn_mode} mode' if swap.bcn_mode else '')
             + (f'; backbone {swap.backbone}' if swap.backbone else ''),
             '', 'changed:', *[f'- `{c}`' for c in swap.changes]]
    if swap.left:
        lines += ['', 'left alone:', *[f'- `{item}`' for item in swap.left]]
    built = ', '.join(f'{n} x {k}' for n, k in plan.built[preset.name].items())
    lines += ['', f'built model: {built}']
    return '\n'.join(lines)


def _config_path(plan: StudyPlan, preset: Preset) -> str:
    return osp.join(plan.work_dir, preset.name, 'config.py')


def run_study(plan: StudyPlan, train_script: str, timeout: Optional[float] = None,
              echo=None) -> dict:
    """Run every (preset, seed) in order and write the results; returns results.json's content.

    ``echo(text)`` reports progress (default: print, flushed).
    """
    echo = echo or _say
    start = time.time()
    reports = []
    for preset in plan.presets:
        os.makedirs(osp.dirname(_config_path(plan, preset)), exist_ok=True)
        plan.swaps[preset.name].cfg.dump(_config_path(plan, preset))
        reports.append(swap_report(plan, preset))
        echo(reports[-1] + '\n')
    results: List[RunResult] = []
    total = len(plan.presets) * len(plan.seeds)
    for preset in plan.presets:
        cause = None
        for seed in plan.seeds:
            run_dir = osp.join(plan.work_dir, preset.name, f'seed{seed}')
            if cause is not None:
                result = skipped(preset.name, seed, run_dir, cause)
            else:
                result = train_once(preset.name, seed, _config_path(plan, preset), plan.gpus,
                                    run_dir, train_script, plan.metric_key, plan.metric_scale,
                                    timeout)
                if result.status == 'failed' and not result.trained:
                    cause = result
            results.append(result)
            outcome = f'failed: {result.error}'
            if result.status == 'ok':
                outcome = f'{plan.metric_label} {result.final_metric:.1f}'
            elif result.status == 'skipped':
                outcome = f'not run: seed {cause.seed} failed before its first logged iteration'
            echo(f'[{len(results)}/{total}] {preset.name} seed {seed}: {outcome} '
                 f'({result.wall_s:.0f} s, {run_dir})')
    return write_results(plan, results, reports, time.time() - start, echo)


def write_results(plan: StudyPlan, results: List[RunResult], reports: List[str], wall: float,
                  echo=None) -> dict:
    echo = echo or _say
    names = [p.name for p in plan.presets]
    summaries, reference = summarize_all(names, results, plan.fraction)
    table = format_table(summaries, {p.name: p.description for p in plan.presets},
                         {n: s.bcn_mode for n, s in plan.swaps.items()}, plan.metric_label,
                         reference)
    swap = next(iter(plan.swaps.values()))
    heading = (f'{osp.basename(plan.config)}: {plan.gpus} process(es) x {swap.images_per_gpu} '
               f'image(s), seeds {", ".join(map(str, plan.seeds))}, {wall:.0f} s')
    png = write_summary_png(results, names, plan.metric_label,
                            osp.join(plan.work_dir, 'summary.png'), heading)
    with open(osp.join(plan.work_dir, 'results.md'), 'w') as f:
        f.write(f'## Normalization study: {heading}\n\n{table}\n\n## The swaps\n\n'
                + '\n\n'.join(reports) + '\n')
    content = dict(
        config=plan.config, gpus=plan.gpus, images_per_gpu=swap.images_per_gpu,
        global_batch=swap.global_batch, seeds=plan.seeds,
        metric=dict(key=plan.metric_key, label=plan.metric_label, scale=plan.metric_scale),
        best=reference, stats_interval=plan.stats_interval, wall_s=wall,
        presets={p.name: dict(description=p.description, bcn_mode=plan.swaps[p.name].bcn_mode,
                              config=_config_path(plan, p),
                              changes=plan.swaps[p.name].changes,
                              left=plan.swaps[p.name].left, built=plan.built[p.name],
                              summary=summaries[p.name].as_dict())
                 for p in plan.presets},
        runs=[asdict(r) for r in results], table='results.md', summary_png=png)
    with open(osp.join(plan.work_dir, 'results.json'), 'w') as f:
        json.dump(content, f, indent=1)
    echo(f'\n{heading}\n\n{table}\n\nwritten: {osp.join(plan.work_dir, "results.json")}, '
         f'{osp.join(plan.work_dir, "results.md")}, {png}')
    return content
