"""``tools/norm_study.py``: the command line of a normalization study."""

import argparse
from typing import List, Optional

from mmengine.config import DictAction

from .errors import StudyInputError
from .presets import PRESETS
from .study import plan_study, run_study


def study_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Re-run one config with each normalization preset swapped into every '
                    'norm layer, over seeds, through tools/dist_train.sh; writes results.json, '
                    'results.md and summary.png.')
    parser.add_argument('config', help='config file, or the name of one shipped with mmbcn')
    parser.add_argument('--norms', nargs='+', required=True, metavar='PRESET',
                        help=f'presets, in order: {", ".join(PRESETS)}')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0], help='default: 0')
    parser.add_argument('--gpus', type=int, required=True,
                        help='processes per run (GPUs, or gloo processes on CPU)')
    parser.add_argument('--work-dir', help='default: work_dirs/norm_study/<config name>')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries before the swap, e.g. '
                             'train_cfg.max_iters=100')
    parser.add_argument('--metric', help="validation scalar to compare (default: mmseg 'mIoU', "
                        "mmdet 'coco/bbox_mAP', mmpretrain 'accuracy/top1')")
    parser.add_argument('--fraction', type=float, default=0.9,
                        help='the iterations column counts iterations to this fraction of the '
                             'best metric of the study (default 0.9)')
    parser.add_argument('--stats-interval', type=int,
                        help='NormStatisticsHook interval in iterations (default: the logger '
                             'interval; 0: no hook)')
    parser.add_argument('--num-groups', type=int,
                        help="groups of GN and BCN (default: the config's own, else 32)")
    parser.add_argument('--timeout', type=float, help='seconds per run before it is stopped')
    parser.add_argument('--pretrain', metavar='CLS_CONFIG',
                        help="the papers' protocol: per preset and seed, pretrain this "
                             "classification config (mmpretrain) with the preset swapped in, "
                             'then fine-tune CONFIG with the same preset from its backbone, '
                             'loaded strictly (default: train CONFIG from scratch)')
    parser.add_argument('--pretrain-gpus', type=int, default=1,
                        help='processes per pretraining run (default 1)')
    parser.add_argument('--pretrain-cfg-options', nargs='+', action=DictAction,
                        help='override entries of CLS_CONFIG before the swap, e.g. '
                             'train_cfg.max_epochs=2')
    return parser


def main(argv: Optional[List[str]] = None, train_script: str = 'tools/dist_train.sh') -> dict:
    args = study_parser().parse_args(argv)
    try:
        plan = plan_study(args.config, args.norms, args.seeds, args.gpus, args.work_dir,
                          args.cfg_options, args.metric, args.fraction, args.stats_interval,
                          args.num_groups, args.pretrain, args.pretrain_gpus,
                          args.pretrain_cfg_options)
    except StudyInputError as error:
        raise SystemExit(f'error: {error}') from None
    return run_study(plan, train_script, args.timeout)
