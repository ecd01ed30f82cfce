"""Collecting mmbcn's measures during a model's own forward (and backward) with hooks.

:class:`NormStatisticsCollector` registers a forward hook on every normalization layer and on
every stage; each hook turns the output into the sums of :mod:`mmbcn.analysis.measures` at once
(before an in-place ReLU changes it) and adds them up. Nothing is kept of the activations.

Distributed (``torch.distributed`` initialized, more than one process): the collector is used
identically on every process and the collective calls below are made on all of them; after
:meth:`~NormStatisticsCollector.end_batch` and :meth:`~NormStatisticsCollector.all_reduce`
**every process holds the same sums, those of the global batch, and computes identical
figures**:

* channel sums: one all-reduce (SUM) of all layers' float64 sums;
* sample similarity: the stage outputs of the k-th forward of each process form the global
  batch k; :meth:`end_batch` all-reduces, per feature shape present on any process, the sums of
  unit feature vectors, so pairs of samples on different processes are counted (pairs of
  samples whose feature maps have different shapes are not: their features are not comparable);
* gradient norm: each process's ``||dL_r / df_r||^2`` is all-reduced; the figure is
  ``sqrt(sum_r ||dL_r / df_r||^2) / R`` for R processes, the norm of the gradient of the loss
  DDP optimizes, ``(1 / R) sum_r L_r``, with respect to the whole global batch's stage output.
  Over several backward passes it is the root mean square over them. With AMP the gradients
  include the loss scale.

Activation checkpointing (mmdet's ``with_cp=True``) runs a block's forward again during the
backward; the hooks see that second forward too, so its layers' values are counted twice (the
fractions and margins are unchanged when both forwards see the same values).
"""

import math
from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .measures import (
    DEFAULT_CONSTANT_TOLERANCE,
    DEFAULT_THRESHOLD,
    channel_figures,
    channel_sums,
    layer_figures,
    margin_percentiles,
    pair_sums,
    unit_sample_sums,
)
from .structure import channel_dim, feed_kinds, find_stages, normalization_layers, num_channels

NO_NORMALIZATION = ('the model has no normalization layer (BatchNorm, SyncBatchNorm, BCN, '
                    'GroupNorm, LayerNorm or InstanceNorm)')


def _world_size(group=None) -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(group)
    return 1


class NormStatisticsCollector:
    """Sums of mmbcn's measures over the forwards run while attached.

    Args:
        model: the model (not a DDP wrapper: pass ``wrapper.module``).
        feeds: ``fnmatch`` patterns of layer names -> what they feed, taking precedence over
            the structural rules of :mod:`mmbcn.analysis.structure`.
        stages: ``{stage name: module name}``; default: the ResNet stages found in the model.
        group: the process group of the all-reduces (default: the whole world).

    Use::

        with NormStatisticsCollector(model) as collector:
            for batch in batches:
                model(batch)
                collector.end_batch()
        collector.all_reduce()          # distributed only; a no-op in one process
        layers = collector.layer_statistics()
    """

    def __init__(self, model: nn.Module, feeds: Optional[Mapping[str, str]] = None,
                 stages: Optional[Mapping[str, str]] = None, group=None):
        self.model = model
        self.layers = normalization_layers(model)
        if not self.layers:
            raise ValueError(f'{NO_NORMALIZATION}: there is nothing to measure.')
        self.feeds = feed_kinds(model, feeds)
        self.stages = dict(find_stages(model) if stages is None else stages)
        modules = dict(model.named_modules())
        missing = [name for name in self.stages.values() if name not in modules]
        if missing:
            raise ValueError(f'stages {missing} are not modules of the model.')
        self.stage_modules = {stage: modules[name] for stage, name in self.stages.items()}
        self.group = group
        self._handles: List = []
        self.reset()

    # -- state -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every sum (the hooks stay attached)."""
        self.sums: Dict[str, torch.Tensor] = {}
        self.pairs: Dict[str, torch.Tensor] = {}  # stage -> (pair cosine sum, pair count)
        # stage -> [(feature shape of a sample, unit_sample_sums)] of the batch being run
        self.pending: Dict[str, List[Tuple[tuple, torch.Tensor]]] = {
            stage: [] for stage in self.stages}
        self.grad_squares: Dict[str, torch.Tensor] = {}  # stage -> (sum ||g||^2, backwards)
        self.processes = 1  # how many processes' sums these are

    def _device(self) -> torch.device:
        parameter = next(self.model.parameters(), None)
        return parameter.device if parameter is not None else torch.device('cpu')

    # -- hooks -----------------------------------------------------------------------------

    def attach(self) -> 'NormStatisticsCollector':
        if self._handles:
            return self
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._layer_hook(name)))
        for stage, module in self.stage_modules.items():
            self._handles.append(module.register_forward_hook(self._stage_hook(stage)))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> 'NormStatisticsCollector':
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def _layer_hook(self, name: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.numel() == 0:
                return
            sums = channel_sums(output, channel_dim(module, output))
            self.sums[name] = sums if name not in self.sums else self.sums[name] + sums
        return hook

    def _stage_hook(self, stage: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.shape[0] == 0:
                return
            self.pending[stage].append((tuple(output.shape[1:]), unit_sample_sums(output)))
            if output.requires_grad:
                output.register_hook(self._grad_hook(stage))
        return hook

    def _grad_hook(self, stage: str):
        def hook(grad):
            value = torch.stack([grad.detach().double().square().sum(),
                                 torch.ones((), dtype=torch.float64, device=grad.device)])
            previous = self.grad_squares.get(stage)
            self.grad_squares[stage] = value if previous is None else previous + value
        return hook

    # -- merging ---------------------------------------------------------------------------

    def end_batch(self) -> None:
        """Turn the stage outputs of the batch just run into pair sums (a collective call when
        distributed: the k-th forward of every process makes up global batch k)."""
        if _world_size(self.group) > 1:
            self._fold_across_processes()
        else:
            for stage, items in self.pending.items():
                for _, unit_sums in items:
                    self._add_pairs(stage, pair_sums(unit_sums))
        self.pending = {stage: [] for stage in self.stages}

    def _add_pairs(self, stage: str, pairs: torch.Tensor) -> None:
        self.pairs[stage] = pairs if stage not in self.pairs else self.pairs[stage] + pairs

    def _fold_across_processes(self) -> None:
        local = {stage: [shape for shape, _ in items] for stage, items in self.pending.items()}
        gathered: List[Optional[dict]] = [None] * _world_size(self.group)
        dist.all_gather_object(gathered, local, group=self.group)
        device = self._device()
        for stage in sorted(self.stages):
            items = self.pending[stage]
            lists = [shapes.get(stage, []) for shapes in gathered]
            for k in range(max(len(shapes) for shapes in lists)):
                for shape in sorted({shapes[k] for shapes in lists if len(shapes) > k}):
                    mine = k < len(items) and items[k][0] == shape
                    buffer = items[k][1].to(device) if mine else torch.zeros(
                        math.prod(shape) + 2, dtype=torch.float64, device=device)
                    dist.all_reduce(buffer, group=self.group)
                    self._add_pairs(stage, pair_sums(buffer))

    def all_reduce(self) -> None:
        """Sum the channel and gradient sums over all processes (a collective call; does nothing
        in one process; the pair sums are global after each :meth:`end_batch` already). Call it
        once, after the last :meth:`end_batch`."""
        world = _world_size(self.group)
        if world == 1:
            return
        device = self._device()
        parts = []
        for name in sorted(self.layers):
            channels = num_channels(self.layers[name])
            parts.append(('sums', name, self.sums.get(name, torch.zeros(
                4, channels, dtype=torch.float64, device=device))))
        for stage in sorted(self.stages):  # pairs: already global after each end_batch
            parts.append(('grad_squares', stage, self.grad_squares.get(stage, torch.zeros(
                2, dtype=torch.float64, device=device))))
        flat = torch.cat([tensor.to(device).reshape(-1) for _, _, tensor in parts])
        dist.all_reduce(flat, group=self.group)
        offset = 0
        for store, key, tensor in parts:
            getattr(self, store)[key] = flat[offset:offset + tensor.numel()].reshape(tensor.shape)
            offset += tensor.numel()
        for stage, value in self.grad_squares.items():
            # every process ran the same backwards: count them once, not R times
            self.grad_squares[stage] = torch.stack([value[0], value[1] / world])
        self.processes = world

    # -- figures ---------------------------------------------------------------------------

    def channel_figures(self, name: str, threshold: float = DEFAULT_THRESHOLD,
                        constant_tolerance: float = DEFAULT_CONSTANT_TOLERANCE):
        sums = self.sums.get(name)
        if sums is None:
            sums = torch.zeros(4, num_channels(self.layers[name]), dtype=torch.float64)
        # (4, C) values: one copy to the host, then no device sync per figure
        return channel_figures(sums.cpu(), threshold, constant_tolerance)

    def layer_statistics(self, threshold: float = DEFAULT_THRESHOLD,
                         constant_tolerance: float = DEFAULT_CONSTANT_TOLERANCE,
                         per_channel: bool = False) -> Dict[str, dict]:
        """``{layer name: figures}`` for every normalization layer (see :func:`layer_report`)."""
        return {name: layer_report(
            self.channel_figures(name, threshold, constant_tolerance), self.feeds[name],
            type(self.layers[name]).__name__, self._values(name), per_channel)
            for name in self.layers}

    def _values(self, name: str) -> int:
        sums = self.sums.get(name)
        return int(sums[0, 0]) if sums is not None and sums.shape[1] else 0

    def stage_statistics(self) -> Dict[str, dict]:
        """``{stage: {'module': name, 'sample_similarity': s, 'sample_pairs': p[,
        'grad_norm': g]}}``; s is NaN without a pair of samples."""
        stages = {}
        for stage, module_name in self.stages.items():
            pairs = self.pairs.get(stage)
            pair_sum, count = pairs.tolist() if pairs is not None else (0.0, 0.0)
            entry = {'module': module_name,
                     'sample_similarity': pair_sum / count if count else float('nan'),
                     'sample_pairs': int(count)}
            squares, backwards = self.grad_squares.get(stage, torch.zeros(2)).tolist()
            if backwards > 0:
                entry['grad_norm'] = (squares / backwards) ** 0.5 / self.processes
            stages[stage] = entry
        return stages

    def model_statistics(self, threshold: float = DEFAULT_THRESHOLD,
                         constant_tolerance: float = DEFAULT_CONSTANT_TOLERANCE) -> dict:
        """Model-level figures over the layers that feed an activation (see
        :func:`model_report`)."""
        figures = {name: self.channel_figures(name, threshold, constant_tolerance)
                   for name in self.layers}
        return model_report(figures, self.feeds, self.layer_statistics(
            threshold, constant_tolerance))


def layer_report(figures, feeds: str, layer_type: str, values: int,
                 per_channel: bool = False) -> dict:
    """One layer's entry: :func:`~mmbcn.analysis.measures.layer_figures` plus ``feeds``,
    ``type``, ``values_per_channel`` (0: the layer did not run) and, with ``per_channel``,
    the per-channel ``mean``, ``std``, ``activation_rate`` and ``margin`` lists."""
    entry = {'feeds': feeds, 'type': layer_type, 'values_per_channel': values,
             **layer_figures(figures)}
    if per_channel:
        entry['channels'] = {key: getattr(figures, key).tolist()
                             for key in ('mean', 'std', 'activation_rate', 'margin')}
    return entry


def model_report(figures: Mapping[str, object], feeds: Mapping[str, str],
                 layers: Mapping[str, dict]) -> dict:
    """Model-level figures over the activation-feeding layers that ran.

    ``eliminated_fraction`` and ``constant_fraction``: eliminated (constant) channels over all
    channels of those layers; ``margin_p1/p10/p50``: percentiles of all their non-constant
    channels' margins; ``max_layer_eliminated_fraction`` and ``max_layer``: the layer with the
    largest eliminated fraction. NaN (and ``max_layer`` None) when no such layer ran.
    """
    chosen = [name for name in figures
              if feeds[name] == 'activation' and layers[name]['values_per_channel'] > 0]
    channels = sum(layers[name]['num_channels'] for name in chosen)
    nan = float('nan')
    report = {'layers': len(chosen), 'num_channels': channels,
              'eliminated_fraction': nan, 'constant_fraction': nan,
              'max_layer_eliminated_fraction': nan, 'max_layer': None}
    if chosen:
        report['eliminated_fraction'] = sum(
            layers[name]['eliminated_channels'] for name in chosen) / channels
        report['constant_fraction'] = sum(
            layers[name]['constant_channels'] for name in chosen) / channels
        worst = max(chosen, key=lambda name: layers[name]['eliminated_fraction'])
        report['max_layer_eliminated_fraction'] = layers[worst]['eliminated_fraction']
        report['max_layer'] = worst
    margins = [figures[name].margin.cpu() for name in chosen]
    report.update(margin_percentiles(torch.cat(margins) if margins else torch.zeros(0)))
    return report
