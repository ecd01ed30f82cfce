"""Running one (preset, seed) through the real distributed runner, and reading back its curves.

Each run is ``tools/dist_train.sh CONFIG GPUS --work-dir DIR --cfg-options randomness.seed=S``
(torchrun; gloo on CPU) on the swapped config, its output kept in ``DIR/run.log``. What it
learned is read from MMEngine's own ``DIR/<timestamp>/vis_data/scalars.json``
(``LocalVisBackend``: one JSON object per line, each with a ``step``): the training loss, the
validation metric, and every ``norm/*`` scalar of ``NormStatisticsHook``, each as a curve of
``[iteration, value]`` pairs.

A run that fails is a result too: its status says so and its error is the last line of the first
traceback in its log (the exception and its message; a peer rank's lost connection or torchrun's
own summary is not the cause).
"""

import glob
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..commands.curves import load_scalars

LOSS_KEY = 'loss'
RATE_KEY = 'bcn_update_rate'  # BCNUpdateRateHook's train/bcn_update_rate, as the logger writes it
NORM_PREFIX = 'norm/'
_RANK_PREFIX = re.compile(r'^\[(?:rank|default)\d+\]:\s?')
_EXCEPTION = re.compile(r'^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)'
                        r'(?::\s.*)?$')
_NOT_THE_CAUSE = ('ChildFailedError', 'Connection closed by peer', 'Connection reset by peer',
                  'SIGTERM', 'SignalException')


@dataclass
class RunResult:
    """One (preset, seed) run.

    Attributes:
        status: ``'ok'``, ``'failed'`` or ``'skipped'`` (not run: an earlier seed of the preset
            failed before its first logged iteration, which no seed changes).
        final_metric: the metric at the last evaluation (scaled as the table shows it).
        curves: key -> ``[[iteration, value], ...]``: ``'loss'``, ``'metric'``, ``'norm/...'``.
        pretrain_metric: with the pretrained protocol, the final metric of the pretraining this
            run fine-tuned from (``'accuracy/top1'``); None without.
        pretrained_from: the backbone file it fine-tuned from.
    """

    preset: str
    seed: int
    status: str
    work_dir: str
    wall_s: float = 0.0
    error: Optional[str] = None
    final_metric: Optional[float] = None
    curves: Dict[str, List[List[float]]] = field(default_factory=dict)
    pretrain_metric: Optional[float] = None
    pretrained_from: Optional[str] = None

    @property
    def trained(self) -> bool:
        """Whether the run logged at least one training iteration."""
        return bool(self.curves.get(LOSS_KEY))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def error_reason(log: str, returncode: int) -> str:
    """The last line of the first traceback in a run's log: the exception that stopped it."""
    lines = [_RANK_PREFIX.sub('', line).rstrip() for line in log.splitlines()]
    exceptions = [line for line in lines if _EXCEPTION.match(line)]
    causes = [line for line in exceptions if not any(n in line for n in _NOT_THE_CAUSE)]
    if causes or exceptions:
        return (causes or exceptions)[0]
    tail = [line for line in lines if line.strip()]
    return f'exit status {returncode}' + (f': {tail[-1].strip()}' if tail else '')


def _launch(command: List[str], log_path: str, timeout: Optional[float]) -> int:
    """Run ``command`` in its own process group, output into ``log_path``; the exit status.

    On timeout the whole group (torchrun and its workers) is killed and the status is 124.
    """
    # MAX_RESTARTS=0: a run that fails is a result, not something for torchrun to restart.
    env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable, MAX_RESTARTS='0')
    with open(log_path, 'w') as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log.write(f'\nTimeoutError: the run took longer than {timeout:.0f} s and was '
                      f'stopped\n')
            return 124


def scalars_files(work_dir: str) -> List[str]:
    """Every ``<work_dir>/<timestamp>/vis_data/scalars.json``, oldest first."""
    return sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))


def read_curves(path: Optional[str], metric_key: str, metric_scale: float) -> Dict[str, list]:
    """The run's curves from its ``scalars.json`` (empty when the run logged nothing).

    One value per key and iteration: ``NormStatisticsHook``'s figures come twice, from its own
    ``add_scalars`` and in the logger's training record of the same step.
    """
    by_step: Dict[str, Dict[int, float]] = {}
    for record in load_scalars(path) if path else []:
        step = record.get('step')
        for key, value in record.items():
            if key == metric_key:
                by_step.setdefault('metric', {})[step] = float(value) * metric_scale
            elif key in (LOSS_KEY, RATE_KEY) or key.startswith(NORM_PREFIX):
                by_step.setdefault(key, {})[step] = float(value)
    return {key: [[step, value] for step, value in sorted(values.items())]
            for key, values in by_step.items()}


def train_once(preset: str, seed: int, config_path: str, gpus: int, work_dir: str,
               train_script: str, metric_key: str, metric_scale: float,
               timeout: Optional[float] = None) -> RunResult:
    """Train ``config_path`` with ``gpus`` processes at ``seed`` and collect the result."""
    os.makedirs(work_dir, exist_ok=True)
    log_path = osp.join(work_dir, 'run.log')
    command = ['bash', train_script, config_path, str(gpus), '--work-dir', work_dir,
               '--cfg-options', f'randomness.seed={seed}']
    earlier = set(scalars_files(work_dir))  # of an earlier study into the same folder
    start = time.time()
    returncode = _launch(command, log_path, timeout)
    wall = time.time() - start
    written = [path for path in scalars_files(work_dir) if path not in earlier]
    curves = read_curves(written[-1] if written else None, metric_key, metric_scale)
    result = RunResult(preset, seed, 'ok', work_dir, wall, curves=curves)
    if returncode != 0:
        with open(log_path, errors='replace') as f:
            result.status, result.error = 'failed', error_reason(f.read(), returncode)
    elif not curves.get('metric'):
        result.status = 'failed'
        result.error = (f'the run finished but logged no {metric_key!r} (is there a validation '
                        f'at the end of training? choose the key with --metric)')
    else:
        result.final_metric = curves['metric'][-1][1]
    return result


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint MMEngine's ``CheckpointHook`` wrote last into ``work_dir``, or None."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(path):
        return None
    with open(path) as f:
        checkpoint = f.read().strip()
    return checkpoint if osp.exists(checkpoint) else None


def skipped(preset: str, seed: int, work_dir: str, cause: RunResult) -> RunResult:
    """The result of a seed not run because ``cause`` failed before any training iteration
    (its error, which no seed changes)."""
    return RunResult(preset, seed, 'skipped', work_dir, error=cause.error)
