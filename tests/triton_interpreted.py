"""Run the Triton passes under Triton's CPU interpreter against the PyTorch-ops passes.

Started by tests/test_triton_passes.py in a fresh process, because ``TRITON_INTERPRET`` must be
set before the kernels are defined. Exits non-zero (an AssertionError) on a mismatch.
"""

import os

os.environ['TRITON_INTERPRET'] = '1'

import torch  # noqa: E402

from mmbcn.layers import torch_passes, triton_passes  # noqa: E402

# (shape, dtype): rows shorter and longer than a block, several segments, a 1-position row.
CASES = [((2, 6, 37, 41), torch.float32), ((1, 3, 3000), torch.float32),
         ((3, 4, 1, 1), torch.float32), ((2, 4, 9, 7), torch.float16),
         ((2, 4, 9, 7), torch.bfloat16)]


def check(shape, dtype):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 3 + 10).to(dtype)
    grad = torch.randn(shape, generator=generator).to(dtype)
    n, c = shape[:2]
    coeff_a, coeff_b, slope, offset = torch.randn(4, n, c, generator=generator)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2,
                                                                               atol=1e-2)

    mean, var = triton_passes.row_moments(x)
    ref_mean, ref_var = torch_passes.row_moments(x)
    torch.testing.assert_close(mean, ref_mean, **tolerance)
    torch.testing.assert_close(var, ref_var, rtol=1e-4, atol=1e-4)

    out = triton_passes.apply_affine(x, coeff_a, coeff_b)
    assert out.dtype == dtype
    torch.testing.assert_close(out, torch_passes.apply_affine(x, coeff_a, coeff_b), **tolerance)

    sums = triton_passes.grad_row_sums(grad, x, ref_mean)
    ref_sums = torch_passes.grad_row_sums(grad, x, ref_mean)
    for got, want in zip(sums, ref_sums):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)

    grad_x = triton_passes.grad_input(grad, x, coeff_a, slope, ref_mean, offset)
    want = torch_passes.grad_input(grad, x, coeff_a, slope, ref_mean, offset)
    torch.testing.assert_close(grad_x, want, **tolerance)
    print(f'{shape} {dtype}: ok')


if __name__ == '__main__':
    for case in CASES:
        check(*case)
