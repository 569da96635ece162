// Fused kernels for the LeWM predictor's rollout windows (lewm.md §3.5, §6). Tokens are rows of a contiguous
// (rows, dim) matrix, rows = N·w: candidate n = row / w, window position p = row % w. The per-token AdaLN
// modulation lives in a table computed once per scoring call without its bias, (N, table_len, table_stride),
// plus the bias (table_stride): the vectors of window position p sit at table row n·table_len + lo + p (the
// action block paired with that frame), at the column offset of the block and chunk.
//
//   adaln_double_norm_f32:  u = LayerNorm_affine( LayerNorm_plain(x)·scale + shift ) — a ConditionalBlock's
//                           modulated norm followed by the attention's / feed-forward's own LayerNorm.
//   residual_norm_f32:      x' = x + gate ⊙ (y + bias), then u = adaln_double_norm(x') with the next norm's
//                           vectors (both written). One kernel per residual branch of a block.
//   window_attention_f32:   causal softmax attention inside each candidate's window on the fused QKV projection
//                           '(qkv h d)' (query rows pre-scaled by 1/sqrt(dh)): keys/values of positions < first
//                           come from a per-block cache (N, cap, 3·heads·dh), those of the new positions from
//                           `fresh` (N, q, 3·heads·dh), which the kernel appends to the cache; queries from
//                           q_start on are answered. dh ≤ 128.
//   gate_residual_f32:      x' = x + gate ⊙ (y + bias) alone (the last block).
// Row kernels use one warp per row, dim ≤ 32·SWM_LANE_ITEMS, values held in registers.

#define SWM_LANE_ITEMS 16
#define SWM_HEAD_ITEMS 4

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

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

// LayerNorm_affine(LayerNorm_plain(v)·scale + shift) of the lane's values, in place.
__device__ __forceinline__ void double_norm(float (&v)[SWM_LANE_ITEMS], int lane, int dim, const float* m,
                                            const float* mb, int shift_off, int scale_off, const float* gamma,
                                            const float* beta, float eps_plain, float eps_affine) {
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
    if (lane + 32 * c < dim) s += v[c];
  }
  const float mean = warp_sum(s) / dim;
  float q = 0.0f;
#pragma unroll
  for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
    if (lane + 32 * c < dim) q += (v[c] - mean) * (v[c] - mean);
  }
  const float inv = rsqrtf(warp_sum(q) / dim + eps_plain);
  s = 0.0f;
#pragma unroll
  for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
    const int i = lane + 32 * c;
    if (i < dim) {
      const float scale = m[scale_off + i] + mb[scale_off + i];
      const float shift = m[shift_off + i] + mb[shift_off + i];
      v[c] = (v[c] - mean) * inv * scale + shift;
      s += v[c];
    }
  }
  const float mean2 = warp_sum(s) / dim;
  q = 0.0f;
#pragma unroll
  for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
    if (lane + 32 * c < dim) q += (v[c] - mean2) * (v[c] - mean2);
  }
  const float inv2 = rsqrtf(warp_sum(q) / dim + eps_affine);
#pragma unroll
  for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
    const int i = lane + 32 * c;
    if (i < dim) v[c] = (v[c] - mean2) * inv2 * gamma[i] + beta[i];
  }
}

extern "C" __global__ void adaln_double_norm_f32(const float* __restrict__ x, const float* __restrict__ table,
                                                 const float* __restrict__ table_bias, long long table_stride,
                                                 int table_len, int lo, int w, int shift_off, int scale_off,
                                                 const float* __restrict__ gamma, const float* __restrict__ beta,
                                                 float* __restrict__ out, long long rows, int dim, float eps_plain,
                                                 float eps_affine) {
  const int lane = threadIdx.x & 31;
  const Modulation mod{table, table_bias, table_stride, table_len, lo, w};
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    const float* xr = x + row * dim;
    float v[SWM_LANE_ITEMS];
#pragma unroll
    for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
      const int i = lane + 32 * c;
      v[c] = i < dim ? xr[i] : 0.0f;
    }
    double_norm(v, lane, dim, mod.row(row), table_bias, shift_off, scale_off, gamma, beta, eps_plain, eps_affine);
    float* o = out + row * dim;
#pragma unroll
    for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
      const int i = lane + 32 * c;
      if (i < dim) o[i] = v[c];
    }
  }
}

extern "C" __global__ void residual_norm_f32(const float* __restrict__ y, const float* __restrict__ bias,
                                             const float* __restrict__ table, const float* __restrict__ table_bias,
                                             long long table_stride, int table_len, int lo, int w, int gate_off,
                                             const float* __restrict__ x, float* __restrict__ x_out,
                                             int shift_off, int scale_off, const float* __restrict__ gamma,
                                             const float* __restrict__ beta, float* __restrict__ u_out,
                                             long long rows, int dim, float eps_plain, float eps_affine) {
  const int lane = threadIdx.x & 31;
  const Modulation mod{table, table_bias, table_stride, table_len, lo, w};
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    const float* m = mod.row(row);
    float v[SWM_LANE_ITEMS];
#pragma unroll
    for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
      const int i = lane + 32 * c;
      if (i < dim) {
        const float g = m[gate_off + i] + table_bias[gate_off + i];
        v[c] = x[row * dim + i] + g * (y[row * dim + i] + (bias ? bias[i] : 0.0f));
        x_out[row * dim + i] = v[c];
      } else {
        v[c] = 0.0f;
      }
    }
    double_norm(v, lane, dim, m, table_bias, shift_off, scale_off, gamma, beta, eps_plain, eps_affine);
#pragma unroll
    for (int c = 0; c < SWM_LANE_ITEMS; ++c) {
      const int i = lane + 32 * c;
      if (i < dim) u_out[row * dim + i] = v[c];
    }
  }
}

extern "C" __global__ void gate_residual_f32(const float* __restrict__ y, const float* __restrict__ bias,
                                             const float* __restrict__ table, const float* __restrict__ table_bias,
                                             long long table_stride, int table_len, int lo, int w, int gate_off,
                                             const float* __restrict__ x, float* __restrict__ out, long long rows,
                                             int dim) {
  const Modulation mod{table, table_bias, table_stride, table_len, lo, w};
  const long long total = rows * dim;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long row = i / dim;
    const int d = (int)(i - row * dim);
    const float g = mod.row(row)[gate_off + d] + table_bias[gate_off + d];
    out[i] = x[i] + g * (y[i] + (bias ? bias[d] : 0.0f));
  }
}

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
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < SWM_HEAD_ITEMS; ++i) {
        const int d = lane + 32 * i;
        if (d < dh) dot += qv[i] * kr[d];
      }
      const float s = warp_sum(dot);
      const float m_new = fmaxf(m, s);
      const float correction = expf(m - m_new);
      const float e = expf(s - m_new);
      l = l * correction + e;
#pragma unroll
      for (int i = 0; i < SWM_HEAD_ITEMS; ++i) {
        const int d = lane + 32 * i;
        if (d < dh) acc[i] = acc[i] * correction + e * vr[d];
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
