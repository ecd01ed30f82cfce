"""Run a function in N real processes on the gloo backend and collect what each returns."""

import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _worker(rank, world_size, port, fn, args, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        torch.save(fn(rank, world_size, *args), os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def run_in_processes(fn, world_size, *args):
    """Call ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes; return the results."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_worker, args=(world_size, free_port(), fn, args, out_dir), nprocs=world_size,
                 join=True)
        return [torch.load(os.path.join(out_dir, f'rank{r}.pt')) for r in range(world_size)]
