"""Starting torch.distributed for the tools: torchrun or Slurm, on GPUs (nccl) or CPUs (gloo).

MMEngine's ``init_dist`` assumes CUDA (it calls ``torch.cuda.set_device`` and defaults to nccl),
so on a CPU-only machine it fails. The tools initialize the process group here instead; the
``Runner`` then sees an initialized group and skips its own ``init_dist``.
"""

import os
import subprocess

import torch
import torch.distributed as dist

LAUNCHERS = ('none', 'pytorch', 'slurm')
DEFAULT_PORT = 29500


def default_backend() -> str:
    """nccl when this process has a GPU, else gloo."""
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def _slurm_environment() -> None:
    """Fill RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from Slurm's variables."""
    node_list = os.environ['SLURM_NODELIST']
    first_host = subprocess.check_output(
        ['scontrol', 'show', 'hostname', node_list], text=True).split()[0]
    os.environ.setdefault('MASTER_ADDR', first_host)
    os.environ.setdefault('MASTER_PORT', os.environ.get('PORT', str(DEFAULT_PORT)))
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ['SLURM_LOCALID']


def init_distributed(launcher: str, backend: str = None) -> None:
    """Initialize the default process group for ``launcher`` ('none' does nothing)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f'--launcher must be one of {LAUNCHERS}, got {launcher!r}.')
    if launcher == 'none' or dist.is_initialized():
        return
    if launcher == 'slurm':
        _slurm_environment()
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(
            f'--launcher {launcher} needs the environment variables {missing}; start the tool '
            f'with tools/dist_train.sh (torchrun) or tools/slurm_train.sh (srun).')
    backend = backend or default_backend()
    if backend == 'nccl':
        torch.cuda.set_device(int(os.environ['LOCAL_RANK']) % torch.cuda.device_count())
    dist.init_process_group(backend=backend)


def shutdown_distributed() -> None:
    """Wait for every rank, then destroy the default process group (if any).

    Called when a tool finishes normally. A process that exits with its group alive leaves
    gloo's worker threads to interpreter teardown, which can abort it ("terminate called without
    an active exception") after its work is done, so torchrun reports a failed run.
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
