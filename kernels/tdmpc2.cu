// Fused row kernels for TD-MPC2 (docs/spec/tdmpc2.md §2, §5). Rows of a contiguous (rows, dim) matrix, one warp per row,
// each lane holding N values (dim ≤ 32·N; the launcher picks N ∈ {2, 4, 8, 16}).
//
//   norm_act_f32_N:     y = act(LayerNorm(x)·γ + β) — a NormedLinear after its GEMM. act 0: Mish, x·tanh(softplus x);
//                       act 1: SimNorm, a softmax over each group of `group` consecutive values (group a power of
//                       two ≤ 32: a group is `group` adjacent lanes holding the same value slot). `heads` layers side
//                       by side: row r is head r % heads of its (rows / heads) output row, with γ, β at head·dim.
//                       The input may be a GEMM's unreduced output: head h of row i is the sum over s < splits of
//                       x[h·head_stride + i·row_stride + s·split_stride ..], plus bias[h·dim ..] when bias is set.
//   two_hot_inv_f32_N:  v = symexp(Σ_i softmax(logits)_i · bins_i) — a reward or Q head's scalar, logits rows `ld`
//                       apart; out[row] = v, or with `accumulate` out[row] + scale·v (the discounted return).
//                       Both two-hot kernels read logits left as a GEMM's partial sums plus bias (see norm_act).
//   concat_rows_f32:    out[r] = [z[r / repeat], a[r·a_stride ..]]: a model step's input (latent, action) in one
//                       launch, the latent repeated over a candidate batch and the action read from its horizon
//                       step in place.
//   q_cost_f32_N:       the planning cost of a row from the Q ensemble's logits (heads blocks of nb per row):
//                       q_h = two-hot value of head h, q̄ = mean, σ² = Σ(q_h − q̄)² / (heads − 1),
//                       out[row] = −(ret[row] + discount·(q̄ − c·|q̄|·σ)).

#include "rows.cuh"

// Most Q heads `q_cost_f32_N` takes (the launcher checks).
#define SWM_MAX_HEADS 8

template <int N>
__device__ __forceinline__ void norm_act(const float* __restrict__ x, int splits, long long split_stride,
                                         long long head_stride, long long row_stride, const float* __restrict__ bias,
                                         const float* __restrict__ gamma, const float* __restrict__ beta,
                                         float* __restrict__ out, long long rows, int dim, float eps, int act,
                                         int group, int heads) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    float v[N], g[N], b[N];
    const int head = (int)(row % heads);
    // The GEMM's partial sums added in split order, then its bias: the values its reduction kernel would write.
    const float* src = x + head * head_stride + (row / heads) * row_stride;
    load_row(v, src, lane, dim);
    for (int s = 1; s < splits; ++s) {
      float p[N];
      load_row(p, src + s * split_stride, lane, dim);
#pragma unroll
      for (int c = 0; c < N; ++c) v[c] += p[c];
    }
    if (bias != nullptr) {
      load_row(b, bias + head * dim, lane, dim);
#pragma unroll
      for (int c = 0; c < N; ++c) v[c] += b[c];
    }
    load_row(g, gamma + head * dim, lane, dim);
    load_row(b, beta + head * dim, lane, dim);
    float mean, inv;
    moments(v, lane, dim, eps, mean, inv);
#pragma unroll
    for (int c = 0; c < N; ++c) v[c] = (v[c] - mean) * inv * g[c] + b[c];
    if (act == 0) {
#pragma unroll
      for (int c = 0; c < N; ++c) v[c] = v[c] * tanhf(log1pf(expf(v[c])));
    } else {
#pragma unroll
      for (int c = 0; c < N; ++c) {
        float m = v[c];
        for (int o = 1; o < group; o <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        const float e = expf(v[c] - m);
        float t = e;
        for (int o = 1; o < group; o <<= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        v[c] = e / t;
      }
    }
    store_row(v, out + row * dim, lane, dim);
  }
}

// The two-hot value of one row of logits (every lane returns it): the logits are `splits` partial sums
// `split_stride` apart at `lr`, plus `bias` when set (a GEMM's unreduced output, added in its reduction's order).
template <int N>
__device__ __forceinline__ float two_hot_value(const float* __restrict__ lr, int splits, long long split_stride,
                                               const float* __restrict__ bias, const float* __restrict__ bins,
                                               int lane, int nb) {
  float v[N];
  float m = -INFINITY;
#pragma unroll
  for (int c = 0; c < N; ++c) {
    const int i = lane + 32 * c;
    if (i < nb) {
      float x = lr[i];
      for (int s = 1; s < splits; ++s) x += lr[s * split_stride + i];
      if (bias != nullptr) x += bias[i];
      v[c] = x;
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

template <int N>
__device__ __forceinline__ void q_cost(const float* __restrict__ logits, int splits, long long split_stride,
                                       long long head_stride, long long row_stride, const float* __restrict__ bias,
                                       const float* __restrict__ bins, const float* __restrict__ ret,
                                       float* __restrict__ out, long long rows, int nb, int heads, float c,
                                       float discount) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    const float* lr = logits + row * row_stride;
    float q[SWM_MAX_HEADS];
    float sum = 0.0f;
#pragma unroll
    for (int h = 0; h < SWM_MAX_HEADS; ++h) {
      if (h < heads) {
        q[h] = two_hot_value<N>(lr + h * head_stride, splits, split_stride, bias != nullptr ? bias + h * nb : nullptr,
                                bins, lane, nb);
        sum += q[h];
      }
    }
    const float mean = __fmul_rn(sum, 1.0f / (float)heads);
    float sq = 0.0f;
#pragma unroll
    for (int h = 0; h < SWM_MAX_HEADS; ++h) {
      if (h < heads) {
        const float d = __fsub_rn(q[h], mean);
        sq = __fadd_rn(sq, __fmul_rn(d, d));
      }
    }
    const float sd = __fsqrt_rn(__fmul_rn(sq, 1.0f / (float)(heads - 1)));
    const float conservative = __fsub_rn(mean, __fmul_rn(__fmul_rn(fabsf(mean), sd), c));
    if (lane == 0) out[row] = -__fadd_rn(ret[row], __fmul_rn(conservative, discount));
  }
}

#define SWM_TDMPC2_KERNELS(N)                                                                                  \
  extern "C" __global__ void norm_act_f32_##N(                                                                 \
      const float* __restrict__ x, int splits, long long split_stride, long long head_stride,                   \
      long long row_stride, const float* __restrict__ bias, const float* __restrict__ gamma,                   \
      const float* __restrict__ beta, float* __restrict__ out, long long rows, int dim, float eps, int act,    \
      int group, int heads) {                                                                                  \
    norm_act<N>(x, splits, split_stride, head_stride, row_stride, bias, gamma, beta, out, rows, dim, eps, act,  \
                group, heads);                                                                                 \
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
                                           const float* __restrict__ a, long long a_stride, int adim,
                                           float* __restrict__ out, long long rows) {
  const long long width = zdim + adim;
  const long long total = rows * width;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / width;
    const int c = (int)(i - r * width);
    out[i] = c < zdim ? z[(r / repeat) * zdim + c] : a[r * a_stride + (c - zdim)];
  }
}
