"""A normalization study: one config re-run with each preset swapped in, over seeds.

:func:`plan_study` checks everything (presets, config, the swap of every preset, that each
swapped model builds) before anything is written; :func:`run_study` then writes, into the work
dir, per preset ``<preset>/config.py`` (the swapped config, runnable on its own) and per seed
``<preset>/seed<S>/`` (the run's MMEngine work dir and ``run.log``), and at the end
``results.json`` (every run: preset, seed, status, error, final metric, curves),
``results.md`` (the table and each preset's swap) and ``summary.png``.

With a pretraining config (``--pretrain CLS_CONFIG``: the papers' protocol, see
:mod:`.pretrained`), each (preset, seed) first pretrains the classification config with the
preset swapped in (``<preset>/pretrain.py``, run in ``<preset>/pretrain_seed<S>/``, which then
holds ``backbone.pth``, its backbone in the task's key layout), then fine-tunes the task config
with the same preset from that file (``<preset>/seed<S>/finetune.py``: the swapped config with
:class:`~.pretrained.StrictPretrainedBackboneHook`). The table gains the pretraining's top-1.
"""

import copy
import json
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import HOOKS

from ..utils.config_files import build_model, config_scope, resolve_config
from .errors import StudyInputError
from .plot import write_summary_png
from .presets import Preset, get_presets
from .pretrained import hook_cfg, key_mismatch, write_pretrained_backbone
from .runs import RunResult, last_checkpoint, skipped, train_once
from .swap import STATS_HOOK, Swap, count_layers, swap_config
from .table import format_table, summarize_all

# scope: (scalar key, label, scale to the table's unit)
METRICS = {'mmseg': ('mIoU', 'mIoU', 1.0), 'mmdet': ('coco/bbox_mAP', 'COCO bbox AP', 100.0),
           'mmpretrain': ('accuracy/top1', 'top-1 accuracy', 1.0)}
DEFAULT_STATS_INTERVAL = 10
PRETRAINED_MODULE = 'mmbcn.study.pretrained'


def _say(text: str) -> None:
    print(text, flush=True)


@dataclass
class PretrainPlan:
    """The pretraining of the pretrained protocol: the classification config, each preset's
    swap of it, and the task backbone's keys its backbone is converted to."""

    config: str
    gpus: int
    swaps: Dict[str, Swap]
    built: Dict[str, dict]
    task_backbone_keys: Dict[str, List[str]]
    metric_key: str
    metric_label: str
    metric_scale: float


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
    pretrain: Optional[PretrainPlan] = None
    pretrain_results: List[RunResult] = field(default_factory=list)


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
               num_groups: Optional[int] = None, pretrain_config: Optional[str] = None,
               pretrain_gpus: int = 1,
               pretrain_cfg_options: Optional[dict] = None) -> StudyPlan:
    """Check every input and prepare each preset's config; writes nothing.

    With ``pretrain_config`` (a classification config), also each preset's pretraining config,
    and that every preset's pretrained backbone, converted, has the task backbone's keys.

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
    built, backbones = {}, {}
    for name, swap in swaps.items():
        built[name], backbones[name] = _build(swap, config, name)
    pretrain = None
    if pretrain_config:
        pretrain = plan_pretraining(pretrain_config, presets, swaps, backbones, pretrain_gpus,
                                    pretrain_cfg_options, num_groups)
    work_dir = work_dir or osp.join(
        'work_dirs', 'norm_study', osp.splitext(osp.basename(config))[0]
        + ('-pretrained' if pretrain else ''))
    return StudyPlan(config, gpus, list(seeds), presets, swaps, built, metric_key, metric_label,
                     metric_scale, fraction, interval, work_dir, pretrain)


def _build(swap: Swap, config: str, name: str) -> Tuple[dict, Optional[Dict[str, tuple]]]:
    """The swapped model's layer counts and its backbone's tensor shapes (None: no backbone)."""
    try:
        model = build_model(swap.cfg)
    except Exception as error:  # a model the swap broke: say which preset, before any run
        raise StudyInputError(f'{config} with preset {name!r}: the swapped model does not '
                              f'build ({type(error).__name__}: {error})') from None
    backbone = getattr(model, 'backbone', None)
    shapes = ({key: tuple(value.shape) for key, value in backbone.state_dict().items()}
              if isinstance(backbone, torch.nn.Module) else None)
    return count_layers(model), shapes


def plan_pretraining(config: str, presets: Sequence[Preset], task_swaps: Dict[str, Swap],
                     task_backbones: Dict[str, Optional[Dict[str, tuple]]], gpus: int,
                     cfg_options: Optional[dict], num_groups: Optional[int]) -> PretrainPlan:
    """Each preset swapped into the classification ``config``, checked against the task's
    swap: a classifier (mmpretrain) with a backbone whose tensors, converted, are the task
    backbone's, at the same group count."""
    if gpus < 1:
        raise StudyInputError(f'--pretrain-gpus must be 1 or more, got {gpus}')
    cfg = load_study_config(config, cfg_options)
    if cfg.default_scope != 'mmpretrain':
        raise StudyInputError(
            f'--pretrain {config}: a classification config (mmpretrain) pretrains the '
            f'backbone; this one is {cfg.default_scope!r}')
    metric_key, metric_label, metric_scale = METRICS['mmpretrain']
    swaps, built, keys = {}, {}, {}
    for preset in presets:
        name = preset.name
        if task_backbones[name] is None:
            raise StudyInputError(f'the task config with preset {name!r} has no model.backbone '
                                  f'to fine-tune from a pretrained one')
        swap = swap_config(cfg, preset, gpus, 0, num_groups, name=config)
        if swap.num_groups != task_swaps[name].num_groups:
            raise StudyInputError(
                f'preset {name!r}: the pretraining config gives it {swap.num_groups} groups, '
                f'the task config {task_swaps[name].num_groups}; the pretrained norm must be '
                f'the fine-tuned one: give both the same count with --num-groups')
        built[name], shapes = _build(swap, config, name)
        mismatch = key_mismatch(shapes or {}, task_backbones[name])
        if mismatch:
            raise StudyInputError(
                f'preset {name!r}: the backbone of {config} does not fit the task\'s '
                f'backbone key for key after the deep-stem conversion ({mismatch}); pretrain '
                f'the same architecture (for mmseg\'s ResNetV1c, mmpretrain\'s ResNetV1c)')
        swaps[name] = swap
        keys[name] = sorted(task_backbones[name])
    return PretrainPlan(config, gpus, swaps, built, keys, metric_key, metric_label, metric_scale)


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
    if plan.pretrain:
        pre = plan.pretrain.swaps[preset.name]
        lines += ['', f'pretraining ({osp.basename(plan.pretrain.config)}): global batch '
                      f'{pre.global_batch} = {pre.images_per_gpu} image(s) per GPU x '
                      f'{plan.pretrain.gpus} GPU(s)'
                      + (f'; BCN {pre.bcn_mode} mode' if pre.bcn_mode else ''),
                  '', 'changed:', *[f'- `{c}`' for c in pre.changes],
                  '', 'built model: ' + ', '.join(
                      f'{n} x {k}' for n, k in plan.pretrain.built[preset.name].items())]
    return '\n'.join(lines)


def _config_path(plan: StudyPlan, preset: Preset) -> str:
    return osp.join(plan.work_dir, preset.name, 'config.py')


def _pretrain_config_path(plan: StudyPlan, preset: Preset) -> str:
    return osp.join(plan.work_dir, preset.name, 'pretrain.py')


def finetune_config(swap: Swap, backbone: str, preset: str) -> Config:
    """The swapped task config that fine-tunes from the pretrained ``backbone`` file."""
    cfg = copy.deepcopy(swap.cfg)
    cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                        hook_cfg(osp.abspath(backbone), preset, swap.num_groups)]
    imports = list(cfg.custom_imports.get('imports', []))
    if PRETRAINED_MODULE not in imports:
        cfg.custom_imports.imports = [*imports, PRETRAINED_MODULE]
    return cfg


def pretrain_and_finetune(plan: StudyPlan, preset: Preset, seed: int, run_dir: str,
                          train_script: str, timeout: Optional[float]
                          ) -> Tuple[RunResult, RunResult]:
    """The pretrained protocol for one (preset, seed): (pretraining, fine-tuning) results. A
    pretraining that fails is the fine-tuning's error, which then does not run."""
    pretrain = plan.pretrain
    pretrain_dir = osp.join(plan.work_dir, preset.name, f'pretrain_seed{seed}')
    first = train_once(preset.name, seed, _pretrain_config_path(plan, preset), pretrain.gpus,
                       pretrain_dir, train_script, pretrain.metric_key, pretrain.metric_scale,
                       timeout)
    checkpoint = last_checkpoint(pretrain_dir)
    if first.status != 'ok' or checkpoint is None:
        error = first.error or f'no checkpoint written in {pretrain_dir}'
        return first, RunResult(preset.name, seed, 'failed', run_dir,
                                error=f'pretraining: {error}')
    backbone = osp.join(pretrain_dir, 'backbone.pth')
    swap = plan.swaps[preset.name]
    try:
        write_pretrained_backbone(checkpoint, backbone, preset.name, swap.num_groups,
                                  pretrain.task_backbone_keys[preset.name])
    except Exception as error:  # a checkpoint that is not what the plan checked
        return first, RunResult(preset.name, seed, 'failed', run_dir, error=(
            f'converting the pretrained backbone: {type(error).__name__}: {error}'))
    os.makedirs(run_dir, exist_ok=True)
    config_path = osp.join(run_dir, 'finetune.py')
    finetune_config(swap, backbone, preset.name).dump(config_path)
    second = train_once(preset.name, seed, config_path, plan.gpus, run_dir, train_script,
                        plan.metric_key, plan.metric_scale, timeout)
    second.pretrain_metric, second.pretrained_from = first.final_metric, backbone
    return first, second


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
        if plan.pretrain:
            plan.pretrain.swaps[preset.name].cfg.dump(_pretrain_config_path(plan, preset))
        reports.append(swap_report(plan, preset))
        echo(reports[-1] + '\n')
    results: List[RunResult] = []
    plan.pretrain_results = []
    total = len(plan.presets) * len(plan.seeds)
    for preset in plan.presets:
        cause = None
        for seed in plan.seeds:
            run_dir = osp.join(plan.work_dir, preset.name, f'seed{seed}')
            pretrained, first = '', None
            if cause is not None:
                result = skipped(preset.name, seed, run_dir, cause)
            elif plan.pretrain:
                first, result = pretrain_and_finetune(plan, preset, seed, run_dir,
                                                      train_script, timeout)
                plan.pretrain_results.append(first)
                pretrained = (f'pretraining {plan.pretrain.metric_label} '
                              f'{first.final_metric:.1f} ({first.wall_s:.0f} s), then '
                              if first.status == 'ok' else '')
            else:
                result = train_once(preset.name, seed, _config_path(plan, preset), plan.gpus,
                                    run_dir, train_script, plan.metric_key, plan.metric_scale,
                                    timeout)
            # failed before its first logged iteration (of the pretraining, when that failed):
            # no seed changes that, the preset's other seeds are not run
            if (cause is None and result.status == 'failed' and not result.trained
                    and (first is None or first.status == 'ok' or not first.trained)):
                cause = result
            results.append(result)
            outcome = f'failed: {result.error}'
            if result.status == 'ok':
                outcome = f'{plan.metric_label} {result.final_metric:.1f}'
            elif result.status == 'skipped':
                outcome = f'not run: seed {cause.seed} failed before its first logged iteration'
            echo(f'[{len(results)}/{total}] {preset.name} seed {seed}: {pretrained}{outcome} '
                 f'({result.wall_s:.0f} s, {run_dir})')
    return write_results(plan, results, reports, time.time() - start, echo)


def write_results(plan: StudyPlan, results: List[RunResult], reports: List[str], wall: float,
                  echo=None) -> dict:
    echo = echo or _say
    names = [p.name for p in plan.presets]
    pretrain = plan.pretrain
    summaries, reference = summarize_all(names, results, plan.fraction, plan.pretrain_results)
    modes = {n: s.bcn_mode for n, s in plan.swaps.items()}
    if pretrain:
        modes = {n: mode and f'{pretrain.swaps[n].bcn_mode} pretraining, {mode} fine-tuning'
                 for n, mode in modes.items()}
    table = format_table(summaries, {p.name: p.description for p in plan.presets}, modes,
                         plan.metric_label, reference,
                         pretrain.metric_label if pretrain else None)
    swap = next(iter(plan.swaps.values()))
    heading = (f'{osp.basename(plan.config)}: {plan.gpus} process(es) x {swap.images_per_gpu} '
               f'image(s), seeds {", ".join(map(str, plan.seeds))}, {wall:.0f} s')
    if pretrain:
        first = next(iter(pretrain.swaps.values()))
        heading = (f'{osp.basename(plan.config)} fine-tuned from {osp.basename(pretrain.config)} '
                   f'({pretrain.gpus} process(es) x {first.images_per_gpu} image(s)): '
                   f'{heading.split(": ", 1)[1]}')
    png = write_summary_png(results, names, plan.metric_label,
                            osp.join(plan.work_dir, 'summary.png'), heading,
                            plan.pretrain_results if pretrain else None,
                            pretrain.metric_label if pretrain else None)
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
    if pretrain:
        first = next(iter(pretrain.swaps.values()))
        content['pretrain'] = dict(
            config=pretrain.config, gpus=pretrain.gpus, images_per_gpu=first.images_per_gpu,
            metric=dict(key=pretrain.metric_key, label=pretrain.metric_label,
                        scale=pretrain.metric_scale),
            presets={p.name: dict(config=_pretrain_config_path(plan, p),
                                  bcn_mode=pretrain.swaps[p.name].bcn_mode,
                                  changes=pretrain.swaps[p.name].changes,
                                  built=pretrain.built[p.name]) for p in plan.presets},
            runs=[asdict(r) for r in plan.pretrain_results])
    with open(osp.join(plan.work_dir, 'results.json'), 'w') as f:
        json.dump(content, f, indent=1)
    echo(f'\n{heading}\n\n{table}\n\nwritten: {osp.join(plan.work_dir, "results.json")}, '
         f'{osp.join(plan.work_dir, "results.md")}, {png}')
    return content
