"""Every Triton kernel of BCN, each named after the function of :mod:`.maths` it transcribes.

Launched by :mod:`.triton_backend` (shapes, buffers, grids). Two families:

* passes over the activation, viewed as R = N*C rows of M positions (one program per row
  segment or block), accumulating in float32 whatever the input dtype:
  :func:`_moments_kernel` (per-row mean and sum of squared deviations per segment; Welford per
  lane), :func:`_grad_sums_kernel` (``sum g (x - m)`` and ``sum g`` per segment),
  :func:`_affine_kernel` (``(x - m) A + C``), :func:`_grad_input_kernel`
  (``g A + (x - m) slope + offset``);
* the O(N*C) maths, in float64, one program per channel group holding the (N, K) tile of
  per-sample moments of its channels: :func:`_batch_sums_kernel`
  (:func:`.maths.local_batch_sums`), :func:`_forward_kernel` (:func:`.maths.training_statistics`
  and :func:`.maths.coefficients`), :func:`_backward_kernel`
  (:func:`.maths.coefficients_backward` and :func:`.maths.input_gradient_coefficients`).

Loops are ``while`` loops, which Triton's CPU interpreter (the tests) runs too.
"""

import triton
import triton.language as tl

# Where the batch stage's (mean, var) come from (the STATS argument of the forward kernel): the
# running statistics, the batch, or the estimates moved by the 'authors' or the
# 'batch_variance' rule (:func:`.maths.estimate_target_variance`).
GIVEN, BATCH = tl.constexpr(0), tl.constexpr(1)
ESTIMATE, ESTIMATE_BATCH_VARIANCE = tl.constexpr(2), tl.constexpr(3)
STATS_OF_RULE = {'authors': ESTIMATE, 'batch_variance': ESTIMATE_BATCH_VARIANCE}


@triton.jit
def _welford_combine(mean_a, m2_a, count_a, mean_b, m2_b, count_b):
    count = count_a + count_b
    weight_b = tl.where(count > 0, count_b / tl.maximum(count, 1.0), 0.0)
    delta = mean_b - mean_a
    return mean_a + delta * weight_b, m2_a + m2_b + delta * delta * count_a * weight_b, count


@triton.jit
def _moments_kernel(x_ptr, mean_ptr, m2_ptr, positions, segment, BLOCK: tl.constexpr):
    """Each row segment's mean and sum of squared deviations (Welford per lane).

    The values are accumulated relative to the row's first value (a pivot, the same for every
    segment of the row): where |mean| >> std, float32 Welford on the raw values rounds the
    running mean to the values' ulp at each step, which loses the variance.
    """
    row = tl.program_id(0)
    seg = tl.program_id(1)
    num_segments = tl.num_programs(1)
    base = x_ptr + row.to(tl.int64) * positions
    pivot = tl.load(base).to(tl.float32)
    start = seg * segment  # segment is a multiple of BLOCK
    mean = tl.zeros([BLOCK], tl.float32)
    m2 = tl.zeros([BLOCK], tl.float32)
    count = tl.zeros([BLOCK], tl.float32)
    offset = start
    while offset < start + segment:  # a while loop: Triton's CPU interpreter runs it too
        index = offset + tl.arange(0, BLOCK)
        mask = index < positions
        value = tl.load(base + index, mask=mask, other=0.0).to(tl.float32) - pivot
        new_count = count + mask.to(tl.float32)
        delta = value - mean
        mean += tl.where(mask, delta / tl.maximum(new_count, 1.0), 0.0)
        m2 += tl.where(mask, delta * (value - mean), 0.0)
        count = new_count
        offset += BLOCK
    mean, m2, count = tl.reduce((mean, m2, count), 0, _welford_combine)
    tl.store(mean_ptr + row * num_segments + seg, pivot + mean)
    tl.store(m2_ptr + row * num_segments + seg, m2)


@triton.jit
def _grad_sums_kernel(grad_ptr, x_ptr, mean_ptr, centered_ptr, sum_ptr, positions, segment,
                      BLOCK: tl.constexpr):
    row = tl.program_id(0)
    seg = tl.program_id(1)
    num_segments = tl.num_programs(1)
    offset_row = row.to(tl.int64) * positions
    start = seg * segment  # segment is a multiple of BLOCK
    row_mean = tl.load(mean_ptr + row)
    centered = tl.zeros([BLOCK], tl.float32)
    total = tl.zeros([BLOCK], tl.float32)
    offset = start
    while offset < start + segment:  # a while loop: Triton's CPU interpreter runs it too
        index = offset + tl.arange(0, BLOCK)
        mask = index < positions
        grad = tl.load(grad_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
        value = tl.load(x_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
        centered += grad * (value - row_mean)
        total += grad
        offset += BLOCK
    tl.store(centered_ptr + row * num_segments + seg, tl.sum(centered, 0))
    tl.store(sum_ptr + row * num_segments + seg, tl.sum(total, 0))


@triton.jit
def _affine_kernel(x_ptr, a_ptr, c_ptr, mean_ptr, out_ptr, positions, blocks_per_row,
                   BLOCK: tl.constexpr):
    """``out = (x - m) * A + C`` (centred: step 3 of :mod:`.maths`); grid: rows x blocks."""
    row = tl.program_id(0) // blocks_per_row
    index = (tl.program_id(0) % blocks_per_row) * BLOCK + tl.arange(0, BLOCK)
    mask = index < positions
    offset_row = row.to(tl.int64) * positions
    value = tl.load(x_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
    centered = value - tl.load(mean_ptr + row)
    out = centered * tl.load(a_ptr + row) + tl.load(c_ptr + row)
    tl.store(out_ptr + offset_row + index, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _grad_input_kernel(grad_ptr, x_ptr, a_ptr, slope_ptr, mean_ptr, offset_ptr, out_ptr,
                       positions, blocks_per_row, BLOCK: tl.constexpr):
    """``dx = g * A + (x - m) * slope + offset`` (step 4 of :mod:`.maths`)."""
    row = tl.program_id(0) // blocks_per_row
    index = (tl.program_id(0) % blocks_per_row) * BLOCK + tl.arange(0, BLOCK)
    mask = index < positions
    offset_row = row.to(tl.int64) * positions
    grad = tl.load(grad_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
    value = tl.load(x_ptr + offset_row + index, mask=mask, other=0.0).to(tl.float32)
    centered = value - tl.load(mean_ptr + row)
    out = grad * tl.load(a_ptr + row) + centered * tl.load(slope_ptr + row)
    out += tl.load(offset_ptr + row)
    tl.store(out_ptr + offset_row + index, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _tile(group, N, C, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Row indices (N, K) of the group's tile in (N, C) arrays, its channels, and the masks."""
    sample = tl.arange(0, BLOCK_N)[:, None]
    in_group = tl.arange(0, BLOCK_K)
    channel = group * K + in_group
    channel_mask = in_group < K
    mask = (sample < N) & channel_mask[None, :]
    return sample * C + channel[None, :], channel, channel_mask, mask


@triton.jit
def _load64(ptr, index, mask, default, PRESENT: tl.constexpr):
    """``ptr[index]`` as float64, or ``default`` everywhere when the tensor is absent."""
    value = tl.zeros(index.shape, tl.float64) + default
    if PRESENT:
        value = tl.load(ptr + index, mask=mask, other=default).to(tl.float64)
    return value


@triton.jit
def _sum_partials(ptr, row, mask, num_segments):
    """Sum over the segments of a (rows, segments) array, for the tile's rows, in float64."""
    total = tl.zeros(row.shape, tl.float64)
    segment = 0
    while segment < num_segments:  # a while loop: Triton's CPU interpreter runs it too
        total += tl.load(ptr + row * num_segments + segment, mask=mask, other=0.0)
        segment += 1
    return total


@triton.jit
def _sample_moments(mean_ptr, m2_ptr, row, mask, num_segments, segment_length, positions):
    """Per-sample channel mean and biased variance from segment partials (Chan's formula).

    Segment s holds ``min(L, M - s L)`` positions, its mean and its sum of squared deviations.
    The results are rounded to float32 (as stored for the backward) and returned as float64.
    """
    mean = tl.zeros(row.shape, tl.float64)
    m2 = tl.zeros(row.shape, tl.float64)
    segment = 0
    while segment < num_segments:
        before = (segment * segment_length).to(tl.float64)
        count = tl.minimum(segment_length, positions - segment * segment_length).to(tl.float64)
        index = row * num_segments + segment
        part_mean = tl.load(mean_ptr + index, mask=mask, other=0.0).to(tl.float64)
        part_m2 = tl.load(m2_ptr + index, mask=mask, other=0.0).to(tl.float64)
        delta = part_mean - mean
        weight = count / (before + count)
        mean += delta * weight
        m2 += part_m2 + delta * delta * before * weight
        segment += 1
    sample_mean = mean.to(tl.float32).to(tl.float64)
    sample_var = (m2 / positions).to(tl.float32).to(tl.float64)
    return sample_mean, sample_var


@triton.jit
def _batch_sums(sample_mean, sample_var, mask, positions):
    """``S1 = sum_n M m`` and ``S2 = sum_n M (v + m^2)`` per channel of the tile."""
    first = tl.sum(tl.where(mask, sample_mean, 0.0), 0) * positions
    second = tl.sum(tl.where(mask, sample_var + sample_mean * sample_mean, 0.0), 0) * positions
    return first, second


@triton.jit
def _stages(sample_mean, sample_var, channel_mean, channel_var, weight, bias, mask, K, eps):
    """The intermediate values of :func:`.maths.coefficients` (names as there)."""
    rsqrt_var = 1.0 / tl.sqrt(channel_var + eps)
    scale = rsqrt_var * weight
    shift = bias - channel_mean * scale
    moved_mean = sample_mean * scale[None, :] + shift[None, :]
    group_mean = tl.sum(tl.where(mask, moved_mean, 0.0), 1) / K
    centered = tl.where(mask, moved_mean - group_mean[:, None], 0.0)
    moved_var = sample_var * (scale * scale)[None, :]
    group_var = tl.sum(tl.where(mask, moved_var + centered * centered, 0.0), 1) / K
    rsqrt_group_var = 1.0 / tl.sqrt(group_var + eps)
    return rsqrt_var, scale, shift, group_mean, centered, rsqrt_group_var


@triton.jit(do_not_specialize=['N', 'positions'])
def _batch_sums_kernel(mean_part_ptr, m2_part_ptr, num_segments, segment_length, positions,
                       sums_ptr, N, C, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """:func:`.maths.local_batch_sums`: ``[S0, S1 (C), S2 (C)]`` of the local batch, float64."""
    group = tl.program_id(0)
    row, channel, channel_mask, mask = _tile(group, N, C, K, BLOCK_N, BLOCK_K)
    sample_mean, sample_var = _sample_moments(mean_part_ptr, m2_part_ptr, row, mask,
                                              num_segments, segment_length, positions)
    first, second = _batch_sums(sample_mean, sample_var, mask, positions)
    tl.store(sums_ptr + 1 + channel, first, mask=channel_mask)
    tl.store(sums_ptr + 1 + C + channel, second, mask=channel_mask)
    if group == 0:
        tl.store(sums_ptr, N.to(tl.float64) * positions)


@triton.jit(do_not_specialize=['N', 'positions'])
def _forward_kernel(mean_part_ptr, m2_part_ptr, num_segments, segment_length, positions,
                    sums_ptr, running_mean_ptr, running_var_ptr, momentum, momentum_ptr,
                    weight_ptr, bias_ptr, group_weight_ptr, group_bias_ptr,
                    sample_mean_ptr, sample_var_ptr, channel_mean_ptr, channel_var_ptr,
                    a_ptr, c_ptr, N, C, K, eps,
                    STATS: tl.constexpr, MOMENTUM_FROM_POINTER: tl.constexpr,
                    HAS_WEIGHT: tl.constexpr,
                    HAS_BIAS: tl.constexpr, HAS_GROUP_WEIGHT: tl.constexpr,
                    HAS_GROUP_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr):
    """:func:`.maths.training_statistics` (or the running statistics), then
    :func:`.maths.coefficients`: A, B, and the moments and statistics the backward reads.

    ``sums``: the (global) batch's [S0, S1, S2] in training (:func:`_batch_sums_kernel`, then
    all-reduced when synchronizing). r is ``momentum``, or ``momentum_ptr[0]`` with
    ``MOMENTUM_FROM_POINTER`` (the layer's ``momentum=None``: a 0-d tensor on the device, read
    without a sync).
    """
    group = tl.program_id(0)
    row, channel, channel_mask, mask = _tile(group, N, C, K, BLOCK_N, BLOCK_K)
    sample_mean, sample_var = _sample_moments(mean_part_ptr, m2_part_ptr, row, mask,
                                              num_segments, segment_length, positions)
    tl.store(sample_mean_ptr + row, sample_mean.to(tl.float32), mask=mask)
    tl.store(sample_var_ptr + row, sample_var.to(tl.float32), mask=mask)

    running_mean = tl.load(running_mean_ptr + channel, mask=channel_mask, other=0.0)
    running_var = tl.load(running_var_ptr + channel, mask=channel_mask, other=1.0)
    channel_mean = running_mean.to(tl.float64)
    channel_var = running_var.to(tl.float64)
    if STATS != GIVEN:
        if MOMENTUM_FROM_POINTER:
            momentum = tl.load(momentum_ptr).to(tl.float64)
        count = tl.load(sums_ptr)
        first = tl.load(sums_ptr + 1 + channel, mask=channel_mask, other=0.0)
        second = tl.load(sums_ptr + 1 + C + channel, mask=channel_mask, other=0.0)
        batch_mean = first / count
        batch_var = tl.maximum(second / count - batch_mean * batch_mean, 0.0)
        if STATS == BATCH:  # BatchNorm's update, with the unbiased variance
            target_var = batch_var * (count / (count - 1.0))
        elif STATS == ESTIMATE:  # the spread around the previous estimate (authors' rule)
            target_var = batch_var + (batch_mean - channel_mean) * (batch_mean - channel_mean)
        else:  # ESTIMATE_BATCH_VARIANCE
            target_var = batch_var
        running_mean = ((1.0 - momentum) * channel_mean
                        + momentum * batch_mean).to(running_mean.dtype)
        running_var = ((1.0 - momentum) * channel_var
                       + momentum * target_var).to(running_var.dtype)
        if STATS == BATCH:
            channel_mean = batch_mean.to(tl.float32).to(tl.float64)
            channel_var = batch_var.to(tl.float32).to(tl.float64)
        else:  # normalize with the moved estimates
            channel_mean = running_mean.to(tl.float32).to(tl.float64)
            channel_var = running_var.to(tl.float32).to(tl.float64)
        tl.store(running_mean_ptr + channel, running_mean, mask=channel_mask)
        tl.store(running_var_ptr + channel, running_var, mask=channel_mask)
    else:  # the given statistics, rounded as the PyTorch version rounds them
        channel_mean = channel_mean.to(tl.float32).to(tl.float64)
        channel_var = channel_var.to(tl.float32).to(tl.float64)
    tl.store(channel_mean_ptr + channel, channel_mean.to(tl.float32), mask=channel_mask)
    tl.store(channel_var_ptr + channel, channel_var.to(tl.float32), mask=channel_mask)

    weight = _load64(weight_ptr, channel, channel_mask, 1.0, HAS_WEIGHT)
    bias = _load64(bias_ptr, channel, channel_mask, 0.0, HAS_BIAS)
    _, scale, _, _, centered, rsqrt_group_var = _stages(
        sample_mean, sample_var, channel_mean, channel_var, weight, bias, mask, K, eps)
    if HAS_GROUP_WEIGHT:
        rsqrt_group_var *= tl.load(group_weight_ptr + group).to(tl.float64)
    coeff_a = scale[None, :] * rsqrt_group_var[:, None]
    coeff_c = centered * rsqrt_group_var[:, None]  # the output at the row mean
    if HAS_GROUP_BIAS:
        coeff_c += tl.load(group_bias_ptr + group).to(tl.float64)
    tl.store(a_ptr + row, coeff_a.to(tl.float32), mask=mask)
    tl.store(c_ptr + row, coeff_c.to(tl.float32), mask=mask)


@triton.jit
def _backward_kernel(centered_part_ptr, sum_part_ptr, num_segments, positions,
                     sample_mean_ptr, sample_var_ptr, channel_mean_ptr, channel_var_ptr,
                     weight_ptr, bias_ptr, group_weight_ptr,
                     slope_ptr, offset_ptr, grad_channel_mean_ptr, grad_channel_var_ptr,
                     grad_weight_ptr, grad_bias_ptr, grad_group_weight_ptr, grad_group_bias_ptr,
                     N, C, K, eps, HAS_WEIGHT: tl.constexpr,
                     HAS_BIAS: tl.constexpr, HAS_GROUP_WEIGHT: tl.constexpr,
                     HAS_GROUP_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr):
    """:func:`.maths.coefficients_backward` and :func:`.maths.input_gradient_coefficients`.

    Recomputes the forward's intermediate values from the stored moments and statistics; writes
    the slope and offset (without the batch-statistics path, which the caller adds after the
    all-reduce of [dL/dmu, dL/dvar] written here), and the parameter gradients.
    """
    group = tl.program_id(0)
    row, channel, channel_mask, mask = _tile(group, N, C, K, BLOCK_N, BLOCK_K)
    sample_mean = tl.load(sample_mean_ptr + row, mask=mask, other=0.0).to(tl.float64)
    sample_var = tl.load(sample_var_ptr + row, mask=mask, other=0.0).to(tl.float64)
    channel_mean = tl.load(channel_mean_ptr + channel, mask=channel_mask, other=0.0).to(
        tl.float64)
    channel_var = tl.load(channel_var_ptr + channel, mask=channel_mask, other=1.0).to(
        tl.float64)
    weight = _load64(weight_ptr, channel, channel_mask, 1.0, HAS_WEIGHT)
    bias = _load64(bias_ptr, channel, channel_mask, 0.0, HAS_BIAS)
    rsqrt_var, scale, shift, group_mean, centered, rsqrt_group_var = _stages(
        sample_mean, sample_var, channel_mean, channel_var, weight, bias, mask, K, eps)

    # dL/dA = sum_s g (x - m) + m sum_s g and dL/dB = sum_s g, per (sample, channel).
    grad_b = _sum_partials(sum_part_ptr, row, mask, num_segments)
    grad_a = _sum_partials(centered_part_ptr, row, mask, num_segments) + sample_mean * grad_b
    group_shift = shift[None, :] - group_mean[:, None]
    grad_scaled_rg = tl.sum(grad_a * scale[None, :] + grad_b * group_shift, 1)
    if HAS_GROUP_BIAS:
        tl.store(grad_group_bias_ptr + group, tl.sum(tl.sum(grad_b, 1), 0).to(tl.float32))
    if HAS_GROUP_WEIGHT:
        tl.store(grad_group_weight_ptr + group,
                 tl.sum(grad_scaled_rg * rsqrt_group_var, 0).to(tl.float32))
        group_weight = tl.load(group_weight_ptr + group).to(tl.float64)
        grad_a *= group_weight
        grad_b *= group_weight
        grad_scaled_rg *= group_weight
    cube = rsqrt_group_var * rsqrt_group_var * rsqrt_group_var
    grad_group_var = -0.5 * cube * grad_scaled_rg
    grad_group_mean = -rsqrt_group_var * tl.sum(grad_b, 1)
    # var_g = mean_k (vy + d^2) has no derivative through mu_g, since sum_k d = 0.
    grad_moved_mean = tl.where(mask, (2.0 / K) * grad_group_var[:, None] * centered
                               + grad_group_mean[:, None] / K, 0.0)
    grad_moved_var = tl.where(mask, grad_group_var[:, None] / K, 0.0)
    grad_mean = scale[None, :] * grad_moved_mean
    grad_var = (scale * scale)[None, :] * grad_moved_var
    grad_shift = tl.sum(grad_b * rsqrt_group_var[:, None] + grad_moved_mean, 0)
    grad_scale = tl.sum(grad_a * rsqrt_group_var[:, None] + grad_moved_mean * sample_mean
                        + 2.0 * scale[None, :] * grad_moved_var * sample_var, 0)
    grad_scale -= channel_mean * grad_shift
    grad_channel_mean = -scale * grad_shift
    if HAS_WEIGHT:
        tl.store(grad_weight_ptr + channel, (grad_scale * rsqrt_var).to(tl.float32),
                 mask=channel_mask)
        grad_scale *= weight
    if HAS_BIAS:
        tl.store(grad_bias_ptr + channel, grad_shift.to(tl.float32), mask=channel_mask)
    grad_channel_var = -0.5 * rsqrt_var * rsqrt_var * rsqrt_var * grad_scale
    tl.store(grad_channel_mean_ptr + channel, grad_channel_mean, mask=channel_mask)
    tl.store(grad_channel_var_ptr + channel, grad_channel_var, mask=channel_mask)
    tl.store(slope_ptr + row, ((2.0 / positions) * grad_var).to(tl.float32), mask=mask)
    tl.store(offset_ptr + row, (grad_mean / positions).to(tl.float32), mask=mask)
