"""Starting torch.distributed from torchrun or Slurm variables, on CPU (gloo)."""

import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
from mmbcn_testing.dist_utils import free_port
from mmbcn_testing.paths import ROOT

pytestmark = pytest.mark.slow  # starts processes or trains

SCRIPT = textwrap.dedent("""
    import torch.distributed as dist
    from mmbcn.commands import init_distributed, shutdown_distributed
    init_distributed('slurm')
    print('backend', dist.get_backend(), 'rank', dist.get_rank(), 'world', dist.get_world_size())
    shutdown_distributed()  # the tools end with it: no gloo threads left to interpreter teardown
    print('initialized after shutdown:', dist.is_initialized())
""")


def test_slurm_launcher_reads_slurm_variables_and_uses_gloo_without_cuda(tmp_path):
    scontrol = tmp_path / 'scontrol'
    scontrol.write_text('#!/bin/sh\necho 127.0.0.1\necho otherhost\n')  # first host of the list
    scontrol.chmod(0o755)
    env = dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}', SLURM_PROCID='0',
               SLURM_NTASKS='1', SLURM_LOCALID='0', SLURM_NODELIST='node[1-2]',
               PORT=str(free_port()))
    for key in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        env.pop(key, None)
    result = subprocess.run([sys.executable, '-c', SCRIPT], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'backend gloo rank 0 world 1' in result.stdout
    assert 'initialized after shutdown: False' in result.stdout


def test_missing_torchrun_variables_are_a_clear_error():
    env = {k: v for k, v in os.environ.items()
           if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    code = "from mmbcn.commands import init_distributed; init_distributed('pytorch')"
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert 'needs the environment variables' in result.stderr


NODE_SCRIPT = textwrap.dedent("""
    import os
    import torch
    import torch.distributed as dist
    from mmbcn.commands import init_distributed, shutdown_distributed
    init_distributed('pytorch')
    total = torch.tensor([dist.get_rank() + 1])
    dist.all_reduce(total)
    print('world', dist.get_world_size(), 'sum', int(total), 'restarts allowed',
          os.environ['TORCHELASTIC_MAX_RESTARTS'], flush=True)
    shutdown_distributed()
""")


def test_two_torchrun_nodes_form_one_group_through_the_c10d_rendezvous(tmp_path):
    """tools/torchrun.sh as on two machines (NNODES, NODE_RANK, MASTER_ADDR, PORT), here on one."""
    script = tmp_path / 'node.py'
    script.write_text(NODE_SCRIPT)
    torchrun = osp.join(ROOT, 'tools/torchrun.sh')
    env = dict(os.environ, NNODES='2', MASTER_ADDR='127.0.0.1', LOCAL_ADDR='127.0.0.1',
               PORT=str(free_port()), PYTHON=sys.executable)
    nodes = [subprocess.Popen(['bash', torchrun, '1', '2', str(script)],
                              env=dict(env, NODE_RANK=str(rank)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (stdout, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stderr[-3000:]
        assert 'world 2 sum 3 restarts allowed 2' in stdout


def test_max_restarts_must_be_a_count():
    result = subprocess.run(['bash', osp.join(ROOT, 'tools/dist_train.sh'), 'CONFIG', '2'],
                            env=dict(os.environ, MAX_RESTARTS='many'), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "MAX_RESTARTS must be a whole number >= 0 (0: no restarts), got 'many'" in (
        result.stderr)
