"""One train/test command line for mmdet, mmseg and mmpretrain configs (``tools/train.py``,
``tools/test.py``).

The options are those mmdet users know. Which codebase runs is read from the config's
``default_scope`` (``'mmdet'``, ``'mmseg'`` or ``'mmpretrain'``); the differences between them
(how results are dumped and drawn) are kept in :data:`SCOPE_OPTIONS`, not in drifting copies of
the tools.
"""

import argparse
import os
import os.path as osp
from typing import List, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmbcn  # noqa: F401  (registers BCN, WSConv2d and the hook)

from ..engine.hooks import RandomStateHook
from ..utils.config_files import config_scope, resolve_config
from .input_checks import check_class_splits, check_pretrained_group_counts, require_checkpoint
from .launcher import LAUNCHERS, init_distributed, shutdown_distributed
from .restarts import resume_point


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='how the processes were started (pytorch: torchrun)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Train an mmdet, mmseg or mmpretrain model with mmbcn.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or with no value from the '
                        'latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (needs CUDA)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    _common_arguments(parser)
    return parser


def test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Evaluate an mmdet, mmseg or mmpretrain checkpoint.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump results: a .pkl file (mmdet, mmpretrain) or a '
                        'folder (mmseg)')
    parser.add_argument('--show', action='store_true', help='show results in a window')
    parser.add_argument('--show-dir', help='save drawn results to this folder')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds between --show images')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    _common_arguments(parser)
    return parser


def load_config(args) -> Config:
    """The config with the command line applied (work dir, launcher, overrides)."""
    args.config = resolve_config(args.config)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    config_scope(cfg)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def prepare_distributed(cfg: Config) -> None:
    """Start the process group (gloo without CUDA) and fit the DDP wrapper to the device."""
    init_distributed(cfg.launcher)
    if dist.is_initialized() and not torch.cuda.is_available():
        wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
        wrapper.setdefault('device_ids', None)  # a CPU module takes no device ids
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
        cfg.model_wrapper_cfg = wrapper


def build_runner(cfg: Config) -> Runner:
    prepare_distributed(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def apply_train_options(cfg: Config, args) -> None:
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA GPU (MMEngine\'s AmpOptimWrapper does not run '
                             'on CPU); drop --amp on this machine.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SystemExit('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config.')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume


def _add_dump_evaluator(cfg: Config, out: str, dump_type: str) -> None:
    if not out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out must be a .pkl file for {cfg.default_scope} configs.')
    dump = dict(type=dump_type, out_file_path=out)
    evaluators = cfg.test_evaluator
    cfg.test_evaluator = [*evaluators, dump] if isinstance(evaluators, list) else [
        evaluators, dump]


def _mmdet_test_options(cfg: Config, args) -> None:
    if args.out:
        _add_dump_evaluator(cfg, args.out, 'DumpDetResults')
    if args.show or args.show_dir:
        hook = cfg.default_hooks.visualization
        hook.update(draw=True, show=args.show, wait_time=args.wait_time)
        if args.show_dir:
            hook.test_out_dir = args.show_dir


def _mmseg_test_options(cfg: Config, args) -> None:
    if args.out:
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)
    if args.show or args.show_dir:
        cfg.default_hooks.visualization.update(draw=True, show=args.show,
                                               wait_time=args.wait_time)
        if args.show_dir:
            cfg.visualizer.save_dir = args.show_dir


def _mmpretrain_test_options(cfg: Config, args) -> None:
    if args.out:
        _add_dump_evaluator(cfg, args.out, 'DumpResults')
    if args.show or args.show_dir:
        cfg.default_hooks.visualization.update(enable=True, show=args.show,
                                               wait_time=args.wait_time, out_dir=args.show_dir)


SCOPE_OPTIONS = {'mmdet': _mmdet_test_options, 'mmseg': _mmseg_test_options,
                 'mmpretrain': _mmpretrain_test_options}


def apply_test_options(cfg: Config, args) -> None:
    cfg.load_from = args.checkpoint
    SCOPE_OPTIONS[config_scope(cfg)](cfg, args)
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise SystemExit('--tta needs tta_model and tta_pipeline in the config.')
        cfg.model = dict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def check_paths(args, checkpoint_option: str) -> None:
    """Exit with one line naming the file and the fix when the config or a checkpoint is bad.

    Runs before anything is built; ``checkpoint_option`` names the argument holding a
    checkpoint (``'checkpoint'`` or ``'resume'``; ``--resume`` alone means the latest one).
    """
    try:
        args.config = resolve_config(args.config)
    except FileNotFoundError as error:
        raise SystemExit(f'error: {error}') from None
    path = getattr(args, checkpoint_option)
    if path is None or path == 'auto':
        return
    require_checkpoint(path, '--resume' if checkpoint_option == 'resume' else 'checkpoint')


def check_inputs(cfg: Config) -> None:
    """Exit with one line naming the folder or file when a dataset or pretrained file is bad."""
    check_class_splits(cfg)
    check_pretrained_group_counts(cfg)


def checked_config(args, checkpoint_option: str, apply_options) -> Config:
    """The config of a tool's arguments, every input checked before anything is built."""
    check_paths(args, checkpoint_option)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args)
    apply_options(cfg, args)
    check_inputs(cfg)
    return cfg


def train(argv: Optional[List[str]] = None) -> None:
    """Train; a restarted attempt resumes its launch's latest checkpoint (:mod:`.restarts`)."""
    cfg = checked_config(train_parser().parse_args(argv), 'resume', apply_train_options)
    prepare_distributed(cfg)
    resumed = resume_point(cfg)
    runner = build_runner(cfg)
    runner.register_hook(RandomStateHook(resume_from=resumed))
    runner.train()
    shutdown_distributed()


def test(argv: Optional[List[str]] = None) -> dict:
    cfg = checked_config(test_parser().parse_args(argv), 'checkpoint', apply_test_options)
    metrics = build_runner(cfg).test()
    shutdown_distributed()
    return metrics
