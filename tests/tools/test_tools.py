"""End to end through tools/dist_train.sh and tools/dist_test.sh: 2 gloo processes on CPU.

Trains the demo configs for a few iterations on the generated data, checks that both ranks hold
identical BCN statistics, evaluates with the real COCO / VOC metrics, and resumes a killed run.
"""

import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmbcn_testing.dist_utils import free_port
from mmbcn_testing.paths import ROOT, TESTS

from mmbcn.datasets import ensure_demo_data

pytestmark = pytest.mark.slow  # starts processes or trains

DET_DEMO = osp.join(ROOT, 'configs/demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py')
SEG_DEMO = osp.join(ROOT, 'configs/demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py')


@pytest.fixture(scope='module', autouse=True)
def demo_data():
    cwd = os.getcwd()
    os.chdir(ROOT)  # the demo configs read data/mmbcn_demo relative to the repository
    ensure_demo_data()
    yield
    os.chdir(cwd)


def write_config(tmp_path, base, body):
    path = tmp_path / 'test_config.py'
    path.write_text(f"_base_ = '{base}'\n"
                    "custom_imports = dict(imports=['mmbcn', 'mmbcn_testing.state_dump_hook'], "
                    "allow_failed_imports=False)\n" + body)
    return str(path)


def run_tool(script, *args, check=True, **variables):
    env = dict(os.environ, PORT=str(free_port()), PYTHONPATH=TESTS, PYTHON=sys.executable,
               **variables)
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *map(str, args)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f'{script} failed ({result.returncode}):\n{result.stdout[-4000:]}'
                             f'\n{result.stderr[-6000:]}')
    return result


def load_states(work_dir, phase):
    return [torch.load(osp.join(work_dir, f'state_{phase}_rank{rank}.pt'), weights_only=False)
            for rank in (0, 1)]


def assert_ranks_agree(states):
    assert states[0]['bcn'], 'no BCN statistics were dumped'
    for key, value in states[0]['bcn'].items():
        assert torch.equal(value, states[1]['bcn'][key]), key


def test_mask_rcnn_dist_train_then_dist_test_prints_coco_ap(tmp_path):
    work_dir = tmp_path / 'work'
    config = write_config(tmp_path, DET_DEMO, """
train_cfg = dict(max_epochs=1, val_interval=1)
custom_hooks = [dict(type='BCNUpdateRateHook'), dict(type='StateDumpHook')]
# After 12 iterations few boxes clear mmdet's 0.05 score threshold: keep every box, so that the
# COCO evaluator always has predictions to score.
model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))
""")
    run_tool('dist_train.sh', config, 2, '--work-dir', work_dir)
    assert_ranks_agree(load_states(work_dir, 'after_train'))
    assert load_states(work_dir, 'after_train')[0]['iter'] == 12  # 48 images / (2 x 2)

    result = run_tool('dist_test.sh', config, work_dir / 'epoch_1.pth', 2, '--work-dir',
                      tmp_path / 'test', '--out', tmp_path / 'results.pkl')
    assert 'coco/bbox_mAP' in result.stdout and 'coco/segm_mAP' in result.stdout
    assert (tmp_path / 'results.pkl').exists()


def test_deeplab_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    work_dir = tmp_path / 'work'
    schedule = """
train_cfg = dict(max_iters=6, val_interval=6)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=6, by_epoch=False)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2, max_keep_ckpts=5))
"""
    crashing = write_config(tmp_path, SEG_DEMO, schedule + """
custom_hooks = [dict(type='BCNUpdateRateHook'), dict(type='StateDumpHook', crash_after_iter=5)]
""")
    killed = run_tool('dist_train.sh', crashing, 2, '--work-dir', work_dir, check=False,
                      MAX_RESTARTS='0')  # the manual --resume path (restarts: test_restarts.py)
    assert killed.returncode != 0
    assert sorted(osp.basename(p) for p in glob.glob(str(work_dir / 'iter_*.pth'))) == [
        'iter_2.pth', 'iter_4.pth']

    resuming = write_config(tmp_path, SEG_DEMO, schedule + """
custom_hooks = [dict(type='BCNUpdateRateHook'), dict(type='StateDumpHook')]
""")
    run_tool('dist_train.sh', resuming, 2, '--work-dir', work_dir, '--resume')
    checkpoint = torch.load(work_dir / 'iter_4.pth', weights_only=True)  # safe loading works
    for state in load_states(work_dir, 'before_train'):
        assert state['iter'] == 4
        bcn_keys = [k for k in checkpoint['state_dict'] if k in state['bcn']]
        assert len(bcn_keys) == len(state['bcn']) > 0
        for key in bcn_keys:
            assert torch.equal(state['bcn'][key], checkpoint['state_dict'][key]), key
        saved_momentum = checkpoint['optimizer']['state']
        assert saved_momentum and all(
            torch.equal(buf['momentum_buffer'], state['optimizer']['state'][i]['momentum_buffer'])
            for i, buf in saved_momentum.items())
    finished = load_states(work_dir, 'after_train')
    assert finished[0]['iter'] == 6
    assert_ranks_agree(finished)

    result = run_tool('dist_test.sh', resuming, work_dir / 'iter_6.pth', 2, '--work-dir',
                      tmp_path / 'test')
    assert 'mIoU' in result.stdout
