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
* ``mmpretrain.engine.hooks.precise_bn_hook.update_bn_stats``, mmpretrain 1.2.0 (when mmpretrain
  imports it): refuses micro-batch BCN.

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
  refused for those layers. This patch is applied when mmpretrain's hook module is first
  imported (mmbcn does not import mmpretrain itself).
"""

import functools
import importlib
import importlib.abc
import importlib.util
import sys
from typing import Callable, Dict

from torch import nn

from .folding import efficient_conv_norm_eval_forward, fuse_conv_norm
from .layers.bcn import BatchChannelNorm2d, keep_synchronized
from .layers.conv_ws import WSConv2d

__all__ = ['EfficientConvBNEvalError', 'PreciseBNError', 'install']

_installed = False


class EfficientConvBNEvalError(ValueError):
    """MMEngine's fx-based efficient conv-BN eval asked for a module holding BCN or WSConv2d."""


class PreciseBNError(ValueError):
    """mmpretrain's precise BN asked to recompute micro-batch BCN statistics."""


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
                f"ConvModules set efficient_conv_bn_eval=True in their config (mmbcn makes it "
                f"exact for BCN and WSConv2d); for inference use tools/deploy.py.")
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


def _patch_mmpretrain_precise_bn(module) -> None:
    original = module.update_bn_stats

    @functools.wraps(original)
    def update_bn_stats(model, *args, **kwargs):
        names = [name for name, m in model.named_modules()
                 if isinstance(m, BatchChannelNorm2d) and m.estimate and m.training]
        if names:
            raise PreciseBNError(
                f'PreciseBNHook would recompute the statistics of {len(names)} micro-batch BCN '
                f'layers (estimate=True, e.g. {names[0]!r}) as BatchNorm statistics at momentum '
                f'1, which over-estimates their variance. Remove PreciseBNHook from the config '
                f'(micro-batch BCN already averages its estimates over training), or use '
                f'large-batch BCN (estimate=False), for which precise BN is exact.')
        return original(model, *args, **kwargs)

    module.update_bn_stats = update_bn_stats


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


AFTER_IMPORT = {'mmpretrain.engine.hooks.precise_bn_hook': _patch_mmpretrain_precise_bn}


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
    _patch_after_import(dict(AFTER_IMPORT))
    _installed = True
