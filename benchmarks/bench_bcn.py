"""Benchmark: BCN against GroupNorm, BatchNorm and the naive BCN composition; Mask R-CNN steps.

Prints, for detection/segmentation-sized activations, the forward+backward time and the bytes
autograd saves for backward of

* mmbcn's BCN (large-batch and micro-batch mode),
* the naive composition (``nn.BatchNorm2d``, then ``F.group_norm``, then the per-group affine),
* ``nn.GroupNorm`` and ``nn.BatchNorm2d``,

with the ratio BCN / GroupNorm; then a 3x3 ``WSConv2d`` against ``nn.Conv2d``; then one
Mask R-CNN R50-FPN training step (2 small images) with
BCN+WS, GN+WS and BN, built from this repo's configs; then DeepLabV3 R50 inference after
``mmbcn.deploy.deploy_model`` with each norm. All figures come from the same run.

    python benchmarks/bench_bcn.py [--device cuda] [--quick]
"""

import argparse
import functools
import os
import os.path as osp
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from mmbcn import BatchChannelNorm2d, WSConv2d

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHAPES = [(2, 256, 200, 272), (2, 512, 100, 136), (2, 1024, 64, 64), (1, 2048, 33, 33)]
QUICK_SHAPES = [(2, 256, 50, 68), (1, 2048, 9, 9)]
GROUPS = 32
PARTS = ['layers', 'conv', 'mask-rcnn', 'deploy']
# Seconds of rounds per layer shape: quick shapes get more than --repeats rounds, as their
# times vary more on a shared machine.
LAYER_BUDGET_S = 3.0


class NaiveBCN(nn.Module):
    """The composition BCN is usually written as: BatchNorm2d, then group norm, then affine."""

    def __init__(self, channels, groups):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.groups = groups
        self.group_weight = nn.Parameter(torch.ones(1, groups, 1))
        self.group_bias = nn.Parameter(torch.zeros(1, groups, 1))

    def forward(self, x):
        y = self.bn(x)
        n = x.shape[0]
        z = F.group_norm(y.reshape(n, self.groups, -1), self.groups)
        return (z * self.group_weight + self.group_bias).reshape(x.shape)


class WithoutTriton(nn.Module):
    """Runs a layer with the PyTorch-ops passes (``MMBCN_TRITON=0``) instead of Triton kernels."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        previous = os.environ.get('MMBCN_TRITON')
        os.environ['MMBCN_TRITON'] = '0'
        try:
            return self.layer(x)
        finally:
            if previous is None:
                del os.environ['MMBCN_TRITON']
            else:
                os.environ['MMBCN_TRITON'] = previous


def layers(channels, device):
    extra = {}
    if device.type == 'cuda':
        extra['BCN large-batch, PyTorch ops'] = WithoutTriton(BatchChannelNorm2d(channels, GROUPS))
    return {
        'BCN large-batch': BatchChannelNorm2d(channels, GROUPS),
        'BCN micro-batch': BatchChannelNorm2d(channels, GROUPS, estimate=True),
        **extra,
        'naive BCN': NaiveBCN(channels, GROUPS),
        'GroupNorm': nn.GroupNorm(GROUPS, channels),
        'BatchNorm2d': nn.BatchNorm2d(channels),
    }


def saved_bytes(layer, x):
    """Bytes of the distinct tensors autograd keeps for backward of one forward pass."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return sum(storages.values())


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def print_table_header(title, label_columns, figure_columns):
    """A markdown section title, then a table header: labels left-aligned, figures right."""
    print(f'\n## {title}\n')
    print('| ' + ' | '.join(label_columns + figure_columns) + ' |')
    print('|' + '---|' * len(label_columns) + '---:|' * len(figure_columns))


def interleaved_medians(runs, repeats, device, budget_s=0.0):
    """Median wall time, in seconds, of each callable of ``runs`` (a dict name -> callable).

    Each runs once to warm up, then all run in turn (round-robin), so that the drift of a
    shared machine, and the cost of going first in a fresh process, weigh on every entry alike
    rather than on whichever happens to run first. ``repeats`` rounds, or more when the rounds
    are quick: as many as fit in ``budget_s`` seconds, at most 100.
    """
    warm_up = 0.0
    for run in runs.values():
        warm_up -= time.perf_counter()
        run()
        synchronize(device)
        warm_up += time.perf_counter()
    rounds = max(repeats, min(100, int(budget_s / max(warm_up, 1e-9))))
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def forward_backward(layer, x):
    """A callable running ``layer(x).backward(grad)`` with a fixed random output gradient."""
    grad = torch.randn_like(x)
    return lambda: layer(x).backward(grad)


def bench_layers(device, shapes, repeats):
    print_table_header(
        f'Normalization layers, forward + backward, {device.type}, median of {repeats} or more '
        f'(as many rounds as fit in {LAYER_BUDGET_S:.0f} s, at most 100)',
        ['shape (N, C, H, W)', 'layer'],
        ['time ms', 'saved for backward MiB', 'time / GroupNorm', 'saved / GroupNorm'])
    for shape in shapes:
        x = torch.randn(shape, device=device, requires_grad=True)
        modules = {name: layer.to(device).train()
                   for name, layer in layers(shape[1], device).items()}
        times = interleaved_medians(
            {name: forward_backward(layer, x) for name, layer in modules.items()}, repeats,
            device, LAYER_BUDGET_S)
        nbytes = {name: saved_bytes(layer, x) for name, layer in modules.items()}
        for name in modules:
            print(f'| {shape} | {name} | {times[name] * 1e3:.1f} | {nbytes[name] / 2**20:.1f} | '
                  f'{times[name] / times["GroupNorm"]:.2f} | '
                  f'{nbytes[name] / nbytes["GroupNorm"]:.2f} |')


def bench_ws_conv(device, shapes, repeats):
    print_table_header(f'3x3 convolution, forward + backward, {device.type}, median of {repeats}',
                       ['input (N, C, H, W)', 'conv'], ['time ms', 'time / Conv2d'])
    for shape in shapes:
        x = torch.randn(shape, device=device, requires_grad=True)
        channels = shape[1]
        runs = {}
        for name, cls in (('Conv2d', nn.Conv2d), ('WSConv2d', WSConv2d)):
            torch.manual_seed(0)
            conv = cls(channels, channels, 3, padding=1, bias=False).to(device)
            runs[name] = forward_backward(conv, x)
        times = interleaved_medians(runs, repeats, device)
        for name, seconds in times.items():
            print(f'| {shape} | {name} | {seconds * 1e3:.1f} | {seconds / times["Conv2d"]:.2f} |')


def mask_rcnn_step(cfg, device, size):
    """A callable running one SGD training step of the Mask R-CNN built from ``cfg``."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs

    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    packed = demo_mm_inputs(2, [[3, size, size]] * 2, num_items=[3, 3], num_classes=80,
                            with_mask=True)

    def step():
        data = model.data_preprocessor(packed, True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def bench_mask_rcnn(device, repeats, size):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    print_table_header(f'Mask R-CNN R50-FPN training step, 2 images {size}x{size}, '
                       f'{device.type}, median of {repeats}, steps interleaved',
                       ['config'], ['step s', 'step / GN+WS'])
    runs = {}
    for norm in ('bcn-ws', 'gn-ws', 'bn'):
        path = f'configs/mask_rcnn/mask-rcnn_r50_fpn_{norm}_8xb2-1x_coco.py'
        runs[norm] = mask_rcnn_step(Config.fromfile(osp.join(ROOT, path)), device, size)
    results = interleaved_medians(runs, repeats, device)
    for norm, seconds in results.items():
        print(f'| {norm} | {seconds:.2f} | {seconds / results["gn-ws"]:.2f} |')


def bench_deployed_inference(device, repeats, size):
    """DeepLabV3 R50 inference after mmbcn.deploy: BCN+WS vs GN+WS vs BN (same run)."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from mmbcn.deploy import deploy_model
    init_default_scope('mmseg')
    print_table_header(f'DeepLabV3 R50-D8 inference after deploy_model, 1 image {size}x{size}, '
                       f'{device.type}, median of {repeats}', ['config'], ['forward ms', '/ GN+WS'])
    runs = {}
    for norm in ('bcn-ws', 'gn-ws', 'syncbn'):
        path = f'configs/deeplabv3/deeplabv3_r50-d8_{norm}_8xb2-20k_voc12aug-512x512.py'
        cfg = Config.fromfile(osp.join(ROOT, path))
        cfg.model.pretrained = None
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(device)
        model.eval()
        deploy_model(model)
        runs[norm] = functools.partial(model._forward, torch.randn(1, 3, size, size,
                                                                   device=device))
    with torch.no_grad():
        results = interleaved_medians(runs, repeats, device)
    for norm, seconds in results.items():
        print(f'| {norm} | {seconds * 1e3:.1f} | {seconds / results["gn-ws"]:.3f} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--quick', action='store_true', help='small shapes, for a smoke run')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--image-size', type=int, default=320)
    parser.add_argument('--only', nargs='+', choices=PARTS, default=PARTS,
                        help='the parts to run (default: all)')
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()
    print(f'# mmbcn benchmark: torch {torch.__version__}, {device.type} ({where or "cpu"}), '
          f'{torch.get_num_threads()} threads')
    if 'layers' in args.only:
        bench_layers(device, QUICK_SHAPES if args.quick else SHAPES, args.repeats)
    if 'conv' in args.only:
        bench_ws_conv(device, [(2, 256, 50, 68)] if args.quick else [(2, 256, 100, 136)],
                      args.repeats)
    if 'mask-rcnn' in args.only:
        bench_mask_rcnn(device, 1 if args.quick else args.repeats,
                        128 if args.quick else args.image_size)
    if 'deploy' in args.only:
        bench_deployed_inference(device, 3 if args.quick else 10, 128 if args.quick else 256)


if __name__ == '__main__':
    main()
