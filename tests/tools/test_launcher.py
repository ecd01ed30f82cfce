"""Starting torch.distributed from torchrun or Slurm variables, on CPU (gloo)."""

import os
import subprocess
import sys
import textwrap

from dist_utils import free_port

SCRIPT = textwrap.dedent("""
    import torch.distributed as dist
    from mmbcn.runner import init_distributed, shutdown_distributed
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
    code = "from mmbcn.runner import init_distributed; init_distributed('pytorch')"
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert 'needs the environment variables' in result.stderr
