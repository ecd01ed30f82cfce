"""The demo: pretrain a BCN+WS backbone, then Mask R-CNN and DeepLabV3 with BCN+WS, on CPU.

Three parts on generated data (:mod:`mmbcn.datasets.synthetic`), each evaluated untrained,
trained, and evaluated again with the real metrics (top-1, COCO bbox / mask AP, VOC mIoU):

1. a ResNet-18 classifier (mmpretrain, the ImageNet config made small) from scratch;
2. Mask R-CNN R18-FPN whose backbone starts from part 1's weights (pretrain, then fine-tune);
3. DeepLabV3 R18-D8 from scratch.

Each part writes ``curves.png`` (training loss and metric per epoch, from MMEngine's logged
scalars) into its work dir, and the demo a one-page ``summary.png`` of all three, named in the
final table.
"""

import argparse
import json
import os.path as osp
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config
from mmengine.runner import Runner

from ..datasets import ensure_demo_data
from ..utils.config_files import config_path
from ..utils.tables import markdown_table
from .curves import Curves, epoch_curves, load_scalars, write_curves, write_summary


@dataclass(frozen=True)
class Demo:
    key: str
    name: str
    config: str
    metrics: Tuple[Tuple[str, str, float], ...]  # (metric key, label, scale to percent)
    pretrained_from: Optional[str] = None  # the part whose backbone weights start this one


DEMOS = (
    Demo('cls', 'ResNet-18, BCN+WS (pretraining)', 'demo/resnet18_bcn-ws_1xb16-demo-shapes.py',
         (('accuracy/top1', 'top-1 accuracy', 1.0),)),
    Demo('det', 'Mask R-CNN R18-FPN, BCN+WS', 'demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py',
         (('coco/bbox_mAP', 'COCO bbox AP', 100.0), ('coco/segm_mAP', 'COCO mask AP', 100.0)),
         pretrained_from='cls'),
    Demo('seg', 'DeepLabV3 R18-D8, BCN+WS', 'demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py',
         (('mIoU', 'VOC mIoU', 1.0),)),
)


@dataclass
class PartResult:
    demo: Demo
    metrics: Dict[str, Tuple[float, float]]  # label: (untrained, trained)
    checkpoint: str
    curves: Curves
    curves_png: str


def _banner(text: str) -> None:
    print(f'\n{"=" * 78}\n== {text}\n{"=" * 78}', flush=True)


def _runner(cfg: Config, work_dir: str, experiment: str) -> Runner:
    cfg = cfg.copy()
    cfg.work_dir = work_dir
    cfg.experiment_name = experiment
    cfg.launcher = 'none'
    # A visualizer is a named singleton: mmdet's configs name theirs 'visualizer', so a second
    # runner would log into the first one's folder. Unnamed, it takes the run's name.
    cfg.visualizer.pop('name', None)
    return Runner.from_cfg(cfg)


def _keep_local_scalars(cfg: Config) -> None:
    """Make sure ``scalars.json`` is written, keeping any other backend (TensorBoard, ...)."""
    visualizer = cfg.setdefault('visualizer', dict(type='Visualizer'))
    backends = visualizer.setdefault('vis_backends', [])
    if not any(backend.get('type') == 'LocalVisBackend' for backend in backends):
        backends.append(dict(type='LocalVisBackend'))


def _last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def run_part(demo: Demo, work_root: str, seed: Optional[int] = None,
             pretrained: Optional[str] = None) -> PartResult:
    """Evaluate untrained, train, evaluate trained; write the part's curves."""
    cfg = Config.fromfile(config_path(demo.config))
    if seed is not None:
        cfg.merge_from_dict(dict(randomness=dict(seed=seed)))
    if pretrained is not None:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=pretrained,
                                           prefix='backbone.')
    _keep_local_scalars(cfg)
    work_dir = osp.join(work_root, osp.splitext(osp.basename(demo.config))[0])
    _banner(f'{demo.name}: evaluating the untrained model')
    before = _runner(cfg, work_dir, 'untrained').test()
    start = f' from {pretrained}' if pretrained else ''
    _banner(f'{demo.name}: training{start} (logs and checkpoints in {work_dir})')
    runner = _runner(cfg, work_dir, 'trained')
    runner.train()
    _banner(f'{demo.name}: evaluating the trained model')
    after = runner.test()
    metric_key, metric_label, scale = demo.metrics[0]
    curves = epoch_curves(load_scalars(osp.join(runner.log_dir, 'vis_data', 'scalars.json')),
                          metric_key, len(runner.train_dataloader), demo.name, metric_label,
                          scale)
    return PartResult(
        demo, {label: (float(before[key]) * scale, float(after[key]) * scale)
               for key, label, scale in demo.metrics},
        _last_checkpoint(work_dir), curves,
        write_curves(curves, osp.join(work_dir, 'curves.png')))


def format_table(rows: List[Tuple[str, str, float, float, str]]) -> str:
    """The demo's results: each model's metrics before and after training, and its curves."""
    return markdown_table(['model', 'metric', 'untrained', 'trained', 'curves'],
                          [(m, label, f'{a:.1f}', f'{b:.1f}', png)
                           for m, label, a, b, png in rows], right_aligned=(2, 3))


def parts_to_run(only: Optional[str]) -> Tuple[Demo, ...]:
    """All parts, or one with the parts it starts from (det needs cls's weights)."""
    if only is None:
        return DEMOS
    wanted = {only}
    for demo in reversed(DEMOS):
        if demo.key in wanted and demo.pretrained_from:
            wanted.add(demo.pretrained_from)
    return tuple(demo for demo in DEMOS if demo.key in wanted)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--only', choices=[demo.key for demo in DEMOS],
                        help='run one part (det runs cls first: it starts from its weights)')
    parser.add_argument('--seed', type=int,
                        help="random seed (default: the configs' 0); the figures of a tiny "
                             'dataset move with it')
    args = parser.parse_args(argv)
    data_root = ensure_demo_data()
    print(f'demo data (generated; ImageNet, COCO and VOC layouts): {data_root}', flush=True)
    results: Dict[str, PartResult] = {}
    start = time.time()
    for demo in parts_to_run(args.only):
        pretrained = results[demo.pretrained_from].checkpoint if demo.pretrained_from else None
        results[demo.key] = run_part(demo, args.work_dir, args.seed, pretrained)
    rows = [(r.demo.name, label, before, after, r.curves_png)
            for r in results.values() for label, (before, after) in r.metrics.items()]
    heading = f'mmbcn demo results ({time.time() - start:.0f} s, CPU, generated shapes data)'
    summary = write_summary([r.curves for r in results.values()],
                            osp.join(args.work_dir, 'summary.png'), heading)
    _banner(heading)
    print(format_table(rows), flush=True)
    print(f'\nsummary of the training curves: {summary}', flush=True)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump([dict(model=m, metric=k, untrained=a, trained=b, curves=png)
                   for m, k, a, b, png in rows] + [dict(summary=summary)], f, indent=2)
