"""The Revisiting-BN recipe's model side: the 0.1 scale init and the input BatchNorm.

Reference: J. Davis and L. Frank, "Revisiting Batch Normalization" (arXiv:2110.13989), published as
"Revisiting Batch Norm Initialization" (ECCV 2022); the authors' code: github.com/osu-cvl/
revisiting-bn-init (``networks.py``, ``batch_norm.py``, ``weight_decay_and_learning_rate.py``).
The recipe has three parts; the optimizer's is
:class:`mmbcn.engine.optimizers.RevisitingBNOptimWrapperConstructor`:

1. **scale init**: every norm's scale starts at ``scale`` (0.1) instead of 1
   (:class:`RevisitingBNInit`, ``init_cfg=dict(type='RevisitingBNInit')`` of the model);
2. **lr / 100 and no weight decay** for the norms' scales, no weight decay for the other 1-d
   parameters (the optimizer wrapper constructor);
3. **input BatchNorm**: a BatchNorm over the image channels in front of the network, scale
   ``scale * 0.58``, bias frozen at 0, replacing the fixed mean/std normalization of the data
   (:class:`InputNormDataPreprocessor` around the model's own data preprocessor).

Which norms, and what "scale" is: ``_BatchNorm`` (BN, SyncBN), ``GroupNorm``, affine
``_InstanceNorm``: ``weight``; BCN: the channel stage's ``group_weight`` (the output scale; the
batch stage's scale would be normalized away by the channel stage, so it is set to 1).
"""

from typing import Iterator, Optional

import torch
from mmengine.model import BaseDataPreprocessor, is_model_wrapper
from mmengine.model.weight_init import BaseInit, update_init_info
from mmengine.registry import MODELS, WEIGHT_INITIALIZERS
from torch import Tensor, nn

from ..layers import BatchChannelNorm2d

__all__ = ['INPUT_ACTIVATION_STD', 'InputBatchNorm', 'InputNormDataPreprocessor',
           'RevisitingBNInit', 'revisiting_bn_init', 'scaled_norms']

# sigma_act of the authors' input BatchNorm (networks.py, construct_network): its scale is
# bn_weight * 0.58.
INPUT_ACTIVATION_STD = 0.58
DEFAULT_SCALE = 0.1  # the authors' bn_weight default (train.py)
SCALED_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
                nn.modules.instancenorm._InstanceNorm)


class InputBatchNorm(nn.BatchNorm2d):
    """The recipe's input normalization: ``nn.BatchNorm2d`` over the image channels whose scale
    starts at ``scale * activation_std`` and whose bias is frozen at 0.

    Args:
        num_features: image channels (3).
        scale: the recipe's scale init (0.1).
        activation_std: the authors' sigma_act (0.58).
        **kwargs: ``nn.BatchNorm2d``'s (``eps``, ``momentum``).
    """

    def __init__(self, num_features: int = 3, scale: float = DEFAULT_SCALE,
                 activation_std: float = INPUT_ACTIVATION_STD, **kwargs):
        super().__init__(num_features, affine=True, **kwargs)
        self.activation_std = activation_std
        self.reset_scale(scale)
        self.bias.requires_grad_(False)

    def reset_scale(self, scale: float) -> None:
        """Scale ``scale * activation_std``, bias 0."""
        with torch.no_grad():
            self.weight.fill_(scale * self.activation_std)
            self.bias.zero_()


def _is_pretrained(module: nn.Module) -> bool:
    init_cfg = getattr(module, 'init_cfg', None)
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' for cfg in cfgs)


def scaled_norms(model: nn.Module) -> Iterator[nn.Module]:
    """The norm layers the scale init applies to: affine BN, GN, IN and BCN layers, except those
    under a module initialized from a checkpoint (``init_cfg`` of type ``'Pretrained'``)."""
    skipped = set()
    for module in model.modules():
        if id(module) in skipped:
            continue
        if module is not model and _is_pretrained(module):
            skipped.update(id(m) for m in module.modules())
            continue
        if isinstance(module, (BatchChannelNorm2d, InputBatchNorm)) or (
                isinstance(module, SCALED_NORMS) and getattr(module, 'weight', None) is not None):
            yield module


@torch.no_grad()
def revisiting_bn_init(model: nn.Module, scale: float = DEFAULT_SCALE) -> int:
    """Set every norm of :func:`scaled_norms` to the recipe's init; the number of norms set.

    A norm's scale becomes ``scale`` and its bias 0 (the authors' ``ScaleBatchNorm2d`` and
    ``zero_biases``), also where the model's own init zeroed it (``zero_init_residual``,
    ``ResidualZeroInit``): the recipe replaces that init, as the authors' ResNets have none. BCN:
    ``group_weight = scale``, ``group_bias = 0``, batch stage ``weight = 1``, ``bias = 0``.
    :class:`InputBatchNorm`: ``scale * activation_std``.
    """
    count = 0
    for norm in scaled_norms(model):
        if isinstance(norm, InputBatchNorm):
            norm.reset_scale(scale)
        elif isinstance(norm, BatchChannelNorm2d):
            norm.group_weight.fill_(scale)
            norm.group_bias.zero_()
            if norm.weight is not None:
                norm.weight.fill_(1.0)
                norm.bias.zero_()
        else:
            norm.weight.fill_(scale)
            if norm.bias is not None:
                norm.bias.zero_()
        count += 1
    return count


@WEIGHT_INITIALIZERS.register_module(name='RevisitingBNInit')
class RevisitingBNInit(BaseInit):
    """``init_cfg=dict(type='RevisitingBNInit', scale=0.1)``: :func:`revisiting_bn_init` applied
    after the module's children have run their own init.

    MMEngine applies a module's ``init_cfg`` before its children's ``init_weights`` (the
    backbone's ``Constant(val=1)`` on norms, its ``zero_init_residual``, mmcv's ``ConvModule``
    setting its norm to 1), which would undo the scale. So this initializer first runs
    ``init_weights`` of each child not initialized yet (MMEngine then skips them: they are
    ``is_init``), then sets the scales. Put it in the **model's** ``init_cfg`` to cover backbone,
    neck and heads; norms under a ``Pretrained`` init are left as loaded (a ``Pretrained``
    entry of the same ``init_cfg`` runs after it, as MMEngine orders them).

    Args:
        scale: the scale init (the authors' ``bn_weight``, 0.1).
    """

    def __init__(self, scale: float = DEFAULT_SCALE, **kwargs):
        super().__init__(**kwargs)
        if not scale > 0:
            raise ValueError(f'RevisitingBNInit: scale must be > 0, got {scale!r}')
        self.scale = scale

    def __call__(self, module: nn.Module) -> None:
        for child in module.children():
            if is_model_wrapper(child) and not hasattr(child, 'init_weights'):
                child = child.module
            if hasattr(child, 'init_weights') and not getattr(child, 'is_init', False):
                child.init_weights()
                if hasattr(child, '_params_init_info'):
                    update_init_info(child, init_info='Initialized by user-defined '
                                     f'`init_weights` in {type(child).__name__}')
        revisiting_bn_init(module, self.scale)

    def _get_init_info(self) -> str:
        return f'{type(self).__name__}: norm scales = {self.scale}, biases = 0'


@MODELS.register_module(name='InputNormDataPreprocessor')
class InputNormDataPreprocessor(BaseDataPreprocessor):
    """A data preprocessor followed by the recipe's :class:`InputBatchNorm` on its ``inputs``.

    ``dict(type='InputNormDataPreprocessor', preprocessor=<the model's own, with mean=None and
    std=None>)``: the wrapped preprocessor still converts, pads and stacks; the input BatchNorm
    replaces its fixed mean/std normalization (train mode: the batch's statistics; eval: the
    running ones). The BatchNorm's scale is trained (lr / 100 with the recipe's optimizer
    constructor); its bias stays 0. Checkpoint keys: ``data_preprocessor.input_norm.*``.

    Args:
        preprocessor: cfg of the wrapped data preprocessor (built in the current scope).
        num_channels: image channels.
        scale, activation_std: :class:`InputBatchNorm`'s.
        non_blocking: as ``BaseDataPreprocessor``.
        **options: passed on to the wrapped preprocessor (where a model adds one, as
            mmpretrain's classifiers add ``batch_augments``).
    """

    def __init__(self, preprocessor: dict, num_channels: int = 3, scale: float = DEFAULT_SCALE,
                 activation_std: float = INPUT_ACTIVATION_STD, non_blocking: bool = False,
                 **options):
        super().__init__(non_blocking)
        self.preprocessor = MODELS.build(dict(options, **preprocessor))
        self.input_norm = InputBatchNorm(num_channels, scale, activation_std)

    def forward(self, data: dict, training: bool = False) -> dict:
        # nn.Module.to moves the wrapped preprocessor's tensors but not its own device record
        self.preprocessor._device = self._device
        data = self.preprocessor(data, training)
        inputs: Optional[Tensor] = data.get('inputs') if isinstance(data, dict) else None
        if not isinstance(inputs, Tensor):
            raise TypeError(f'InputNormDataPreprocessor: {type(self.preprocessor).__name__} '
                            f'returned no stacked `inputs` tensor to normalize')
        return dict(data, inputs=self.input_norm(inputs.float()))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # the wrapped preprocessor's options (size, pad_val, ...)
            return getattr(super().__getattr__('preprocessor'), name)
