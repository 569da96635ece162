// Fused kernels for the LeWM predictor's rollout windows (docs/spec/lewm.md §3.5, §6). Tokens are rows of a contiguous
// (rows, dim) matrix, rows = N·w: candidate n = row / w, window position p = row % w. The per-token AdaLN
// modulation lives in a table computed once per scoring call without its bias, (N, table_len, table_stride),
// plus the bias (table_stride): the vectors of window position p sit at table row n·table_len + lo + p (the
// action block paired with that frame), at the column offset of the block and chunk.
//
//   adaln_double_norm_f32_N: u = LayerNorm_affine( LayerNorm_plain(x)·scale + shift ) — a ConditionalBlock's
//                           modulated norm followed by the attention's / feed-forward's own LayerNorm.
//   residual_norm_f32_N:    x' = x + gate ⊙ (y + bias), then u = adaln_double_norm(x') with the next norm's
//                           vectors (both written). One kernel per residual branch of a block. y is given as
//                           `splits` partial sums (split-K GEMM output, `split_stride` apart), added in order.
//   window_attention_f32:   causal softmax attention inside each candidate's window on the fused QKV projection
//                           '(qkv h d)' (query rows pre-scaled by 1/sqrt(dh)): keys/values of positions < first
//                           come from a per-block cache (N, cap, 3·heads·dh), those of the new positions from
//                           `fresh` (N, q, 3·heads·dh), which the kernel appends to the cache; queries from
//                           q_start on are answered. dh ≤ 128.
//   gate_residual_f32_N:    x' = x + gate ⊙ (y + bias) alone (the last block), y as partial sums too.
// Row kernels use one warp per row, each lane holding N values (dim ≤ 32·N, N ∈ {2, 4, 6, 8, 12, 16}: the
// launcher picks the smallest that fits), with every load issued before the reductions.

#include "rows.cuh"

#define SWM_HEAD_ITEMS 4

struct Modulation {
  const float* table;
  const float* bias;
  long long stride;
  int len;
  int lo;
  int w;
  __device__ __forceinline__ const float* row(long long r) const {
    const long long n = r / w;
    return table + (n * len + lo + (int)(r - n * w)) * stride;
  }
};

// The vectors of one modulated double norm, loaded for the lane's columns.
template <int N>
struct NormVectors {
  float shift[N], scale[N], gamma[N], beta[N];
  __device__ __forceinline__ void load(int lane, int dim, const float* m, const float* mb, int shift_off,
                                       int scale_off, const float* g, const float* b) {
#pragma unroll
    for (int c = 0; c < N; ++c) {
      const int i = lane + 32 * c;
      const bool in = i < dim;
      shift[c] = in ? m[shift_off + i] + mb[shift_off + i] : 0.0f;
      scale[c] = in ? m[scale_off + i] + mb[scale_off + i] : 0.0f;
      gamma[c] = in ? g[i] : 0.0f;
      beta[c] = in ? b[i] : 0.0f;
    }
  }
};

// LayerNorm_affine(LayerNorm_plain(v)·scale + shift) of the lane's values, in place.
template <int N>
__device__ __forceinline__ void double_norm(float (&v)[N], int lane, int dim, const NormVectors<N>& nv,
                                            float eps_plain, float eps_affine) {
  float mean, inv;
  moments(v, lane, dim, eps_plain, mean, inv);
#pragma unroll
  for (int c = 0; c < N; ++c) v[c] = lane + 32 * c < dim ? (v[c] - mean) * inv * nv.scale[c] + nv.shift[c] : 0.0f;
  moments(v, lane, dim, eps_affine, mean, inv);
#pragma unroll
  for (int c = 0; c < N; ++c) v[c] = (v[c] - mean) * inv * nv.gamma[c] + nv.beta[c];
}

template <int N>
__device__ __forceinline__ void adaln_double_norm(const float* __restrict__ x, Modulation mod, int shift_off,
                                                  int scale_off, const float* __restrict__ gamma,
                                                  const float* __restrict__ beta, float* __restrict__ out,
                                                  long long rows, int dim, float eps_plain, float eps_affine) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    float v[N];
    load_row(v, x + row * dim, lane, dim);
    NormVectors<N> nv;
    nv.load(lane, dim, mod.row(row), mod.bias, shift_off, scale_off, gamma, beta);
    double_norm(v, lane, dim, nv, eps_plain, eps_affine);
    store_row(v, out + row * dim, lane, dim);
  }
}

// v = x + gate ⊙ (Σ_z y_z + bias) for the lane's columns of `row` (partials added in split order, several splits'
// loads in flight together: `add_splits`).
template <int N>
__device__ __forceinline__ void gated_branch(float (&v)[N], int lane, int dim, long long row, const float* y,
                                             int splits, long long split_stride, const float* bias,
                                             const float* m, const float* mb, int gate_off, const float* x) {
  // Every operand but the later partial sums is loaded first, so that its latency overlaps theirs.
  float sum[N], gate[N], base[N], b[N];
#pragma unroll
  for (int c = 0; c < N; ++c) {
    const int i = min(lane + 32 * c, dim - 1);
    sum[c] = y[row * dim + i];
    gate[c] = m[gate_off + i] + mb[gate_off + i];
    base[c] = x[row * dim + i];
    b[c] = bias ? bias[i] : 0.0f;
  }
  add_splits(sum, y + row * dim, splits, split_stride, lane, 32, dim);
#pragma unroll
  for (int c = 0; c < N; ++c) v[c] = lane + 32 * c < dim ? base[c] + gate[c] * (sum[c] + b[c]) : 0.0f;
}

template <int N>
__device__ __forceinline__ void residual_norm(const float* __restrict__ y, int splits, long long split_stride,
                                              const float* __restrict__ bias, Modulation mod, int gate_off,
                                              const float* __restrict__ x, float* __restrict__ x_out, int shift_off,
                                              int scale_off, const float* __restrict__ gamma,
                                              const float* __restrict__ beta, float* __restrict__ u_out,
                                              long long rows, int dim, float eps_plain, float eps_affine) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    const float* m = mod.row(row);
    float v[N];
    gated_branch(v, lane, dim, row, y, splits, split_stride, bias, m, mod.bias, gate_off, x);
    NormVectors<N> nv;
    nv.load(lane, dim, m, mod.bias, shift_off, scale_off, gamma, beta);
    store_row(v, x_out + row * dim, lane, dim);
    double_norm(v, lane, dim, nv, eps_plain, eps_affine);
    store_row(v, u_out + row * dim, lane, dim);
  }
}

template <int N>
__device__ __forceinline__ void gate_residual(const float* __restrict__ y, int splits, long long split_stride,
                                              const float* __restrict__ bias, Modulation mod, int gate_off,
                                              const float* __restrict__ x, float* __restrict__ out, long long rows,
                                              int dim) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    float v[N];
    gated_branch(v, lane, dim, row, y, splits, split_stride, bias, mod.row(row), mod.bias, gate_off, x);
    store_row(v, out + row * dim, lane, dim);
  }
}

#define SWM_TABLE_PARAMS                                                                                  \
  const float *__restrict__ table, const float *__restrict__ table_bias, long long table_stride, int table_len, \
      int lo, int w
#define SWM_TABLE Modulation{table, table_bias, table_stride, table_len, lo, w}

#define SWM_ROW_KERNELS(N)                                                                                       \
  extern "C" __global__ void adaln_double_norm_f32_##N(                                                         \
      const float* __restrict__ x, SWM_TABLE_PARAMS, int shift_off, int scale_off, const float* __restrict__ gamma, \
      const float* __restrict__ beta, float* __restrict__ out, long long rows, int dim, float eps_plain,         \
      float eps_affine) {                                                                                       \
    adaln_double_norm<N>(x, SWM_TABLE, shift_off, scale_off, gamma, beta, out, rows, dim, eps_plain, eps_affine); \
  }                                                                                                             \
  extern "C" __global__ void residual_norm_f32_##N(                                                             \
      const float* __restrict__ y, int splits, long long split_stride, const float* __restrict__ bias,          \
      SWM_TABLE_PARAMS, int gate_off, const float* __restrict__ x, float* __restrict__ x_out, int shift_off,    \
      int scale_off, const float* __restrict__ gamma, const float* __restrict__ beta, float* __restrict__ u_out, \
      long long rows, int dim, float eps_plain, float eps_affine) {                                             \
    residual_norm<N>(y, splits, split_stride, bias, SWM_TABLE, gate_off, x, x_out, shift_off, scale_off, gamma,  \
                     beta, u_out, rows, dim, eps_plain, eps_affine);                                            \
  }                                                                                                             \
  extern "C" __global__ void gate_residual_f32_##N(                                                             \
      const float* __restrict__ y, int splits, long long split_stride, const float* __restrict__ bias,          \
      SWM_TABLE_PARAMS, int gate_off, const float* __restrict__ x, float* __restrict__ out, long long rows,     \
      int dim) {                                                                                                \
    gate_residual<N>(y, splits, split_stride, bias, SWM_TABLE, gate_off, x, out, rows, dim);                    \
  }

SWM_ROW_KERNELS(2)
SWM_ROW_KERNELS(4)
SWM_ROW_KERNELS(6)
SWM_ROW_KERNELS(8)
SWM_ROW_KERNELS(12)
SWM_ROW_KERNELS(16)

extern "C" __global__ void window_attention_f32(const float* __restrict__ fresh, float* __restrict__ cache,
                                                float* __restrict__ out, int candidates, int cap, int first,
                                                int q, int q_start, int heads, int dh) {
  const int lane = threadIdx.x & 31;
  const int valid = first + q;
  const int queries = valid - q_start;
  const int per_candidate = heads * queries;
  const long long total = (long long)candidates * per_candidate;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  const int inner = heads * dh;
  const long long row3 = 3LL * inner;
  for (long long id = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); id < total; id += warps) {
    const int c = (int)(id / per_candidate);
    const int rem = (int)(id - (long long)c * per_candidate);
    const int h = rem / queries;
    const int p = q_start + rem % queries;
    const float* fresh_c = fresh + (long long)c * q * row3 + h * dh;
    float* cache_c = cache ? cache + (long long)c * cap * row3 + h * dh : nullptr;
    // Append this head's K/V of the new positions this warp owns: its own query position, and for the warp of
    // the last query when earlier new positions have no warp (q_start > first), those too.
    if (cache_c) {
      const int from = (p == valid - 1 && q_start > first) ? first : p;
      for (int k = from; k <= p; ++k) {
        const float* src = fresh_c + (long long)(k - first) * row3;
        float* dst = cache_c + (long long)k * row3;
        for (int d = lane; d < dh; d += 32) {
          dst[inner + d] = src[inner + d];
          dst[2 * inner + d] = src[2 * inner + d];
        }
      }
    }
    const float* qrow = fresh_c + (long long)(p - first) * row3;
    float qv[SWM_HEAD_ITEMS], acc[SWM_HEAD_ITEMS];
#pragma unroll
    for (int i = 0; i < SWM_HEAD_ITEMS; ++i) {
      const int d = lane + 32 * i;
      qv[i] = d < dh ? qrow[d] : 0.0f;
      acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int k = 0; k <= p; ++k) {
      const float* kr = (k < first ? cache_c + (long long)k * row3 : fresh_c + (long long)(k - first) * row3) + inner;
      const float* vr = kr + inner;
      // The key's and the value's columns loaded together, from columns clamped into the head (unpredicated loads;
      // columns past dh are not used), so the value's latency hides behind the score's reduction.
      float kv[SWM_HEAD_ITEMS], vv[SWM_HEAD_ITEMS];
#pragma unroll
      for (int i = 0; i < SWM_HEAD_ITEMS; ++i) {
        const int d = min(lane + 32 * i, dh - 1);
        kv[i] = kr[d];
        vv[i] = vr[d];
      }
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < SWM_HEAD_ITEMS; ++i) {
        const int d = lane + 32 * i;
        if (d < dh) dot += qv[i] * kv[i];
      }
      const float s = warp_sum(dot);
      const float m_new = fmaxf(m, s);
      const float correction = expf(m - m_new);
      const float e = expf(s - m_new);
      l = l * correction + e;
#pragma unroll
      for (int i = 0; i < SWM_HEAD_ITEMS; ++i) {
        const int d = lane + 32 * i;
        if (d < dh) acc[i] = acc[i] * correction + e * vv[i];
      }
      m = m_new;
    }
    float* o = out + ((long long)c * queries + (p - q_start)) * inner + h * dh;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < SWM_HEAD_ITEMS; ++i) {
      const int d = lane + 32 * i;
      if (d < dh) o[d] = acc[i] * inv;
    }
  }
}
