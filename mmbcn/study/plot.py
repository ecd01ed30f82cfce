"""The study's one summary PNG: training loss, metric and eliminated channels over training.

One panel per quantity, one colour per preset: the mean over its finished seeds at the
iterations every one of them logged, with a band from the lowest to the highest seed. With the
pretrained protocol a first panel shows the pretraining's metric (top-1) over its iterations,
and the others the fine-tuning.
"""

from typing import Dict, List, Optional, Sequence, Tuple

from ..utils.figures import new_figure, save_png
from .runs import LOSS_KEY, RunResult
from .table import ELIMINATED_KEY


def seed_band(curves: Sequence[Sequence[Sequence[float]]]
              ) -> Tuple[List[float], List[float], List[float], List[float]]:
    """(iterations, mean, min, max) over several runs' ``[[iteration, value], ...]`` curves, at
    the iterations all of them have."""
    tables = [dict((step, value) for step, value in curve) for curve in curves]
    steps = sorted(set.intersection(*(set(t) for t in tables))) if tables else []
    values = [[t[step] for t in tables] for step in steps]
    return (steps, [sum(v) / len(v) for v in values], [min(v) for v in values],
            [max(v) for v in values])


PANELS = ((LOSS_KEY, 'training loss', 1.0), ('metric', None, 1.0),
          (ELIMINATED_KEY, 'eliminated channels (%)', 100.0))


def write_summary_png(results: Sequence[RunResult], presets: Sequence[str], metric_label: str,
                      path: str, heading: str,
                      pretrain_results: Optional[Sequence[RunResult]] = None,
                      pretrain_label: Optional[str] = None) -> str:
    """Write the PNG to ``path``; ``pretrain_results``: the pretrained protocol's pretrainings
    (their ``'metric'`` curves are the first panel, titled ``pretrain_label``)."""
    # (runs, curve key, title, scale) per panel
    panels = [(results, key, label or metric_label, scale) for key, label, scale in PANELS]
    if pretrain_results is not None:
        panels = [(pretrain_results, 'metric', f'pretraining {pretrain_label}', 1.0),
                  *[(runs, key, f'fine-tuning {title}', scale)
                    for runs, key, title, scale in panels]]
    figure = new_figure(figsize=(5.4 * len(panels), 4.6))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    failed: Dict[str, str] = {}
    for index, preset in enumerate(presets):
        if not any(r.preset == preset and r.status == 'ok' for r in results):
            failed[preset] = 'no run finished'
        colour = f'C{index % 10}'
        for panel, (runs, key, _, scale) in zip(axes, panels, strict=True):
            finished = [r for r in runs if r.preset == preset and r.status == 'ok']
            steps, average, low, high = seed_band(
                [r.curves[key] for r in finished if r.curves.get(key)])
            if not steps:
                continue
            panel.plot(steps, [v * scale for v in average], color=colour,
                       label=f'{preset} ({len(finished)} seed{"s" if len(finished) > 1 else ""})')
            panel.fill_between(steps, [v * scale for v in low], [v * scale for v in high],
                               color=colour, alpha=0.2, linewidth=0)
    for panel, (_, _, title, _) in zip(axes, panels, strict=True):
        panel.set(title=title, xlabel='iteration', ylabel=title)
        panel.grid(alpha=0.3)
        if panel.lines:
            panel.legend(fontsize=8)
    note = '; '.join(f'{p}: {why}' for p, why in failed.items())
    figure.suptitle(heading + (f'\nnot drawn: {note}' if note else '') +
                    '\nlines: mean over seeds; bands: min-max over seeds')
    figure.tight_layout()
    return save_png(figure, path)
