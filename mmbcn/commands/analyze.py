"""``tools/analyze_norm.py``: mmbcn's measures of a trained model over N batches of its data.

For an mmdet, mmseg or mmpretrain config and a checkpoint of it: builds the model in the
config's scope, loads the checkpoint's weights (weights-only loading; every key and shape must
match), and runs N batches of the config's train or val dataloader through the model's data
preprocessor and its ``mode='tensor'`` forward, in eval mode without gradients. The tensor
forward is the whole network without post-processing (backbone, neck and heads: a detector's
RPN and RoI heads on its proposals, a segmentor's decode head, a classifier's head), so every
normalization layer the model uses at test time is reached; BN and BCN normalize with their
running statistics, as at test time. Then prints the per-layer table and writes
``norm_statistics.json`` and ``norm_statistics.png`` (:mod:`mmbcn.analysis.report`).

Bad input (a config without normalization layers, a checkpoint that is not a readable weights
file or does not match the config) stops the tool with one line naming the problem and the
fix, before anything is written.
"""

import argparse
import itertools
import os.path as osp
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmbcn  # noqa: F401  (registers BCN, WSConv2d)

from ..analysis import norm_statistics, normalization_layers
from ..analysis.collector import NO_NORMALIZATION
from ..analysis.report import format_table, write_report
from ..checkpoints.weights_only import load_weights_only
from ..utils.config_files import build_model
from .input_checks import load_tool_config, require_checkpoint

SPLITS = ('train', 'val')
SHOWN_KEYS = 3


def analyze_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Measure a trained model's normalization layers (eliminated and constant "
                    "channels, margins, sample similarity per stage) on its own data.")
    parser.add_argument('config', help='config file (mmdet, mmseg or mmpretrain)')
    parser.add_argument('checkpoint', help='checkpoint of that config')
    parser.add_argument('--num-batches', type=int, default=8,
                        help='batches of the dataloader to run (default: 8)')
    parser.add_argument('--split', choices=SPLITS, default='val',
                        help="the dataloader to read: the config's train_dataloader or "
                        "val_dataloader (default: val)")
    parser.add_argument('--out', help='folder for norm_statistics.json and .png '
                        '(default: ./work_dirs/norm_statistics/<config name>)')
    parser.add_argument('--threshold', type=float, default=0.01,
                        help='a channel is eliminated below this activation rate (default 0.01)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. val_dataloader.batch_size=4')
    return parser


def _shown(keys: List[str]) -> str:
    more = f' and {len(keys) - SHOWN_KEYS} more' if len(keys) > SHOWN_KEYS else ''
    return ', '.join(keys[:SHOWN_KEYS]) + more


def mismatch(model_state: dict, checkpoint_state: dict) -> Optional[str]:
    """What keeps ``checkpoint_state`` from loading strictly into a model, or None."""
    missing = sorted(set(model_state) - set(checkpoint_state))
    unexpected = sorted(set(checkpoint_state) - set(model_state))
    shapes = sorted(key for key in set(model_state) & set(checkpoint_state)
                    if tuple(model_state[key].shape) != tuple(checkpoint_state[key].shape))
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing key(s) ({_shown(missing)})')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected key(s) ({_shown(unexpected)})')
    if shapes:
        key = shapes[0]
        problems.append(f'{len(shapes)} key(s) of another shape ({key}: checkpoint '
                        f'{tuple(checkpoint_state[key].shape)}, model '
                        f'{tuple(model_state[key].shape)})')
    return '; '.join(problems) or None


def read_weights(path: str) -> dict:
    """The state dict of a checkpoint (``state_dict`` of an MMEngine checkpoint, or a plain one),
    with a DDP ``module.`` prefix removed."""
    checkpoint = load_weights_only(path, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise SystemExit(f'error: checkpoint {path}: holds no state dict of tensors; give a '
                         f'checkpoint written by MMEngine or a torch.save of model.state_dict().')
    if state and all(key.startswith('module.') for key in state):
        state = {key[len('module.'):]: value for key, value in state.items()}
    return state


def build_checked_model(cfg: Config, config_file: str, checkpoint: str):
    """The config's model with the checkpoint's weights, in eval mode; SystemExit on bad input."""
    model = build_model(cfg)
    if not normalization_layers(model):
        raise SystemExit(f'error: config {config_file}: {NO_NORMALIZATION}, so there is '
                         f'nothing to measure; give a config whose model has norm layers '
                         f'(norm_cfg).')
    state = read_weights(checkpoint)
    problem = mismatch(model.state_dict(), state)
    if problem:
        raise SystemExit(f'error: checkpoint {checkpoint} does not match config {config_file}: '
                         f'{problem}. Give the checkpoint this config trained, or the config '
                         f'that trained it.')
    model.load_state_dict(state)
    model.eval()
    return model


def preprocessed_batches(model, cfg: Config, split: str, num_batches: int):
    """The first ``num_batches`` batches of the split's dataloader, through the model's data
    preprocessor (``training=False``)."""
    loader = Runner.build_dataloader(cfg[f'{split}_dataloader'])
    for data in itertools.islice(loader, num_batches):
        yield model.data_preprocessor(data, False)


def tensor_forward(model, data):
    return model(**data, mode='tensor')


def analyze(argv: Optional[List[str]] = None) -> dict:
    args = analyze_parser().parse_args(argv)
    if args.num_batches < 1:
        raise SystemExit('error: --num-batches must be at least 1.')
    config_file, cfg = load_tool_config(args.config)
    require_checkpoint(args.checkpoint)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get(f'{args.split}_dataloader') is None:
        raise SystemExit(f'error: config {config_file} has no {args.split}_dataloader; choose '
                         f'--split {"val" if args.split == "train" else "train"}.')
    model = build_checked_model(cfg, config_file, args.checkpoint)
    result = norm_statistics(
        model, preprocessed_batches(model, cfg, args.split, args.num_batches),
        threshold=args.threshold, forward=tensor_forward, per_channel=True)
    result['settings'].update(config=config_file, checkpoint=args.checkpoint, split=args.split,
                              num_batches=args.num_batches, forward="mode='tensor', eval mode")
    print(format_table(result))
    out = args.out or osp.join('work_dirs', 'norm_statistics',
                               osp.splitext(osp.basename(config_file))[0])
    paths = write_report(result, out, title=osp.basename(config_file))
    print(f'\nwrote {paths["json"]} and {paths["png"]}')
    return result
