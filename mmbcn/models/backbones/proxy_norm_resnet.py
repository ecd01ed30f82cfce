"""Proxy-Normalization ResNets, written once for the three toolboxes' ResNets.

OpenMMLab's ResNet blocks apply one shared ``self.relu`` after ``norm1``, after ``norm2`` (of a
Bottleneck) and after the residual sum, and their stems end in norm + ReLU. Proxy Normalization
(:mod:`mmbcn.layers.proxy_norm`) replaces "norm, then activation" by "norm without affine, then
the proxy-normalized activation" (:class:`~mmbcn.layers.proxy_norm.NormProxyAct`), so the
blocks here differ from their parents in where the activations are:

* every norm followed by an activation, in the blocks (``norm1``; ``norm1`` and ``norm2`` of a
  Bottleneck) and in the stem (the 7x7 stem's norm, each of the deep stem's three), is a
  ``NormProxyAct`` under the parent's name, so ``gn1.weight`` / ``gn1.bias`` of a GroupNorm
  checkpoint load into its gamma and beta (the proxy's parameters are new);
* the last norm of each residual branch is the parent's plain norm with its affine (the
  authors' code keeps a plain norm where no activation follows,
  ``efficientnet.py``), and so is the downsample's norm;
* the activation after the residual sum is the parent's plain ReLU. It follows no norm, so
  there is nothing to proxy-normalize: this is mmbcn's choice for v1 ResNets (the authors'
  EfficientNet blocks have no activation after the sum; the paper's ResNets are pre-activation).

Everything else is the parent's: ``init_cfg`` (Kaiming convs, norms set to 1, ``Pretrained``),
``zero_init_residual`` (the last norm of each branch, which stays a plain norm; mmdet's and
mmseg's ResNets decide it by the block class's identity, so the PN ResNet sets the same block
``init_cfg`` itself), ``frozen_stages`` (the replaced stem norms are frozen with the stem),
``norm_eval`` (BatchNorm inside a ``NormProxyAct`` included), ``with_cp``, plugins and drop path.

The toolbox modules (:mod:`.mmdet_resnet`, :mod:`.mmseg_resnet`, :mod:`.mmpretrain_resnet`)
combine these mixins with their toolbox's classes (:func:`define_proxy_norm_resnets`) and register
``ProxyNormResNet``, ``ProxyNormResNetV1c`` and ``ProxyNormResNetV1d`` in that toolbox's
``MODELS``.
"""

from typing import NamedTuple, Optional

import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from torch import nn

from ...layers.proxy_norm import NormProxyAct

__all__ = ['ProxyNormBasicBlockMixin', 'ProxyNormBottleneckMixin', 'ProxyNormResNetMixin',
           'ProxyNormResNets', 'define_proxy_norm_resnets', 'proxy_norm_arch_settings']

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
          nn.LayerNorm)


class _ProxyNormBlockMixin:
    """Replaces ``norm<i>`` for i in :attr:`activated_norms` after the parent's ``__init__``."""

    activated_norms = (1, )

    def __init__(self, *args, proxy_cfg: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        norm_cfg = kwargs.get('norm_cfg', dict(type='BN'))
        self.proxy_cfg = dict(proxy_cfg or {})
        for index in self.activated_norms:
            channels = getattr(self, f'conv{index}').out_channels
            setattr(self, getattr(self, f'norm{index}_name'),
                    NormProxyAct(channels, norm_cfg, **self.proxy_cfg))

    def _after(self, out, position: str):
        if getattr(self, 'with_plugins', False):  # mmdet's and mmseg's Bottleneck plugins
            out = self.forward_plugin(out, getattr(self, f'after_{position}_plugin_names'))
        return out

    def _residual(self, out, x):
        identity = x if self.downsample is None else self.downsample(x)
        drop_path = getattr(self, 'drop_path', None)  # mmpretrain's blocks
        if drop_path is not None:
            out = drop_path(out)
        return out + identity

    def forward(self, x):
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._branch, x)
        else:
            out = self._branch(x)
        return self.relu(out)  # the plain activation after the sum (module doc)


class ProxyNormBasicBlockMixin(_ProxyNormBlockMixin):
    """A BasicBlock: conv1, norm1 + PN activation, conv2, norm2 (plain), + identity, ReLU."""

    activated_norms = (1, )

    def _branch(self, x):
        out = self.norm1(self.conv1(x))
        out = self.norm2(self.conv2(out))
        return self._residual(out, x)


class ProxyNormBottleneckMixin(_ProxyNormBlockMixin):
    """A Bottleneck: norm1 and norm2 with the PN activation, norm3 plain, + identity, ReLU."""

    activated_norms = (1, 2)

    def _branch(self, x):
        out = self._after(self.norm1(self.conv1(x)), 'conv1')
        out = self._after(self.norm2(self.conv2(out)), 'conv2')
        out = self._after(self.norm3(self.conv3(out)), 'conv3')
        return self._residual(out, x)


def proxy_norm_arch_settings(arch_settings: dict, basic_block: type, bottleneck: type) -> dict:
    """The parent's ``arch_settings`` with its blocks replaced by the PN blocks."""
    settings = {}
    for depth, (block, stages) in arch_settings.items():
        new_block = basic_block if issubclass(basic_block, block) else bottleneck
        if not issubclass(new_block, block):
            raise TypeError(f'no Proxy-Normalization variant of {block.__name__}')
        settings[depth] = (new_block, stages)
    return settings


def _proxy_normalize_sequential(stem: nn.Sequential, norm_cfg: dict, proxy_cfg: dict) -> None:
    """mmdet's / mmseg's deep stem: (conv, norm, ReLU) x 3 -> (conv, NormProxyAct, Identity) x 3,
    indices kept (``stem.1.weight`` stays ``stem.1.weight``)."""
    channels = None
    for index, module in enumerate(list(stem)):
        if hasattr(module, 'out_channels'):
            channels = module.out_channels
        elif isinstance(module, _NORMS) and index + 1 < len(stem) and isinstance(
                stem[index + 1], nn.ReLU):
            stem[index] = NormProxyAct(channels, norm_cfg, **proxy_cfg)
            stem[index + 1] = nn.Identity()


def _proxy_normalize_conv_module(module: ConvModule, norm_cfg: dict, proxy_cfg: dict) -> None:
    """mmpretrain's deep stem is three ConvModules (conv, norm, act): norm + act -> PN."""
    if module.with_norm and module.with_activation:
        setattr(module, module.norm_name,
                NormProxyAct(module.conv.out_channels, norm_cfg, **proxy_cfg))
        module.activate = nn.Identity()


class ProxyNormResNetMixin:
    """The PN ResNet of a toolbox: its ResNet with the PN blocks (``arch_settings`` of the
    subclass) and a proxy-normalized stem.

    Args:
        proxy_cfg: options of every ``NormProxyAct`` (``act_cfg``, ``num_samples``, ``eps``).
        *args, **kwargs: the parent ResNet's. ``norm_cfg`` must be a norm that takes
            ``affine`` (GroupNorm as in the paper; BN, IN); the last norm of each branch and the
            downsample's norm are built from it as they are.
    """

    #: mmdet's and mmseg's ResNets give the blocks their zero-init ``init_cfg`` only when the
    #: block class *is* their BasicBlock / Bottleneck; mmpretrain's zeroes by ``isinstance``.
    zero_init_by_block_cfg = True

    def __init__(self, *args, proxy_cfg: Optional[dict] = None, **kwargs):
        # make_res_layer, called inside the parent's __init__, passes it to every block
        object.__setattr__(self, '_proxy_cfg', dict(proxy_cfg or {}))
        super().__init__(*args, **kwargs)
        self.proxy_cfg = self._proxy_cfg
        self._proxy_normalize_stem()
        if (self.zero_init_by_block_cfg and self.zero_init_residual
                and kwargs.get('init_cfg') is None and kwargs.get('pretrained') is None):
            self._zero_init_last_norms()
        self._freeze_stages()  # the parent froze the stem norms that were just replaced

    def make_res_layer(self, **kwargs):
        return super().make_res_layer(proxy_cfg=self._proxy_cfg, **kwargs)

    def _proxy_normalize_stem(self) -> None:
        if self.deep_stem:
            if isinstance(self.stem[0], ConvModule):
                for module in self.stem:
                    _proxy_normalize_conv_module(module, self.norm_cfg, self.proxy_cfg)
            else:
                _proxy_normalize_sequential(self.stem, self.norm_cfg, self.proxy_cfg)
        else:
            setattr(self, self.norm1_name,
                    NormProxyAct(self.conv1.out_channels, self.norm_cfg, **self.proxy_cfg))
            self.relu = nn.Identity()

    def _zero_init_last_norms(self) -> None:
        for module in self.modules():
            if isinstance(module, ProxyNormBottleneckMixin):
                module.init_cfg = dict(type='Constant', val=0, override=dict(name='norm3'))
            elif isinstance(module, ProxyNormBasicBlockMixin):
                module.init_cfg = dict(type='Constant', val=0, override=dict(name='norm2'))


class ProxyNormResNets(NamedTuple):
    """The PN classes of one toolbox (:func:`define_proxy_norm_resnets`)."""

    basic_block: type
    bottleneck: type
    resnet: type
    resnet_v1c: type
    resnet_v1d: type


def define_proxy_norm_resnets(toolbox: str, module: str, basic_block: type, bottleneck: type,
                              resnet: type, registry, *,
                              zero_init_by_block_cfg: bool = True) -> ProxyNormResNets:
    """Define one toolbox's PN blocks and ResNets and register the ResNets in its ``registry``.

    Args:
        toolbox: the toolbox's name, for the docstrings (``'mmdet'``).
        module: the module the classes belong to (its ``__name__``: pickling and the API
            reference find them there).
        basic_block, bottleneck, resnet: the toolbox's ResNet classes.
        registry: the toolbox's ``MODELS``, which gets ``ProxyNormResNet``, ``ProxyNormResNetV1c``
            (deep stem, strided-conv downsampling) and ``ProxyNormResNetV1d`` (deep stem,
            average-pool downsampling).
        zero_init_by_block_cfg: see :attr:`ProxyNormResNetMixin.zero_init_by_block_cfg`.
    """

    class ProxyNormBasicBlock(ProxyNormBasicBlockMixin, basic_block):
        __doc__ = f"{toolbox}'s BasicBlock with Proxy Normalization after norm1."

    class ProxyNormBottleneck(ProxyNormBottleneckMixin, bottleneck):
        __doc__ = f"{toolbox}'s Bottleneck with Proxy Normalization after norm1 and norm2."

    class ProxyNormResNet(ProxyNormResNetMixin, resnet):
        __doc__ = (f"{toolbox}'s ResNet with Proxy Normalization (``proxy_cfg``: options of "
                   "every ``NormProxyAct``; the rest as ResNet).")
        arch_settings = proxy_norm_arch_settings(resnet.arch_settings, ProxyNormBasicBlock,
                                                 ProxyNormBottleneck)

    ProxyNormResNet.zero_init_by_block_cfg = zero_init_by_block_cfg

    class ProxyNormResNetV1c(ProxyNormResNet):
        """ProxyNormResNet with the deep stem (three 3x3 convs) and strided-conv downsampling,
        as ResNetV1c (mmseg's and mmpretrain's; mmdet has none of its own)."""

        def __init__(self, **kwargs):
            super().__init__(deep_stem=True, avg_down=False, **kwargs)

    class ProxyNormResNetV1d(ProxyNormResNet):
        """ProxyNormResNet with the deep stem and average-pool downsampling, as ResNetV1d."""

        def __init__(self, **kwargs):
            super().__init__(deep_stem=True, avg_down=True, **kwargs)

    classes = ProxyNormResNets(ProxyNormBasicBlock, ProxyNormBottleneck, ProxyNormResNet,
                               ProxyNormResNetV1c, ProxyNormResNetV1d)
    for cls in classes:
        cls.__module__, cls.__qualname__ = module, cls.__name__
    for cls in classes[2:]:
        registry.register_module(module=cls)
    return classes
