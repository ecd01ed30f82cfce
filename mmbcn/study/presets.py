"""The normalization variants a study can swap into a config, by name.

A preset says which norm layer every ``norm_cfg`` of the model becomes, whether the convs of
those modules are weight-standardized (``WSConv2d``; the preset's name says ``ws``), and, for
BCN, how its batch stage runs:

* ``'bcn-ws'`` picks BCN's mode from the global batch (images per GPU x GPUs) and the
  codebase with the rule mmbcn's configs follow (:func:`bcn_micro_batch`);
* the ``'bcn-ws-<r policy>'`` presets compare ways of setting the update rate r of micro-batch
  BCN, so they always run micro-batch mode: ``'lr'`` and ``'constant'`` are policies of
  :class:`mmbcn.engine.BCNUpdateRateHook`, ``'cma'`` is ``momentum=None`` (r_t = 1/t, a
  cumulative average of the batches seen) without the hook;
* ``'bcn-ws-batch'`` and ``'bcn-ws-channel'`` run one of BCN's two stages, with WS, through
  mmbcn's ablation layers (:mod:`mmbcn.layers.bcn_stages`): the batch stage alone in
  micro-batch mode with the rate hook's defaults (as ``'bcn-ws'`` at a micro batch), or the
  channel stage alone (GN+WS with BCN's parameterization).

The other normalizations of the same body of work:

* ``'gn-pn'``: GroupNorm + Proxy Normalization (Labatie et al., NeurIPS 2021): the backbone
  becomes its Proxy-Normalization variant (``ResNetV1c`` -> ``ProxyNormResNetV1c``, see
  :mod:`mmbcn.models.backbones.proxy_norm_resnet`), every norm GroupNorm (the heads' plain GN);
* ``'-rbn'`` after any preset whose norms have a scale (BN, SyncBN, GN, BCN; ``'bn-rbn'``,
  ``'gn-ws-rbn'``, ``'bcn-ws-rbn'``, ...): that preset with the Revisiting-BN recipe (Davis and
  Frank, arXiv:2110.13989): the 0.1 scale init, the lr / 100 and no-decay parameter groups, and
  the input BatchNorm (:mod:`mmbcn.models.revisiting_bn`,
  :mod:`mmbcn.engine.optimizers.revisiting_bn_constructor`).

These presets are mmbcn's; none of them is a recipe of the BCN authors, and the two above apply
their authors' methods as mmbcn configures them (placement in v1 ResNets, the heads' norms).
"""

from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

from .errors import StudyInputError

# mmbcn's configs run BCN large-batch (batch statistics with gradients, synchronized) from a
# global batch of 8 images up (the DeepLabV3 configs at 8 x 1 and 8 x 2, ImageNet at 128-256)
# and micro-batch below it (the demos at 2-4 images), except detection: the Mask R-CNN configs
# run micro-batch at 8 x 2 (the setting of 1-2 images per GPU; see their header).
LARGE_BATCH_FROM = 8

RATE_HOOK = 'BCNUpdateRateHook'
RBN_SUFFIX = '-rbn'
BATCH_STAGE_TYPES = ('BCN', 'BCNBatchStage')  # BCN's batch stage: a mode, estimates, the hook
GROUP_TYPES = ('GN', 'BCN', 'BCNChannelStage')
# mmbcn's ablation layers: plain modules, which mmbcn.analysis (NormStatisticsHook) does not
# take for norm layers
ABLATION_TYPES = ('BCNBatchStage', 'BCNChannelStage')


@dataclass(frozen=True)
class Preset:
    """One normalization variant.

    Args:
        name: what ``--norms`` takes.
        description: one line for the table.
        norm_type: the registered norm type (``'BN'``, ``'SyncBN'``, ``'GN'``, ``'BCN'``,
            ``'BCNBatchStage'``, ``'BCNChannelStage'``).
        weight_standardized: convs of the swapped modules become ``WSConv2d``.
        micro_batch: BCN's batch stage only: True or False fixes the mode, None takes it from
            the global batch.
        norm_options: extra keys of the norm cfg (``momentum=None`` for the cumulative average).
        rate_hook: the ``BCNUpdateRateHook`` cfg added in micro-batch mode (None: no hook).
        proxy_norm: the backbone becomes its Proxy-Normalization variant.
        revisiting_bn: the Revisiting-BN recipe is added (init, optimizer groups, input BN).
    """

    name: str
    description: str
    norm_type: str
    weight_standardized: bool = False
    micro_batch: Optional[bool] = None
    norm_options: Dict = field(default_factory=dict)
    rate_hook: Optional[Dict] = None
    proxy_norm: bool = False
    revisiting_bn: bool = False

    @property
    def has_batch_stage(self) -> bool:
        """Whether the norm runs BCN's batch stage (BCN, or its batch stage alone): it has a
        mode, and the rate hook in micro-batch mode."""
        return self.norm_type in BATCH_STAGE_TYPES

    @property
    def uses_groups(self) -> bool:
        return self.norm_type in GROUP_TYPES

    @property
    def is_ablation(self) -> bool:
        """Whether the norm is one of mmbcn's ablation layers of BCN's stages."""
        return self.norm_type in ABLATION_TYPES

    @property
    def has_scale(self) -> bool:
        """Whether the Revisiting-BN recipe applies: norms with a scale, no Proxy Norm (whose
        scale sits under the activation) and the recipe not added yet."""
        return (self.norm_type in ('BN', 'SyncBN', 'GN', 'BCN') and not self.proxy_norm
                and not self.revisiting_bn)


def with_revisiting_bn(preset: Preset) -> Preset:
    """``preset`` with the Revisiting-BN recipe: named ``<name>-rbn``."""
    return replace(preset, name=preset.name + RBN_SUFFIX, revisiting_bn=True,
                   description=f'{preset.description} + Revisiting-BN recipe (scales 0.1 at '
                               f'lr / 100, input BN)')


MICRO_BATCH_SCOPES = ('mmdet',)


def bcn_micro_batch(global_batch: int, scope: Optional[str] = None) -> bool:
    """Whether BCN runs micro-batch mode (``estimate=True``) for a config of ``scope`` trained
    at ``global_batch`` images per step (images per GPU x GPUs).

    The rule of mmbcn's configs: micro-batch for detection (``'mmdet'``) and below
    :data:`LARGE_BATCH_FROM` images per step, large-batch synchronized
    (``estimate=False, sync_stats=True``) otherwise.
    """
    return scope in MICRO_BATCH_SCOPES or global_batch < LARGE_BATCH_FROM


PRESETS: Dict[str, Preset] = {p.name: p for p in (
    Preset('bn', 'BatchNorm, statistics per GPU', 'BN'),
    Preset('syncbn', 'BatchNorm, statistics over all GPUs (torch SyncBatchNorm)', 'SyncBN'),
    Preset('gn', 'GroupNorm', 'GN'),
    Preset('gn-ws', 'GroupNorm + WS', 'GN', weight_standardized=True),
    Preset('bcn-ws', "BCN + WS, mode from the global batch, the rate hook's defaults", 'BCN',
           weight_standardized=True, rate_hook=dict(type=RATE_HOOK)),
    Preset('bcn-ws-lr', "BCN + WS micro-batch, r = 0.1 x lr / base lr (hook policy 'lr')",
           'BCN', weight_standardized=True, micro_batch=True,
           rate_hook=dict(type=RATE_HOOK, policy='lr', rate=0.1)),
    Preset('bcn-ws-constant', "BCN + WS micro-batch, r = 0.1 (hook policy 'constant')", 'BCN',
           weight_standardized=True, micro_batch=True,
           rate_hook=dict(type=RATE_HOOK, policy='constant', rate=0.1)),
    Preset('bcn-ws-cma', 'BCN + WS micro-batch, momentum=None: r = 1/t, no hook', 'BCN',
           weight_standardized=True, micro_batch=True, norm_options=dict(momentum=None)),
    Preset('bcn-ws-batch', "BCN's batch stage alone + WS, micro-batch, the rate hook's "
           "defaults (mmbcn's ablation layer BCNBatchStage)", 'BCNBatchStage',
           weight_standardized=True, micro_batch=True, rate_hook=dict(type=RATE_HOOK)),
    Preset('bcn-ws-channel', "BCN's channel stage alone + WS: GN+WS with BCN's "
           "parameterization (mmbcn's ablation layer BCNChannelStage)", 'BCNChannelStage',
           weight_standardized=True),
    Preset('gn-pn', 'GroupNorm + Proxy Normalization (the PN backbone; heads GroupNorm)', 'GN',
           proxy_norm=True),
)}
PRESETS['bn-rbn'] = with_revisiting_bn(PRESETS['bn'])


def get_preset(name: str) -> Optional[Preset]:
    """The preset called ``name``: one of :data:`PRESETS`, or ``<preset>-rbn`` for any preset
    with a scale; None if there is none."""
    if name in PRESETS:
        return PRESETS[name]
    base = PRESETS.get(name[:-len(RBN_SUFFIX)]) if name.endswith(RBN_SUFFIX) else None
    return with_revisiting_bn(base) if base is not None and base.has_scale else None


def get_presets(names) -> Tuple[Preset, ...]:
    """The presets of ``names``, in order; one error naming every unknown one and the valid."""
    unknown = [name for name in names if get_preset(name) is None]
    if unknown:
        raise StudyInputError(
            f'unknown normalization preset(s) {", ".join(map(repr, unknown))}; '
            f'valid: {", ".join(PRESETS)}, and {RBN_SUFFIX!r} after any of '
            f'{", ".join(n for n, p in PRESETS.items() if p.has_scale)} '
            f'(the Revisiting-BN recipe)')
    duplicates = sorted({name for name in names if list(names).count(name) > 1})
    if duplicates:
        raise StudyInputError(f'preset(s) named twice: {", ".join(duplicates)}; name each once')
    return tuple(get_preset(name) for name in names)
