"""tools/norm_study.py: bad input refused before anything is written, the figures of the table on
constructed runs, and one real study (2 gloo processes, 2 presets, 1 seed, 4 iterations)."""

import json
import os.path as osp
import subprocess
import sys

import matplotlib.image
import pytest
from mmbcn_testing.paths import ROOT

from mmbcn.datasets import ensure_demo_data
from mmbcn.study import main
from mmbcn.study.runs import RunResult, error_reason
from mmbcn.study.table import summarize_all

STUDY_CONFIG = osp.join(ROOT, 'configs/study/deeplabv3_r18-d8_bcn-ws_2xb1-study-demo-shapes.py')


@pytest.mark.parametrize('arguments, message', [
    (['--norms', 'gn', 'bcnws', '--gpus', '2'],
     "error: unknown normalization preset(s) 'bcnws'; valid: bn, syncbn, gn, gn-ws, bcn-ws, "),
    (['--norms', 'gn', '--gpus', '0'], 'error: --gpus must be 1 or more'),
    (['--norms', 'gn', '--gpus', '2', '--fraction', '0'], 'error: --fraction must be in'),
])
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main([STUDY_CONFIG, *arguments, '--work-dir', str(tmp_path / 'study')])
    assert str(exit_info.value).startswith(message) and '\n' not in str(exit_info.value)
    assert not (tmp_path / 'study').exists()


def test_a_config_without_norm_layers_or_that_does_not_exist_is_named(tmp_path):
    config = tmp_path / 'lenet.py'
    config.write_text("_base_ = 'mmpretrain::lenet/lenet5_mnist.py'\ndefault_scope = 'mmpretrain'\n"
                      "custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)\n")
    with pytest.raises(SystemExit, match=r'lenet.py: its model has no normalization layer'):
        main([str(config), '--norms', 'gn', '--gpus', '2', '--work-dir', str(tmp_path / 'w')])
    with pytest.raises(SystemExit, match=r"No config 'missing.py'"):
        main(['missing.py', '--norms', 'gn', '--gpus', '2', '--work-dir', str(tmp_path / 'w')])
    assert not (tmp_path / 'w').exists()


def test_the_cause_of_a_failed_run_is_the_first_tracebacks_last_line():
    log = '\n'.join([
        'Traceback (most recent call last):',
        '  File "tools/train.py", line 6, in <module>',
        '[rank0]: ValueError: Expected more than 1 value per channel when training, got input '
        'size torch.Size([1, 64, 1, 1])',
        'Traceback (most recent call last):',
        'RuntimeError: [gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]',
        'torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ',
        '============================================================'])
    assert error_reason(log, 1) == ('ValueError: Expected more than 1 value per channel when '
                                    'training, got input size torch.Size([1, 64, 1, 1])')
    assert error_reason('Killed\n', 137) == 'exit status 137: Killed'


def run(preset, seed, metric, eliminated=None, status='ok'):
    curves = dict(metric=metric, loss=[[1, 2.0]])
    if eliminated:
        curves['norm/eliminated_fraction'] = eliminated
    return RunResult(preset, seed, status, '', final_metric=metric[-1][1] if metric else None,
                     curves=curves)


def test_the_table_figures_on_constructed_runs():
    results = [run('a', 0, [[10, 40.0], [20, 80.0]], [[1, 0.5], [20, 0.1]]),
               run('a', 1, [[10, 72.0], [20, 60.0]], [[1, 0.3], [20, 0.3]]),
               run('b', 0, [[10, 20.0], [20, 50.0]]),
               RunResult('c', 0, 'failed', '', error='ValueError: no')]
    summaries, best = summarize_all(['a', 'b', 'c'], results, 0.9)
    assert best == dict(value=80.0, preset='a', seed=0, fraction=0.9, target=72.0)
    a = summaries['a']
    assert (a.final_metric.mean, a.final_metric.low, a.final_metric.high) == (70.0, 60.0, 80.0)
    assert (a.steps_to_target, a.reached_target) == (15.0, 2)  # seed 0 at 20, seed 1 at 10
    assert a.eliminated_first.mean == pytest.approx(0.4)
    assert a.eliminated_last.as_dict() == pytest.approx(dict(mean=0.2, min=0.1, max=0.3))
    assert summaries['b'].steps_to_target is None and summaries['b'].reached_target == 0
    assert summaries['c'].finished == 0 and summaries['c'].errors == ['ValueError: no']


@pytest.mark.slow
def test_a_real_study_writes_its_results_and_a_failing_variant_is_a_row(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo config reads data/mmbcn_demo relative to the repository
    ensure_demo_data()
    work_dir = tmp_path / 'study'
    command = [sys.executable, osp.join(ROOT, 'tools', 'norm_study.py'), STUDY_CONFIG,
               '--norms', 'bn', 'bcn-ws', '--seeds', '0', '--gpus', '2', '--work-dir',
               str(work_dir), '--stats-interval', '2', '--cfg-options',
               'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
               'default_hooks.logger.interval=2']
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((work_dir / 'results.json').read_text())
    bn, bcn = results['runs']
    assert (bn['preset'], bn['status']) == ('bn', 'failed')
    assert bn['error'].startswith('ValueError: Expected more than 1 value per channel')
    assert (bcn['preset'], bcn['status'], bcn['error']) == ('bcn-ws', 'ok', None)
    assert 0.0 <= bcn['final_metric'] <= 100.0
    assert [step for step, _ in bcn['curves']['loss']] == [2, 4]
    assert [step for step, _ in bcn['curves']['metric']] == [4]
    # measured at the first iteration, then every 2
    assert [step for step, _ in bcn['curves']['norm/eliminated_fraction']] == [1, 2, 4]
    assert results['presets']['bcn-ws']['bcn_mode'] == 'micro-batch'
    assert results['global_batch'] == 2
    assert results['best']['preset'] == 'bcn-ws'
    assert any('model.backbone.norm_cfg: BCN(' in c and '-> BN(' in c
               for c in results['presets']['bn']['changes'])

    table = (work_dir / 'results.md').read_text()
    bn_row = next(line for line in table.splitlines() if line.startswith('| bn |'))
    assert '| 0/1 |' in bn_row and 'Expected more than 1 value per channel' in bn_row
    assert '| 1/1 |' in next(line for line in table.splitlines()
                             if line.startswith('| bcn-ws |'))
    assert table.index('| bn |') < table.index('| bcn-ws |') and bn_row in done.stdout

    image = matplotlib.image.imread(work_dir / 'summary.png')
    assert image.shape[0] > 300 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # curves drawn, not a blank page
