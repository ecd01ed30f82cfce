"""An MMEngine hook that logs mmbcn's measures of elimination singularities while training."""

import math
from typing import Dict, Mapping, Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...analysis import NormStatisticsCollector
from ...analysis.collector import NO_NORMALIZATION
from ...analysis.measures import DEFAULT_CONSTANT_TOLERANCE, DEFAULT_THRESHOLD

# benchmarks/bench_norm_hook.py on the demo segmentation config (2-core CPU, two runs): a
# measured step costs 1-4 % more than a plain one, +0.02-0.08 % per step at 1 in 50. 50 leaves
# room below the 2 % budget where a step is much shorter than the measurement's fixed costs.
DEFAULT_INTERVAL = 50
MODEL_KEYS = ('eliminated_fraction', 'constant_fraction', 'margin_p10',
              'max_layer_eliminated_fraction')


@HOOKS.register_module()
class NormStatisticsHook(Hook):
    """Measure the training batch every ``interval`` iterations and log mmbcn's figures.

    On a measured iteration the hook attaches forward hooks to every normalization layer and
    ResNet stage before the training forward (``before_train_iter``), collects during that
    iteration's own forward and backward (no extra forward) and detaches after it
    (``after_train_iter``). The measures are those of :mod:`mmbcn.analysis.measures`; which
    layers feed an activation follows :mod:`mmbcn.analysis.structure`.

    Logged at step ``runner.iter + 1``, through ``runner.visualizer.add_scalars`` (so every
    visualizer backend shows them: ``vis_data/scalars.json``, TensorBoard, W&B) and as
    ``train/<key>`` in the message hub (so the log lines show them too):

    * ``norm/eliminated_fraction``: eliminated channels over all channels of the layers that
      feed an activation; ``norm/constant_fraction`` alike; ``norm/margin_p10``: 10th
      percentile of those channels' margins; ``norm/max_layer_eliminated_fraction``: the
      largest eliminated fraction of one such layer;
    * per ResNet stage ``<stage>`` (``layer1`` ...): ``norm/<stage>/sample_similarity`` and
      ``norm/<stage>/grad_norm``.

    A figure that is not defined at a step is not logged: the sample similarity without a pair
    of samples, the gradient norm of a stage whose output needs no gradient (a frozen stage:
    mmdet's ``frozen_stages=1`` freezes ``layer1``). Distributed: every process collects its
    share and, after one all-reduce of sums, every process holds and logs identical figures of
    the global batch (:mod:`mmbcn.analysis.collector`); the visualizer writes on rank 0.

    Args:
        interval: measure every ``interval`` iterations (when ``(iter + 1) % interval == 0``).
        measure_first: also measure the first iteration (the starting point of the curves).
        threshold: a channel is eliminated when its activation rate is below it.
        warn_threshold: warn (once per run) when a layer that feeds an activation has a larger
            eliminated fraction, naming the layer.
        constant_tolerance: see :mod:`mmbcn.analysis.measures`.
        feeds: ``fnmatch`` patterns of layer names -> what they feed (overrides).
        stages: ``{stage name: module name}``; default: the model's ResNet stages.
    """

    priority = 'LOW'

    def __init__(self, interval: int = DEFAULT_INTERVAL, measure_first: bool = True,
                 threshold: float = DEFAULT_THRESHOLD, warn_threshold: float = 0.5,
                 constant_tolerance: float = DEFAULT_CONSTANT_TOLERANCE,
                 feeds: Optional[Mapping[str, str]] = None,
                 stages: Optional[Mapping[str, str]] = None):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'NormStatisticsHook: interval must be a positive integer, got '
                             f'{interval!r}.')
        self.interval = interval
        self.measure_first = measure_first
        self.threshold = threshold
        self.warn_threshold = warn_threshold
        self.constant_tolerance = constant_tolerance
        self.feeds = feeds
        self.stages = stages
        self.collector: Optional[NormStatisticsCollector] = None
        self.measuring = False
        self.warned = False

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            self.collector = NormStatisticsCollector(model, self.feeds, self.stages)
        except ValueError as error:
            if NO_NORMALIZATION not in str(error):
                raise
            raise ValueError(
                f'NormStatisticsHook: {NO_NORMALIZATION}, so it has no channel statistics to '
                f'log. Remove NormStatisticsHook from custom_hooks, or give the model '
                f'normalization layers (norm_cfg).') from None

    def _measures(self, runner) -> bool:
        return (runner.iter + 1) % self.interval == 0 or (self.measure_first and runner.iter == 0)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.measuring = self._measures(runner)
        if self.measuring:
            self.collector.reset()
            self.collector.attach()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.measuring:
            return
        self.measuring = False
        collector = self.collector
        collector.detach()
        collector.end_batch()
        collector.all_reduce()
        scalars = self.scalars()
        runner.visualizer.add_scalars(scalars, step=runner.iter + 1)
        for key, value in scalars.items():
            runner.message_hub.update_scalar(f'train/{key}', value)
        if not self.warned:
            self._warn(runner)

    def scalars(self) -> Dict[str, float]:
        """The figures of the collected iteration, by logging key (finite values only)."""
        summary = self.collector.model_statistics(self.threshold, self.constant_tolerance)
        scalars = {f'norm/{key}': summary[key] for key in MODEL_KEYS}
        for stage, figures in self.collector.stage_statistics().items():
            for key in ('sample_similarity', 'grad_norm'):
                if key in figures:
                    scalars[f'norm/{stage}/{key}'] = figures[key]
        return {key: float(value) for key, value in scalars.items() if math.isfinite(value)}

    def _warn(self, runner) -> None:
        layers = self.collector.layer_statistics(self.threshold, self.constant_tolerance)
        over = {name: layer['eliminated_fraction'] for name, layer in layers.items()
                if layer['feeds'] == 'activation'
                and layer['eliminated_fraction'] > self.warn_threshold}
        if not over:
            return
        worst = max(over, key=over.get)
        others = f' and {len(over) - 1} other layer(s)' if len(over) > 1 else ''
        runner.logger.warning(
            f'NormStatisticsHook: at iteration {runner.iter + 1}, {over[worst]:.1%} of the '
            f'channels of {worst}{others} are eliminated (activation rate below '
            f'{self.threshold:g}, above warn_threshold={self.warn_threshold:g}): those channels '
            f'no longer pass the activation and stop learning. This warning is shown once.')
        self.warned = True
