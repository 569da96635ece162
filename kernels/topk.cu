// Elite selection: the k lowest costs of each row, ascending, with their indices (docs/spec/planners.md §3: torch.topk
// with largest=False, sorted). NaN costs rank last (as +inf), ties go to the lower index: that is a total order, so
// every cost has a distinct rank — the number of costs before it — and the ones ranked below k are written at their
// rank. Block (x, row) stages the row in shared memory and ranks its 64 costs x·64 ..; rows of at most
// SWM_TOPK_MAX costs. A few hundred costs rank in one pass over shared memory without a barrier per sorting stage.
#define SWM_TOPK_MAX 4096
#define SWM_TOPK_THREADS 64

__device__ __forceinline__ float rank_key(float v) {
  return (__float_as_uint(v) & 0x7fffffffu) > 0x7f800000u ? INFINITY : v;  // NaN (bit test: immune to fast-math)
}

extern "C" __global__ void __launch_bounds__(SWM_TOPK_THREADS)
    topk_rows_f32(const float* __restrict__ cost, int n, int k, int* __restrict__ index, float* __restrict__ value) {
  __shared__ float key[SWM_TOPK_MAX];
  const long long row = blockIdx.y;
  for (int j = threadIdx.x; j < n; j += blockDim.x) key[j] = rank_key(cost[row * n + j]);
  __syncthreads();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = key[i];
  // Four counters: independent adds in flight. Costs before i rank below it when ≤ v, after i when < v.
  int r0 = 0, r1 = 0, r2 = 0, r3 = 0;
  int j = 0;
  for (; j + 4 <= i; j += 4) {
    r0 += key[j] <= v;
    r1 += key[j + 1] <= v;
    r2 += key[j + 2] <= v;
    r3 += key[j + 3] <= v;
  }
  for (; j < i; ++j) r0 += key[j] <= v;
  for (j = i + 1; j + 4 <= n; j += 4) {
    r0 += key[j] < v;
    r1 += key[j + 1] < v;
    r2 += key[j + 2] < v;
    r3 += key[j + 3] < v;
  }
  for (; j < n; ++j) r0 += key[j] < v;
  const int rank = r0 + r1 + r2 + r3;
  if (rank < k) {
    index[row * k + rank] = i;
    value[row * k + rank] = v;
  }
}
