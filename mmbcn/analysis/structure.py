"""Which modules are normalization layers, what each one's output feeds, and the stages.

What a normalization layer's output feeds (``feeds``), decided from the model's structure, in
this order (the first rule that applies wins):

1. ``overrides``: a mapping of ``fnmatch`` patterns of layer names to a kind, given by the user.
2. Residual blocks (a module with ``norm1_name``, ``norm2_name`` [, ``norm3_name``] and a
   ``downsample`` attribute: the ``BasicBlock`` and ``Bottleneck`` of mmdet's, mmseg's and
   mmpretrain's ResNet/ResNeXt): the block's last norm (``norm2`` of a BasicBlock, ``norm3`` of
   a Bottleneck) feeds the residual sum (``'residual'``), the others a ReLU (``'activation'``);
   the norm inside the block's ``downsample`` feeds the residual sum too.
3. A ResNet's stem norm (``norm1_name`` of a module with ``res_layers``): ``'activation'``.
4. mmcv's ``ConvModule`` (``norm_name``, ``with_activation``, ``order``): ``'activation'`` when
   the module has an activation right after its norm, else ``'no_activation'`` (e.g. FPN's
   lateral convs, ``act_cfg=None``).
5. A norm directly followed, in an ``nn.Sequential``, by an activation module (a deep stem's
   conv-norm-ReLU): ``'activation'``.
6. Anything else: ``'unknown'``.

The rules read attribute names only (no OpenMMLab import), so they also recognize blocks of
other codebases built the same way. Stages are the modules named in ``res_layers`` of
mmdet's, mmseg's and mmpretrain's ResNets (``layer1`` ... ``layer4``).
"""

from fnmatch import fnmatch
from typing import Dict, Mapping, Optional

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

FEED_KINDS = ('activation', 'residual', 'no_activation', 'unknown')
NORM_TYPES = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, _InstanceNorm)
ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU,
                    nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Softplus)
ACTIVATION_NAMES = ('Swish', 'HSwish')  # mmcv's own activation modules


def normalization_layers(model: nn.Module) -> Dict[str, nn.Module]:
    """Every BN, SyncBN, BCN (a ``_BatchNorm``), GN, LayerNorm and InstanceNorm, by name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, NORM_TYPES)}


def num_channels(layer: nn.Module) -> int:
    """The number of channels of a normalization layer's output."""
    if isinstance(layer, nn.GroupNorm):
        return layer.num_channels
    if isinstance(layer, nn.LayerNorm):
        return layer.normalized_shape[-1]
    return layer.num_features


def channel_dim(layer: nn.Module, output) -> int:
    """Where the channels are in a layer's output: 1 (``(N, C, ...)``), last for LayerNorm.

    A LayerNorm whose output does not end with its normalized width but has it at dimension 1
    (mmpretrain's ``LayerNorm2d`` on ``(N, C, H, W)``) has its channels at 1.
    """
    if isinstance(layer, nn.LayerNorm):
        width = layer.normalized_shape[-1]
        if output.shape[-1] != width and output.dim() > 1 and output.shape[1] == width:
            return 1
        return output.dim() - 1
    return 1


def _is_activation(module: Optional[nn.Module]) -> bool:
    return isinstance(module, ACTIVATION_TYPES) or type(module).__name__ in ACTIVATION_NAMES


def _block_norm_names(block: nn.Module):
    if not (hasattr(block, 'norm1_name') and hasattr(block, 'norm2_name')
            and hasattr(block, 'downsample')):
        return None
    return [getattr(block, f'norm{i}_name') for i in (1, 2, 3) if hasattr(block, f'norm{i}_name')]


def _residual_block_kind(parent: nn.Module, attr: str) -> Optional[str]:
    names = _block_norm_names(parent)
    if names is None or attr not in names:
        return None
    return 'residual' if attr == names[-1] else 'activation'


def _conv_module_kind(parent: nn.Module, attr: str) -> Optional[str]:
    if getattr(parent, 'norm_name', None) != attr or not hasattr(parent, 'with_activation'):
        return None
    order = tuple(getattr(parent, 'order', ('conv', 'norm', 'act')))
    follows = 'act' in order and order.index('act') == order.index('norm') + 1
    return 'activation' if parent.with_activation and follows else 'no_activation'


def _sequential_kind(parent: nn.Module, attr: str) -> Optional[str]:
    if not isinstance(parent, nn.Sequential):
        return None
    children = list(parent.named_children())
    names = [name for name, _ in children]
    index = names.index(attr)
    following = children[index + 1][1] if index + 1 < len(children) else None
    return 'activation' if _is_activation(following) else None


def _feed_kind(modules: Mapping[str, nn.Module], name: str) -> str:
    parent_name, _, attr = name.rpartition('.')
    parent = modules[parent_name]
    kind = (_residual_block_kind(parent, attr) or _conv_module_kind(parent, attr)
            or _sequential_kind(parent, attr))
    if kind:
        return kind
    if getattr(parent, 'norm1_name', None) == attr and hasattr(parent, 'res_layers'):
        return 'activation'  # a ResNet's stem: conv1 -> norm1 -> relu
    grand_name, _, parent_attr = parent_name.rpartition('.')
    if parent_name and parent_attr == 'downsample' \
            and _block_norm_names(modules[grand_name]) is not None:
        return 'residual'
    return 'unknown'


def feed_kinds(model: nn.Module, overrides: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """What each normalization layer's output feeds (the rules of the module docstring)."""
    overrides = dict(overrides or {})
    for pattern, kind in overrides.items():
        if kind not in FEED_KINDS:
            raise ValueError(f'feeds[{pattern!r}] = {kind!r}: the kind must be one of '
                             f'{FEED_KINDS}.')
    modules = dict(model.named_modules())
    kinds = {}
    for name in normalization_layers(model):
        matched = [kind for pattern, kind in overrides.items() if fnmatch(name, pattern)]
        kinds[name] = matched[0] if matched else _feed_kind(modules, name)
    return kinds


def find_stages(model: nn.Module) -> Dict[str, str]:
    """``{stage name: module name}`` of the ResNet stages (``res_layers``) in the model.

    A stage is named as in its ResNet (``layer1``); where the model holds several ResNets, by
    its full module name.
    """
    found = []
    for name, module in model.named_modules():
        res_layers = getattr(module, 'res_layers', None)
        if isinstance(res_layers, (list, tuple)) and all(isinstance(s, str) for s in res_layers):
            found.extend((stage, f'{name}.{stage}' if name else stage) for stage in res_layers)
    short = [stage for stage, _ in found]
    unique = len(set(short)) == len(short)
    return {stage if unique else full: full for stage, full in found}
