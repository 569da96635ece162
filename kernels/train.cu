// Forward and backward kernels of the training path (src/ops/train.rs), over contiguous (rows, cols) f32 tensors:
//   softmax_rows:        y = softmax(x) along the first `valid` values of each row (a row of −∞ gives 0s), 0 in the
//                        rest (columns padded to a multiple of 4: the attention's 16-byte-aligned rows)
//   softmax_rows_bwd:    dx = y ⊙ (g − Σ g⊙y)
//   layer_norm:          y = (x − μ)·rstd·γ + β          (biased variance, as PyTorch)
//   layer_norm_bwd_dx:   dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ⊙x̂)),  ĝ = g⊙γ,  x̂ = (x − μ)·rstd
//   layer_norm_bwd_params: per block of rows, the partial sums Σ g⊙x̂ (dγ) and Σ g (dβ), (blocks, 2·cols)
//   gelu, gelu_bwd:      y = x·Φ(x);  dx = g·(Φ(x) + x·φ(x))  (exact erf GELU; float4s when aligned)
//   gather_rows:         a strided permutation of rows of d floats (the attention's head split and merge)
// Row kernels run one warp per row (grid-stride over rows); a row's passes re-read it from L1/L2.

#include "rows.cuh"

__device__ __forceinline__ long long first_warp() {
  return (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
}
__device__ __forceinline__ long long warp_stride() { return ((long long)gridDim.x * blockDim.x) >> 5; }

extern "C" __global__ void softmax_rows_f32(const float* __restrict__ x, float* __restrict__ y, long long rows,
                                            int cols, int valid) {
  const int lane = threadIdx.x & 31;
  for (long long r = first_warp(); r < rows; r += warp_stride()) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    for (int c = valid + lane; c < cols; c += 32) yr[c] = 0.0f;
    float m = -INFINITY;
    for (int c = lane; c < valid; c += 32) m = fmaxf(m, xr[c]);
    m = warp_max(m);
    if (m == -INFINITY) {
      for (int c = lane; c < valid; c += 32) yr[c] = 0.0f;
      continue;
    }
    float s = 0.0f;
    for (int c = lane; c < valid; c += 32) s += expf(xr[c] - m);
    const float inv = 1.0f / warp_sum(s);
    for (int c = lane; c < valid; c += 32) yr[c] = expf(xr[c] - m) * inv;
  }
}

extern "C" __global__ void softmax_rows_bwd_f32(const float* __restrict__ y, const float* __restrict__ g,
                                                float* __restrict__ dx, long long rows, int cols) {
  const int lane = threadIdx.x & 31;
  for (long long r = first_warp(); r < rows; r += warp_stride()) {
    const long long o = r * cols;
    float d = 0.0f;
    for (int c = lane; c < cols; c += 32) d += g[o + c] * y[o + c];
    d = warp_sum(d);
    for (int c = lane; c < cols; c += 32) dx[o + c] = y[o + c] * (g[o + c] - d);
  }
}

// Mean and 1/sqrt(var + eps) of a row, by the calling warp (two passes, as the variance of centred values).
__device__ __forceinline__ void row_moments(const float* __restrict__ xr, int cols, float eps, int lane,
                                            float& mean, float& rstd) {
  float s = 0.0f;
  for (int c = lane; c < cols; c += 32) s += xr[c];
  mean = warp_sum(s) / cols;
  float q = 0.0f;
  for (int c = lane; c < cols; c += 32) {
    const float d = xr[c] - mean;
    q += d * d;
  }
  rstd = rsqrtf(warp_sum(q) / cols + eps);
}

extern "C" __global__ void layer_norm_f32(const float* __restrict__ x, const float* __restrict__ gamma,
                                          const float* __restrict__ beta, float* __restrict__ y, long long rows,
                                          int cols, float eps) {
  const int lane = threadIdx.x & 31;
  for (long long r = first_warp(); r < rows; r += warp_stride()) {
    const float* xr = x + r * cols;
    float mean, rstd;
    row_moments(xr, cols, eps, lane, mean, rstd);
    for (int c = lane; c < cols; c += 32) y[r * cols + c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
  }
}

extern "C" __global__ void layer_norm_bwd_dx_f32(const float* __restrict__ x, const float* __restrict__ g,
                                                 const float* __restrict__ gamma, float* __restrict__ dx,
                                                 long long rows, int cols, float eps) {
  const int lane = threadIdx.x & 31;
  for (long long r = first_warp(); r < rows; r += warp_stride()) {
    const long long o = r * cols;
    float mean, rstd;
    row_moments(x + o, cols, eps, lane, mean, rstd);
    float a = 0.0f, b = 0.0f;
    for (int c = lane; c < cols; c += 32) {
      const float gg = g[o + c] * gamma[c];
      a += gg;
      b += gg * (x[o + c] - mean) * rstd;
    }
    a = warp_sum(a) / cols;
    b = warp_sum(b) / cols;
    for (int c = lane; c < cols; c += 32) {
      const float xhat = (x[o + c] - mean) * rstd;
      dx[o + c] = rstd * (g[o + c] * gamma[c] - a - xhat * b);
    }
  }
}

// One block per `chunk` rows (chunk ≤ LN_CHUNK): the warps compute the rows' statistics into shared memory, then
// each thread sums its columns over the chunk. partial is (gridDim.x, 2·cols): Σ g⊙x̂ then Σ g.
#define LN_CHUNK 128
extern "C" __global__ void layer_norm_bwd_params_f32(const float* __restrict__ x, const float* __restrict__ g,
                                                     float* __restrict__ partial, long long rows, int cols,
                                                     int chunk, float eps) {
  __shared__ float mean_s[LN_CHUNK], rstd_s[LN_CHUNK];
  const long long first = (long long)blockIdx.x * chunk;
  const int n = (int)min((long long)chunk, rows - first);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int i = warp; i < n; i += warps) {
    float mean, rstd;
    row_moments(x + (first + i) * cols, cols, eps, lane, mean, rstd);
    if (lane == 0) {
      mean_s[i] = mean;
      rstd_s[i] = rstd;
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float dg = 0.0f, db = 0.0f;
    for (int i = 0; i < n; ++i) {
      const long long o = (first + i) * cols + c;
      dg += g[o] * (x[o] - mean_s[i]) * rstd_s[i];
      db += g[o];
    }
    partial[(long long)blockIdx.x * 2 * cols + c] = dg;
    partial[(long long)blockIdx.x * 2 * cols + cols + c] = db;
  }
}

__device__ __forceinline__ float gelu_value(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

__device__ __forceinline__ float gelu_slope(float v) {
  const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
  return cdf + v * pdf;
}

// Whether every pointer is 16-byte aligned (the element-wise kernels then move float4s; the last n % 4 values, and
// every value of unaligned views, go one at a time).
__device__ __forceinline__ bool aligned16(const void* a, const void* b) {
  return ((reinterpret_cast<unsigned long long>(a) | reinterpret_cast<unsigned long long>(b)) & 15) == 0;
}
__device__ __forceinline__ bool aligned16(const void* a, const void* b, const void* c) {
  return aligned16(a, b) && aligned16(c, c);
}

extern "C" __global__ void gelu_f32(const float* __restrict__ x, float* __restrict__ y, long long n) {
  const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long quads = aligned16(x, y) ? n / 4 : 0;
  for (long long q = first; q < quads; q += stride) {
    const float4 v = reinterpret_cast<const float4*>(x)[q];
    reinterpret_cast<float4*>(y)[q] = make_float4(gelu_value(v.x), gelu_value(v.y), gelu_value(v.z), gelu_value(v.w));
  }
  for (long long i = 4 * quads + first; i < n; i += stride) y[i] = gelu_value(x[i]);
}

extern "C" __global__ void gelu_bwd_f32(const float* __restrict__ x, const float* __restrict__ g,
                                        float* __restrict__ dx, long long n) {
  const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long quads = aligned16(x, g, dx) ? n / 4 : 0;
  for (long long q = first; q < quads; q += stride) {
    const float4 v = reinterpret_cast<const float4*>(x)[q];
    const float4 d = reinterpret_cast<const float4*>(g)[q];
    reinterpret_cast<float4*>(dx)[q] =
        make_float4(d.x * gelu_slope(v.x), d.y * gelu_slope(v.y), d.z * gelu_slope(v.z), d.w * gelu_slope(v.w));
  }
  for (long long i = 4 * quads + first; i < n; i += stride) dx[i] = g[i] * gelu_slope(x[i]);
}

// Rows of `d` floats gathered into a contiguous (d0, d1, d2, d) output: row (i0, i1, i2) is read at
// src + i0·s0 + i1·s1 + i2·s2 when i2 < valid and written as zeros otherwise — the attention's head split (with its
// padding rows) and merge as one coalesced copy (Candle's strided copy runs these at ~0.75 TB/s). With `vec4` (d
// and the strides multiples of 4) and both pointers 16-byte aligned, float4s; else one value at a time.
extern "C" __global__ void gather_rows_f32(const float* __restrict__ src, float* __restrict__ dst, long long d0,
                                           long long d1, long long d2, int d, long long s0, long long s1,
                                           long long s2, long long valid, int vec4) {
  const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const bool quads = vec4 && aligned16(src, dst);
  const int width = quads ? 4 : 1;
  const int per_row = d / width;
  const long long total = d0 * d1 * d2 * per_row;
  for (long long q = first; q < total; q += stride) {
    const long long row = q / per_row;
    const int c = (int)(q - row * per_row) * width;
    const long long i2 = row % d2;
    const long long rest = row / d2;
    const long long i1 = rest % d1;
    const long long i0 = rest / d1;
    const float* from = src + i0 * s0 + i1 * s1 + i2 * s2 + c;
    float* to = dst + row * d + c;
    if (quads) {
      *reinterpret_cast<float4*>(to) =
          i2 < valid ? *reinterpret_cast<const float4*>(from) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    } else {
      *to = i2 < valid ? *from : 0.0f;
    }
  }
}

// y[r, c] += b[c] over a contiguous (rows, cols) output, in place (the bias of the training Linear).
extern "C" __global__ void bias_add_f32(float* __restrict__ y, const float* __restrict__ b, long long rows,
                                        int cols) {
  const long long n = rows * cols;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    y[i] += b[i % cols];
  }
}

// The optimiser step over every parameter in a few launches (src/ops/adamw.rs). A tensor table holds
// the device addresses of each parameter's tensors and its length; blockIdx.y picks the tensor, blockIdx.x a block
// of its elements (blocks past its end return).

// partial[t · gridDim.x + b] = Σ g² over block b's grid-stride share of gradient t, accumulated in double.
extern "C" __global__ void sumsq_multi_f32(const unsigned long long* __restrict__ grads,
                                           const long long* __restrict__ sizes, double* __restrict__ partial) {
  __shared__ double warp_sums[32];
  const int t = blockIdx.y;
  const float* g = (const float*)grads[t];
  const long long n = sizes[t];
  double acc = 0.0;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const double v = g[i];
    acc += v * v;
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (lane == 0) partial[(long long)t * gridDim.x + blockIdx.x] = acc;
  }
}

// One block: out[0] = √(Σ partial) (the global gradient L2 norm), out[1] = the clipping factor
// min(1, max_norm / (norm + 1e-6)) as torch's clip_grad_norm_ computes it in float — NaN when the norm is (torch's
// clamp keeps it, and the update spreads it) — or 1 when max_norm is 0 (no clipping; the launcher refuses others ≤ 0).
extern "C" __global__ void grad_norm_f32(const double* __restrict__ partial, long long count, float max_norm,
                                         float* __restrict__ out) {
  __shared__ double warp_sums[32];
  double acc = 0.0;
  for (long long i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) total += warp_sums[w];
    const float norm = (float)sqrt(total);
    out[0] = norm;
    const float c = max_norm / (norm + 1e-6f);
    out[1] = max_norm > 0.0f ? (c > 1.0f ? 1.0f : c) : 1.0f;  // a NaN c stays NaN (fminf would drop it)
  }
}

// torch.optim.AdamW's update (foreach form) with the gradients scaled by the clipping factor `*coef` first:
//   g ← g·coef;  p ← p·(1 − lr·λ);  m ← m + (1 − β1)(g − m);  v ← β2·v + (1 − β2)·g²;
//   p ← p − step_size · m / (√v / √(1 − β2ᵗ) + ε),  step_size = lr / (1 − β1ᵗ).
// Table rows: parameter, gradient, first and second moment addresses; sizes[t] elements each.
extern "C" __global__ void adamw_multi_f32(const unsigned long long* __restrict__ table,
                                           const long long* __restrict__ sizes, const float* __restrict__ coef,
                                           float decay, float one_minus_beta1, float beta2, float one_minus_beta2,
                                           float step_size, float bias2_sqrt, float eps) {
  const int t = blockIdx.y;
  float* p = (float*)table[4 * t];
  const float* g = (const float*)table[4 * t + 1];
  float* m = (float*)table[4 * t + 2];
  float* v = (float*)table[4 * t + 3];
  const long long n = sizes[t];
  const float c = coef[1];
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float gi = g[i] * c;
    const float pi = p[i] * decay;
    const float mi = m[i] + one_minus_beta1 * (gi - m[i]);
    const float vi = v[i] * beta2 + one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - step_size * (mi / (sqrtf(vi) / bias2_sqrt + eps));
  }
}
