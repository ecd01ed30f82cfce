"""openmim on mmbcn as a user runs it: this environment's ``mim`` executable, in a subprocess.

mim finds a package's ``.mim`` folder through its distribution's location (pkg_resources): for
a wheel that is site-packages, which holds ``mmbcn/.mim``. An editable install's distribution
is in site-packages too but its package is not (PEP 660: an import hook points into the
checkout), so mim cannot see an editable mmbcn (nor an editable mmdet; open-mmlab/mim#114).
The tests therefore give mim mmbcn's wheel, installed into a folder of its own and put ahead of
the editable install on PYTHONPATH, with the rest of this environment; the checkout's ``.mim``
links are tested in test_install.py.

Training and testing run the segmentation demo for two iterations on the generated data, with
real processes: 2 gloo processes through mim's ``--launcher pytorch`` (torch.distributed.launch),
and for ``--launcher slurm`` a stand-in ``srun`` that starts the tasks on this machine with
Slurm's variables (no Slurm here). Every evaluation must give the mIoU the training run
measured on the same weights.
"""

import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
from mmbcn_testing.dist_utils import free_port
from mmbcn_testing.paths import ROOT
from test_install import install_wheel, shipped_configs

from mmbcn.datasets import ensure_demo_data

MIM = osp.join(osp.dirname(sys.executable), 'mim')
SEG_DEMO = 'deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py'  # found by name among mmbcn's configs
TWO_ITERATIONS = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                  'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']
# The figures of the paper-recipe VOC configs and the mmdet anchor, as their sources publish
# them (see the metafiles).
PUBLISHED = {
    'deeplabv3_r101-d16_syncbn_8xb2-50e_voc12aug-513x513': {'pascal voc 2012/miou': 76.49},
    'deeplabv3_r101-d16_gn-ws_8xb2-50e_voc12aug-513x513': {'pascal voc 2012/miou': 77.20},
    'deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513': {'pascal voc 2012/miou': 78.10},
    'mask-rcnn_r50_fpn_gn-ws_8xb2-2x_coco': {'coco/box_ap': 40.6, 'coco/mask_ap': 36.6},
}
STAND_IN_SRUN = """#!/usr/bin/env bash
# Stands in for Slurm's srun on one machine: starts --ntasks copies of the command with the
# variables srun gives each task (what mmbcn's slurm launcher reads).
ntasks=1
while [[ $1 == -* ]]; do
    case $1 in --ntasks=*) ntasks=${1#*=} ;; -p) shift ;; esac
    shift
done
pids=()
for ((task = 0; task < ntasks; task++)); do
    SLURM_PROCID=$task SLURM_LOCALID=$task SLURM_NTASKS=$ntasks SLURM_NODELIST=localhost "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


@pytest.fixture(scope='module')
def wheel_site(tmp_path_factory):
    return install_wheel(tmp_path_factory.mktemp('wheel'))


@pytest.fixture(scope='module')
def demo_data():
    # mim runs from the repository root: the demo configs read data/mmbcn_demo relative to it.
    ensure_demo_data(osp.join(ROOT, 'data', 'mmbcn_demo'))


def run_mim(wheel_site, *args, path=None):
    """``mim ARGS`` from the repository root with the wheel's mmbcn; its output if it succeeds."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(PYTHONPATH=str(wheel_site / 'site'))
    if path:
        env['PATH'] = f'{path}:{env["PATH"]}'
    result = subprocess.run([MIM, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f'mim {" ".join(map(str, args))} failed:\n{output[-6000:]}'
    return output


def miou(output, phase):
    """The mIoU that MMEngine logged for ``phase`` ('val' or 'test')."""
    found = re.findall(rf'Iter\({phase}\) \[\d+/\d+\].*?mIoU: ([\d.]+)', output)
    assert found, f'no {phase} mIoU in the output:\n{output[-4000:]}'
    return float(found[-1])


def test_model_index_lists_every_config_and_only_published_figures():
    from modelindex.load_model_index import load
    index = load(osp.join(ROOT, 'model-index.yml'))
    assert index.check(silent=True) == []
    models = {model.name: model for model in index.models}
    assert len(models) == len(index.models), 'a config is listed twice'
    assert sorted(model.config for model in models.values()) == [
        f'configs/{name}' for name in shipped_configs(osp.join(ROOT, 'configs'))]
    for name, model in models.items():
        assert osp.basename(model.config) == f'{name}.py'
        assert model.weights is None, f'{name}: mmbcn publishes no weights'
        source = model.metadata.data['Published Figures']
        if model.results:
            assert source != 'none' and model.metadata.data['Reproduced Here'] is False, name
        else:
            assert source.startswith('none'), name
    for name, figures in PUBLISHED.items():
        metrics = {f'{r.dataset.lower()}/{m.lower().replace(" ", "_")}': v
                   for r in models[name].results for m, v in r.metrics.items()}
        assert metrics == figures, name


@pytest.mark.slow
def test_mim_search_shows_each_config_with_its_published_figure(wheel_site, tmp_path):
    run_mim(wheel_site, 'search', 'mmbcn', '--json', tmp_path / 'index.json')
    by_field = json.loads((tmp_path / 'index.json').read_text())
    models = {name: {field: values[name] for field, values in by_field.items()
                     if values.get(name) is not None}
              for name in by_field['config']}
    assert sorted(model['config'] for model in models.values()) == [
        f'configs/{name}' for name in shipped_configs(osp.join(ROOT, 'configs'))]
    assert 'weight' not in by_field
    for name, figures in PUBLISHED.items():
        assert {k: models[name][k] for k in figures} == figures, name
        assert models[name]['reproduced_here'] is False
    shown = run_mim(wheel_site, 'search', 'mmbcn', '--config',
                    'deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513')
    assert re.search(r'pascal voc 2012/miou\s+78\.1\b', shown), shown
    assert re.search(r'reproduced_here\s+False', shown), shown


@pytest.mark.slow
def test_mim_trains_and_tests_the_demo_with_each_launcher(wheel_site, demo_data, tmp_path):
    work_dir = tmp_path / 'train_2_processes'
    trained = run_mim(wheel_site, 'train', 'mmbcn', SEG_DEMO, '--gpus', 2, '--launcher',
                      'pytorch', '--port', free_port(), '--work-dir', work_dir,
                      '--cfg-options', *TWO_ITERATIONS)
    assert 'torch.distributed.launch --nproc_per_node=2' in trained
    assert re.search(r'Distributed training: True', trained), trained[-4000:]
    checkpoint = work_dir / 'iter_2.pth'
    assert checkpoint.is_file()
    measured = miou(trained, 'val')

    tested = run_mim(wheel_site, 'test', 'mmbcn', SEG_DEMO, '--checkpoint', checkpoint,
                     '--work-dir', tmp_path / 'test')
    assert miou(tested, 'test') == measured

    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, script in (('srun', STAND_IN_SRUN), ('scontrol', '#!/bin/sh\necho 127.0.0.1\n')):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    tested = run_mim(wheel_site, 'test', 'mmbcn', SEG_DEMO, '--checkpoint', checkpoint,
                     '--launcher', 'slurm', '--gpus', 2, '--gpus-per-node', 2,
                     '--partition', 'cpu', '--port', free_port(),
                     '--work-dir', tmp_path / 'test_slurm', path=bin_dir)
    assert 'srun -p cpu --gres=gpu:2 --ntasks=2' in tested
    assert miou(tested, 'test') == measured


@pytest.mark.slow
def test_mim_trains_in_one_process(wheel_site, demo_data, tmp_path):
    work_dir = tmp_path / 'train'
    trained = run_mim(wheel_site, 'train', 'mmbcn', SEG_DEMO, '--work-dir', work_dir,
                      '--cfg-options', *TWO_ITERATIONS)
    assert re.search(r'Distributed training: False', trained), trained[-4000:]
    assert (work_dir / 'iter_2.pth').is_file()
    assert 0 <= miou(trained, 'val') <= 100


def test_mim_finds_the_editable_install_of_the_readme(tmp_path):
    """``make setup`` installs mmbcn editable and links it where mim looks
    (``site-packages/mmbcn``): mim search and mim's lookup for train/test find it, from any
    folder, without the wheel."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run([MIM, 'search', 'mmbcn', '--json', str(tmp_path / 'index.json')],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    configs = json.loads((tmp_path / 'index.json').read_text())['config']
    assert f'configs/demo/{SEG_DEMO}' in configs.values()
    code = ('from mim.utils import get_installed_path; import os.path as osp; '
            'print(osp.realpath(osp.join(get_installed_path("mmbcn"), ".mim", "tools", '
            '"train.py")))')
    found = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert found.stdout.strip() == osp.join(ROOT, 'tools', 'train.py'), found.stderr
