"""A report of :func:`mmbcn.analysis.norm_statistics`: a table, ``norm_statistics.json`` and
``norm_statistics.png`` (a matplotlib ``Figure`` drawn to PNG: no display needed).

The picture has three panels: the eliminated fraction of every normalization layer in forward
order (coloured by what the layer feeds; faint where it does not feed an activation) with its
constant fraction as crosses; the distribution of the channels' margins ``mu_c / sigma_c`` per
layer (symmetric log scale; box: 10th to 90th percentile, line: median, dot: 1st percentile;
constant channels left out); and the sample similarity at each stage output.
"""

import io
import json
import math
import os
import os.path as osp
from typing import Dict, List

import torch

from ..utils.figures import new_figure, save_png
from ..utils.tables import markdown_table

JSON_NAME = 'norm_statistics.json'
PNG_NAME = 'norm_statistics.png'
FEED_COLOURS = {'activation': 'tab:red', 'residual': 'tab:blue', 'no_activation': 'tab:green',
                'unknown': 'tab:gray'}


def _number(value, digits=3) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return '-'
    return f'{value:.{digits}f}' if isinstance(value, float) else str(value)


def format_table(result: dict) -> str:
    """The per-layer table (Markdown), then the model-level and the stage figures."""
    rows = []
    for name, layer in result['layers'].items():
        row = [name, layer['type'], layer['feeds'], str(layer['num_channels'])]
        if layer['values_per_channel'] == 0:
            rows.append(row + ['not reached by the forward'])
            continue
        rows.append(row + [_number(layer['eliminated_fraction']),
                           _number(layer['constant_fraction'])]
                    + [_number(layer[key], 2) for key in ('margin_p1', 'margin_p10', 'margin_p50')]
                    + [_number(layer['mean_activation_rate'])])
    lines = [markdown_table(['layer', 'type', 'feeds', 'channels', 'eliminated', 'constant',
                             'margin p1', 'margin p10', 'margin p50', 'activation rate'],
                            rows, right_aligned=range(3, 10))]
    summary = result['model']
    lines.append('')
    lines.append(
        f'layers feeding an activation: {summary["layers"]} ({summary["num_channels"]} '
        f'channels): eliminated {_number(summary["eliminated_fraction"])}, constant '
        f'{_number(summary["constant_fraction"])}, margin p1 {_number(summary["margin_p1"], 2)}'
        f' / p10 {_number(summary["margin_p10"], 2)} / p50 {_number(summary["margin_p50"], 2)}; '
        f'most eliminated: {summary["max_layer"]} '
        f'({_number(summary["max_layer_eliminated_fraction"])})')
    for stage, figures in result['stages'].items():
        extra = f', grad norm {_number(figures["grad_norm"], 4)}' if 'grad_norm' in figures else ''
        lines.append(f'{stage} ({figures["module"]}): sample similarity '
                     f'{_number(figures["sample_similarity"])} over {figures["sample_pairs"]} '
                     f'pairs{extra}')
    return '\n'.join(lines)


def _finite_or_none(value):
    """JSON has no NaN: undefined figures are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def to_json(result: dict) -> str:
    return json.dumps(_finite_or_none(result), indent=1, allow_nan=False)


def _margins(layer: dict) -> List[float]:
    return [m for m in layer.get('channels', {}).get('margin', []) if m is not None
            and math.isfinite(m)]


def _percentiles(values: List[float]) -> Dict[int, float]:
    data = torch.tensor(values, dtype=torch.float64)
    return {q: float(torch.quantile(data, q / 100)) for q in (1, 10, 50, 90)}


def plot(result: dict, title: str = ''):
    """The report's figure (a matplotlib ``Figure``)."""
    from matplotlib.patches import Patch

    names = [n for n, layer in result['layers'].items() if layer['values_per_channel'] > 0]
    layers = [result['layers'][n] for n in names]
    figure = new_figure(figsize=(max(8.0, 0.18 * len(names) + 3), 10), layout='constrained')
    eliminated, margins, similarity = figure.subplots(3, 1)
    positions = list(range(len(names)))
    colours = [FEED_COLOURS[layer['feeds']] for layer in layers]
    for position, layer, colour in zip(positions, layers, colours, strict=True):
        eliminated.bar(position, layer['eliminated_fraction'], color=colour,
                       alpha=1.0 if layer['feeds'] == 'activation' else 0.35)
    eliminated.plot(positions, [layer['constant_fraction'] for layer in layers], 'kx', ms=4)
    eliminated.set_ylabel('eliminated fraction (bars)\nconstant fraction (x)')
    eliminated.set_ylim(0, 1.05)
    eliminated.legend(handles=[Patch(color=c, label=f'feeds {k}') for k, c in
                               FEED_COLOURS.items() if k in {layer['feeds'] for layer in layers}],
                      fontsize='small')
    if title:
        figure.suptitle(title)
    eliminated.set_title('normalization layers in forward order (elimination matters where a '
                         'layer feeds an activation)', fontsize='medium')
    for position, layer, colour in zip(positions, layers, colours, strict=True):
        values = _margins(layer)
        if not values:
            continue
        q = _percentiles(values)
        margins.bar(position, q[90] - q[10], bottom=q[10], color=colour, alpha=0.5, width=0.8)
        margins.plot([position - 0.4, position + 0.4], [q[50]] * 2, color='black', lw=1)
        margins.plot(position, q[1], '.', color=colour)
    margins.axhline(0, color='black', lw=0.5)
    margins.set_yscale('symlog', linthresh=1.0)  # linear within +-1, logarithmic beyond
    margins.set_ylabel('channel margin mu / sigma\n(box p10-p90, line p50, dot p1)')
    for axis in (eliminated, margins):
        axis.set_xticks(positions)
        axis.set_xticklabels(names, rotation=90, fontsize=5)
        axis.set_xlim(-1, max(len(names), 1))
    stages = list(result['stages'])
    similarity.plot(range(len(stages)), [result['stages'][s]['sample_similarity']
                                         for s in stages], 'o-')
    similarity.set_xticks(range(len(stages)))
    similarity.set_xticklabels(stages)
    similarity.set_ylim(-0.05, 1.05)
    similarity.set_ylabel('mean cosine similarity\nof different samples')
    similarity.set_xlabel('stage output')
    return figure


def write_report(result: dict, out_dir: str, title: str = '') -> Dict[str, str]:
    """Write ``norm_statistics.json`` and ``.png`` into ``out_dir``; both are produced in memory
    first, so nothing is written when either fails. Returns their paths."""
    text = to_json(result)
    image = io.BytesIO()
    save_png(plot(result, title), image, dpi=120)
    os.makedirs(out_dir, exist_ok=True)
    paths = {'json': osp.join(out_dir, JSON_NAME), 'png': osp.join(out_dir, PNG_NAME)}
    with open(paths['json'], 'w') as f:
        f.write(text + '\n')
    with open(paths['png'], 'wb') as f:
        f.write(image.getvalue())
    return paths
