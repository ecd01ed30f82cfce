"""Run BCN's Triton kernels under Triton's CPU interpreter; write each case's relative error.

``python -m mmbcn_testing.triton_interpreted OUT.json`` (tests/ on PYTHONPATH). The passes are
compared with the PyTorch-ops passes; the whole layer on
:class:`~mmbcn.ops.triton_backend.TritonBackend` (float32) with the PyTorch backend in float64,
through the real autograd Function (the all-reduce paths on a real one-process gloo group). Started
by ``tests/ops/test_triton_interpreted.py`` in a fresh process, because ``TRITON_INTERPRET`` must be
set before the kernels are defined.
"""

import json
import os
import sys

os.environ['TRITON_INTERPRET'] = '1'

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from mmbcn.ops import torch_backend, triton_backend  # noqa: E402

from .backends import relative_errors, run_on_backend  # noqa: E402
from .triton_cases import (  # noqa: E402
    LAYER_CASES,
    PASS_CASES,
    PRECISION_CASES,
    TENSOR_RATE_CASES,
)


def pass_errors(shape, dtype):
    """Relative errors of moments, affine, gradient sums and input gradient vs PyTorch ops."""
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=generator) * 3 + 10).to(dtype)
    grad = torch.randn(shape, generator=generator).to(dtype)
    n, c = shape[:2]
    coeff_a, coeff_c, slope, offset = torch.randn(4, n, c, generator=generator)
    mean, var = triton_backend.row_moments(x)
    ref_mean, ref_var = torch_backend.row_moments(x)
    out = triton_backend.apply_affine(x, coeff_a, coeff_c, ref_mean)
    assert out.dtype == dtype
    got = [mean, var, out, *triton_backend.grad_row_sums(grad, x, ref_mean),
           triton_backend.grad_input(grad, x, coeff_a, slope, ref_mean, offset)]
    want = [ref_mean, ref_var, torch_backend.apply_affine(x, coeff_a, coeff_c, ref_mean),
            *torch_backend.grad_row_sums(grad, x, ref_mean),
            torch_backend.grad_input(grad, x, coeff_a, slope, ref_mean, offset)]
    return relative_errors(got, want)


def layer_errors(shape, groups, training, estimate, affine, synchronize, estimate_rule,
                 mean=10.0, std=3.0, rate=0.1):
    """Relative errors of output, dL/dx, running statistics and parameter grads vs float64.

    ``{'triton': [...], 'torch_float32': [...]}``: the Triton backend's, and for scale those of
    the PyTorch backend in float32 (ill-conditioned cases, such as one value per channel, have
    float32 errors of their own).
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * std + mean
    x = x.float()  # the float64 reference sees the same (rounded) values
    upstream = torch.randn(shape, generator=generator)
    c = shape[1]
    params = [torch.randn(size, generator=generator) if affine else None
              for size in (c, c, groups, groups)]
    running = torch.randn(c, generator=generator), torch.rand(c, generator=generator) + 0.5
    mode = (groups, training, estimate, synchronize, estimate_rule)
    got = run_on_backend(triton_backend.TRITON, x, upstream, params, running, *mode, rate=rate)
    want = run_on_backend(
        torch_backend.TorchBackend(), x.double(), upstream.double(),
        [None if p is None else p.double() for p in params], [r.double() for r in running],
        *mode, rate=float(rate))
    float32 = run_on_backend(torch_backend.TorchBackend(), x, upstream, params, running, *mode,
                             rate=float(rate))
    assert len(got) == len(want) == len(float32) == (8 if affine else 4)
    return dict(triton=relative_errors(got, want), torch_float32=relative_errors(float32, want))


if __name__ == '__main__':
    results = {case: pass_errors(*args) for case, args in PASS_CASES.items()}
    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:0', rank=0, world_size=1)
    results.update({case: layer_errors(*args) for case, args in LAYER_CASES.items()})
    results.update({case: layer_errors(shape, groups, True, False, True, False, 'authors', mean,
                                       std)
                    for case, (shape, groups, mean, std) in PRECISION_CASES.items()})
    results.update({case: layer_errors(shape, groups, True, estimate, True, False, 'authors',
                                       rate=torch.tensor(rate, dtype=torch.float64))
                    for case, (shape, groups, estimate, rate) in TENSOR_RATE_CASES.items()})
    dist.destroy_process_group()
    with open(sys.argv[1], 'w') as file:
        json.dump(results, file, indent=1)
