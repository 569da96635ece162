// Fused epilogues for Linear layers whose matmul ran without bias (y = x·Wᵀ, contiguous (rows, cols)):
//   bias_add:      out = y + b
//   bias_gelu:     out = gelu_erf(y + b)
//   bias_residual: out = r + (y + b), y given as `splits` partial sums over K, (splits, rows, cols), added in order
// b is (cols,), r and out are (rows, cols). One thread per element, grid-stride.

extern "C" __global__ void bias_add_f32(const float* __restrict__ y, const float* __restrict__ b,
                                        float* __restrict__ out, long long rows, long long cols) {
  const long long total = rows * cols;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    out[i] = y[i] + b[i % cols];
  }
}

extern "C" __global__ void bias_gelu_f32(const float* __restrict__ y, const float* __restrict__ b,
                                         float* __restrict__ out, long long rows, long long cols) {
  const long long total = rows * cols;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const float v = y[i] + b[i % cols];
    out[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  }
}

extern "C" __global__ void bias_residual_f32(const float* __restrict__ y, const float* __restrict__ b,
                                             const float* __restrict__ r, float* __restrict__ out,
                                             long long rows, long long cols, int splits) {
  const long long total = rows * cols;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    float v = y[i];
#pragma unroll 4
    for (int s = 1; s < splits; ++s) v += y[s * total + i];  // in split order, as the GEMM's reduction adds them
    out[i] = r[i] + (v + b[i % cols]);
  }
}
