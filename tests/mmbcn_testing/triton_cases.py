"""The cases the Triton kernels are checked on under Triton's CPU interpreter, by id."""

import torch

# Passes, (shape, dtype): rows shorter and longer than a block, several segments, a 1-position
# row, low precision.
PASS_CASES = {
    f'passes-{"x".join(map(str, shape))}-{str(dtype)[6:]}': (shape, dtype)
    for shape, dtype in [((2, 6, 37, 41), torch.float32), ((1, 3, 3000), torch.float32),
                         ((3, 4, 1, 1), torch.float32), ((2, 4, 9, 7), torch.float16),
                         ((2, 4, 9, 7), torch.bfloat16)]
}

# The whole layer on the Triton backend, (shape, groups, training, estimate, affine,
# synchronize, estimate_rule): every statistics source (both micro-batch rules), no affine, 1x1
# maps, one sample, one group, several segments per row, the all-reduce paths.
LAYER_CASES = {
    '-'.join(['layer', 'x'.join(map(str, shape)), f'g{groups}',
              'eval' if not training else 'micro' if estimate else 'large',
              rule, 'affine' if affine else 'plain', 'sync' if sync else 'local']):
    (shape, groups, training, estimate, affine, sync, rule)
    for shape, groups, training, estimate, affine, sync, rule in [
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
        ((2, 6, 37, 41), 3, True, True, True, True, 'batch_variance'),
    ]
}

# momentum=None: r is a 0-d tensor the kernel reads from memory, (shape, groups, estimate, r).
TENSOR_RATE_CASES = {
    f'tensor-rate-{"micro" if estimate else "large"}': ((2, 6, 9, 7), 3, estimate, 0.25)
    for estimate in (True, False)
}

# Precision where |mean| >> std, (shape, groups, mean, std): the whole layer in large-batch
# training on the Triton backend; float32 itself then holds x to ~6e-5 / std.
PRECISION_CASES = {
    f'mean{mean:g}-std{std:g}': ((2, 8, 33, 31), 4, mean, std)
    for mean, std in [(1e3, 1e-2), (1e2, 1e-3), (-1e4, 1.0)]
}
