"""The Revisiting-BN recipe's optimizer side, through MMEngine's optimizer construction.

``optim_wrapper = dict(constructor='RevisitingBNOptimWrapperConstructor', optimizer=...)``: the
parameter groups of the authors' ``adjust_weight_decay_and_learning_rate``
(``weight_decay_and_learning_rate.py`` of github.com/osu-cvl/revisiting-bn-init): every 1-d
parameter whose name says ``weight`` (the norms' scales) at lr / 100 without weight decay, every
other 1-d parameter (biases) without weight decay, the rest as configured. MMEngine's
``paramwise_cfg`` has ``norm_decay_mult`` but no learning-rate multiplier for norms by type,
hence this constructor; the model side of the recipe is :mod:`mmbcn.models.revisiting_bn`.
"""

from typing import List, Optional

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

__all__ = ['RevisitingBNOptimWrapperConstructor', 'is_scale']

RECIPE_DEFAULTS = dict(scale_lr_mult=0.01, scale_decay_mult=0.0, flat_decay_mult=0.0)


def is_scale(name: str, param: nn.Parameter) -> bool:
    """A 1-d parameter whose own name (the part after the last dot) contains ``weight``:
    ``weight`` of BN / GN / IN / LN, BCN's ``group_weight``."""
    return param.dim() == 1 and 'weight' in name.rsplit('.', 1)[-1]


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(name='RevisitingBNOptimWrapperConstructor')
class RevisitingBNOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor, then the recipe's multipliers on 1-d parameters.

    ``paramwise_cfg`` takes MMEngine's keys (``custom_keys``, ``norm_decay_mult``, ...), applied
    first, and three of the recipe's, which multiply the learning rate and weight decay each
    parameter then has:

    * ``scale_lr_mult`` (0.01) and ``scale_decay_mult`` (0.0): 1-d parameters named ``*weight*``
      (:func:`is_scale`), the norms' scales;
    * ``flat_decay_mult`` (0.0): every other 1-d parameter (biases of norms, convs, linears).

    Note:
        The authors' rule takes a parameter as 1-d after ``squeeze()`` and looks for ``weight``
        anywhere in its full name; here a parameter is 1-d by its own shape and the name test is
        on its own name, so a (1, C) linear weight (one output) keeps its weight decay and a
        bias of a module called ``*weight*`` is not a scale. On a ResNet both rules pick the same
        parameters. Parameters that do not require gradients (the input BatchNorm's frozen bias)
        are left out, as MMEngine leaves them out (the authors' function skips them too).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        # The recipe's keys stay in paramwise_cfg, so MMEngine always builds one group per
        # parameter (it ignores keys it does not know).
        super().__init__(optim_wrapper_cfg, dict(RECIPE_DEFAULTS, **(paramwise_cfg or {})))
        if self.base_lr is None:
            raise ValueError('RevisitingBNOptimWrapperConstructor: the optimizer cfg needs an '
                             '`lr` (the scales are trained at scale_lr_mult x lr)')

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # MMEngine recurses through add_params; the recipe applies once, at the top
            return
        names = {id(param): name for name, param in module.named_parameters()}
        for group in params:
            (param, ) = group['params']
            if param.dim() != 1:
                continue
            if is_scale(names.get(id(param), ''), param):
                lr_mult = self.paramwise_cfg['scale_lr_mult']
                decay_mult = self.paramwise_cfg['scale_decay_mult']
            else:
                lr_mult, decay_mult = 1.0, self.paramwise_cfg['flat_decay_mult']
            if lr_mult != 1.0:
                group['lr'] = group.get('lr', self.base_lr) * lr_mult
            if self.base_wd is not None:
                group['weight_decay'] = group.get('weight_decay', self.base_wd) * decay_mult
