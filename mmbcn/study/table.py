"""The study's figures per preset, over seeds, and their Markdown table.

For each preset, over its runs that finished (``status == 'ok'``):

* final metric: the metric at the last evaluation; mean and spread as min-max over seeds;
* iterations to ``fraction`` of the best: the first evaluation at which a run's metric reaches
  ``fraction`` x the best metric any run of the study reached at any evaluation (one target
  for every preset, so the column compares presets); the mean over the runs that reached it,
  and how many did;
* eliminated channels: ``norm/eliminated_fraction`` as ``NormStatisticsHook`` logs it, at its
  first and its last measurement, mean and min-max over seeds;
* with the pretrained protocol, the pretraining's final metric (top-1), mean and min-max over
  the pretrainings that finished, beside the task's.
"""

from dataclasses import dataclass
from statistics import mean
from typing import Dict, List, Optional, Sequence, Tuple

from ..utils.tables import markdown_table
from .runs import RunResult

ELIMINATED_KEY = 'norm/eliminated_fraction'


@dataclass
class Spread:
    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Optional['Spread']:
        return cls(mean(values), min(values), max(values)) if values else None

    def text(self, digits: int, scale: float = 1.0) -> str:
        return (f'{self.mean * scale:.{digits}f} ({self.low * scale:.{digits}f}-'
                f'{self.high * scale:.{digits}f})')

    def as_dict(self) -> dict:
        return dict(mean=self.mean, min=self.low, max=self.high)


@dataclass
class PresetSummary:
    preset: str
    runs: int
    finished: int
    final_metric: Optional[Spread]
    steps_to_target: Optional[float]
    reached_target: int
    eliminated_first: Optional[Spread]
    eliminated_last: Optional[Spread]
    errors: List[str]
    skipped: int
    pretrain_metric: Optional[Spread] = None
    pretrain_runs: int = 0
    pretrain_finished: int = 0

    def as_dict(self) -> dict:
        spread = (lambda s: s.as_dict() if s else None)  # noqa: E731
        return dict(preset=self.preset, runs=self.runs, finished=self.finished,
                    final_metric=spread(self.final_metric),
                    steps_to_target=self.steps_to_target, reached_target=self.reached_target,
                    eliminated_first=spread(self.eliminated_first),
                    eliminated_last=spread(self.eliminated_last), errors=self.errors,
                    skipped=self.skipped, pretrain_metric=spread(self.pretrain_metric),
                    pretrain_runs=self.pretrain_runs, pretrain_finished=self.pretrain_finished)


def best_metric(results: Sequence[RunResult]) -> Optional[Tuple[float, RunResult]]:
    """The best metric any finished run reached at any evaluation, and that run."""
    candidates = [(max(v for _, v in r.curves['metric']), r) for r in results
                  if r.status == 'ok' and r.curves.get('metric')]
    return max(candidates, key=lambda c: c[0]) if candidates else None


def first_step_reaching(curve: Sequence[Sequence[float]], target: float) -> Optional[float]:
    return next((step for step, value in curve if value >= target), None)


def summarize(preset: str, results: Sequence[RunResult], target: Optional[float],
              pretrain_results: Sequence[RunResult] = ()) -> PresetSummary:
    pretrained = [r.final_metric for r in pretrain_results if r.status == 'ok']
    finished = [r for r in results if r.status == 'ok']
    steps = [first_step_reaching(r.curves['metric'], target) for r in finished] \
        if target is not None else []
    steps = [s for s in steps if s is not None]
    eliminated = [r.curves[ELIMINATED_KEY] for r in finished if r.curves.get(ELIMINATED_KEY)]
    errors = list(dict.fromkeys(r.error for r in results if r.error))
    return PresetSummary(
        preset, len(results), len(finished), Spread.of([r.final_metric for r in finished]),
        mean(steps) if steps else None, len(steps),
        Spread.of([curve[0][1] for curve in eliminated]),
        Spread.of([curve[-1][1] for curve in eliminated]), errors,
        sum(r.status == 'skipped' for r in results), Spread.of(pretrained),
        len(pretrain_results), len(pretrained))


def summarize_all(presets: Sequence[str], results: Sequence[RunResult], fraction: float,
                  pretrain_results: Sequence[RunResult] = ()
                  ) -> Tuple[Dict[str, PresetSummary], Optional[dict]]:
    """Per-preset summaries, and the best metric (value, preset, seed, target) they refer to."""
    best = best_metric(results)
    target = best[0] * fraction if best else None
    summaries = {p: summarize(p, [r for r in results if r.preset == p], target,
                              [r for r in pretrain_results if r.preset == p]) for p in presets}
    reference = dict(value=best[0], preset=best[1].preset, seed=best[1].seed, fraction=fraction,
                     target=target) if best else None
    return summaries, reference


def _cell(spread: Optional[Spread], digits: int, scale: float = 1.0) -> str:
    return spread.text(digits, scale) if spread else '-'


def format_table(summaries: Dict[str, PresetSummary], descriptions: Dict[str, str],
                 modes: Dict[str, Optional[str]], metric_label: str,
                 reference: Optional[dict], pretrain_label: Optional[str] = None) -> str:
    """The Markdown table with the lines that say how to read it; with ``pretrain_label``
    (the pretrained protocol) a column of the pretraining's final metric."""
    percent = f'{reference["fraction"] * 100:.0f}%' if reference else 'a fraction'
    header = ['norm', 'what', 'BCN mode']
    if pretrain_label:
        header.append(f'pretraining {pretrain_label}, mean (min-max) (pretrainings finished)')
    header += ['runs finished', f'final {metric_label}, mean (min-max)',
               f'iterations to {percent} of best (runs reaching it)',
               'eliminated channels % at the first measure', '... at the last measure',
               'failure']
    rows = []
    for name, s in summaries.items():
        steps = f'{s.steps_to_target:.0f} ({s.reached_target}/{s.finished})' \
            if s.steps_to_target is not None else ('not reached' if s.finished else '-')
        failure = '; '.join(f'`{e}`' for e in s.errors)
        if s.skipped:
            failure += (f' ({s.skipped} seed(s) not run: the first failed before its first '
                        f'logged iteration)')
        row = [name, descriptions[name], modes.get(name) or '-']
        if pretrain_label:
            row.append(f'{_cell(s.pretrain_metric, 1)} ({s.pretrain_finished}/'
                       f'{s.pretrain_runs})')
        rows.append(row + [f'{s.finished}/{s.runs}', _cell(s.final_metric, 1), steps,
                           _cell(s.eliminated_first, 1, 100), _cell(s.eliminated_last, 1, 100),
                           failure])
    lines = [markdown_table(header, rows, right_aligned=range(3, len(header) - 1))]
    if reference:
        lines.append(
            f'\nBest {metric_label}: {reference["value"]:.1f} ({reference["preset"]}, seed '
            f'{reference["seed"]}); the target of the iterations column is {percent} of it, '
            f'{reference["target"]:.1f}. Spread: min-max over the seeds that finished. '
            f'Eliminated channels: NormStatisticsHook\'s {ELIMINATED_KEY} (model level).')
    return '\n'.join(lines)
