"""Run BCN's Triton kernels under Triton's CPU interpreter.

The passes are checked against the PyTorch-ops passes, the coefficient kernels
(:mod:`mmbcn.layers.triton_coefficients`) against :class:`PyTorchCoefficients` run in float64.

Started by tests/test_triton_passes.py in a fresh process, because ``TRITON_INTERPRET`` must be
set before the kernels are defined. Exits non-zero (an AssertionError) on a mismatch.
"""

import os

os.environ['TRITON_INTERPRET'] = '1'

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from mmbcn.layers import torch_passes, triton_coefficients, triton_passes  # noqa: E402
from mmbcn.layers.fused import BCNSettings, Params, PyTorchCoefficients  # noqa: E402

# (shape, dtype): rows shorter and longer than a block, several segments, a 1-position row.
CASES = [((2, 6, 37, 41), torch.float32), ((1, 3, 3000), torch.float32),
         ((3, 4, 1, 1), torch.float32), ((2, 4, 9, 7), torch.float16),
         ((2, 4, 9, 7), torch.bfloat16)]


def check_passes(shape, dtype):
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


# (shape, groups, training, estimate, affine, synchronize, estimate_rule): all statistics
# sources (both micro-batch rules), no affine, 1x1 maps, one sample, one group, several segments
# per row, the all-reduce paths.
COEFFICIENT_CASES = [
    ((2, 6, 37, 41), 3, True, False, True, False, 'authors'),
    ((2, 6, 37, 41), 3, True, True, True, False, 'authors'),
    ((2, 6, 37, 41), 3, True, True, True, False, 'batch_variance'),
    ((1, 4, 3000), 2, False, True, False, False, 'authors'),
    ((3, 8, 5, 5), 2, True, False, False, False, 'authors'),
    ((3, 4, 1, 1), 2, True, False, True, False, 'authors'),
    ((1, 4, 1, 1), 2, True, True, True, False, 'authors'),
    ((5, 16, 2, 2), 1, True, True, True, False, 'authors'),
    ((2, 6, 37, 41), 3, True, False, True, True, 'authors'),
    ((2, 6, 37, 41), 3, True, True, True, True, 'authors'),
    ((2, 6, 37, 41), 3, True, True, True, True, 'batch_variance')]


def coefficients_and_grads(maths, x, grad, params, running, groups, training, estimate,
                           synchronize, estimate_rule):
    """The output, A, the running statistics after the step, slope, offset, parameter grads."""
    settings = BCNSettings(running[0].clone(), running[1].clone(), groups, training, estimate,
                           0.1, 1e-5, None, synchronize, estimate_rule)
    out, coeff_a, saved = maths.forward(x, params, settings)
    slope, offset, grads = maths.backward_coefficients(grad, x, params, saved, settings)
    return [out, coeff_a, settings.running_mean, settings.running_var, slope, offset,
            *(g for g in grads if g is not None)]


def check_coefficients(shape, groups, training, estimate, affine, synchronize, estimate_rule):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator) * 3 + 10
    grad = torch.randn(shape, generator=generator)
    c = shape[1]
    params = Params(*(torch.randn(size, generator=generator) if affine else None
                      for size in (c, c, groups, groups)))
    running = torch.randn(c, generator=generator), torch.rand(c, generator=generator) + 0.5
    mode = (groups, training, estimate, synchronize, estimate_rule)
    got = coefficients_and_grads(triton_coefficients, x, grad, params, running, *mode)
    want = coefficients_and_grads(
        PyTorchCoefficients(torch_passes), x.double(), grad.double(),
        Params(*(None if p is None else p.double() for p in params)),
        [r.double() for r in running], *mode)
    assert len(got) == len(want) == (10 if affine else 6)
    for index, (value, reference) in enumerate(zip(got, want)):
        error = (value.double() - reference).abs().max() / reference.abs().max().clamp_min(1e-6)
        assert error < 1e-4, f'{shape} {mode}: output {index} off by {error:.2e} (relative)'
    print(f'{shape} {mode}: ok')


if __name__ == '__main__':
    for case in CASES:
        check_passes(*case)
    # A one-process group: the synchronizing paths run their all-reduce for real.
    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:0', rank=0, world_size=1)
    for case in COEFFICIENT_CASES:
        check_coefficients(*case)
    dist.destroy_process_group()
