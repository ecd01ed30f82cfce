"""BCN's Triton kernels compile for Hopper (sm_90) on a machine without a GPU.

The interpreter tests (test_triton_interpreted.py) check what the kernels compute, but the
interpreter runs them as numpy and accepts code that Triton's compiler refuses (a global that is
not a constexpr, a dtype the hardware path lacks, a loop over a specialized bound). Here every
kernel goes through the real pipeline (Triton IR, LLVM, PTX, ptxas), with integer arguments both
as runtime values and as the constant 1 Triton specializes them to.
"""

import pytest

from mmbcn.utils.feature_probes import triton_problem  # noqa: E402

if triton_problem() is not None:  # the kernels are used (and tested) with a checked Triton only
    pytest.skip(f'needs the Triton the kernels were checked with: {triton_problem()}',
                allow_module_level=True)
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from mmbcn.ops import triton_kernels as kernels  # noqa: E402

HOPPER = GPUTarget('cuda', 90, 32)
# Argument types other than the defaults (pointers to float32, 32-bit ints).
FLOATS = {'eps': 'fp32', 'momentum': 'fp32'}
FLOAT64_POINTERS = ('sums_ptr', 'momentum_ptr', 'grad_channel_mean_ptr', 'grad_channel_var_ptr')
AFFINE = dict(HAS_WEIGHT=True, HAS_BIAS=True, HAS_GROUP_WEIGHT=True, HAS_GROUP_BIAS=True)
NO_AFFINE = {name: False for name in AFFINE}
SMALL, LARGE = dict(BLOCK_N=2, BLOCK_K=8), dict(BLOCK_N=16, BLOCK_K=512)

CASES = [
    *[(kernels._forward_kernel, dict(STATS=stats, MOMENTUM_FROM_POINTER=False, **AFFINE, **SMALL))
      for stats in (0, 1, 2, 3)],
    (kernels._forward_kernel, dict(STATS=2, MOMENTUM_FROM_POINTER=True, **NO_AFFINE, **LARGE)),
    (kernels._backward_kernel, dict(**AFFINE, **SMALL)),
    (kernels._backward_kernel, dict(**NO_AFFINE, **LARGE)),
    (kernels._batch_sums_kernel, SMALL),
    (kernels._moments_kernel, dict(BLOCK=1024)),
    (kernels._grad_sums_kernel, dict(BLOCK=1024)),
    (kernels._affine_kernel, dict(BLOCK=1024)),
    (kernels._grad_input_kernel, dict(BLOCK=1024)),
]


def signature(kernel, constexprs, output_type, ones):
    """Argument types for ASTSource; ints in ``ones`` become the constant 1."""
    types = {}
    for name in kernel.arg_names:
        if name in constexprs or name in ones:
            types[name] = 'constexpr'
        elif name in FLOATS:
            types[name] = FLOATS[name]
        elif name in FLOAT64_POINTERS:
            types[name] = '*fp64'
        elif name in ('x_ptr', 'grad_ptr', 'out_ptr'):
            types[name] = output_type
        else:
            types[name] = '*fp32' if name.endswith('_ptr') else 'i32'
    return types


@pytest.mark.parametrize('specialized', [False, True], ids=['runtime-ints', 'ints-equal-1'])
@pytest.mark.parametrize('kernel,constexprs', CASES,
                         ids=[f'{kernel.__name__}-{index}'
                              for index, (kernel, _) in enumerate(CASES)])
def test_kernel_compiles_for_sm90(kernel, constexprs, specialized):
    ones = set()
    if specialized:  # what Triton does for int arguments equal to 1 (unless told not to)
        ones = {name for name in kernel.arg_names
                if name in ('N', 'C', 'K', 'num_segments', 'positions', 'segment',
                            'segment_length')
                and name not in kernel.do_not_specialize}
    output_type = '*bf16' if specialized else '*fp16'
    source = ASTSource(kernel, signature(kernel, constexprs, output_type, ones),
                       constexprs={**constexprs, **{name: 1 for name in ones}})
    num_warps = 8 if constexprs.get('BLOCK_K') == LARGE['BLOCK_K'] else 4
    compiled = triton.compile(source, target=HOPPER, options=dict(num_warps=num_warps))
    assert compiled.asm['cubin'], 'ptxas produced no machine code'
    assert '.target sm_90' in compiled.asm['ptx']
