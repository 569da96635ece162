// Fused row kernels for TD-MPC2 (docs/spec/tdmpc2.md §2, §5). Rows of a contiguous (rows, dim) matrix of dim ≤ 32·N
// (the launcher picks N ∈ {2, 4, 8, 16}): norm_act on a block of max(1, N / 4) warps per row (see `norm_act`),
// two_hot_inv one warp per row (two warps per block, so that a rollout's few hundred rows spread over every SM),
// q_cost one block per row with a warp per Q head.
//
//   norm_act_f32_N:     y = act(LayerNorm(x)·γ + β) — a NormedLinear after its GEMM. act 0: Mish, x·tanh(softplus x);
//                       act 1: SimNorm, a softmax over each group of `group` consecutive values (group a power of
//                       two ≤ 32: a group is `group` adjacent lanes holding the same value slot); act 2: none (a
//                       plain LayerNorm). `heads` layers side by side: row r is head r % heads of its (rows / heads)
//                       output row, with γ, β at head·dim.
//                       The input may be a GEMM's unreduced output: head h of row i is the sum over s < splits of
//                       x[h·head_stride + i·row_stride + s·split_stride ..], plus bias[h·dim ..] when bias is set.
//                       With `residual` set, the row is residual[row] + that sum (a ViT layer's residual stream,
//                       as bias_residual_f32 adds it), written to `sum_out` when set before it is normalised.
//                       Row r's head h is written at out[r·out_stride + h·dim ..] (out_stride ≥ heads·dim: rows
//                       of a wider buffer, such as the next step's input).
//   two_hot_inv_f32_N:  v = symexp(Σ_i softmax(logits)_i · bins_i) — a reward or Q head's scalar, logits rows `ld`
//                       apart; out[row] = v, or with `accumulate` out[row] + scale·v (the discounted return).
//                       Both two-hot kernels read logits left as a GEMM's partial sums plus bias (see norm_act).
//   step_inputs_f32:    concat_rows_f32 for every horizon step at once into (steps, rows, width), the latent
//                       columns of steps after the first zero (the dynamics' norm_act_f32_N writes them).
//   concat_rows_f32:    out[r] = [z[r / repeat], a[r·a_stride ..], 0…] (`width` columns): a model step's input
//                       (latent, action) in one launch, the latent repeated over a candidate batch, the action read
//                       from its horizon step in place, zeros up to a row width the GEMM copies 16 bytes at a time.
//   q_cost_f32_N:       the planning cost of a row from the Q ensemble's logits (heads blocks of nb per row):
//                       q_h = two-hot value of head h, q̄ = mean, σ² = Σ(q_h − q̄)² / (heads − 1),
//                       out[row] = −(ret[row] + discount·(q̄ − c·|q̄|·σ)).

#include "rows.cuh"

// Most Q heads `q_cost_f32_N` takes (the launcher checks).
#define SWM_MAX_HEADS 8

// Mish, x·tanh(softplus x), with one exponential: tanh(log(1 + e)) = n / (n + 2) for n = e·(e + 2), e = eˣ (exact
// algebra; within a few ulp of the composed functions). From x = 20 on the factor is 1 in f32 (and n would overflow
// from x ≈ 44).
__device__ __forceinline__ float mish(float x) {
  if (x >= 20.0f) return x;
  const float e = expf(x);
  const float n = e * (e + 2.0f);
  return x * (n / (n + 2.0f));
}

// The sum of `v` over the block's W warps (every thread returns it), in warp order; `red` holds W floats.
template <int W>
__device__ __forceinline__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  if (W == 1) return v;
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.0f;
#pragma unroll
  for (int w = 0; w < W; ++w) t += red[w];
  __syncthreads();  // red is rewritten by the next sum
  return t;
}

// One block of W warps per row (blockDim.x = 32·W): thread t holds columns t, t + 32·W, …, t + 32·W·(N − 1), so a
// 512-wide row is 4 values per thread and a rollout's rows keep every SM busy.
template <int N, int W>
__device__ __forceinline__ void norm_act(const float* __restrict__ x, int splits, long long split_stride,
                                         long long head_stride, long long row_stride, const float* __restrict__ bias,
                                         const float* __restrict__ gamma, const float* __restrict__ beta,
                                         float* __restrict__ out, long long rows, int dim, float eps, int act,
                                         int group, int heads, const float* __restrict__ residual,
                                         float* __restrict__ sum_out, long long out_stride) {
  __shared__ float red[W];
  const int t = threadIdx.x;
  constexpr int kStride = 32 * W;
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    float v[N], g[N], b[N];
    const int head = (int)(row % heads);
    // The GEMM's partial sums added in split order, then its bias: the values its reduction kernel would write.
    const float* src = x + head * head_stride + (row / heads) * row_stride;
#pragma unroll
    for (int c = 0; c < N; ++c) {
      const int i = t + kStride * c;
      const bool in = i < dim;
      v[c] = in ? src[i] : 0.0f;
      g[c] = in ? gamma[head * dim + i] : 0.0f;
      b[c] = in ? beta[head * dim + i] : 0.0f;
    }
    // Eight splits' loads in flight at once; the adds keep the split order. Slots past dim go back to 0.
    add_splits(v, src, splits, split_stride, t, kStride, dim);
#pragma unroll
    for (int c = 0; c < N; ++c) {
      if (t + kStride * c >= dim) v[c] = 0.0f;
    }
    if (bias != nullptr) {
#pragma unroll
      for (int c = 0; c < N; ++c) {
        const int i = t + kStride * c;
        if (i < dim) v[c] += bias[head * dim + i];
      }
    }
    // A residual stream's update (a ViT layer): residual + (Σ + bias), as bias_residual_f32 writes it, kept in
    // sum_out and normalised below for the next sublayer.
    if (residual != nullptr) {
#pragma unroll
      for (int c = 0; c < N; ++c) {
        const int i = t + kStride * c;
        if (i < dim) v[c] = residual[row * dim + i] + v[c];
      }
    }
    if (sum_out != nullptr) {
#pragma unroll
      for (int c = 0; c < N; ++c) {
        const int i = t + kStride * c;
        if (i < dim) sum_out[row * dim + i] = v[c];
      }
    }
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < N; ++c) sum += v[c];
    const float mean = block_sum<W>(sum, red) / dim;
    float sq = 0.0f;
#pragma unroll
    for (int c = 0; c < N; ++c) {
      const float d = t + kStride * c < dim ? v[c] - mean : 0.0f;
      sq += d * d;
    }
    const float inv = rsqrtf(block_sum<W>(sq, red) / dim + eps);
#pragma unroll
    for (int c = 0; c < N; ++c) v[c] = (v[c] - mean) * inv * g[c] + b[c];
    if (act == 0) {
#pragma unroll
      for (int c = 0; c < N; ++c) v[c] = mish(v[c]);
    } else if (act == 1) {
      // A group is `group` adjacent columns: adjacent lanes of one warp (group divides 32 and the row).
#pragma unroll
      for (int c = 0; c < N; ++c) {
        float m = v[c];
        for (int o = 1; o < group; o <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        const float e = expf(v[c] - m);
        float sum_e = e;
        for (int o = 1; o < group; o <<= 1) sum_e += __shfl_xor_sync(0xffffffffu, sum_e, o);
        v[c] = e / sum_e;
      }
    }
    float* dst = out + (row / heads) * out_stride + head * dim;
#pragma unroll
    for (int c = 0; c < N; ++c) {
      const int i = t + kStride * c;
      if (i < dim) dst[i] = v[c];
    }
  }
}

// The two-hot value of one row of logits (every lane returns it): the logits are `splits` partial sums
// `split_stride` apart at `lr`, plus `bias` when set (a GEMM's unreduced output, added in its reduction's order).
template <int N>
__device__ __forceinline__ float two_hot_value(const float* __restrict__ lr, int splits, long long split_stride,
                                               const float* __restrict__ bias, const float* __restrict__ bins,
                                               int lane, int nb) {
  float v[N], bi[N];
#pragma unroll
  for (int c = 0; c < N; ++c) {
    const int i = min(lane + 32 * c, nb - 1);
    v[c] = lr[i];
    bi[c] = bias != nullptr ? bias[i] : 0.0f;  // loaded with the logits, added after their partial sums
  }
  add_splits(v, lr, splits, split_stride, lane, 32, nb);
  float m = -INFINITY;
#pragma unroll
  for (int c = 0; c < N; ++c) {
    if (lane + 32 * c < nb) {
      if (bias != nullptr) v[c] += bi[c];
    } else {
      v[c] = -INFINITY;
    }
    m = fmaxf(m, v[c]);
  }
  m = warp_max(m);
  float sum = 0.0f, dot = 0.0f;
#pragma unroll
  for (int c = 0; c < N; ++c) {
    const int i = lane + 32 * c;
    if (i < nb) {
      const float e = expf(v[c] - m);
      sum += e;
      dot += e * bins[i];
    }
  }
  sum = warp_sum(sum);
  dot = warp_sum(dot);
  const float mean = dot / sum;
  return copysignf(expf(fabsf(mean)) - 1.0f, mean);
}

template <int N>
__device__ __forceinline__ void two_hot_inv(const float* __restrict__ logits, int splits, long long split_stride,
                                            const float* __restrict__ bias, const float* __restrict__ bins,
                                            float* __restrict__ out, long long rows, int nb, long long ld,
                                            float scale, int accumulate) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    const float v = two_hot_value<N>(logits + row * ld, splits, split_stride, bias, bins, lane, nb);
    // Rounded product and sum (no FMA): the same values as a scale then an add.
    if (lane == 0) out[row] = accumulate ? __fadd_rn(out[row], __fmul_rn(v, scale)) : v;
  }
}

// One block per row, one warp per Q head (blockDim.x = 32·heads): the heads' two-hot values are computed side by
// side, and thread 0 combines them in head order.
template <int N>
__device__ __forceinline__ void q_cost(const float* __restrict__ logits, int splits, long long split_stride,
                                       long long head_stride, long long row_stride, const float* __restrict__ bias,
                                       const float* __restrict__ bins, const float* __restrict__ ret,
                                       float* __restrict__ out, long long rows, int nb, int heads, float c,
                                       float discount) {
  __shared__ float q[SWM_MAX_HEADS];
  const int lane = threadIdx.x & 31;
  const int h = threadIdx.x >> 5;
  for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* lr = logits + row * row_stride;
    const float v = two_hot_value<N>(lr + h * head_stride, splits, split_stride,
                                     bias != nullptr ? bias + h * nb : nullptr, bins, lane, nb);
    if (lane == 0) q[h] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
      float sum = 0.0f;
      for (int i = 0; i < heads; ++i) sum += q[i];
      const float mean = __fmul_rn(sum, 1.0f / (float)heads);
      float sq = 0.0f;
      for (int i = 0; i < heads; ++i) {
        const float d = __fsub_rn(q[i], mean);
        sq = __fadd_rn(sq, __fmul_rn(d, d));
      }
      const float sd = __fsqrt_rn(__fmul_rn(sq, 1.0f / (float)(heads - 1)));
      const float conservative = __fsub_rn(mean, __fmul_rn(__fmul_rn(fabsf(mean), sd), c));
      out[row] = -__fadd_rn(ret[row], __fmul_rn(conservative, discount));
    }
    __syncthreads();  // q is rewritten for the next row
  }
}

// norm_act_f32_N: rows of up to 32·N values, on blocks of max(1, N / 4) warps (so at most 4 values per thread
// from N = 4 on); the launcher's block size follows the name.
#define SWM_TDMPC2_KERNELS(N)                                                                                  \
  extern "C" __global__ void norm_act_f32_##N(                                                                 \
      const float* __restrict__ x, int splits, long long split_stride, long long head_stride,                   \
      long long row_stride, const float* __restrict__ bias, const float* __restrict__ gamma,                   \
      const float* __restrict__ beta, float* __restrict__ out, long long rows, int dim, float eps, int act,    \
      int group, int heads, const float* __restrict__ residual, float* __restrict__ sum_out,                   \
      long long out_stride) {                                                                                  \
    norm_act<(N < 4 ? N : 4), (N < 4 ? 1 : N / 4)>(x, splits, split_stride, head_stride, row_stride, bias,      \
                                                   gamma, beta, out, rows, dim, eps, act, group, heads,        \
                                                   residual, sum_out, out_stride);                             \
  }                                                                                                            \
  extern "C" __global__ void two_hot_inv_f32_##N(                                                              \
      const float* __restrict__ logits, int splits, long long split_stride, const float* __restrict__ bias,    \
      const float* __restrict__ bins, float* __restrict__ out, long long rows, int nb, long long ld,           \
      float scale, int accumulate) {                                                                           \
    two_hot_inv<N>(logits, splits, split_stride, bias, bins, out, rows, nb, ld, scale, accumulate);             \
  }                                                                                                            \
  extern "C" __global__ void q_cost_f32_##N(                                                                   \
      const float* __restrict__ logits, int splits, long long split_stride, long long head_stride,             \
      long long row_stride, const float* __restrict__ bias, const float* __restrict__ bins,                    \
      const float* __restrict__ ret, float* __restrict__ out, long long rows, int nb, int heads, float c,      \
      float discount) {                                                                                        \
    q_cost<N>(logits, splits, split_stride, head_stride, row_stride, bias, bins, ret, out, rows, nb, heads, c,  \
              discount);                                                                                       \
  }

SWM_TDMPC2_KERNELS(2)
SWM_TDMPC2_KERNELS(4)
SWM_TDMPC2_KERNELS(8)
SWM_TDMPC2_KERNELS(16)

extern "C" __global__ void concat_rows_f32(const float* __restrict__ z, long long repeat, int zdim,
                                           const float* __restrict__ a, long long a_stride, int adim, int width,
                                           float* __restrict__ out, long long rows) {
  const long long total = rows * width;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / width;
    const int c = (int)(i - r * width);
    out[i] = c < zdim ? z[(r / repeat) * zdim + c] : c < zdim + adim ? a[r * a_stride + (c - zdim)] : 0.0f;
  }
}

extern "C" __global__ void step_inputs_f32(const float* __restrict__ z, long long repeat, int zdim,
                                           const float* __restrict__ a, long long a_stride, int adim, int width,
                                           float* __restrict__ out, long long rows, int steps) {
  const long long per_step = rows * width;
  const long long total = per_step * steps;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const int s = (int)(i / per_step);
    const long long r = (i - s * per_step) / width;
    const int c = (int)(i - s * per_step - r * width);
    if (c < zdim) {
      out[i] = s == 0 ? z[(r / repeat) * zdim + c] : 0.0f;
    } else {
      out[i] = c < zdim + adim ? a[r * a_stride + s * adim + (c - zdim)] : 0.0f;
    }
  }
}
