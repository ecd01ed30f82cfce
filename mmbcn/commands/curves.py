"""Training curves from MMEngine's own logged scalars, drawn as PNGs.

MMEngine's ``LocalVisBackend`` writes one JSON object per line to
``<log_dir>/vis_data/scalars.json``: training records (``loss``, ``lr``, ``iter``, and ``epoch``
in epoch-based runs) every logging interval, and validation records (the metrics, with
``step`` = the epoch, or the iteration in iteration-based runs). Both are put on one axis of
epochs: the training loss averaged over each epoch, the metric at each evaluation.
"""

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import List, Sequence

from ..utils.figures import new_figure, save_png


@dataclass
class Curves:
    title: str
    metric_label: str
    loss_epochs: List[float]
    loss: List[float]
    metric_epochs: List[float]
    metric: List[float]


def load_scalars(path: str) -> List[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def epoch_curves(records: Sequence[dict], metric_key: str, iters_per_epoch: int,
                 title: str, metric_label: str, metric_scale: float = 1.0) -> Curves:
    """Mean training loss per epoch and the metric per evaluation, both against epochs."""
    train = [r for r in records if 'loss' in r and metric_key not in r]
    val = [r for r in records if metric_key in r]
    by_epoch = bool(train) and all('epoch' in r for r in train)
    losses = defaultdict(list)
    for record in train:
        epoch = record['epoch'] if by_epoch else math.ceil(record['iter'] / iters_per_epoch)
        losses[epoch].append(record['loss'])
    loss_epochs = sorted(losses)
    metric_epochs = [r['step'] if by_epoch else r['step'] / iters_per_epoch for r in val]
    return Curves(title, metric_label, loss_epochs,
                  [sum(losses[e]) / len(losses[e]) for e in loss_epochs], metric_epochs,
                  [r[metric_key] * metric_scale for r in val])


def _draw(loss_axes, metric_axes, curves: Curves) -> None:
    loss_axes.plot(curves.loss_epochs, curves.loss, marker='o', color='tab:red')
    loss_axes.set(title=f'{curves.title}: training loss', xlabel='epoch',
                  ylabel='mean loss over the epoch')
    metric_axes.plot(curves.metric_epochs, curves.metric, marker='o', color='tab:blue')
    metric_axes.set(title=f'{curves.title}: {curves.metric_label}', xlabel='epoch',
                    ylabel=curves.metric_label)
    for axes in (loss_axes, metric_axes):
        axes.grid(alpha=0.3)


def write_curves(curves: Curves, path: str) -> str:
    """One part: loss and metric side by side."""
    figure = new_figure(figsize=(11, 4))
    loss_axes, metric_axes = figure.subplots(1, 2)
    _draw(loss_axes, metric_axes, curves)
    figure.tight_layout()
    return save_png(figure, path)


def write_summary(parts: Sequence[Curves], path: str, heading: str) -> str:
    """Every part on one page, a row each."""
    figure = new_figure(figsize=(11, 3.6 * len(parts)))
    axes = figure.subplots(len(parts), 2, squeeze=False)
    for row, curves in zip(axes, parts, strict=True):
        _draw(row[0], row[1], curves)
    figure.suptitle(heading)
    figure.tight_layout()
    return save_png(figure, path)
