"""The public entry points: mmbcn's measures of a model on a batch of inputs."""

from typing import Any, Callable, Iterable, Mapping, Optional

import torch
from torch import nn

from .collector import NormStatisticsCollector
from .measures import DEFAULT_CONSTANT_TOLERANCE, DEFAULT_THRESHOLD


def run_forward(model: nn.Module, inputs: Any, forward: Optional[Callable] = None):
    """``forward(model, inputs)`` if given, else ``model(inputs)`` for a tensor,
    ``model(*inputs)`` for a list or tuple and ``model(**inputs)`` for a mapping."""
    if forward is not None:
        return forward(model, inputs)
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    raise TypeError(f'inputs must be a tensor, a list/tuple of positional arguments or a dict of '
                    f'keyword arguments of the forward, got {type(inputs).__name__}; or pass '
                    f'forward=lambda model, inputs: ...')


def norm_statistics(model: nn.Module, batches: Iterable[Any],
                    threshold: float = DEFAULT_THRESHOLD,
                    constant_tolerance: float = DEFAULT_CONSTANT_TOLERANCE,
                    feeds: Optional[Mapping[str, str]] = None,
                    stages: Optional[Mapping[str, str]] = None,
                    forward: Optional[Callable] = None, per_channel: bool = False) -> dict:
    """mmbcn's measures over several batches, each run through the model once.

    The model runs as it is (``train()`` or ``eval()``: the caller decides; in train mode BN
    normalizes with batch statistics and updates its running ones) under ``torch.no_grad()``,
    so no gradient norm is measured. Channel statistics pool all batches' values; the sample
    similarity pools the pairs formed within each batch (:mod:`mmbcn.analysis.measures`).

    Args:
        model: any ``nn.Module`` with normalization layers.
        batches: an iterable of inputs, each passed as :func:`run_forward` says.
        threshold: a channel is eliminated when its activation rate is below it.
        constant_tolerance: see :mod:`mmbcn.analysis.measures`.
        feeds: overrides of what layers feed (:mod:`mmbcn.analysis.structure`).
        stages: ``{stage name: module name}``; default: the model's ResNet stages.
        forward: ``forward(model, inputs)`` to run instead of calling the model.
        per_channel: add each layer's per-channel lists (``'channels'``).

    Returns:
        ``{'layers': {name: figures}, 'model': figures, 'stages': {stage: figures},
        'settings': {...}}``.
    """
    collector = NormStatisticsCollector(model, feeds=feeds, stages=stages)
    with torch.no_grad(), collector:
        for inputs in batches:
            run_forward(model, inputs, forward)
            collector.end_batch()
    return {
        'layers': collector.layer_statistics(threshold, constant_tolerance, per_channel),
        'model': collector.model_statistics(threshold, constant_tolerance),
        'stages': collector.stage_statistics(),
        'settings': {'threshold': threshold, 'constant_tolerance': constant_tolerance},
    }


def channel_statistics(model: nn.Module, inputs: Any, threshold: float = DEFAULT_THRESHOLD,
                       constant_tolerance: float = DEFAULT_CONSTANT_TOLERANCE,
                       feeds: Optional[Mapping[str, str]] = None,
                       forward: Optional[Callable] = None,
                       per_channel: bool = False) -> dict:
    """Per-layer figures of every normalization layer for one batch of inputs.

    ``inputs`` is what the model's forward takes: a tensor (``model(inputs)``), a tuple of
    positional arguments or a dict of keyword arguments; for an OpenMMLab model pass the
    preprocessed batch to a part of it, e.g. ``channel_statistics(model.backbone,
    data['inputs'])``, or ``forward=lambda m, x: m.extract_feat(x)``.

    Returns:
        ``{layer name: {'eliminated_fraction', 'constant_fraction', 'margin_p1', 'margin_p10',
        'margin_p50', 'mean_activation_rate', 'eliminated_channels', 'constant_channels',
        'num_channels', 'feeds', 'type', 'values_per_channel'}}`` (floats, ints, strings;
        NaN figures for a layer the forward did not reach). See :func:`norm_statistics`.
    """
    return norm_statistics(model, [inputs], threshold, constant_tolerance, feeds,
                           forward=forward, per_channel=per_channel)['layers']
