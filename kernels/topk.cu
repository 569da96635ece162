// Elite selection: the k lowest costs of each row, ascending, with their indices (docs/spec/planners.md §3: torch.topk
// with largest=False, sorted). One block per row sorts (cost, index) pairs in shared memory with a bitonic
// network; NaN costs rank last (as +inf), ties go to the lower index. Rows of at most SWM_TOPK_MAX costs.
#define SWM_TOPK_MAX 4096

__device__ __forceinline__ bool pair_greater(float a, int ia, float b, int ib) {
  return a > b || (a == b && ia > ib);
}

extern "C" __global__ void topk_rows_f32(const float* __restrict__ cost, int n, int k, int* __restrict__ index,
                                         float* __restrict__ value) {
  __shared__ float key[SWM_TOPK_MAX];
  __shared__ int idx[SWM_TOPK_MAX];
  const long long row = blockIdx.x;
  int p = 1;
  while (p < n) p <<= 1;
  for (int i = threadIdx.x; i < p; i += blockDim.x) {
    float v = INFINITY;
    if (i < n) {
      v = cost[row * n + i];
      if ((__float_as_uint(v) & 0x7fffffffu) > 0x7f800000u) v = INFINITY;  // NaN (bit test: immune to fast-math)
    }
    key[i] = v;
    idx[i] = i < n ? i : 0x7fffffff;
  }
  __syncthreads();
  for (int size = 2; size <= p; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < p; i += blockDim.x) {
        const int j = i ^ stride;
        if (j > i) {
          const bool ascending = (i & size) == 0;
          if (pair_greater(key[i], idx[i], key[j], idx[j]) == ascending) {
            const float tk = key[i];
            key[i] = key[j];
            key[j] = tk;
            const int ti = idx[i];
            idx[i] = idx[j];
            idx[j] = ti;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    index[row * k + i] = idx[i];
    value[row * k + i] = key[i];
  }
}
