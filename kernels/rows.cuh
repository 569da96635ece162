// Shared pieces of the warp-per-row kernels (predictor.cu, tdmpc2.cu): a row of `dim` values is held by one warp,
// lane l owning columns l, l + 32, …, l + 32·(N − 1); slots past `dim` hold 0.
#pragma once

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

// The lane's columns of a row (0 past dim).
template <int N>
__device__ __forceinline__ void load_row(float (&v)[N], const float* __restrict__ row, int lane, int dim) {
#pragma unroll
  for (int c = 0; c < N; ++c) {
    const int i = lane + 32 * c;
    v[c] = i < dim ? row[i] : 0.0f;
  }
}

// Writes the lane's columns of a row.
template <int N>
__device__ __forceinline__ void store_row(const float (&v)[N], float* __restrict__ row, int lane, int dim) {
#pragma unroll
  for (int c = 0; c < N; ++c) {
    const int i = lane + 32 * c;
    if (i < dim) row[i] = v[c];
  }
}

// Mean and 1/sqrt(var + eps) of a row (LayerNorm statistics; the slots past dim must hold 0).
template <int N>
__device__ __forceinline__ void moments(const float (&v)[N], int lane, int dim, float eps, float& mean,
                                        float& inv) {
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < N; ++c) s += v[c];
  mean = warp_sum(s) / dim;
  float q = 0.0f;
#pragma unroll
  for (int c = 0; c < N; ++c) {
    const float d = lane + 32 * c < dim ? v[c] - mean : 0.0f;
    q += d * d;
  }
  inv = rsqrtf(warp_sum(q) / dim + eps);
}

// Adds a split-K GEMM's partial sums 1..splits-1 of a row to `sum`, in split order: sum[c] += src[z·stride + i_c]
// for i_c = first + step·c. Eight splits' loads (four for N > 8) are issued together from addresses clamped into
// the row and the split range (no load is predicated, so none waits behind another's add; a clamped split is
// loaded but not added); slots past `dim` receive values of the row's last column, which callers overwrite or
// never store.
template <int N>
__device__ __forceinline__ void add_splits(float (&sum)[N], const float* __restrict__ src, int splits,
                                           long long stride, int first, int step, int dim) {
  constexpr int kBatch = N > 8 ? 4 : 8;  // wide rows: fewer splits at once, so the temporaries stay in registers
  int at[N];
#pragma unroll
  for (int c = 0; c < N; ++c) at[c] = min(first + step * c, dim - 1);
  for (int z = 1; z < splits; z += kBatch) {
    float t[kBatch][N];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const float* part = src + min(z + u, splits - 1) * stride;
#pragma unroll
      for (int c = 0; c < N; ++c) t[u][c] = part[at[c]];
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (z + u < splits) {
#pragma unroll
        for (int c = 0; c < N; ++c) sum[c] += t[u][c];
      }
    }
  }
}
