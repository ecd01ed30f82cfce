"""Weight-standardized convolution, registered as ``'WSConv2d'`` (mmcv owns ``'ConvWS'``)."""

import torch
from mmengine.registry import MODELS
from torch import nn

from ..ops import WS_EPS_FORMS, weight_standardize
from .fx_tracing import refuse_fx_tracing_through


@MODELS.register_module(name='WSConv2d')
class WSConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose filters are standardized before the convolution.

    ``out = conv2d(x, (w - mean(w)) / sqrt(var(w) + eps))`` with mean and unbiased variance per
    output filter over (in_channels/groups, kh, kw), or ``(w - mean(w)) / (std(w) + eps)`` with
    ``eps_on='std'``; see :func:`mmbcn.ops.weight_standardize`.

    The parameters are ``nn.Conv2d``'s (``weight``, ``bias``), so checkpoints of mmcv's
    ``ConvWS2d`` load unchanged. The weight is standardized at every forward, also in eval: no
    cache, because OpenMMLab's teacher and moving-average models (mmdet's ``MeanTeacherHook``,
    MMEngine's ``EMAHook`` and ``ExponentialMovingAverage``, mmpretrain's momentum encoders)
    update weights through ``.data``, which no cache key can see. Standardizing costs O(weights)
    per forward: negligible at detection image sizes, a large share of an eval forward of a
    small model on small images on CPU; for inference, :func:`mmbcn.deploy.deploy_model`
    (``tools/deploy.py``) folds it into plain convs.

    Args:
        *args, **kwargs: as ``nn.Conv2d``.
        eps: added to the filter variance (or standard deviation).
        eps_on: ``'variance'`` (default): ``sqrt(var + eps)``, as the ImageNet code of the
            authors' BCN release (``imagenet/models/layers.py``); ``'std'``: ``std + eps``, as
            its DeepLabV3 code (``DeepLabV3/deeplab.py``), the WS repository's README and mmcv's
            ``ConvWS``.

    Note:
        Both forms are the authors': the ImageNet and the DeepLabV3 code of the same release
        differ; the configs that follow a recipe use that recipe's form. Conv-BN folding must
        scale the standardized filters, not the raw ones (standardization would undo the
        scale): ``import mmbcn`` makes mmcv's ``fuse_conv_bn`` do so (:mod:`mmbcn.folding`).
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

    def standardized_weight(self) -> torch.Tensor:
        """The standardized filters the convolution uses (with gradients to ``weight``)."""
        return weight_standardize(self.weight, self.eps, self.eps_on)

    def forward(self, x):
        refuse_fx_tracing_through(self, x)
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, eps={self.eps}, eps_on={self.eps_on!r}'

