"""Every patch mmbcn makes to upstream code, in one place (applied by ``import mmbcn``).

Code in mmcv and MMEngine that treats every ``_BatchNorm`` as a BatchNorm and every
``nn.Conv2d`` as a plain conv computes silently wrong results on BCN and WSConv2d (a BCN's
channel stage dropped, a folded scale undone by weight standardization). Where the framework
offers no extension point, the function it calls is replaced here. Each patch names the upstream
function and the versions it was checked against; each is applied once (idempotent) and hands
every case that involves neither BCN nor WSConv2d to the upstream function unchanged.

Patched (upstream function, version checked against: what mmbcn does instead):

* ``mmcv.cnn.utils.fuse_conv_bn._fuse_conv_bn``, mmcv 2.1.0:
  :func:`mmbcn.folding.fuse_conv_norm`;
* ``mmcv.cnn.bricks.conv_module.efficient_conv_bn_eval_forward``, mmcv 2.1.0:
  :func:`mmbcn.folding.efficient_conv_norm_eval_forward`;
* ``mmengine.model.efficient_conv_bn_eval.turn_on_efficient_conv_bn_eval_for_single_model``,
  mmengine 0.10.7: refuses modules holding BCN or WSConv2d, naming them;
* ``mmengine.model.utils.convert_sync_batchnorm``, mmengine 0.10.7, and
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, torch 2.13: keep BCN, synchronized;
* ``mmpretrain.engine.hooks.precise_bn_hook.update_bn_stats``, mmpretrain 1.2.0, and
  ``torch.optim.swa_utils.update_bn``, torch 2.13: refuse micro-batch BCN;
* ``torch.nn.utils.fusion.fuse_conv_bn_eval``, torch 2.13: folds the standardized weight of a
  WSConv2d; refuses BCN (no single conv computes it), naming mmcv's ``fuse_conv_bn``;
* ``mmcv.cnn.utils.flops_counter.get_modules_mapping``, mmcv 2.1.0: counts WSConv2d as a conv and
  BCN as a BatchNorm plus a GroupNorm (mmcv's counter matches exact types and skipped both);
* ``switch_to_deploy`` of mmpretrain 1.2.0's ``RepVGGBlock``, ``MobileOneBlock``, ``RepMLPNet``
  and ``LeViT``: refuse a model holding BCN or WSConv2d (they fold their norms as BatchNorm and
  their raw conv weights).

The mmpretrain patches are applied when mmpretrain imports those modules (mmbcn does not import
mmpretrain itself).

Why each, and how callers reach it:

* ``mmcv.cnn.fuse_conv_bn(model)`` (mmdet's ``benchmark.py --fuse-conv-bn``,
  ``mmdet.utils.benchmark``, mmseg's and mmpretrain's tools) looks ``_fuse_conv_bn`` up in its
  module at call time, so callers that imported ``fuse_conv_bn`` before mmbcn get the fix too.
  The BCN it folds is set to ``nn.Identity`` by mmcv, as a BN would be; the conv becomes
  ``nn.Sequential(conv, nn.GroupNorm)``, keeping the channel stage.
* ``ConvModule(efficient_conv_bn_eval=True)`` (and ``turn_on_efficient_conv_bn_eval``) binds
  ``efficient_conv_bn_eval_forward`` from its module when a ConvModule is built or switched, which
  happens after ``import mmbcn`` (``custom_imports``) in every config.
* MMEngine's ``efficient_conv_bn_eval=[...]`` (Runner config, ``turn_on_efficient_conv_bn_eval``)
  traces the named modules with ``torch.fx``, which cannot trace BCN or WSConv2d; instead of
  fx's error deep in a trace, mmbcn refuses before tracing and names the alternatives.
* ``sync_bn='torch'`` / ``'mmcv'`` in a config (MMEngine's Runner, hence mmdet's, mmseg's and
  mmpretrain's own ``train.py``) and torch's ``nn.SyncBatchNorm.convert_sync_batchnorm`` replace
  every ``_BatchNorm`` by a plain SyncBatchNorm, dropping BCN's channel stage. Both recurse
  through the name patched here, so BCN layers at any depth are kept, set to synchronize their
  statistics themselves (``sync_stats=True``, over the given process group); other BN layers
  are converted as before.
* mmpretrain's ``PreciseBNHook`` recomputes statistics with ``momentum = 1`` and averages them.
  For large-batch BCN that is exactly precise BN. Micro-batch BCN's variance estimate is the
  spread around the *previous* estimate, which with ``r = 1`` is the previous batch's mean: the
  average would over-estimate the variance by the variance of the batch means, so the hook is
  refused for those layers; the same for torch's SWA ``update_bn`` (a cumulative average,
  which also leaves out the first batch of micro-batch BCN's restarted average).
"""

import functools
import importlib
import importlib.abc
import importlib.util
import sys
from typing import Callable, Dict

from torch import nn

from .conv_norm import plain_conv
from .folding import efficient_conv_norm_eval_forward, fuse_conv_norm
from .layers.bcn import BatchChannelNorm2d, keep_synchronized
from .layers.conv_ws import WSConv2d

__all__ = ['EfficientConvBNEvalError', 'PreciseBNError', 'ReparameterizationError', 'install']

_installed = False


class EfficientConvBNEvalError(ValueError):
    """MMEngine's fx-based efficient conv-BN eval asked for a module holding BCN or WSConv2d."""


class PreciseBNError(ValueError):
    """mmpretrain's precise BN (or torch's SWA update_bn) asked to recompute micro-batch BCN."""


class ReparameterizationError(ValueError):
    """A re-parameterization that folds norms as BatchNorm asked to fold BCN or WSConv2d."""


def _patch_mmcv_fuse_conv_bn() -> None:
    module = importlib.import_module('mmcv.cnn.utils.fuse_conv_bn')

    original = module._fuse_conv_bn

    @functools.wraps(original)
    def _fuse_conv_bn(conv, bn):
        return fuse_conv_norm(conv, bn, original)

    module._fuse_conv_bn = _fuse_conv_bn


def _patch_mmcv_efficient_conv_bn_eval() -> None:
    module = importlib.import_module('mmcv.cnn.bricks.conv_module')

    original = module.efficient_conv_bn_eval_forward

    @functools.wraps(original)
    def efficient_conv_bn_eval_forward(bn, conv, x):
        return efficient_conv_norm_eval_forward(bn, conv, x, original)

    module.efficient_conv_bn_eval_forward = efficient_conv_bn_eval_forward


def mmbcn_layer_names(model: nn.Module):
    """Names of the BCN and WSConv2d layers in ``model``."""
    return [name for name, m in model.named_modules()
            if isinstance(m, (BatchChannelNorm2d, WSConv2d))]


def _patch_mmengine_efficient_conv_bn_eval() -> None:
    module = importlib.import_module('mmengine.model.efficient_conv_bn_eval')

    original = module.turn_on_efficient_conv_bn_eval_for_single_model

    @functools.wraps(original)
    def turn_on_efficient_conv_bn_eval_for_single_model(model):
        names = mmbcn_layer_names(model)
        if names:
            raise EfficientConvBNEvalError(
                f"MMEngine's efficient_conv_bn_eval traces modules with torch.fx, which cannot "
                f"trace BCN or WSConv2d layers (this module holds {len(names)}, e.g. "
                f"{names[0]!r}), and it would fold BCN as a BatchNorm. Remove "
                f"efficient_conv_bn_eval from the config; for the same memory saving in "
                f"ConvModules (necks, heads; not ResNet blocks) set efficient_conv_bn_eval=True "
                f"in their config (mmbcn makes it exact for BCN and WSConv2d); for inference use "
                f"tools/deploy.py.")
        return original(model)

    module.turn_on_efficient_conv_bn_eval_for_single_model = \
        turn_on_efficient_conv_bn_eval_for_single_model


def _patch_mmengine_convert_sync_batchnorm() -> None:
    module = importlib.import_module('mmengine.model.utils')

    original = module.convert_sync_batchnorm

    @functools.wraps(original)
    def convert_sync_batchnorm(module, implementation='torch'):
        if isinstance(module, BatchChannelNorm2d):
            return keep_synchronized(module)
        return original(module, implementation)

    module.convert_sync_batchnorm = convert_sync_batchnorm


def _patch_torch_convert_sync_batchnorm() -> None:
    original = nn.SyncBatchNorm.convert_sync_batchnorm.__func__

    @functools.wraps(original)
    def convert_sync_batchnorm(cls, module, process_group=None):
        if isinstance(module, BatchChannelNorm2d):
            return keep_synchronized(module, process_group)
        return original(cls, module, process_group)

    nn.SyncBatchNorm.convert_sync_batchnorm = classmethod(convert_sync_batchnorm)


def refuse_micro_batch_bcn(model: nn.Module, recomputer: str, removal: str) -> None:
    """Raise :class:`PreciseBNError` when ``model`` trains micro-batch BCN layers."""
    names = [name for name, m in model.named_modules()
             if isinstance(m, BatchChannelNorm2d) and m.estimate and m.training]
    if names:
        raise PreciseBNError(
            f'{recomputer} would recompute the statistics of {len(names)} micro-batch BCN '
            f'layers (estimate=True, e.g. {names[0]!r}) as BatchNorm statistics, which '
            f'over-estimates their variance. {removal} (micro-batch BCN already averages its '
            f'estimates over training), or use large-batch BCN (estimate=False), for which it '
            f'is exact.')


def _patch_mmpretrain_precise_bn(module) -> None:
    original = module.update_bn_stats

    @functools.wraps(original)
    def update_bn_stats(model, *args, **kwargs):
        refuse_micro_batch_bcn(model, 'PreciseBNHook', 'Remove PreciseBNHook from the config')
        return original(model, *args, **kwargs)

    module.update_bn_stats = update_bn_stats


def _patch_torch_swa_update_bn() -> None:
    from torch.optim import swa_utils

    original = swa_utils.update_bn

    @functools.wraps(original)
    def update_bn(loader, model, *args, **kwargs):
        refuse_micro_batch_bcn(model, 'torch.optim.swa_utils.update_bn',
                               'Skip update_bn for this model')
        return original(loader, model, *args, **kwargs)

    swa_utils.update_bn = update_bn


def _patch_torch_fuse_conv_bn_eval() -> None:
    from torch.nn import utils
    from torch.nn.utils import fusion

    original = fusion.fuse_conv_bn_eval

    @functools.wraps(original)
    def fuse_conv_bn_eval(conv, bn, transpose=False):
        if isinstance(bn, BatchChannelNorm2d):
            raise ValueError(
                "torch's fuse_conv_bn_eval cannot fold a BCN layer: no single conv computes a "
                "conv followed by BCN (its channel stage normalizes each sample). Use mmcv's "
                "fuse_conv_bn(model) (mmbcn keeps the channel stage) or mmbcn.deploy.deploy_model.")
        if isinstance(conv, WSConv2d):
            conv = plain_conv(conv).train(conv.training)
        return original(conv, bn, transpose)

    fusion.fuse_conv_bn_eval = fuse_conv_bn_eval
    utils.fuse_conv_bn_eval = fuse_conv_bn_eval


def _bcn_flops_counter_hook(module: BatchChannelNorm2d, inputs, output) -> None:
    """mmcv's norm count, twice: the batch stage and the channel stage (each x2 with affine)."""
    per_stage = inputs[0].numel() * (2 if module.affine else 1)
    module.__flops__ += int(2 * per_stage)


def _patch_mmcv_flops_counter() -> None:
    module = importlib.import_module('mmcv.cnn.utils.flops_counter')
    original = module.get_modules_mapping

    @functools.wraps(original)
    def get_modules_mapping():
        mapping = original()
        mapping[WSConv2d] = module.conv_flops_counter_hook
        mapping[BatchChannelNorm2d] = _bcn_flops_counter_hook
        return mapping

    module.get_modules_mapping = get_modules_mapping


def _refuse_reparameterizing(cls) -> None:
    """Make ``cls.switch_to_deploy`` refuse an instance holding BCN or WSConv2d."""
    original = cls.switch_to_deploy

    @functools.wraps(original)
    def switch_to_deploy(self, *args, **kwargs):
        names = mmbcn_layer_names(self)
        if names:
            raise ReparameterizationError(
                f'{cls.__name__}.switch_to_deploy folds its norms as BatchNorm and its raw conv '
                f'weights, which is wrong for BCN and WSConv2d (this module holds {len(names)}, '
                f'e.g. {names[0]!r}). Keep the training-time structure (deploy=False), or use '
                f'BN and plain convs in re-parameterized backbones.')
        return original(self, *args, **kwargs)

    cls.switch_to_deploy = switch_to_deploy


def _patch_classes(*names):
    """A patch refusing re-parameterization for the classes ``names`` of a module."""
    def patch(module):
        for name in names:
            _refuse_reparameterizing(getattr(module, name))
    return patch


class _AfterImport(importlib.abc.MetaPathFinder):
    """Applies ``patches[name](module)`` right after module ``name`` is first executed."""

    def __init__(self, patches: Dict[str, Callable]):
        self.patches = patches

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.patches:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        patch, execute = self.patches.pop(fullname), spec.loader.exec_module
        if not self.patches:
            sys.meta_path.remove(self)

        def exec_module(module):
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


AFTER_IMPORT = {
    'mmpretrain.engine.hooks.precise_bn_hook': _patch_mmpretrain_precise_bn,
    'mmpretrain.models.backbones.repvgg': _patch_classes('RepVGGBlock'),
    'mmpretrain.models.backbones.mobileone': _patch_classes('MobileOneBlock'),
    'mmpretrain.models.backbones.repmlp': _patch_classes('RepMLPNet'),
    'mmpretrain.models.backbones.levit': _patch_classes('LeViT'),
}


def _patch_after_import(patches: Dict[str, Callable]) -> None:
    waiting = {}
    for name, patch in patches.items():
        if name in sys.modules:
            patch(sys.modules[name])
        else:
            waiting[name] = patch
    if waiting:
        sys.meta_path.insert(0, _AfterImport(waiting))


def install() -> None:
    """Apply every patch above, once."""
    global _installed
    if _installed:
        return
    _patch_mmcv_fuse_conv_bn()
    _patch_mmcv_efficient_conv_bn_eval()
    _patch_mmengine_efficient_conv_bn_eval()
    _patch_mmengine_convert_sync_batchnorm()
    _patch_torch_convert_sync_batchnorm()
    _patch_torch_swa_update_bn()
    _patch_torch_fuse_conv_bn_eval()
    _patch_mmcv_flops_counter()
    _patch_after_import(dict(AFTER_IMPORT))
    _installed = True
