"""The demo: Mask R-CNN and DeepLabV3 with BCN+WS, trained on generated data on CPU.

For each demo config: generate the data (once), evaluate the untrained model, train, evaluate
the trained model, and print one table with the real COCO (bbox / segm AP) and VOC (mIoU)
metrics before and after training.
"""

import argparse
import json
import os.path as osp
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config
from mmengine.runner import Runner

from ..config_files import config_path
from ..datasets import ensure_demo_data
from .checkpoint import allow_training_checkpoints


@dataclass(frozen=True)
class Demo:
    name: str
    config: str
    metrics: Tuple[Tuple[str, str, float], ...]  # (metric key, label, scale to percent)


DEMOS = (
    Demo('Mask R-CNN R18-FPN, BCN+WS', 'demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py',
         (('coco/bbox_mAP', 'COCO bbox AP', 100.0), ('coco/segm_mAP', 'COCO mask AP', 100.0))),
    Demo('DeepLabV3 R18-D8, BCN+WS', 'demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py',
         (('mIoU', 'VOC mIoU', 1.0),)),
)


def _banner(text: str) -> None:
    print(f'\n{"=" * 78}\n== {text}\n{"=" * 78}', flush=True)


def _runner(cfg: Config, work_dir: str, experiment: str) -> Runner:
    cfg = cfg.copy()
    cfg.work_dir = work_dir
    cfg.experiment_name = experiment
    cfg.launcher = 'none'
    return Runner.from_cfg(cfg)


def run_demo_config(demo: Demo, work_root: str,
                    seed: Optional[int] = None) -> Dict[str, Tuple[float, float]]:
    """Evaluate untrained, train, evaluate trained; return {label: (untrained, trained)}."""
    cfg = Config.fromfile(config_path(demo.config))
    if seed is not None:
        cfg.merge_from_dict(dict(randomness=dict(seed=seed)))
    work_dir = osp.join(work_root, osp.splitext(osp.basename(demo.config))[0])
    _banner(f'{demo.name}: evaluating the untrained model')
    before = _runner(cfg, work_dir, 'untrained').test()
    _banner(f'{demo.name}: training (logs and checkpoints in {work_dir})')
    runner = _runner(cfg, work_dir, 'trained')
    runner.train()
    _banner(f'{demo.name}: evaluating the trained model')
    after = runner.test()
    return {label: (float(before[key]) * scale, float(after[key]) * scale)
            for key, label, scale in demo.metrics}


def format_table(rows: List[Tuple[str, str, float, float]]) -> str:
    lines = ['| model | metric | untrained | trained |', '|---|---|---:|---:|']
    lines += [f'| {m} | {label} | {a:.1f} | {b:.1f} |' for m, label, a, b in rows]
    return '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--only', choices=('det', 'seg'), help='run one of the two demos')
    parser.add_argument('--seed', type=int,
                        help="random seed (default: the configs' 0); the figures of a tiny "
                             'dataset move with it')
    args = parser.parse_args(argv)
    allow_training_checkpoints()
    data_root = ensure_demo_data()
    print(f'demo data (generated, COCO + VOC layouts): {data_root}', flush=True)
    demos = DEMOS if args.only is None else DEMOS[:1] if args.only == 'det' else DEMOS[1:]
    rows, start = [], time.time()
    for demo in demos:
        for label, (before, after) in run_demo_config(demo, args.work_dir, args.seed).items():
            rows.append((demo.name, label, before, after))
    table = format_table(rows)
    _banner(f'mmbcn demo results ({time.time() - start:.0f} s, CPU, generated shapes data)')
    print(table, flush=True)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump([dict(model=m, metric=k, untrained=a, trained=b) for m, k, a, b in rows], f,
                  indent=2)
