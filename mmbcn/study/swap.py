"""One rule that swaps a preset's normalization into every norm layer of a config.

For a loaded MMEngine config and a :class:`~mmbcn.study.presets.Preset`:

* every dict of ``cfg.model`` (at any depth) whose ``norm_cfg`` is a 2-d feature norm
  (:data:`FEATURE_NORM_TYPES`) gets the preset's norm cfg; ``requires_grad`` is kept, the group
  count is the config's own (the first ``num_groups`` among its GN / BCN norm cfgs, else 32);
  ``norm_cfg=None`` (a module built without norm) and other norm types (LayerNorm, ...) are
  left as they are and listed;
* where the preset is weight-standardized, those same dicts get ``conv_cfg=dict(type='WSConv2d')``;
  where it is not, every WS conv cfg of the model (:data:`WS_CONV_TYPES`) becomes ``None``;
* BCN's mode: :func:`~mmbcn.study.presets.bcn_micro_batch` of the global batch (images per
  GPU x GPUs) and the config's scope, unless the preset fixes it; the norm cfg of BCN and of its
  batch stage alone (``'BCNBatchStage'``) gets ``estimate`` and ``sync_stats=True``, that of BCN
  and of its channel stage alone (``'BCNChannelStage'``) the group count;
* Proxy-Normalization presets (``proxy_norm``): ``model.backbone`` of type ``ResNet``,
  ``ResNetV1c`` or ``ResNetV1d`` becomes ``ProxyNormResNet``, ``...V1c``, ``...V1d`` (any other
  backbone is refused), imported from ``mmbcn.models.backbones.<scope>_resnet``;
* Revisiting-BN presets (``revisiting_bn``): ``RevisitingBNInit`` is added to ``model.init_cfg``,
  ``model.data_preprocessor`` is wrapped in ``InputNormDataPreprocessor`` with its own
  ``mean``/``std`` set to None, and ``optim_wrapper.constructor`` becomes
  ``RevisitingBNOptimWrapperConstructor`` (a config with another constructor is refused);
* ``custom_hooks``: every ``BCNUpdateRateHook`` is removed; the preset's is added when it runs
  BCN's batch stage in micro-batch mode; ``NormStatisticsHook`` is added at the given interval,
  except for the presets of mmbcn's ablation layers (``'BCNBatchStage'``,
  ``'BCNChannelStage'``), which :mod:`mmbcn.analysis` does not take for norm layers (the hook
  would find none to measure);
* the run logs through MMEngine's ``LocalVisBackend`` (added when missing, other backends kept),
  validation scalars at their iteration (``log_metric_by_epoch=False``), and a top-level
  ``sync_bn`` (MMEngine's converter, which would replace the swapped layers) is removed.

Every change is recorded, key by key, in the returned :class:`Swap`.
"""

import copy
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config
from torch import nn

from ..layers import BatchChannelNorm2d, BCNBatchStage, BCNChannelStage, WSConv2d
from ..layers.proxy_norm import ProxyNormAct
from ..utils.config_files import build_model
from .errors import StudyInputError
from .presets import RATE_HOOK, Preset, bcn_micro_batch

FEATURE_NORM_TYPES = ('BN', 'BN2d', 'BatchNorm2d', 'SyncBN', 'MMSyncBN', 'GN', 'GroupNorm',
                      'IN', 'IN2d', 'InstanceNorm2d', 'BCN', 'BatchChannelNorm2d',
                      'BCNBatchStage', 'BCNChannelStage')
WS_CONV_TYPES = ('WSConv2d', 'ConvWS', 'ConvAWS')
STATS_HOOK = 'NormStatisticsHook'
DEFAULT_GROUPS = 32
PROXY_NORM_BACKBONES = {'ResNet': 'ProxyNormResNet', 'ResNetV1c': 'ProxyNormResNetV1c',
                        'ResNetV1d': 'ProxyNormResNetV1d'}
PROXY_NORM_SCOPES = ('mmdet', 'mmseg', 'mmpretrain')
RBN_INIT = dict(type='RevisitingBNInit', scale=0.1)
RBN_PREPROCESSOR = 'InputNormDataPreprocessor'
RBN_CONSTRUCTOR = 'RevisitingBNOptimWrapperConstructor'
RBN_IMPORTS = ('mmbcn.models', 'mmbcn.engine.optimizers')
# the data preprocessor a model of the scope builds when its cfg names no type
DEFAULT_PREPROCESSORS = {'mmdet': 'DetDataPreprocessor', 'mmseg': 'SegDataPreProcessor',
                         'mmpretrain': 'ClsDataPreprocessor'}


@dataclass
class Swap:
    """A preset swapped into a config: the new config and what changed.

    Attributes:
        cfg: the swapped config (a copy; the input is not modified).
        changes: ``'path: before -> after'``, one line per changed key.
        left: ``'path: why'`` for norm cfgs the rule leaves alone.
        images_per_gpu, global_batch: the batch the mode rule saw.
        bcn_mode: ``'micro-batch'`` or ``'large-batch'`` for presets with BCN's batch stage
            (BCN, or its batch stage alone), else None.
        backbone: ``'ResNetV1c -> ProxyNormResNetV1c'`` where the preset changes the backbone.
        num_groups: the group count of presets whose norm has groups (GN, BCN, BCN's channel
            stage alone), else None.
    """

    cfg: Config
    changes: List[str] = field(default_factory=list)
    left: List[str] = field(default_factory=list)
    images_per_gpu: int = 0
    global_batch: int = 0
    bcn_mode: Optional[str] = None
    backbone: Optional[str] = None
    num_groups: Optional[int] = None


def describe(node) -> str:
    """A short text of a layer cfg: ``GN(num_groups=8, requires_grad=True)``, or ``None``."""
    if not isinstance(node, dict):
        return repr(node)
    options = ', '.join(f'{k}={v!r}' for k, v in node.items() if k != 'type')
    return f'{node.get("type")}({options})'


def _owners(node, key: Optional[str], path: str) -> Iterator[Tuple[str, dict]]:
    """(path, dict) for every dict in a cfg tree that has ``key`` (every dict for None), depth
    first."""
    if isinstance(node, dict):
        if key is None or key in node:
            yield path, node
        for name, value in node.items():
            yield from _owners(value, key, f'{path}.{name}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _owners(value, key, f'{path}[{index}]')


def norm_owners(model_cfg) -> Tuple[List[Tuple[str, dict]], List[str]]:
    """The dicts whose ``norm_cfg`` the rule swaps, and ``'path: why'`` for those it leaves."""
    swapped, left = [], []
    for path, owner in _owners(model_cfg, 'norm_cfg', 'model'):
        norm = owner['norm_cfg']
        if not isinstance(norm, dict):
            left.append(f'{path}.norm_cfg: {norm!r} (the module is built without a norm)')
        elif norm.get('type') not in FEATURE_NORM_TYPES:
            left.append(f'{path}.norm_cfg: {describe(norm)} (not a 2-d feature norm)')
        else:
            swapped.append((path, owner))
    for path, owner in _owners(model_cfg, None, 'model'):
        for key in sorted(k for k in owner if isinstance(k, str) and k.endswith('_norm_cfg')):
            left.append(f'{path}.{key}: {describe(owner[key])} (the rule swaps norm_cfg only)')
    return swapped, left


def config_group_count(owners: List[Tuple[str, dict]]) -> int:
    """The config's own group count: the first GN / BCN ``num_groups``, else 32."""
    for _, owner in owners:
        groups = owner['norm_cfg'].get('num_groups')
        if groups:
            return int(groups)
    return DEFAULT_GROUPS


def preset_norm_cfg(preset: Preset, num_groups: int, micro_batch: bool,
                    requires_grad: bool) -> dict:
    """The norm cfg of ``preset``: the registered type with its options."""
    norm = dict(type=preset.norm_type)
    if preset.uses_groups:
        norm['num_groups'] = num_groups
    if preset.has_batch_stage:
        norm.update(estimate=micro_batch, sync_stats=True)
    norm.update(preset.norm_options)
    norm['requires_grad'] = requires_grad
    return norm


class _Recorder:
    def __init__(self, swap: Swap):
        self.swap = swap

    def set(self, owner: dict, key: str, value, path: str) -> None:
        before = owner.get(key)
        owner[key] = value
        if _plain(before) != _plain(value):
            self.swap.changes.append(f'{path}.{key}: {describe(before)} -> {describe(value)}')


def _plain(node):
    """A cfg node as plain dicts and lists, to compare ConfigDicts with dicts."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def images_per_gpu(cfg: Config) -> int:
    batch = cfg.get('train_dataloader', {}).get('batch_size')
    if not isinstance(batch, int) or batch < 1:
        raise StudyInputError('the config has no train_dataloader.batch_size (images per GPU); '
                              'the study runs training and needs one')
    return batch


def _swap_convs(swap: Swap, owners, weight_standardized: bool, record: _Recorder) -> None:
    if weight_standardized:
        for path, owner in owners:
            record.set(owner, 'conv_cfg', dict(type='WSConv2d'), path)
        return
    for path, owner in _owners(swap.cfg.model, 'conv_cfg', 'model'):
        conv = owner['conv_cfg']
        if isinstance(conv, dict) and conv.get('type') in WS_CONV_TYPES:
            record.set(owner, 'conv_cfg', None, path)


def _swap_hooks(swap: Swap, preset: Preset, micro_batch: bool, stats_interval: int) -> None:
    cfg = swap.cfg
    before = [_plain(h) for h in cfg.get('custom_hooks', [])]
    hooks = [h for h in before if h.get('type') not in (RATE_HOOK, STATS_HOOK)]
    if preset.has_batch_stage and micro_batch and preset.rate_hook:
        hooks.append(copy.deepcopy(preset.rate_hook))
    if stats_interval and not preset.is_ablation:
        hooks.append(dict(type=STATS_HOOK, interval=stats_interval))
    cfg.custom_hooks = hooks
    if hooks != before:
        swap.changes.append(f'custom_hooks: [{", ".join(map(describe, before))}] -> '
                            f'[{", ".join(map(describe, hooks))}]')


def _swap_logging(swap: Swap, record: _Recorder) -> None:
    cfg = swap.cfg
    visualizer = cfg.setdefault('visualizer', dict(type='Visualizer'))
    backends = list(visualizer.get('vis_backends') or [])
    if not any(backend.get('type') == 'LocalVisBackend' for backend in backends):
        record.set(visualizer, 'vis_backends', [*backends, dict(type='LocalVisBackend')],
                   'visualizer')
    logger = cfg.setdefault('default_hooks', {}).setdefault('logger', dict(type='LoggerHook'))
    record.set(logger, 'log_metric_by_epoch', False, 'default_hooks.logger')
    if 'sync_bn' in cfg:
        swap.changes.append(f'sync_bn: {cfg.sync_bn!r} -> removed')
        cfg.pop('sync_bn')
    _add_imports(swap, ['mmbcn'], record)


def _add_imports(swap: Swap, modules: List[str], record: _Recorder) -> None:
    imports = swap.cfg.setdefault('custom_imports', dict(imports=[], allow_failed_imports=False))
    before = list(imports.get('imports', []))
    missing = [module for module in modules if module not in before]
    if missing:
        record.set(imports, 'imports', [*before, *missing], 'custom_imports')


def _swap_backbone(swap: Swap, record: _Recorder) -> None:
    """The Proxy-Normalization variant of the model's ResNet backbone."""
    backbone = swap.cfg.model.get('backbone')
    kind = backbone.get('type') if isinstance(backbone, dict) else None
    scope = swap.cfg.get('default_scope')
    if kind not in PROXY_NORM_BACKBONES or scope not in PROXY_NORM_SCOPES:
        raise StudyInputError(
            f'Proxy Normalization swaps model.backbone {kind!r} (scope {scope!r}): it has '
            f'variants of {", ".join(PROXY_NORM_BACKBONES)} in {", ".join(PROXY_NORM_SCOPES)} '
            f'only')
    swap.backbone = f'{kind} -> {PROXY_NORM_BACKBONES[kind]}'
    record.set(backbone, 'type', PROXY_NORM_BACKBONES[kind], 'model.backbone')
    _add_imports(swap, [f'mmbcn.models.backbones.{scope}_resnet'], record)


def _add_revisiting_bn(swap: Swap, record: _Recorder) -> None:
    """The Revisiting-BN recipe: init, input BatchNorm, optimizer groups."""
    cfg = swap.cfg
    optim_wrapper = cfg.get('optim_wrapper')
    constructor = optim_wrapper.get('constructor') if optim_wrapper else None
    if not optim_wrapper or constructor not in (None, 'DefaultOptimWrapperConstructor',
                                                 RBN_CONSTRUCTOR):
        raise StudyInputError(
            f'the Revisiting-BN recipe builds the optimizer with {RBN_CONSTRUCTOR}; this '
            f'config has {"no optim_wrapper" if not optim_wrapper else constructor!r}')
    record.set(optim_wrapper, 'constructor', RBN_CONSTRUCTOR, 'optim_wrapper')
    model = cfg.model
    init_cfg = model.get('init_cfg')
    init_cfgs = list(init_cfg) if isinstance(init_cfg, (list, tuple)) else (
        [init_cfg] if init_cfg else [])
    if not any(c.get('type') == RBN_INIT['type'] for c in init_cfgs):
        record.set(model, 'init_cfg', [*init_cfgs, dict(RBN_INIT)], 'model')
    # the Runner gives the model the top-level data_preprocessor when it has none
    preprocessor = model.get('data_preprocessor') or cfg.get('data_preprocessor')
    if not isinstance(preprocessor, dict):
        raise StudyInputError('the Revisiting-BN recipe wraps model.data_preprocessor in '
                              f'{RBN_PREPROCESSOR}; this config has none')
    if preprocessor.get('type') != RBN_PREPROCESSOR:
        inner = dict(_plain(preprocessor), mean=None, std=None)
        inner.setdefault('type', DEFAULT_PREPROCESSORS.get(cfg.get('default_scope')))
        record.set(model, 'data_preprocessor', dict(type=RBN_PREPROCESSOR, preprocessor=inner),
                   'model')
    _add_imports(swap, list(RBN_IMPORTS), record)


def swap_config(cfg: Config, preset: Preset, gpus: int, stats_interval: int = 0,
                num_groups: Optional[int] = None, name: str = 'the config') -> Swap:
    """``cfg`` with ``preset`` swapped in for a run on ``gpus`` processes (see the module doc).

    Raises:
        StudyInputError: the model has no norm layer to swap, or no train batch size.
    """
    swap = Swap(copy.deepcopy(cfg))
    owners, swap.left = norm_owners(swap.cfg.get('model'))
    if not owners:
        raise StudyInputError(
            f'{name}: its model has no normalization layer to swap (no norm_cfg of type '
            f'{", ".join(FEATURE_NORM_TYPES[:7])}, ...); the study compares normalization '
            f'layers: give it a config whose model has some')
    swap.images_per_gpu = images_per_gpu(swap.cfg)
    swap.global_batch = swap.images_per_gpu * gpus
    micro_batch = preset.micro_batch
    if micro_batch is None:
        micro_batch = bcn_micro_batch(swap.global_batch, swap.cfg.get('default_scope'))
    if preset.has_batch_stage:
        swap.bcn_mode = 'micro-batch' if micro_batch else 'large-batch'
    groups = num_groups or config_group_count(owners)
    swap.num_groups = groups if preset.uses_groups else None
    record = _Recorder(swap)
    for path, owner in owners:
        requires_grad = owner['norm_cfg'].get('requires_grad', True)
        record.set(owner, 'norm_cfg',
                   preset_norm_cfg(preset, groups, micro_batch, requires_grad), path)
    _swap_convs(swap, owners, preset.weight_standardized, record)
    if preset.proxy_norm:
        _swap_backbone(swap, record)
    if preset.revisiting_bn:
        _add_revisiting_bn(swap, record)
    _swap_hooks(swap, preset, micro_batch, stats_interval)
    _swap_logging(swap, record)
    return swap


def count_layers(model: nn.Module) -> dict:
    """How many layers of each norm and conv class ``model`` has."""
    kinds = (BatchChannelNorm2d, BCNBatchStage, BCNChannelStage, ProxyNormAct,
             nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
             nn.modules.instancenorm._InstanceNorm, WSConv2d, nn.Conv2d)
    counts = {}
    for module in model.modules():
        kind = next((k for k in kinds if isinstance(module, k)), None)
        if kind is not None:
            name = type(module).__name__
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def built_layers(cfg: Config) -> dict:
    """How many layers of each norm and conv class the config's model builds: the check that no
    norm layer escaped the rule (one built from a module's default instead of a norm_cfg)."""
    return count_layers(build_model(cfg))
