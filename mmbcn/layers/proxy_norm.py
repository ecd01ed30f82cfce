"""Proxy Normalization: a batch-independent activation that matches what BatchNorm gives it.

Reference: A. Labatie, D. Masters, Z. Eaton-Rosen, C. Luschi, "Proxy-Normalizing Activations
to Match Batch Normalization while Removing Batch Dependence", NeurIPS 2021 (arXiv:2106.03743);
the authors' code: Graphcore's examples, ``applications/tensorflow/cnns/training/Models/
proxy_norm.py`` (commit b30108f, TensorFlow, used by their EfficientNets).

The maths, written once here (:func:`proxy_norm_activation`). ``y`` (N, C, *) is the output of a
normalization **without** affine (GroupNorm or LayerNorm). Per channel c, with the parameters
gamma, beta (the affine that would have followed the norm) and gamma~, beta~ (the proxy's)::

    z      = phi(gamma_c * y + beta_c)                                   (the activation)
    u_k    = sqrt(2) * erfinv(2 (k + 0.5) / K - 1),  k = 0..K-1           (N(0, 1) quantiles)
    y~_k   = (1 + gamma~_c) * u_k + beta~_c                               (the proxy samples)
    mu~_c  = mean_k phi(gamma_c * y~_k + beta_c)
    s~2_c  = mean_k (phi(gamma_c * y~_k + beta_c) - mu~_c)^2              (biased variance)
    out    = (z - mu~_c) / sqrt(s~2_c + eps)

K = 200 and eps = 0.03 by default; no affine after it. The proxy statistics depend on the
parameters only (not on the batch), and the gradient flows through them into gamma, beta,
gamma~ and beta~. The idea: a channel normalized per sample is, over the batch, close to
N(beta~, (1 + gamma~)^2); normalizing the activation of that Gaussian by its own mean and variance
is what BatchNorm placed after the activation would do, without any batch statistic.

Note:
    Where this departs from the authors' code, and why (see ``docs/en/normalizations/
    other_normalizations.md`` for the file-and-line list):

    * their TensorFlow code keeps mu~ and 1/sqrt(s~2 + eps) as variables, recomputes them after
      every optimizer step from the updated parameters and back-propagates into the parameters
      in the optimizer (``make_pn_optimiser``); here they are computed in the forward from the
      parameters, which is the same function of the same parameters with the same gradient,
      and needs no optimizer wrapper;
    * their activations are ReLU or swish; here any mmcv activation cfg (``act_cfg``), built
      with ``inplace=False``;
    * the statistics and the output are computed in float32 (float64 for float64 inputs) and
      cast back to the input's dtype; theirs subtract the mean in float32 and scale in the
      input's dtype.
"""

import math
from typing import Callable, Optional, Tuple

import torch
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.registry import MODELS
from torch import Tensor, nn

__all__ = ['DEFAULT_NUM_SAMPLES', 'DEFAULT_PROXY_EPS', 'NormProxyAct', 'ProxyNormAct',
           'gaussian_quantiles', 'proxy_norm_activation', 'proxy_statistics']

DEFAULT_NUM_SAMPLES = 200  # K of the authors' get_rand
DEFAULT_PROXY_EPS = 0.03  # the authors' proxy_epsilon


def gaussian_quantiles(num_samples: int, dtype: torch.dtype = torch.float64,
                       device: Optional[torch.device] = None) -> Tensor:
    """``u_k = sqrt(2) * erfinv(2 (k + 0.5) / K - 1)``, k = 0..K-1: the quantiles of N(0, 1) at
    the mid-points of K equal probability bins (fixed points, not random draws), shape (K,)."""
    if num_samples < 2:
        raise ValueError(f'proxy normalization needs at least 2 proxy samples, got {num_samples}')
    probabilities = (torch.arange(num_samples, dtype=dtype, device=device) + 0.5) * (
        2.0 / num_samples) - 1.0
    return math.sqrt(2.0) * torch.erfinv(probabilities)


def proxy_statistics(weight: Tensor, bias: Tensor, proxy_weight: Tensor, proxy_bias: Tensor,
                     activation: Callable[[Tensor], Tensor],
                     quantiles: Tensor) -> Tuple[Tensor, Tensor]:
    """The proxy's mean mu~ and biased variance s~^2 per channel, each (C,).

    ``phi(gamma * ((1 + gamma~) u_k + beta~) + beta)`` over the K quantiles ``u_k`` (see the
    module doc), differentiable in the four (C,) parameters.
    """
    proxy = (1.0 + proxy_weight)[:, None] * quantiles[None, :] + proxy_bias[:, None]  # (C, K)
    activated = activation(weight[:, None] * proxy + bias[:, None])
    mean = activated.mean(dim=1)
    variance = (activated - mean[:, None]).square().mean(dim=1)
    return mean, variance


def proxy_norm_activation(x: Tensor, weight: Tensor, bias: Tensor, proxy_weight: Tensor,
                          proxy_bias: Tensor,
                          activation: Callable[[Tensor], Tensor] = torch.relu,
                          num_samples: int = DEFAULT_NUM_SAMPLES,
                          eps: float = DEFAULT_PROXY_EPS) -> Tensor:
    """Proxy-normalized activation of ``x`` (N, C, *), an affine-free normalized tensor.

    ``(phi(gamma * x + beta) - mu~) / sqrt(s~^2 + eps)`` per channel, with mu~ and s~^2 from
    :func:`proxy_statistics` over :func:`gaussian_quantiles` ``(num_samples)``. Computed in
    float32 (float64 for float64 inputs) and returned in ``x``'s dtype.

    Args:
        x: (N, C, *) with C == len(weight).
        weight, bias: gamma and beta, (C,).
        proxy_weight, proxy_bias: gamma~ and beta~, (C,); the proxy is
            N(beta~, (1 + gamma~)^2).
        activation: phi, applied elementwise (not in place).
        num_samples: K, the number of proxy quantiles.
        eps: added to the proxy variance.
    """
    if x.dim() < 2 or x.shape[1] != weight.numel():
        raise ValueError(f'proxy normalization: expected (N, {weight.numel()}, ...) input, got '
                         f'{tuple(x.shape)}')
    compute = torch.promote_types(x.dtype, torch.float32)
    params = [p.to(compute) for p in (weight, bias, proxy_weight, proxy_bias)]
    quantiles = gaussian_quantiles(num_samples, dtype=compute, device=x.device)
    mean, variance = proxy_statistics(*params, activation, quantiles)
    shape = (1, -1) + (1, ) * (x.dim() - 2)
    activated = activation(x.to(compute) * params[0].reshape(shape) + params[1].reshape(shape))
    out = (activated - mean.reshape(shape)) * torch.rsqrt(variance + eps).reshape(shape)
    return out.to(x.dtype)


def _activation(act_cfg: dict) -> nn.Module:
    module = build_activation_layer(dict(act_cfg))
    if hasattr(module, 'inplace'):
        module.inplace = False  # applied to the proxy and to the input: never in place
    return module


@MODELS.register_module(name='ProxyNormAct')
class ProxyNormAct(nn.Module):
    """Proxy-normalized activation of an affine-free normalized input (N, C, *).

    ``out = (phi(weight * x + bias) - mu~) / sqrt(s~^2 + eps)``, mu~ and s~^2 the mean and biased
    variance of ``phi(weight * y~ + bias)`` over the proxy samples
    ``y~_k = (1 + proxy_weight) * u_k + proxy_bias``; see :func:`proxy_norm_activation` and the
    module doc for the formula. At init ``weight = 1``, ``bias = proxy_weight = proxy_bias = 0``,
    as the authors' ``proxy_initialiser``. The authors put weight decay on ``proxy_weight`` and
    ``proxy_bias`` only.

    Args:
        num_features: C.
        act_cfg: phi, an mmcv activation cfg (built with ``inplace=False``).
        num_samples: K, the number of Gaussian quantiles of the proxy.
        eps: added to the proxy variance.
        requires_grad: whether the four parameters are trained.
    """

    def __init__(self, num_features: int, act_cfg: Optional[dict] = None,
                 num_samples: int = DEFAULT_NUM_SAMPLES, eps: float = DEFAULT_PROXY_EPS,
                 requires_grad: bool = True):
        super().__init__()
        if not eps > 0:
            raise ValueError(f'ProxyNormAct: eps must be > 0, got {eps!r}')
        gaussian_quantiles(num_samples)  # checks num_samples
        self.num_features = num_features
        self.num_samples = num_samples
        self.eps = eps
        self.act_cfg = dict(act_cfg or dict(type='ReLU'))
        self.activation = _activation(self.act_cfg)
        self.weight = nn.Parameter(torch.ones(num_features), requires_grad=requires_grad)
        self.bias = nn.Parameter(torch.zeros(num_features), requires_grad=requires_grad)
        self.proxy_weight = nn.Parameter(torch.zeros(num_features), requires_grad=requires_grad)
        self.proxy_bias = nn.Parameter(torch.zeros(num_features), requires_grad=requires_grad)

    def proxy_statistics(self) -> Tuple[Tensor, Tensor]:
        """mu~ and s~^2, (C,) each, in float32 (with gradients to the parameters)."""
        params = [p.float() for p in (self.weight, self.bias, self.proxy_weight,
                                      self.proxy_bias)]
        quantiles = gaussian_quantiles(self.num_samples, torch.float32, self.weight.device)
        return proxy_statistics(*params, self.activation, quantiles)

    def forward(self, x: Tensor) -> Tensor:
        return proxy_norm_activation(x, self.weight, self.bias, self.proxy_weight,
                                     self.proxy_bias, self.activation, self.num_samples,
                                     self.eps)

    def extra_repr(self) -> str:
        return (f'{self.num_features}, act={self.act_cfg.get("type")}, '
                f'num_samples={self.num_samples}, eps={self.eps}')


class NormProxyAct(ProxyNormAct):
    """A norm without affine, then :class:`ProxyNormAct`: what replaces "norm, then activation"
    in mmbcn's Proxy-Normalization blocks (:mod:`mmbcn.models.backbones.proxy_norm_resnet`).

    ``out = ProxyNormAct(norm(x))`` with ``norm`` built from ``norm_cfg`` with ``affine=False``
    (GroupNorm as the paper; any norm that takes ``affine``). The parameters ``weight`` and
    ``bias`` (gamma and beta) are where the norm's own affine was, under the same names, so a
    block's ``gn1.weight`` and ``gn1.bias`` of a GroupNorm checkpoint load into them (the same
    function: ``phi(gamma * y + beta)`` is the parent's activation of its norm);
    ``proxy_weight`` and ``proxy_bias`` are new (0 at init).

    Args:
        num_features: C.
        norm_cfg: the mmcv norm cfg of the affine-free norm (its ``requires_grad`` applies to
            the four parameters here).
        act_cfg, num_samples, eps: as :class:`ProxyNormAct`.
    """

    def __init__(self, num_features: int, norm_cfg: dict, act_cfg: Optional[dict] = None,
                 num_samples: int = DEFAULT_NUM_SAMPLES, eps: float = DEFAULT_PROXY_EPS):
        norm_cfg = dict(norm_cfg)
        requires_grad = norm_cfg.pop('requires_grad', True)
        super().__init__(num_features, act_cfg, num_samples, eps, requires_grad)
        self.norm = build_norm_layer(dict(norm_cfg, affine=False), num_features)[1]

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.norm(x))
