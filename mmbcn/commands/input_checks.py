"""Checks of a config and its inputs, run by the tools before anything is built or written.

* The config itself (:func:`load_tool_config`): a file or a shipped config's name, of a codebase
  the tools run (mmdet, mmseg, mmpretrain).
* The class folders of image-classification splits (:mod:`mmbcn.datasets.class_folders`).
* The channel-stage group count of BCN weights in the pretrained checkpoints the config names,
  against the config's BCN ``norm_cfg``: a mismatch would otherwise surface, without the
  file's name, only once the model is built (``BatchChannelNorm2d`` refuses it on load).
"""

import os.path as osp
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config

from ..checkpoints.weights_only import checkpoint_problem, load_weights_only
from ..datasets.class_folders import ClassFolderError, check_class_folders
from ..layers.bcn import group_count_mismatch
from ..utils.config_files import config_scope, resolve_config

BCN_TYPES = ('BCN', 'BatchChannelNorm2d')
FOLDER_DATASETS = ('ImageNet', 'CheckedImageNet', 'CustomDataset')


def load_tool_config(path: str) -> Tuple[str, Config]:
    """``(config file, loaded config)`` for ``path`` (a file, or the name of a config mmbcn
    ships); SystemExit with one ``error:`` line when there is no such config or its
    ``default_scope`` is not a codebase the tools run."""
    try:
        config_file = resolve_config(path)
    except FileNotFoundError as error:
        raise SystemExit(f'error: {error}') from None
    cfg = Config.fromfile(config_file)
    try:
        config_scope(cfg)
    except ValueError as error:
        raise SystemExit(f'error: config {config_file}: {error}') from None
    return config_file, cfg


def require_checkpoint(path: str, label: str = 'checkpoint') -> None:
    """SystemExit with one ``error:`` line naming ``path`` when it does not load as a
    checkpoint weights-only (:func:`~mmbcn.checkpoints.weights_only.checkpoint_problem`)."""
    problem = checkpoint_problem(path)
    if problem:
        raise SystemExit(f'error: {label} {path}: {problem}.')


def _split_dir(dataset: dict) -> Optional[str]:
    """The folder a classification dataset cfg reads its classes from, None with an ann_file."""
    if dataset.get('type') not in FOLDER_DATASETS:
        return None
    root = dataset.get('data_root') or ''
    split = dataset.get('split') or ''
    prefix = dataset.get('data_prefix') or split
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', prefix.get('img', ''))
    ann_file = dataset.get('ann_file') or (
        osp.join('meta', f'{split}.txt') if split else '')
    if ann_file and osp.isfile(osp.join(root, ann_file)):
        return None
    return osp.join(root, prefix)


def check_class_splits(cfg) -> None:
    """Raise SystemExit naming the folder when a classification split's folders are unusable."""
    splits = {}
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader and isinstance(loader.get('dataset'), dict):
            folder = _split_dir(loader['dataset'])
            if folder is not None:
                splits[name] = (folder, loader['dataset'].get('metainfo', {}).get('classes'))
    train = splits.get('train_dataloader', (None, None))[0]
    for name, (folder, classes) in splits.items():
        reference = None if folder == train else train
        try:
            check_class_folders(folder, reference, classes)
        except ClassFolderError as error:
            raise SystemExit(f'error: {name}: {error}') from None


def _pretrained_checkpoints(node, path: str = 'model') -> Iterator[Tuple[str, dict, str]]:
    """(config path of the module, its cfg, checkpoint file) for every Pretrained init_cfg."""
    if isinstance(node, dict):
        inits = node.get('init_cfg')
        for init in inits if isinstance(inits, list) else [inits]:
            if isinstance(init, dict) and init.get('type') == 'Pretrained':
                yield path, node, init
        for key, value in node.items():
            if key != 'init_cfg':
                yield from _pretrained_checkpoints(value, f'{path}.{key}')


def _bcn_group_counts(node) -> List[Optional[int]]:
    """num_groups of every BCN cfg in a subtree; None where group_rule adapts it to the width."""
    counts = []
    if isinstance(node, dict):
        if node.get('type') in BCN_TYPES:
            exact = node.get('group_rule', 'exact') == 'exact'
            counts.append(node.get('num_groups', 32) if exact else None)
        for value in node.values():
            counts.extend(_bcn_group_counts(value))
    elif isinstance(node, (list, tuple)):
        for value in node:
            counts.extend(_bcn_group_counts(value))
    return counts


def check_pretrained_group_counts(cfg) -> None:
    """Raise SystemExit naming the file when a pretrained checkpoint's BCN group count differs.

    Checked where the module's BCN layers all use one exact ``num_groups``; other cases are
    left to ``BatchChannelNorm2d`` itself, which refuses the weights when they are loaded.
    """
    for path, module_cfg, init in _pretrained_checkpoints(cfg.get('model', {})):
        counts = set(_bcn_group_counts(module_cfg))
        file = init.get('checkpoint')
        if len(counts) != 1 or None in counts or not isinstance(file, str) \
                or not osp.isfile(file):
            continue
        (num_groups,) = counts
        checkpoint = load_weights_only(file, map_location='cpu', mmap=True)
        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
        prefix = init.get('prefix') or ''
        for key, value in state.items():
            if key.startswith(prefix) and key.endswith('group_weight') \
                    and value.numel() != num_groups:
                raise SystemExit(f'error: {path}.init_cfg checkpoint {file}: '
                                 f'{group_count_mismatch(key, value.numel(), num_groups)}')
