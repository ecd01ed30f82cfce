"""Backbones the converted checkpoints are meant for, and file-level conversion."""

import torch

from .authors import check_fits, convert_authors_bcn_ws, read_checkpoint

BCN_CFG = dict(type='BCN', num_groups=32, requires_grad=True)
WS_CFG = dict(type='WSConv2d')
ARCHS = {
    'resnet50': dict(type='ResNet', depth=50),
    'resnet101': dict(type='ResNet', depth=101),
    'resnext50': dict(type='ResNeXt', depth=50, groups=32, base_width=4),
}


def build_bcn_ws_backbone(arch: str, num_groups: int = 32):
    """The mmdet backbone a converted ``arch`` checkpoint loads into (BCN + WSConv2d)."""
    if arch not in ARCHS:
        raise ValueError(f'--arch must be one of {sorted(ARCHS)}, got {arch!r}.')
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = dict(ARCHS[arch], norm_cfg=dict(BCN_CFG, num_groups=num_groups), conv_cfg=WS_CFG,
               norm_eval=False, out_indices=(0, 1, 2, 3))
    return MODELS.build(cfg)


def load_matching(model: torch.nn.Module, state_dict: dict) -> dict:
    """Load the tensors of ``state_dict`` whose name and shape match ``model``; report the rest.

    For BN checkpoints (torchvision / open-mmlab ResNets) into a BCN+WS backbone, everything loads
    but the channel stage (``group_weight`` / ``group_bias``, left at identity). For mmdet's
    GN+WS checkpoints the convs load; their GN layers (``gn1``, ...) have per-channel affines with
    no exact place in BCN and are reported as unused.

    Returns:
        ``dict(loaded=[...], fresh=[...], unused=[...], mis_shaped=[...])``, key names sorted.
    """
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    expected = model.state_dict()
    loaded = sorted(k for k in expected if k in state_dict
                    and state_dict[k].shape == expected[k].shape)
    mis_shaped = sorted(k for k in expected if k in state_dict and k not in loaded)
    model.load_state_dict({k: state_dict[k] for k in loaded}, strict=False)
    return dict(loaded=loaded, fresh=sorted(set(expected) - set(loaded)),
                unused=sorted(set(state_dict) - set(expected)), mis_shaped=mis_shaped)


BACKBONE_PREFIX = 'backbone.'


def read_backbone(path: str) -> dict:
    """The backbone tensors of a checkpoint in the classifier layout, ``backbone.`` stripped.

    This is what ``init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.')``
    loads: converted files and the checkpoints of the ImageNet configs alike.
    """
    state_dict = read_checkpoint(path)
    return {key[len(BACKBONE_PREFIX):]: value for key, value in state_dict.items()
            if key.startswith(BACKBONE_PREFIX)}


def convert_file(source: str, destination: str, arch: str) -> dict:
    """Convert an authors' BCN+WS checkpoint file, check it against ``arch``, save it.

    Returns a summary: the number of tensors written and the keys dropped.
    """
    converted, dropped = convert_authors_bcn_ws(read_checkpoint(source))
    groups = next(v.numel() for k, v in converted.items() if k.endswith('.group_weight'))
    check_fits(converted, build_bcn_ws_backbone(arch, groups), f'an mmdet {arch} (BCN + WS)')
    # The layout of mmpretrain's ImageClassifier checkpoints (configs/imagenet): one file format
    # for the configs' init_cfg=dict(type='Pretrained', ..., prefix='backbone.').
    prefixed = {BACKBONE_PREFIX + key: value for key, value in converted.items()}
    torch.save(dict(state_dict=prefixed, meta=dict(source=source, arch=arch)), destination)
    return dict(tensors=len(converted), dropped=dropped, num_groups=groups)
