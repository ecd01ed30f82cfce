"""Every change mmbcn makes to another package, declared: :data:`PATCHES`, in the order applied.

Read as a table: package, target, the versions it was checked against, what it does. The
replacements are in :mod:`.bcn_and_ws`; loading is in :mod:`mmbcn.checkpoints` and
:mod:`mmbcn.torchvision_compat`; the mechanism in :mod:`.mechanism`.
"""

import copyreg
from typing import Optional

from mmengine.logging import HistoryBuffer

from .. import torchvision_compat
from ..checkpoints import weights_only
from ..layers.kinds import mmbcn_layer_names
from ..utils import feature_probes
from . import bcn_and_ws as replace
from . import config_bases, families
from .mechanism import FunctionPatch, Refusal, RegistrationPatch

__all__ = ['AFTER_IMPORT', 'PATCHES']

# Each target was read in both OpenMMLab families (mmbcn.openmmlab_family): the onedl releases
# below have the same code there (docstrings aside), except MMEngine's checkpoint loading.
MMCV = 'mmcv 2.1.0, onedl-mmcv 2.3.6'
MMENGINE = 'mmengine 0.10.3, 0.10.7, onedl-mmengine 0.10.12'
MMPRETRAIN = 'mmpretrain 1.2.0, onedl-mmpretrain 1.3.6'
TORCH = 'torch 2.1.2, 2.13.0, 2.15.0'


def _names_in_allow_list() -> Optional[str]:
    if feature_probes.safe_globals_take_names():
        return None
    return ("torch's add_safe_globals takes no (object, name) pairs (torch < 2.6): mmbcn's "
            "loader enforces the allow-list with its own unpickler")


def _register_local_loader() -> None:
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes='', loader=weights_only.load_from_local,
                                     force=True)


def _local_loader_registry() -> Optional[str]:
    from mmengine.runner.checkpoint import CheckpointLoader

    if hasattr(CheckpointLoader, 'register_scheme'):
        return None
    return "mmengine's CheckpointLoader has no register_scheme"


def _reparameterization(module: str, owner: str) -> FunctionPatch:
    return FunctionPatch(
        'mmpretrain', f'{module}:{owner}.switch_to_deploy', MMPRETRAIN,
        f'{owner}.switch_to_deploy refuses a module holding BCN or WSConv2d (it folds norms as '
        f'BatchNorm and raw conv weights)',
        parameters=('self',), replace=replace.refuse_reparameterizing)


# What a guard refuses where its patch is skipped: models holding BCN or WSConv2d.
MMBCN_LAYERS = Refusal(mmbcn_layer_names, 'BCN or WSConv2d')

PATCHES = (
    RegistrationPatch(
        'torchvision', 'torchvision (its first import)', 'torchvision 0.28.0 on torch 2.13 CPU',
        'declares the schemas of two torchvision operators when its C++ extension does not '
        'load (a CUDA torchvision on a CPU torch), so that it imports',
        available=lambda: None, register=torchvision_compat.install),
    RegistrationPatch(
        'mmengine', 'copyreg:dispatch_table[HistoryBuffer]', MMENGINE,
        'pickles HistoryBuffer as its constructor call (weights-only loadable), registered '
        'statistics by name',
        available=lambda: None,
        register=lambda: copyreg.pickle(HistoryBuffer, weights_only.reduce_history_buffer)),
    RegistrationPatch(
        'torch', 'torch.serialization:add_safe_globals', 'torch 2.13.0, 2.15.0',
        "adds HistoryBuffer and numpy's array entries to torch's weights-only allow-list",
        available=_names_in_allow_list, register=weights_only.register_allow_list),
    RegistrationPatch(
        'mmengine', 'mmengine.runner.checkpoint:CheckpointLoader (local files)', MMENGINE,
        "loads local checkpoints weights-only through mmbcn's loader, whose refusals name "
        'the fix',
        available=_local_loader_registry, register=_register_local_loader),
    FunctionPatch(
        'mmengine', 'mmengine.runner.checkpoint:_safe_torch_load', 'onedl-mmengine 0.10.12',
        "MMEngine's other checkpoint loaders (openmmlab://, pavi://, storage backends) load "
        "weights-only through mmbcn's loader instead of falling back to weights_only=False",
        parameters=('file', 'map_location', 'weights_only'),
        replace=families.mmengine_safe_torch_load,
        absent="upstream MMEngine's loaders call torch.load, weights-only by default on "
               'torch >= 2.6, with no fallback'),
    FunctionPatch(
        'mmengine', config_bases.TARGET, MMENGINE,
        "a 'pkg::' base config is found through whichever distribution provides the module "
        "pkg (onedl-mmsegmentation for mmseg::), not only the one MMEngine's table names",
        parameters=('cfg_path',), replace=config_bases.package_and_cfg_path,
        also_at=('mmengine.config.config:_get_package_and_cfg_path',
                 'mmengine.hub.hub:_get_package_and_cfg_path')),
    FunctionPatch(
        'mmcv', 'mmcv.cnn.utils.fuse_conv_bn:_fuse_conv_bn', MMCV,
        'folds BCN exactly (batch stage into the conv, channel stage kept as a GroupNorm) and '
        "a WSConv2d with its standardized weight",
        parameters=('conv', 'bn'), replace=replace.mmcv_fuse_conv_bn,
        refuses=MMBCN_LAYERS,
        guards=('mmcv.cnn.utils.fuse_conv_bn:fuse_conv_bn', 'mmcv.cnn.utils:fuse_conv_bn',
                'mmcv.cnn:fuse_conv_bn')),
    FunctionPatch(
        'mmcv', 'mmcv.cnn.bricks.conv_module:efficient_conv_bn_eval_forward', MMCV,
        "ConvModule(efficient_conv_bn_eval=True) computes BCN and WSConv2d exactly",
        parameters=('bn', 'conv', 'x'), replace=replace.mmcv_efficient_conv_bn_eval,
        refuses=MMBCN_LAYERS,
        guards=('mmcv.cnn.bricks.conv_module:ConvModule.turn_on_efficient_conv_bn_eval',)),
    FunctionPatch(
        'mmengine', 'mmengine.model.efficient_conv_bn_eval:'
        'turn_on_efficient_conv_bn_eval_for_single_model', MMENGINE,
        "refuses MMEngine's fx-based efficient conv-BN eval on modules holding BCN or "
        'WSConv2d, naming the alternatives',
        parameters=('model',), replace=replace.mmengine_efficient_conv_bn_eval,
        refuses=MMBCN_LAYERS,
        guards=('mmengine.model.efficient_conv_bn_eval:turn_on_efficient_conv_bn_eval',)),
    FunctionPatch(
        'mmengine', 'mmengine.model.utils:convert_sync_batchnorm', MMENGINE,
        "sync_bn='torch'/'mmcv' keeps BCN and makes it synchronize its statistics",
        parameters=('module', 'implementation'), replace=replace.mmengine_convert_sync_batchnorm,
        refuses=MMBCN_LAYERS,
        guards=('mmengine.model:convert_sync_batchnorm',
                'mmengine.runner.runner:convert_sync_batchnorm')),
    FunctionPatch(
        'torch', 'torch.nn:SyncBatchNorm.convert_sync_batchnorm', TORCH,
        'keeps BCN and makes it synchronize its statistics',
        parameters=('cls', 'module', 'process_group'),
        replace=replace.torch_convert_sync_batchnorm),
    FunctionPatch(
        'torch', 'torch.optim.swa_utils:update_bn', TORCH,
        'refuses micro-batch BCN (its variance estimate is not a BN statistic)',
        parameters=('loader', 'model', 'device'), replace=replace.torch_swa_update_bn),
    FunctionPatch(
        'torch', 'torch.nn.utils.fusion:fuse_conv_bn_eval', TORCH,
        'folds the standardized weight of a WSConv2d; refuses BCN, naming mmcv\'s fuse_conv_bn',
        parameters=('conv', 'bn', 'transpose'), replace=replace.torch_fuse_conv_bn_eval,
        also_at=('torch.nn.utils:fuse_conv_bn_eval',)),
    FunctionPatch(
        'mmcv', 'mmcv.cnn.utils.flops_counter:get_modules_mapping', MMCV,
        "mmcv's FLOP counter counts WSConv2d as a conv and BCN as a BatchNorm plus a GroupNorm",
        parameters=(), replace=replace.mmcv_flops_counter,
        refuses=MMBCN_LAYERS,
        guards=('mmcv.cnn.utils.flops_counter:get_model_complexity_info',
                'mmcv.cnn:get_model_complexity_info')),
    FunctionPatch(
        'torch', 'torch.fx:Tracer.is_leaf_module', TORCH,
        "torch.fx's default tracer (symbolic_trace, torchvision's create_feature_extractor) "
        'records BCN and WSConv2d as leaf modules: the graph calls the real layer',
        parameters=('self', 'm', 'module_qualified_name'),
        replace=replace.torch_fx_leaf_modules),
    FunctionPatch(
        'mmpretrain', 'mmpretrain.engine.hooks.precise_bn_hook:update_bn_stats', MMPRETRAIN,
        'PreciseBNHook refuses micro-batch BCN (its variance estimate is not a BN statistic)',
        parameters=('model', 'loader', 'num_samples', 'logger'),
        replace=replace.mmpretrain_precise_bn),
    _reparameterization('mmpretrain.models.backbones.repvgg', 'RepVGGBlock'),
    _reparameterization('mmpretrain.models.backbones.mobileone', 'MobileOneBlock'),
    _reparameterization('mmpretrain.models.backbones.repmlp', 'RepMLPNet'),
    _reparameterization('mmpretrain.models.backbones.levit', 'LeViT'),
)

# Modules mmbcn does not import itself: their patches are applied when they are imported.
AFTER_IMPORT = ('mmpretrain.engine.hooks.precise_bn_hook', 'mmpretrain.models.backbones.repvgg',
                'mmpretrain.models.backbones.mobileone', 'mmpretrain.models.backbones.repmlp',
                'mmpretrain.models.backbones.levit')
