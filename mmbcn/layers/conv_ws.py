"""Weight-standardized convolution, registered as ``'WSConv2d'`` (mmcv owns ``'ConvWS'``)."""

import torch
from mmengine.registry import MODELS
from torch import nn

from ..ops import WS_EPS_FORMS, weight_standardize


@MODELS.register_module(name='WSConv2d')
class WSConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose filters are standardized before the convolution.

    ``out = conv2d(x, (w - mean(w)) / sqrt(var(w) + eps))`` with mean and unbiased variance per
    output filter over (in_channels/groups, kh, kw), or ``(w - mean(w)) / (std(w) + eps)`` with
    ``eps_on='std'``; see :func:`mmbcn.ops.weight_standardize`.

    The parameters are ``nn.Conv2d``'s (``weight``, ``bias``), so checkpoints of mmcv's
    ``ConvWS2d`` load unchanged. When no gradient with respect to the weight is needed
    (eval under ``torch.no_grad``, or frozen stages) the standardized weight is computed once and
    reused until the weight changes (any in-place update, ``load_state_dict`` included, bumps the
    tensor's version counter, which is part of the cache key). Under ``torch.jit`` tracing the
    weight is always standardized, so that the trace (and a FLOP count of it) holds the
    standardization and does not depend on the cache.

    Args:
        *args, **kwargs: as ``nn.Conv2d``.
        eps: added to the filter variance (or standard deviation).
        eps_on: ``'variance'`` (default): ``sqrt(var + eps)``, as the ImageNet code of the
            authors' BCN release (``imagenet/models/layers.py``); ``'std'``: ``std + eps``, as
            its DeepLabV3 code (``DeepLabV3/deeplab.py``), the WS repository's README and mmcv's
            ``ConvWS``.

    Note:
        Both forms are the authors': the ImageNet and the DeepLabV3 code of the same release
        differ; the configs that follow a recipe use that recipe's form. mmcv's ``fuse_conv_bn``
        must not be applied to this layer (it scales the raw filters, which standardization
        undoes); use ``mmbcn`` deploy conversion.
    """

    def __init__(self, *args, eps: float = 1e-5, eps_on: str = 'variance', **kwargs):
        super().__init__(*args, **kwargs)
        if not eps > 0:
            raise ValueError(f'WSConv2d: eps must be > 0, got {eps!r}.')
        if eps_on not in WS_EPS_FORMS:
            raise ValueError(f'WSConv2d: eps_on must be one of {WS_EPS_FORMS} (\'variance\': '
                             f'sqrt(var + eps), \'std\': std + eps), got {eps_on!r}.')
        if self.weight[0].numel() < 2:
            raise ValueError(
                f'WSConv2d: each filter has {self.weight[0].numel()} value '
                f'(in_channels/groups={self.in_channels // self.groups}, '
                f'kernel_size={self.kernel_size}); standardizing a single value is undefined. '
                f'Use a plain conv for this layer.')
        self.eps = eps
        self.eps_on = eps_on
        self._cache_key = None
        self._cached_weight = None

    def standardized_weight(self):
        """The standardized filters, from the cache when no weight gradient is needed."""
        weight = self.weight
        if torch.jit.is_tracing():  # the standardization is part of the traced graph
            return weight_standardize(weight, self.eps, self.eps_on)
        if weight.requires_grad and torch.is_grad_enabled():
            self._cache_key = self._cached_weight = None
            return weight_standardize(weight, self.eps, self.eps_on)
        key = (weight._version, weight.data_ptr(), weight.dtype, weight.device, self.eps,
               self.eps_on)
        if key != self._cache_key:
            self._cached_weight = weight_standardize(weight.detach(), self.eps, self.eps_on)
            self._cache_key = key
        return self._cached_weight

    def forward(self, x):
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, eps={self.eps}, eps_on={self.eps_on!r}'

