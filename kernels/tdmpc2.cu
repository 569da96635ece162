// Fused row kernels for TD-MPC2 (docs/spec/tdmpc2.md §2, §5). Rows of a contiguous (rows, dim) matrix, one warp per row,
// each lane holding N values (dim ≤ 32·N; the launcher picks N ∈ {2, 4, 8, 16}).
//
//   norm_act_f32_N:     y = act(LayerNorm(x)·γ + β) — a NormedLinear after its GEMM. act 0: Mish, x·tanh(softplus x);
//                       act 1: SimNorm, a softmax over each group of `group` consecutive values (group a power of
//                       two ≤ 32: a group is `group` adjacent lanes holding the same value slot).
//   two_hot_inv_f32_N:  out[row] = symexp(Σ_i softmax(logits)_i · bins_i) — a reward or Q head's scalar.

#include "rows.cuh"

template <int N>
__device__ __forceinline__ void norm_act(const float* __restrict__ x, const float* __restrict__ gamma,
                                         const float* __restrict__ beta, float* __restrict__ out, long long rows,
                                         int dim, float eps, int act, int group) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    float v[N], g[N], b[N];
    load_row(v, x + row * dim, lane, dim);
    load_row(g, gamma, lane, dim);
    load_row(b, beta, lane, dim);
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

template <int N>
__device__ __forceinline__ void two_hot_inv(const float* __restrict__ logits, const float* __restrict__ bins,
                                            float* __restrict__ out, long long rows, int nb) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    const float* lr = logits + row * nb;
    float v[N];
    float m = -INFINITY;
#pragma unroll
    for (int c = 0; c < N; ++c) {
      const int i = lane + 32 * c;
      v[c] = i < nb ? lr[i] : -INFINITY;
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
    if (lane == 0) {
      const float mean = dot / sum;
      out[row] = copysignf(expf(fabsf(mean)) - 1.0f, mean);
    }
  }
}

#define SWM_TDMPC2_KERNELS(N)                                                                                  \
  extern "C" __global__ void norm_act_f32_##N(const float* __restrict__ x, const float* __restrict__ gamma,    \
                                              const float* __restrict__ beta, float* __restrict__ out,         \
                                              long long rows, int dim, float eps, int act, int group) {        \
    norm_act<N>(x, gamma, beta, out, rows, dim, eps, act, group);                                              \
  }                                                                                                            \
  extern "C" __global__ void two_hot_inv_f32_##N(const float* __restrict__ logits, const float* __restrict__ bins, \
                                                 float* __restrict__ out, long long rows, int nb) {           \
    two_hot_inv<N>(logits, bins, out, rows, nb);                                                               \
  }

SWM_TDMPC2_KERNELS(2)
SWM_TDMPC2_KERNELS(4)
SWM_TDMPC2_KERNELS(8)
SWM_TDMPC2_KERNELS(16)
