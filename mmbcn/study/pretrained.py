"""The papers' protocol: pretrain a classifier with a preset, fine-tune the task from its backbone.

For each preset and seed, the study trains the classification config with the preset swapped in,
then writes the classifier's backbone in the task's key layout (:func:`write_pretrained_backbone`)
and fine-tunes the task config, with the same preset swapped in, from that file. The file records
which preset (and group count) pretrained it; the fine-tuning run loads it with
:class:`StrictPretrainedBackboneHook`, which refuses

* a file pretrained with another preset, or with another group count (GN with 8 or 32 groups,
  or GN with and without WS, have the same keys: only the record tells them apart);
* a missing, unexpected or mis-shaped key (torch's ``load_state_dict(strict=True)``).

Why a hook and not ``init_cfg=dict(type='Pretrained', ...)``: MMEngine's ``PretrainedInit``
loads with ``strict=False`` (a missing key is a warning in the log), and an initializer of any
other type runs *before* the children's own ``init_weights`` (BCN's among them), which would
overwrite what it loaded. The hook loads at ``before_train``, after the Runner's
``init_weights``, into the backbone only (``prefix='backbone.'``).

Key layout: mmpretrain's ``ResNetV1c`` builds its deep stem of ``ConvModule`` s
(``stem.0.conv.weight``, ``stem.0.bn.weight``, ...); mmseg's and mmdet's build it of plain layers
in one ``Sequential`` (``stem.0.weight``, ``stem.1.weight``, ...: conv, norm, ReLU three times).
:func:`deep_stem_renames` maps the first onto the second; every other key of the two ResNets is
the same, so nothing else is renamed. The norm layers' names come from the preset's norm
(``bn1`` for BN and BCN, ``gn1`` for GN) on both sides.
"""

import re
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ..checkpoints import load_weights_only

__all__ = ['PretrainedBackboneError', 'PretrainedNormMismatchError', 'StrictPretrainedBackboneHook',
           'convert_classifier_backbone', 'deep_stem_renames', 'load_backbone_strictly',
           'read_pretrained_backbone', 'write_pretrained_backbone']

PREFIX = 'backbone.'
META_KEY = 'mmbcn_study'
HOOK = 'StrictPretrainedBackboneHook'
_CONV_MODULE_STEM = re.compile(r'^stem\.(\d+)\.(conv|[a-z]+)\.(.+)$')


class PretrainedBackboneError(ValueError):
    """A pretrained backbone that does not fit the model it is loaded into; the message says why."""


class PretrainedNormMismatchError(PretrainedBackboneError):
    """A backbone pretrained with another normalization than the fine-tuning model's."""


def deep_stem_renames(source_keys: Sequence[str], target_keys: Sequence[str]) -> Dict[str, str]:
    """``source -> target`` for the deep-stem keys of an mmpretrain ``ResNetV1c`` (ConvModules:
    ``stem.<i>.conv.*``, ``stem.<i>.<norm>.*``) whose target is the plain ``Sequential`` stem of
    mmseg's / mmdet's (``stem.<3i>.*`` the conv, ``stem.<3i+1>.*`` the norm). Empty when the
    layouts already agree (or neither has a deep stem)."""
    targets = set(target_keys)
    renames = {}
    for key in source_keys:
        match = _CONV_MODULE_STEM.match(key)
        if key in targets or match is None:
            continue
        index, layer, rest = int(match.group(1)), match.group(2), match.group(3)
        renamed = f'stem.{3 * index + (0 if layer == "conv" else 1)}.{rest}'
        if renamed in targets:
            renames[key] = renamed
    return renames


def convert_classifier_backbone(classifier_state: Dict[str, torch.Tensor],
                                target_keys: Sequence[str]
                                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """The ``backbone.`` tensors of a classifier's state dict, prefix stripped and renamed into
    the layout of ``target_keys`` (the fine-tuning backbone's); and the renames."""
    backbone = {key[len(PREFIX):]: value for key, value in classifier_state.items()
                if key.startswith(PREFIX)}
    if not backbone:
        raise PretrainedBackboneError(
            f'the pretraining checkpoint has no {PREFIX!r} tensors: it is not a classifier '
            f'with a backbone (keys: {", ".join(list(classifier_state)[:4])}, ...)')
    renames = deep_stem_renames(list(backbone), target_keys)
    return {renames.get(key, key): value for key, value in backbone.items()}, renames


def write_pretrained_backbone(checkpoint: str, destination: str, preset: str,
                              num_groups: Optional[int], target_keys: Sequence[str]) -> dict:
    """Write the backbone of the Runner checkpoint ``checkpoint`` (a classifier pretrained with
    ``preset``) to ``destination`` in the fine-tuning backbone's layout, with the record the
    hook checks; returns the record."""
    state = load_weights_only(checkpoint, map_location='cpu')
    state = state.get('state_dict', state) if isinstance(state, dict) else state
    backbone, renames = convert_classifier_backbone(state, target_keys)
    record = dict(preset=preset, num_groups=num_groups, source=checkpoint,
                  renamed=[f'{a} -> {b}' for a, b in renames.items()])
    torch.save(dict(state_dict={PREFIX + key: value for key, value in backbone.items()},
                    meta={META_KEY: record}), destination)
    return record


def read_pretrained_backbone(path: str, preset: str, num_groups: Optional[int] = None,
                             prefix: str = PREFIX) -> Dict[str, torch.Tensor]:
    """The tensors under ``prefix`` of a file :func:`write_pretrained_backbone` wrote, after
    checking that ``preset`` (and ``num_groups``) pretrained it.

    Raises:
        PretrainedNormMismatchError: pretrained with another preset or group count, or with no
            record of one.
    """
    content = load_weights_only(path, map_location='cpu')
    record = (content.get('meta') or {}).get(META_KEY) if isinstance(content, dict) else None
    if not record:
        raise PretrainedNormMismatchError(
            f'{path} does not say which normalization pretrained it (no meta[{META_KEY!r}]); '
            f'the fine-tuning with preset {preset!r} needs a backbone pretrained with {preset!r}: '
            f'pretrain it with tools/norm_study.py --pretrain CLS_CONFIG')
    if record['preset'] != preset:
        raise PretrainedNormMismatchError(
            f'{path} was pretrained with preset {record["preset"]!r}, and the model fine-tuned '
            f'from it has preset {preset!r}: the protocol fine-tunes with the normalization of '
            f'the pretraining. Pretrain with {preset!r} (tools/norm_study.py --pretrain runs '
            f'both with the same preset), or fine-tune with {record["preset"]!r}')
    if num_groups is not None and record.get('num_groups') not in (None, num_groups):
        raise PretrainedNormMismatchError(
            f'{path} was pretrained with preset {preset!r} at {record["num_groups"]} groups, '
            f'the fine-tuning model has {num_groups}: give both the same --num-groups')
    state = content['state_dict']
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def load_backbone_strictly(backbone: nn.Module, path: str, preset: str,
                           num_groups: Optional[int] = None, prefix: str = PREFIX) -> int:
    """Load the pretrained backbone in ``path`` into ``backbone``, every key or nothing; the
    number of tensors loaded.

    Raises:
        PretrainedNormMismatchError: see :func:`read_pretrained_backbone`.
        PretrainedBackboneError: a key missing, unexpected or of another shape.
    """
    state = read_pretrained_backbone(path, preset, num_groups, prefix)
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(key for key in set(state) & set(expected)
                        if state[key].shape != expected[key].shape)
    if missing or unexpected or mis_shaped:
        listed = '; '.join(f'{what}: {", ".join(keys[:5])}' + (', ...' if len(keys) > 5 else '')
                           for what, keys in (('missing', missing), ('unexpected', unexpected),
                                              ('shape differs', mis_shaped)) if keys)
        raise PretrainedBackboneError(
            f'{path} (preset {preset!r}) does not fit the fine-tuning backbone '
            f'{type(backbone).__name__} key for key ({listed}): pretrain a backbone of the same '
            f'architecture, or convert its keys')
    backbone.load_state_dict(state, strict=True)
    return len(state)


@HOOKS.register_module()
class StrictPretrainedBackboneHook(Hook):
    """Load ``model.backbone`` from a backbone the study pretrained with ``preset``, strictly,
    before the first training iteration (see the module doc for why a hook)."""

    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: str, preset: str, num_groups: Optional[int] = None,
                 prefix: str = PREFIX):
        self.checkpoint = checkpoint
        self.preset = preset
        self.num_groups = num_groups
        self.prefix = prefix

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        count = load_backbone_strictly(model.backbone, self.checkpoint, self.preset,
                                       self.num_groups, self.prefix)
        runner.logger.info(f'{HOOK}: loaded {count} tensors into model.backbone, strictly, from '
                           f'{self.checkpoint} (pretrained with preset {self.preset!r})')


def hook_cfg(checkpoint: str, preset: str, num_groups: Optional[int]) -> dict:
    return dict(type=HOOK, checkpoint=checkpoint, preset=preset, num_groups=num_groups)


def key_mismatch(classifier_shapes: Dict[str, tuple], task_shapes: Dict[str, tuple]
                 ) -> Optional[str]:
    """None when the classifier's backbone tensors (key: shape), converted, are the task
    backbone's; else what differs (the plan's check, before anything runs)."""
    renames = deep_stem_renames(list(classifier_shapes), list(task_shapes))
    converted = {renames.get(key, key): shape for key, shape in classifier_shapes.items()}
    missing = sorted(set(task_shapes) - set(converted))
    unexpected = sorted(set(converted) - set(task_shapes))
    mis_shaped = sorted(key for key in set(converted) & set(task_shapes)
                        if tuple(converted[key]) != tuple(task_shapes[key]))
    if not (missing or unexpected or mis_shaped):
        return None
    return '; '.join(f'{what}: {", ".join(keys[:5])}' + (', ...' if len(keys) > 5 else '')
                     for what, keys in (('missing', missing), ('unexpected', unexpected),
                                        ('shape differs', mis_shaped)) if keys)
