// Fused kernels for the LeWM predictor's rollout windows (lewm.md §3.5, §6). Tokens are rows of a contiguous
// (rows, dim) matrix, rows = N·w: candidate n = row / w, window position p = row % w. The per-token AdaLN
// modulation lives in a table computed once per scoring call, (N, table_len, table_stride): the vectors of
// window position p sit at table row n·table_len + lo + p (the action block paired with that frame), at the
// column offset of the block and chunk.
//
//   adaln_double_norm_f32: out = LayerNorm_affine( LayerNorm_plain(x)·scale + shift )  — a ConditionalBlock's
//                          modulated norm followed by the attention's / feed-forward's own LayerNorm. One warp
//                          per row, dim ≤ 1024.
//   window_attention_f32:  causal softmax attention inside each candidate's window, reading the fused QKV
//                          projections (N, cap, 3·heads·dh) laid out '(qkv h d)' (query rows pre-scaled by
//                          1/sqrt(dh)) of the window's positions — a whole window, or a cache that grows by one
//                          position per rollout step — and answering the queries from q_start on. dh ≤ 128.
//                          One warp per (candidate, head, query).
//   gate_residual_f32:     out = x + gate ⊙ (Σ_s y_s + bias) — a gated residual branch with the Linear's bias and
//                          the partial sums of a split-K matmul (y: splits × (rows, dim)) folded in.

#define SWM_MAX_DIM_PER_LANE 32

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ const float* table_row(const float* table, long long table_stride, int table_len, int lo,
                                                  int w, long long row) {
  const long long n = row / w;
  const int p = (int)(row % w);
  return table + (n * table_len + lo + p) * table_stride;
}

extern "C" __global__ void adaln_double_norm_f32(const float* __restrict__ x, const float* __restrict__ table,
                                                 long long table_stride, int table_len, int lo, int w,
                                                 int shift_off, int scale_off, const float* __restrict__ gamma,
                                                 const float* __restrict__ beta, float* __restrict__ out,
                                                 long long rows, int dim, float eps_plain, float eps_affine) {
  const int lane = threadIdx.x & 31;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
    const float* xr = x + row * dim;
    float v[SWM_MAX_DIM_PER_LANE];
    float s = 0.0f;
    int count = 0;
    for (int i = lane; i < dim; i += 32) {
      v[count] = xr[i];
      s += v[count++];
    }
    const float mean = warp_sum(s) / dim;
    float q = 0.0f;
    for (int c = 0; c < count; ++c) q += (v[c] - mean) * (v[c] - mean);
    const float inv = rsqrtf(warp_sum(q) / dim + eps_plain);
    const float* m = table_row(table, table_stride, table_len, lo, w, row);
    s = 0.0f;
    for (int c = 0, i = lane; c < count; ++c, i += 32) {
      v[c] = (v[c] - mean) * inv * m[scale_off + i] + m[shift_off + i];
      s += v[c];
    }
    const float mean2 = warp_sum(s) / dim;
    q = 0.0f;
    for (int c = 0; c < count; ++c) q += (v[c] - mean2) * (v[c] - mean2);
    const float inv2 = rsqrtf(warp_sum(q) / dim + eps_affine);
    float* o = out + row * dim;
    for (int c = 0, i = lane; c < count; ++c, i += 32) o[i] = (v[c] - mean2) * inv2 * gamma[i] + beta[i];
  }
}

extern "C" __global__ void window_attention_f32(const float* __restrict__ qkv, float* __restrict__ out,
                                                int candidates, int cap, int valid, int q_start, int heads,
                                                int dh) {
  // qkv: (candidates, cap, 3·heads·dh), positions 0..valid hold keys/values; queries q_start..valid-1 are
  // answered, output row c·(valid − q_start) + (p − q_start). Online softmax: no per-key storage.
  const int lane = threadIdx.x & 31;
  const int per_candidate = heads * (valid - q_start);
  const long long total = (long long)candidates * per_candidate;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  const int inner = heads * dh;
  for (long long id = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); id < total; id += warps) {
    const int c = (int)(id / per_candidate);
    const int rem = (int)(id - (long long)c * per_candidate);
    const int h = rem / (valid - q_start);
    const int p = q_start + rem % (valid - q_start);
    const float* base = qkv + (long long)c * cap * 3 * inner + h * dh;
    const float* q = base + (long long)p * 3 * inner;
    float qv[4], acc[4];
    int nd = 0;
    for (int d = lane; d < dh && nd < 4; d += 32) {
      qv[nd] = q[d];
      acc[nd++] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int k = 0; k <= p; ++k) {
      const float* kr = base + (long long)k * 3 * inner + inner;
      float dot = 0.0f;
      for (int i = 0; i < nd; ++i) dot += qv[i] * kr[lane + 32 * i];
      const float s = warp_sum(dot);
      const float m_new = fmaxf(m, s);
      const float correction = expf(m - m_new);
      const float e = expf(s - m_new);
      l = l * correction + e;
      const float* vr = kr + inner;
      for (int i = 0; i < nd; ++i) acc[i] = acc[i] * correction + e * vr[lane + 32 * i];
      m = m_new;
    }
    float* o = out + ((long long)c * (valid - q_start) + (p - q_start)) * inner + h * dh;
    const float inv = 1.0f / l;
    for (int i = 0; i < nd; ++i) o[lane + 32 * i] = acc[i] * inv;
  }
}

extern "C" __global__ void gate_residual_f32(const float* __restrict__ y, int splits, const float* __restrict__ bias,
                                             const float* __restrict__ table, long long table_stride, int table_len,
                                             int lo, int w, int gate_off, const float* __restrict__ x,
                                             float* __restrict__ out, long long rows, int dim) {
  const long long total = rows * dim;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long row = i / dim;
    const int d = (int)(i % dim);
    const float g = table_row(table, table_stride, table_len, lo, w, row)[gate_off + d];
    float acc = y[i];
    for (int s = 1; s < splits; ++s) acc += y[s * total + i];
    const float b = bias ? bias[d] : 0.0f;
    out[i] = x[i] + g * (acc + b);
  }
}
