"""The layers on CUDA against the same layers on CPU."""

import pytest
import torch

from mmbcn import BatchChannelNorm2d, WSConv2d

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
