"""Run a function in N real processes on the gloo backend and collect what each returns.

The processes meet through a file (``init_method='file://...'``), not a TCP port: a port picked
free can be taken by another program before the processes bind it (a rendezvous then hangs or
joins the wrong group), and a file in the run's own folder cannot. A hung collective fails after
:data:`TIMEOUT` instead of blocking the suite, and processes that have not all ended by then
(one stuck before its first collective, say) are stopped and the call fails; 15 s before that
each process still running prints the stack of each of its threads (``faulthandler``).
Processes that have not all joined their group after :data:`START_TIMEOUT` are started again,
once (:func:`run_in_processes`).
"""

import datetime
import faulthandler
import os
import socket
import sys
import tempfile
import time
from typing import Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT = datetime.timedelta(minutes=2)  # the slowest run here takes ~15 s on 2 busy cores
START_TIMEOUT = 60  # seconds for every process to start and join the group (~5 s here)


def free_port() -> int:
    """A TCP port free now, for launchers that need one (torchrun, mim); see the module doc."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _worker(rank, world_size, fn, args, out_dir):
    # A process still running shortly before the deadline prints where each of its threads is.
    faulthandler.dump_traceback_later(TIMEOUT.total_seconds() - 15, exit=False)
    dist.init_process_group('gloo', init_method=f'file://{os.path.join(out_dir, "rendezvous")}',
                            rank=rank, world_size=world_size, timeout=TIMEOUT)
    open(os.path.join(out_dir, f'joined{rank}'), 'w').close()
    try:
        torch.save(fn(rank, world_size, *args), os.path.join(out_dir, f'rank{rank}.pt'))
        # Every rank is past its last collective before any rank tears the group down. A guard:
        # on torch 2.1 the test with the least work (one forward, both ranks done at once) hung
        # twice in CI runs and never alone; where it hung is not known (see the stack dump).
        dist.barrier()
    finally:
        dist.destroy_process_group()
        faulthandler.cancel_dump_traceback_later()


def _run_once(fn, world_size, args, out_dir) -> Optional[list]:
    """What each process returned; None when not every process had joined the group
    :data:`START_TIMEOUT` seconds after the start (they are stopped)."""
    context = mp.spawn(_worker, args=(world_size, fn, args, out_dir), nprocs=world_size,
                       join=False)
    start = time.monotonic()
    while not context.join(timeout=1.0):  # raises when a process fails
        elapsed = time.monotonic() - start
        joined = all(os.path.exists(os.path.join(out_dir, f'joined{rank}'))
                     for rank in range(world_size))
        if elapsed > TIMEOUT.total_seconds() or (not joined and elapsed > START_TIMEOUT):
            for process in context.processes:
                process.kill()
                process.join()
            if not joined:
                return None
            raise TimeoutError(f'{world_size} gloo processes running {fn.__name__} had not '
                               f'ended after {TIMEOUT}; stopped')
    return [torch.load(os.path.join(out_dir, f'rank{r}.pt')) for r in range(world_size)]


def run_in_processes(fn, world_size, *args):
    """Call ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes; return the results.

    Started again once, in a fresh folder, when the processes have not all joined their group
    after :data:`START_TIMEOUT` seconds: nothing of ``fn`` has run then. On torch 2.1 one rank
    stayed in ``init_process_group`` for the whole timeout in one of several CI-like runs, its
    peer never reaching ``fn`` (the stack dump showed only the waiting rank).
    """
    for attempt in (1, 2):
        with tempfile.TemporaryDirectory() as out_dir:
            results = _run_once(fn, world_size, args, out_dir)
        if results is not None:
            return results
        print(f'{world_size} gloo processes running {fn.__name__} had not all joined their '
              f'group after {START_TIMEOUT} s (attempt {attempt} of 2); stopped', file=sys.stderr)
    raise TimeoutError(f'{world_size} gloo processes running {fn.__name__} had not all joined '
                       f'their group after {START_TIMEOUT} s, in two attempts')
