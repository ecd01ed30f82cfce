"""Converting the authors' ImageNet BCN+WS checkpoints to mmdet/mmseg ResNet keys.

The authors' release (github.com/joe-siyuan-qiao/Batch-Channel-Normalization: ImageNet ResNet-50,
ResNet-101, ResNeXt-50 weights linked from ``imagenet/README.md``) stores, as its code writes and
reads them (``imagenet/imagenet.py`` saves ``{'state_dict': ...}`` of a DataParallel model,
``DeepLabV3/deeplab.py`` reads ``rn101-bcn-ws.pth.tar`` as a plain state dict), keys prefixed
``module.``:

* torchvision-style names: ``conv1``, ``bn1``, ``layer1.0.conv2``, ``layer1.0.downsample.0/1``,
  ``fc``;
* for each norm layer ``<name>``: its batch stage as
  ``<name>.<stage>.{weight,bias,running_mean,running_var,num_batches_tracked}`` and its
  per-group affine as ``<name>.weight`` / ``<name>.bias`` of shape (1, G, 1). ``<stage>`` is
  ``pbn`` in the release's code (``imagenet/models/layers.py``, ``DeepLabV3/deeplab.py``), ``bn``
  in the ``BCNorm`` of its README (whose ``EstBN`` also stores the update rate as
  ``bn.estbn_moving_speed``, 0 at init and set by nothing in the release: dropped, since in
  mmbcn r is set by the layer's ``momentum`` or :class:`mmbcn.engine.BCNUpdateRateHook`);
* WS convs with plain ``weight`` keys (standardization happens in forward).

mmdet's ``ResNet`` / ``ResNeXt`` (and mmseg's ``ResNet``, which has the same 7x7 stem) use the
same module names, so the conversion is a renaming: ``<name>.<stage>.X -> <name>.X``,
``<name>.weight (1, G, 1) -> <name>.group_weight (G,)``, the same for bias; ``fc`` is dropped.
"""

from typing import Dict, Tuple

import torch

from .weights_only import load_weights_only

Tensor = torch.Tensor
# The batch stage's module name in the two layouts: the release's code, its README's BCNorm.
BATCH_STAGES = ('.pbn.', '.bn.')
DROPPED_PREFIXES = ('fc.',)
DROPPED_BUFFERS = ('estbn_moving_speed',)


class CheckpointLayoutError(ValueError):
    """A checkpoint is not in the layout a converter expects, or does not fit a model."""


def read_checkpoint(path: str) -> Dict[str, Tensor]:
    """The state dict in ``path`` (plain or under ``'state_dict'``), loaded weights-only."""
    try:
        checkpoint = load_weights_only(path, map_location='cpu')
    except FileNotFoundError:
        raise
    except Exception as error:  # truncated zip, not a torch file, pickled code
        raise CheckpointLayoutError(
            f'Could not read {path} as a weights-only torch checkpoint ({type(error).__name__}: '
            f'{str(error).splitlines()[0]}). The file may be truncated (download it again) or '
            f'hold pickled objects other than tensors.') from error
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict):
        checkpoint = checkpoint['state_dict']
    if not isinstance(checkpoint, dict) or not all(
            isinstance(v, Tensor) for v in checkpoint.values()):
        raise CheckpointLayoutError(
            f'{path} holds neither a state dict nor a dict with a "state_dict" entry of tensors.')
    return checkpoint


def _strip_module_prefix(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}


def convert_authors_bcn_ws(state_dict: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], list]:
    """Rename an authors' BCN+WS ResNet state dict to mmdet/mmseg ResNet keys.

    Returns:
        ``(converted, dropped)``: the new state dict and the keys left out (``fc``, and
        ``estbn_moving_speed`` in the README layout).

    Raises:
        CheckpointLayoutError: when no ``.pbn.`` or ``.bn.`` batch-stage key is present, or a
            norm layer's per-group affine is missing or not of shape (1, G, 1).
    """
    source = _strip_module_prefix(state_dict)
    batch_stage = _batch_stage_of(source)
    norm_layers = sorted({k.split(batch_stage)[0] for k in source if batch_stage in k})
    converted, dropped = {}, []
    for key, value in source.items():
        if key.startswith(DROPPED_PREFIXES) or key.rsplit('.', 1)[-1] in DROPPED_BUFFERS:
            dropped.append(key)
        elif batch_stage in key:
            converted[key.replace(batch_stage, '.', 1)] = value
    for layer in norm_layers:
        for name in ('weight', 'bias'):
            key = f'{layer}.{name}'
            if key not in source:
                raise CheckpointLayoutError(f'{layer} has a batch stage but no per-group {key}.')
            value = source[key]
            if value.dim() != 3 or value.shape[0] != 1 or value.shape[2] != 1:
                raise CheckpointLayoutError(
                    f'{key} should have shape (1, G, 1) (the per-group affine), got '
                    f'{tuple(value.shape)}.')
            converted[f'{layer}.group_{name}'] = value.reshape(-1)
    norm_keys = {f'{layer}.{name}' for layer in norm_layers for name in ('weight', 'bias')}
    for key, value in source.items():
        if batch_stage not in key and key not in norm_keys and key not in dropped:
            converted[key] = value  # conv weights (WS convs store plain weights)
    return converted, dropped


def _batch_stage_of(source: Dict[str, Tensor]) -> str:
    """Which layout ``source`` has: ``'.pbn.'`` or ``'.bn.'`` (the one its norm layers use)."""
    found = [stage for stage in BATCH_STAGES
             if any(k.endswith(f'{stage}running_mean') for k in source)]
    if not found:
        raise CheckpointLayoutError(
            'No "<layer>.pbn.*" or "<layer>.bn.*" batch-stage keys: this is not an authors\' '
            'BCN checkpoint. For a BN or GN+WS checkpoint, see what loads with '
            '`python tools/convert_checkpoint.py SRC --report --arch ARCH` '
            '(mmbcn.convert.load_matching).')
    if len(found) > 1:
        raise CheckpointLayoutError(
            'The checkpoint has both "<layer>.pbn.*" and "<layer>.bn.*" batch-stage keys; '
            'the authors\' layouts use one of them. Convert a checkpoint of one model.')
    return found[0]


def check_fits(state_dict: Dict[str, Tensor], model: torch.nn.Module, what: str) -> None:
    """Raise a CheckpointLayoutError naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model '
                        f'{tuple(expected[k].shape)}' for k in set(expected) & set(state_dict)
                        if state_dict[k].shape != expected[k].shape)
    if missing or unexpected or mis_shaped:
        def head(items):
            return ', '.join(items[:5]) + (f' ... ({len(items)} in all)' if len(items) > 5 else '')
        raise CheckpointLayoutError(
            f'The converted checkpoint does not fit {what}: '
            + '; '.join(f'{label}: {head(items)}' for label, items in (
                ('missing', missing), ('unexpected', unexpected), ('shape mismatch', mis_shaped))
                if items)
            + '. Check --arch (e.g. ResNet-101 weights need depth 101).')
