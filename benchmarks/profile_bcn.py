"""Where the time of one BCN forward+backward goes: torch.profiler tables of kernels and ops.

    python benchmarks/profile_bcn.py [--device cuda] [--shape 2 256 200 272]

Prints the top entries by device time and by host time, and the number of kernel launches per
forward+backward (on CUDA), for the BCN layer in large-batch mode.
"""

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from mmbcn import BatchChannelNorm2d


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--shape', type=int, nargs=4, default=[2, 256, 200, 272])
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    x = torch.randn(args.shape, device=device, requires_grad=True)
    grad = torch.randn_like(x)
    layer = BatchChannelNorm2d(args.shape[1], 32).to(device)
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    for _ in range(3):  # warm-up: kernel compilation, allocator
        layer(x).backward(grad)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        for _ in range(args.repeats):
            layer(x).backward(grad)
        if device.type == 'cuda':
            torch.cuda.synchronize()
    averages = prof.key_averages()
    sort_key = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    print(f'BCN {tuple(args.shape)} on {device}, {args.repeats} forward+backward')
    print(averages.table(sort_by=sort_key, row_limit=12, max_name_column_width=40))
    launches = sum(e.count for e in averages if e.key == 'cudaLaunchKernel')
    if device.type == 'cuda':
        print(f'kernel launches through cudaLaunchKernel per forward+backward: '
              f'{launches / args.repeats:.0f} (Triton kernels launch through the driver API)')


if __name__ == '__main__':
    main()
