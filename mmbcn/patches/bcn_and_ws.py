"""What upstream BN special-casing does instead with BCN and WSConv2d: the replacements.

Each function here builds a patch's replacement from the upstream original
(:mod:`mmbcn.patches.declared` lists them with their targets); every case that involves neither
BCN nor WSConv2d goes to the original unchanged. Why each is needed:

* ``mmcv.cnn.fuse_conv_bn(model)`` (mmdet's ``benchmark.py --fuse-conv-bn``, mmseg's and
  mmpretrain's tools) looks ``_fuse_conv_bn`` up in its module at call time. The BCN it folds
  is set to ``nn.Identity`` by mmcv, as a BN would be; the conv becomes
  ``nn.Sequential(conv, nn.GroupNorm)``, keeping the channel stage (:mod:`mmbcn.folding`).
* ``ConvModule(efficient_conv_bn_eval=True)`` binds ``efficient_conv_bn_eval_forward`` from its
  module when a ConvModule is built or switched, after ``import mmbcn`` in every config.
* MMEngine's ``efficient_conv_bn_eval=[...]`` traces the named modules with ``torch.fx`` and
  folds BCN as a BatchNorm: refused before tracing, naming the alternatives.
* ``sync_bn='torch'`` / ``'mmcv'`` in a config and torch's
  ``nn.SyncBatchNorm.convert_sync_batchnorm`` replace every ``_BatchNorm`` by a plain
  SyncBatchNorm, dropping BCN's channel stage. Both recurse through the patched name, so BCN
  layers at any depth are kept and set to synchronize their statistics themselves.
* mmpretrain's ``PreciseBNHook`` and torch's SWA ``update_bn`` recompute statistics as BN
  statistics. For large-batch BCN that is exact. Micro-batch BCN's variance estimate is the
  spread around the *previous* estimate: the average would over-estimate the variance by the
  variance of the batch means, so both are refused for those layers.
* torch's ``fuse_conv_bn_eval`` folds a WSConv2d's standardized weight; it refuses BCN.
* mmcv's hook-based FLOP counter matches exact types and skipped both layers.
* ``torch.fx``'s default tracer traces into BCN's forward, which branches on its input: BCN and
  WSConv2d are leaf modules instead (:mod:`mmbcn.layers.fx_tracing`).
* mmpretrain's re-parameterizing ``switch_to_deploy`` folds norms as BatchNorm and raw conv
  weights: refused for modules holding BCN or WSConv2d.
"""

from typing import Callable

from torch import nn

from ..deploy.conv_norm import plain_conv
from ..deploy.folding import efficient_conv_norm_eval_forward, fuse_conv_norm
from ..layers.bcn import BatchChannelNorm2d, keep_synchronized
from ..layers.conv_ws import WSConv2d
from ..layers.kinds import is_mmbcn_layer, mmbcn_layer_names
from .errors import EfficientConvBNEvalError, PreciseBNError, ReparameterizationError

__all__ = ['refuse_micro_batch_bcn']


def mmcv_fuse_conv_bn(original: Callable) -> Callable:
    def _fuse_conv_bn(conv, bn):
        return fuse_conv_norm(conv, bn, original)
    return _fuse_conv_bn


def mmcv_efficient_conv_bn_eval(original: Callable) -> Callable:
    def efficient_conv_bn_eval_forward(bn, conv, x):
        return efficient_conv_norm_eval_forward(bn, conv, x, original)
    return efficient_conv_bn_eval_forward


def mmengine_efficient_conv_bn_eval(original: Callable) -> Callable:
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
    return turn_on_efficient_conv_bn_eval_for_single_model


def mmengine_convert_sync_batchnorm(original: Callable) -> Callable:
    def convert_sync_batchnorm(module, implementation='torch'):
        if isinstance(module, BatchChannelNorm2d):
            return keep_synchronized(module)
        return original(module, implementation)
    return convert_sync_batchnorm


def torch_convert_sync_batchnorm(original: Callable) -> Callable:
    def convert_sync_batchnorm(cls, module, process_group=None):
        if isinstance(module, BatchChannelNorm2d):
            return keep_synchronized(module, process_group)
        return original(cls, module, process_group)
    return convert_sync_batchnorm


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


def mmpretrain_precise_bn(original: Callable) -> Callable:
    def update_bn_stats(model, *args, **kwargs):
        refuse_micro_batch_bcn(model, 'PreciseBNHook', 'Remove PreciseBNHook from the config')
        return original(model, *args, **kwargs)
    return update_bn_stats


def torch_swa_update_bn(original: Callable) -> Callable:
    def update_bn(loader, model, *args, **kwargs):
        refuse_micro_batch_bcn(model, 'torch.optim.swa_utils.update_bn',
                               'Skip update_bn for this model')
        return original(loader, model, *args, **kwargs)
    return update_bn


def torch_fuse_conv_bn_eval(original: Callable) -> Callable:
    def fuse_conv_bn_eval(conv, bn, *args, **kwargs):
        if isinstance(bn, BatchChannelNorm2d):
            raise ValueError(
                "torch's fuse_conv_bn_eval cannot fold a BCN layer: no single conv computes a "
                "conv followed by BCN (its channel stage normalizes each sample). Use mmcv's "
                "fuse_conv_bn(model) (mmbcn keeps the channel stage) or mmbcn.deploy.deploy_model.")
        if isinstance(conv, WSConv2d):
            conv = plain_conv(conv).train(conv.training)
        return original(conv, bn, *args, **kwargs)
    return fuse_conv_bn_eval


def _bcn_flops_counter_hook(module: BatchChannelNorm2d, inputs, output) -> None:
    """mmcv's norm count, twice: the batch stage and the channel stage (each x2 with affine)."""
    per_stage = inputs[0].numel() * (2 if module.affine else 1)
    module.__flops__ += int(2 * per_stage)


def mmcv_flops_counter(original: Callable) -> Callable:
    from mmcv.cnn.utils import flops_counter

    def get_modules_mapping():
        mapping = original()
        mapping[WSConv2d] = flops_counter.conv_flops_counter_hook
        mapping[BatchChannelNorm2d] = _bcn_flops_counter_hook
        return mapping
    return get_modules_mapping


def torch_fx_leaf_modules(original: Callable) -> Callable:
    def is_leaf_module(self, m, module_qualified_name):
        return is_mmbcn_layer(m) or original(self, m, module_qualified_name)
    return is_leaf_module


def refuse_reparameterizing(original: Callable) -> Callable:
    """``switch_to_deploy`` that refuses an instance holding BCN or WSConv2d."""
    def switch_to_deploy(self, *args, **kwargs):
        names = mmbcn_layer_names(self)
        if names:
            raise ReparameterizationError(
                f'{type(self).__name__}.switch_to_deploy folds its norms as BatchNorm and its '
                f'raw conv weights, which is wrong for BCN and WSConv2d (this module holds '
                f'{len(names)}, e.g. {names[0]!r}). Keep the training-time structure '
                f'(deploy=False), or use BN and plain convs in re-parameterized backbones.')
        return original(self, *args, **kwargs)
    return switch_to_deploy
