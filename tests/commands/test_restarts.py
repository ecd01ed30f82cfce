"""A dead worker does not end a long run: the group is restarted and resumes by itself.

For real through tools/dist_train.sh (torchrun, 2 gloo processes) on the DeepLabV3 demo
(iteration-based, BCN with synchronized statistics, dropout in the heads): one worker SIGKILLs its
own process mid-run in the first attempt only (tests/mmbcn_testing/kill_hook.py); torchrun restarts
the group, which resumes its latest checkpoint and must end bit-equal to an uninterrupted run
(weights, BCN statistics, optimizer, schedulers, iteration). A worker that always dies ends the run
after MAX_RESTARTS restarts. Slurm cannot run here: slurm_train.sh runs against a stand-in ``srun``
that records what it is given, and the restart decision is checked with Slurm's variable on real
checkpoint files.
"""

import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmbcn_testing.dist_utils import free_port
from mmbcn_testing.paths import ROOT, TESTS
from mmengine.config import Config

from mmbcn.commands import restarts
from mmbcn.datasets import ensure_demo_data

SEG_DEMO = osp.join(ROOT, 'configs/demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py')
CLS_DEMO = osp.join(ROOT, 'configs/demo/resnet18_bcn-ws_1xb16-demo-shapes.py')
# 8 iterations, a checkpoint every 3; no validation (it adds time and nothing to compare).
SCHEDULE = """
train_cfg = dict(max_iters=8, val_interval=100)
val_cfg, val_dataloader, val_evaluator = None, None, None
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=8, by_epoch=False)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=2))
"""
SLURM_ARGS = ['-p', 'PART', '--job-name=JOB', '--gres=gpu:8', '--ntasks=8',
              '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1']


@pytest.fixture(scope='module')
def demo_data():
    """The generated data where the demo configs read it (the training runs in ROOT)."""
    return ensure_demo_data(osp.join(ROOT, 'data/mmbcn_demo'))


def seg_config(tmp_path, name, *hooks):
    path = tmp_path / f'{name}.py'
    hook_list = ', '.join(["dict(type='BCNUpdateRateHook', policy='lr', rate=0.1)",
                           "dict(type='StateDumpHook')", *hooks])
    path.write_text(f"_base_ = '{SEG_DEMO}'\n"
                    "custom_imports = dict(imports=['mmbcn', 'mmbcn_testing.state_dump_hook', "
                    "'mmbcn_testing.kill_hook'], allow_failed_imports=False)\n" + SCHEDULE
                    + f'custom_hooks = [{hook_list}]\n')
    return str(path)


def dist_train(config, work_dir, **env):
    """tools/dist_train.sh CONFIG 2; MAX_RESTARTS as the script's default unless given."""
    environ = {k: v for k, v in os.environ.items() if k != 'MAX_RESTARTS'}
    environ.update(PORT=str(free_port()), PYTHONPATH=TESTS, PYTHON=sys.executable,
                   **{key: str(value) for key, value in env.items()})
    return subprocess.run(['bash', osp.join(ROOT, 'tools/dist_train.sh'), config, '2',
                           '--work-dir', str(work_dir)], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=900)


def assert_equal_trees(a, b, where):
    """The same nested dicts / lists, every tensor bit-equal."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f'{where} differs'
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_equal_trees(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_trees(x, y, f'{where}[{index}]')
    else:
        assert a == b, f'{where}: {a!r} != {b!r}'


@pytest.mark.slow
def test_killed_worker_restarts_the_group_which_ends_bit_equal_to_an_uninterrupted_run(
        tmp_path, demo_data):
    whole = dist_train(seg_config(tmp_path, 'whole'), tmp_path / 'whole')
    assert whole.returncode == 0, whole.stderr[-6000:]
    killed = dist_train(seg_config(tmp_path, 'killed', "dict(type='KillHook', at_iter=5)"),
                        tmp_path / 'killed')
    log = killed.stdout + killed.stderr
    assert killed.returncode == 0, log[-8000:]
    assert 'kill_hook: attempt 0, rank 1: SIGKILL before iteration 5' in log
    assert f'Restart 1: resuming from {tmp_path / "killed" / "iter_3.pth"}' in log
    assert 'Random state of iteration 3 restored' in log and 'without the random state' not in log

    final = [torch.load(tmp_path / run / 'iter_8.pth', weights_only=True)
             for run in ('whole', 'killed')]
    assert final[0]['meta']['iter'] == final[1]['meta']['iter'] == 8
    statistics = [key for key in final[0]['state_dict']
                  if key.endswith(('running_mean', 'running_var', 'num_batches_tracked'))
                  and key.rsplit('.', 1)[0] + '.group_weight' in final[0]['state_dict']]
    assert len(statistics) > 60  # every BCN layer's buffers
    for part in ('state_dict', 'optimizer', 'param_schedulers'):
        assert_equal_trees(final[0][part], final[1][part], part)
    for rank in (0, 1):  # each rank's own BCN statistics and optimizer, as training ended
        ended = [torch.load(tmp_path / run / f'state_after_train_rank{rank}.pt',
                            weights_only=False) for run in ('whole', 'killed')]
        assert ended[0]['bcn'] and ended[0]['iter'] == 8
        assert_equal_trees(ended[0], ended[1], f'rank {rank}')


@pytest.mark.slow
def test_a_worker_that_always_dies_ends_the_run_after_max_restarts(tmp_path, demo_data):
    config = seg_config(tmp_path, 'doomed', "dict(type='KillHook', at_iter=0, every_attempt=True)")
    result = dist_train(config, tmp_path / 'doomed', MAX_RESTARTS=1)
    assert result.returncode != 0
    assert 'kill_hook: attempt 0,' in result.stdout and 'kill_hook: attempt 1,' in result.stdout
    assert 'kill_hook: attempt 2,' not in result.stdout
    assert 'train.py failed (torchrun exit code 1) after MAX_RESTARTS=1 restart(s)' in (
        result.stderr)


@pytest.mark.slow
def test_slurm_requeued_epoch_based_run_resumes_and_ends_bit_equal(tmp_path, demo_data):
    """SLURM_RESTART_COUNT alone makes tools/train.py resume (one process: no Slurm here); the
    epoch-based loop needs the saved random state (augmentations) to come out exact."""
    config = tmp_path / 'cls.py'
    config.write_text(f"_base_ = '{CLS_DEMO}'\n" + textwrap.dedent("""
        custom_imports = dict(imports=['mmbcn', 'mmbcn.datasets.checked_imagenet',
                                       'mmbcn_testing.state_dump_hook'], allow_failed_imports=False)
        train_dataloader = dict(dataset=dict(indices=48))  # 3 iterations of 16 per epoch
        train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=100)
        val_cfg, val_dataloader, val_evaluator = None, None, None
        param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[2], gamma=0.1)
        """))
    crashing = tmp_path / 'crashing.py'
    crashing.write_text("_base_ = './cls.py'\n"
                        "custom_hooks = [dict(type='StateDumpHook', crash_after_iter=8)]\n")

    def train(config, work_dir, **env):
        environ = {k: v for k, v in os.environ.items() if k not in restarts.RESTART_VARIABLES}
        return subprocess.run([sys.executable, osp.join(ROOT, 'tools/train.py'), str(config),
                               '--work-dir', str(tmp_path / work_dir)], cwd=ROOT,
                              env=dict(environ, PYTHONPATH=TESTS, **env), capture_output=True,
                              text=True, timeout=600)

    assert train(config, 'whole').returncode == 0
    assert train(crashing, 'requeued').returncode == 17  # in epoch 3, after epoch_2.pth
    result = train(config, 'requeued', SLURM_RESTART_COUNT='1')
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert f'Restart 1: resuming from {tmp_path / "requeued" / "epoch_2.pth"}' in log
    assert 'Random state of iteration 6 restored' in log

    final = [torch.load(tmp_path / run / 'epoch_3.pth', weights_only=True)
             for run in ('whole', 'requeued')]
    assert final[0]['meta']['iter'] == final[1]['meta']['iter'] == 9
    for part in ('state_dict', 'optimizer', 'param_schedulers'):
        assert_equal_trees(final[0][part], final[1][part], part)


def save_checkpoint(path, seed=7, mtime=None):
    torch.save(dict(meta=dict(seed=seed, iter=3, epoch=0), state_dict=dict(w=torch.ones(2))),
               path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return str(path)


def launched_work_dir(tmp_path):
    """A work dir holding a checkpoint of an earlier run, then this launch's marker and two."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    save_checkpoint(work_dir / 'iter_9.pth', mtime=1000)  # an earlier run in the same dir
    restarts.mark_launch(str(work_dir))
    os.utime(work_dir / restarts.LAUNCH_MARKER, (2000, 2000))
    save_checkpoint(work_dir / 'iter_3.pth', mtime=3000)
    save_checkpoint(work_dir / 'iter_6.pth', mtime=4000)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_6.pth'))
    return work_dir


def test_slurm_restart_count_resumes_the_latest_checkpoint_of_this_launch(tmp_path, monkeypatch):
    work_dir = launched_work_dir(tmp_path)
    for name in restarts.RESTART_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    cfg = Config(dict(work_dir=str(work_dir), resume=False, load_from='start.pth'))
    monkeypatch.setenv('SLURM_RESTART_COUNT', '1')  # as Slurm sets it in a requeued job
    assert restarts.resume_point(cfg) == str(work_dir / 'iter_6.pth')
    assert cfg.resume is True and cfg.load_from == str(work_dir / 'iter_6.pth')
    assert cfg.randomness.seed == 7  # the interrupted run's sampler seed

    (work_dir / 'iter_6.pth').write_bytes(b'cut short')  # died while writing it
    assert restarts.launch_checkpoint(str(work_dir)) == str(work_dir / 'iter_3.pth')
    os.remove(work_dir / 'iter_3.pth')  # max_keep_ckpts removed it before the next was written
    assert restarts.launch_checkpoint(str(work_dir)) is None  # iter_9.pth is the earlier run's
    cfg = Config(dict(work_dir=str(work_dir), resume=False, load_from='start.pth',
                      randomness=dict(seed=1)))
    assert restarts.resume_point(cfg) is None
    assert cfg.resume is False and cfg.load_from == 'start.pth'  # as the first attempt


def test_first_attempt_marks_the_launch_and_resumes_only_what_was_asked(tmp_path, monkeypatch):
    work_dir = launched_work_dir(tmp_path)
    for name in restarts.RESTART_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    cfg = Config(dict(work_dir=str(work_dir), resume=False, load_from=None))
    assert restarts.resume_point(cfg) is None and cfg.resume is False
    assert osp.getmtime(work_dir / restarts.LAUNCH_MARKER) > 4000  # rewritten: a new launch
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '1')
    assert restarts.resume_point(cfg) is None  # every checkpoint predates this launch

    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', 'two')
    with pytest.raises(ValueError, match="TORCHELASTIC_RESTART_COUNT='two' is not a restart"):
        restarts.restart_count()
    assert restarts.restart_count(dict(SLURM_RESTART_COUNT='2', MMBCN_RESTART_COUNT='1')) == 2


def stand_in_srun(tmp_path, exit_codes):
    """An ``srun`` that logs its arguments and MMBCN_RESTART_COUNT and exits with the next code."""
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir(parents=True)
    codes = tmp_path / 'codes'
    codes.write_text('\n'.join(map(str, exit_codes)) + '\n')
    srun.write_text(f'#!/bin/sh\necho "$MMBCN_RESTART_COUNT $*" >> {tmp_path}/calls\n'
                    f'code=$(head -n 1 {codes}); sed -i 1d {codes}; exit "$code"\n')
    srun.chmod(0o755)
    return dict(os.environ, PATH=f'{srun.parent}:{os.environ["PATH"]}', PYTHON='python')


def slurm_calls(tmp_path):
    return [line.split(' ', 1) for line in (tmp_path / 'calls').read_text().splitlines()]


@pytest.mark.slow
def test_slurm_train_runs_srun_again_after_a_failed_step_and_stops_after_max_restarts(tmp_path):
    train = [osp.join(ROOT, 'tools/slurm_train.sh'), 'PART', 'JOB', 'CONFIG', '--work-dir', 'W']
    env = stand_in_srun(tmp_path, [137, 0])
    result = subprocess.run(['bash', *train], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = ' '.join([*SLURM_ARGS, 'python', '-u', osp.join(ROOT, 'tools/train.py'),
                         'CONFIG', '--work-dir', 'W', '--launcher', 'slurm'])
    assert slurm_calls(tmp_path) == [['0', expected], ['1', expected]]
    assert 'srun failed (exit code 137); restart 1 of 3' in result.stderr

    (tmp_path / 'calls').unlink()
    env = dict(stand_in_srun(tmp_path / 'doomed', [137] * 5), MAX_RESTARTS='2')
    result = subprocess.run(['bash', *train], env=env, capture_output=True, text=True)
    assert result.returncode == 137
    assert [count for count, _ in slurm_calls(tmp_path / 'doomed')] == ['0', '1', '2']
    assert 'after 2 restart(s) (MAX_RESTARTS=2)' in result.stderr

    test = [osp.join(ROOT, 'tools/slurm_test.sh'), 'PART', 'JOB', 'CONFIG', 'CKPT']
    env = stand_in_srun(tmp_path / 'test', [1, 0])
    assert subprocess.run(['bash', *test], env=env, capture_output=True).returncode == 1
    assert len(slurm_calls(tmp_path / 'test')) == 1  # an evaluation is not restarted
