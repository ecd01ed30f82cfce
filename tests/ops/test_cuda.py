"""The layers on CUDA: against the same layers on CPU, the float64 reference, and the Triton
kernels against the PyTorch-ops passes at detection-sized shapes."""

import pytest
import torch
from mmbcn_testing.backends import relative_errors, run_on_backend
from mmbcn_testing.bcn_cases import make_layer, reference_of

from mmbcn import BatchChannelNorm2d, WSConv2d
from mmbcn.ops import function, torch_backend

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')


@pytest.mark.parametrize('estimate', [False, True])
def test_bcn_cuda_matches_cpu(estimate):
    cpu = BatchChannelNorm2d(64, 8, estimate=estimate)
    gpu = BatchChannelNorm2d(64, 8, estimate=estimate).cuda()
    x = torch.randn(2, 64, 17, 13) * 2 + 1
    x_cpu, x_gpu = x.clone().requires_grad_(), x.cuda().requires_grad_()
    grad = torch.randn_like(x)
    out_cpu, out_gpu = cpu(x_cpu), gpu(x_gpu)
    out_cpu.backward(grad)
    out_gpu.backward(grad.cuda())
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu.running_var.cpu(), cpu.running_var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('mode', ['large', 'micro', 'eval'])
@pytest.mark.parametrize('shape,groups', [((2, 64, 50, 68), 32), ((1, 256, 9, 9), 32),
                                          ((3, 16, 1, 1), 8)])
def test_bcn_cuda_matches_float64_reference(mode, shape, groups):
    layer = make_layer(shape[1], groups, mode)
    x = torch.randn(shape) * 2 + 0.5
    x64 = x.double().requires_grad_()
    ref_out, ref_mean, ref_var, ref_params = reference_of(layer, x64, mode)
    layer.cuda()
    x_gpu = x.cuda().requires_grad_()
    upstream = torch.randn(shape)
    out = layer(x_gpu)
    (out * upstream.cuda()).sum().backward()
    (ref_out * upstream.double()).sum().backward()
    torch.testing.assert_close(out.double().cpu(), ref_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.running_mean.double().cpu(), ref_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.running_var.double().cpu(), ref_var, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_gpu.grad.double().cpu(), x64.grad, rtol=1e-3, atol=1e-3)
    for name, ref_param in ref_params.items():
        torch.testing.assert_close(getattr(layer, name).grad.double().cpu(), ref_param.grad,
                                   rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('shape', [(2, 256, 200, 272), (1, 2048, 33, 33), (2, 8, 3, 5)])
def test_triton_passes_match_pytorch_passes_on_cuda(shape, dtype):
    triton_backend = pytest.importorskip('mmbcn.ops.triton_backend', reason='needs Triton')
    x = (torch.randn(shape, device='cuda') * 3 + 10).to(dtype)
    grad = torch.randn(shape, device='cuda').to(dtype)
    n, c = shape[:2]
    coeff_a, coeff_c, slope, offset = torch.randn(4, n, c, device='cuda')
    loose = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    mean, var = triton_backend.row_moments(x)
    ref_mean, ref_var = torch_backend.row_moments(x)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(var, ref_var, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(triton_backend.apply_affine(x, coeff_a, coeff_c, ref_mean),
                               torch_backend.apply_affine(x, coeff_a, coeff_c, ref_mean), **loose)
    torch.testing.assert_close(triton_backend.grad_row_sums(grad, x, ref_mean),
                               torch_backend.grad_row_sums(grad, x, ref_mean), rtol=1e-3,
                               atol=1e-2)
    torch.testing.assert_close(
        triton_backend.grad_input(grad, x, coeff_a, slope, ref_mean, offset),
        torch_backend.grad_input(grad, x, coeff_a, slope, ref_mean, offset), **loose)


def test_bcn_cuda_autocast_half():
    layer = BatchChannelNorm2d(32, 4).cuda()
    x = torch.randn(2, 32, 8, 8, device='cuda') * 3
    reference = BatchChannelNorm2d(32, 4).cuda()(x)
    with torch.autocast('cuda', dtype=torch.float16):
        out = layer(x.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), reference, rtol=1e-2, atol=1e-2)


def test_ws_conv_cuda_matches_cpu():
    conv = WSConv2d(8, 16, 3, padding=1)
    x = torch.randn(2, 8, 9, 9)
    torch.testing.assert_close(conv.cuda()(x.cuda()).cpu(), conv.cpu()(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('shape,groups', [((2, 256, 200, 272), 32), ((1, 2048, 33, 33), 32),
                                          ((16, 64, 7, 7), 1)])
@pytest.mark.parametrize('estimate', [False, True])
def test_triton_backend_matches_pytorch_backend_on_cuda(shape, groups, estimate):
    """The coefficient kernels take detection shapes, and agree with the PyTorch-ops backend."""
    triton_backend = pytest.importorskip('mmbcn.ops.triton_backend', reason='needs Triton')
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 3 + 10).cuda()
    upstream = torch.randn(shape, generator=generator).cuda()
    c = shape[1]
    params = [torch.randn(size, generator=generator).cuda() for size in (c, c, groups, groups)]
    running = torch.zeros(c, device='cuda'), torch.ones(c, device='cuda')
    settings = function.Settings(*running, groups, True, estimate, 0.1, 1e-5)
    assert function.choose_backend(x, settings) is triton_backend.TRITON
    results = [run_on_backend(backend, x, upstream, params, running, groups, True, estimate)
               for backend in (triton_backend.TRITON, torch_backend.TorchBackend())]
    errors = relative_errors(*results)
    assert max(errors) < 1e-4, errors


def test_synchronized_statistics_on_cuda_with_one_process():
    """The all-reduce paths of the kernels (batch sums, dL/dmu and dL/dvar) on a real NCCL group
    of one process give what the local statistics give."""
    import torch.distributed as dist

    from mmbcn.ops import batch_channel_norm
    dist.init_process_group('nccl', init_method='tcp://127.0.0.1:29561', rank=0, world_size=1)
    try:
        x = torch.randn(2, 64, 30, 20, device='cuda') * 2 + 1
        upstream = torch.randn_like(x)
        batch_weight = torch.randn(64, device='cuda')
        for estimate in (False, True):
            results = []
            for synchronize in (False, True):
                running = torch.zeros(64, device='cuda'), torch.ones(64, device='cuda')
                weight = batch_weight.clone().requires_grad_()
                leaf = x.clone().requires_grad_()
                out = batch_channel_norm(leaf, *running, weight, None, None, None, 8, True,
                                         estimate, 0.1, 1e-5, synchronize=synchronize)
                (out * upstream).sum().backward()
                results.append([out, leaf.grad, weight.grad, *running])
            torch.testing.assert_close(*results, rtol=1e-5, atol=1e-5)  # lengths too
    finally:
        dist.destroy_process_group()


def _cpu_and_cuda_results(device, x):
    cpu = BatchChannelNorm2d(64, 8)
    gpu = BatchChannelNorm2d(64, 8).to(device)
    x_cpu, x_gpu = x.clone().requires_grad_(), x.to(device).requires_grad_()
    cpu(x_cpu).square().sum().backward()
    out = gpu(x_gpu)
    out.square().sum().backward()
    return (cpu(x_cpu.detach()), x_cpu.grad), (out.detach(), x_gpu.grad)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs 2 GPUs')
def test_input_on_a_device_other_than_the_current_one():
    x = torch.randn(2, 64, 20, 24) * 2 + 1
    torch.cuda.set_device(0)
    (want_out, want_grad), (out, grad) = _cpu_and_cuda_results('cuda:1', x)
    torch.cuda.synchronize('cuda:1')
    assert out.device == torch.device('cuda:1')
    torch.testing.assert_close(out.cpu(), want_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad.cpu(), want_grad, rtol=1e-4, atol=1e-4)


def test_runs_on_the_current_non_default_stream():
    x = torch.randn(2, 64, 20, 24) * 2 + 1
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        (want_out, want_grad), (out, grad) = _cpu_and_cuda_results('cuda', x)
    stream.synchronize()
    torch.testing.assert_close(out.cpu(), want_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad.cpu(), want_grad, rtol=1e-4, atol=1e-4)
