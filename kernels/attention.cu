// Softmax attention over every position (a ViT layer: no mask), read straight from the fused QKV projection.
//
//   attention_f32: qkv (N, T, 3·H·dh) rows [q | k | v], each H heads of dh ≤ 64 (dh % 4 == 0), the softmax scale
//                  already in q; out (N, T, H·dh), head h in columns h·dh.. (the layout the output projection
//                  reads). Block (x, h, n) answers queries 8x.. of head h of frame n, one warp per query. The head's
//                  keys and values are staged in dynamic shared memory once (16-byte cp.async, all in flight),
//                  then each warp scores every key (lane l takes keys l, l + 32, …, reading its key row 16 bytes at
//                  a time), keeps the scores in its shared row, and takes the softmax (max, then exp and sum, as
//                  PyTorch's softmax does, with fast-math exponentials and one reciprocal per row) and the weighted
//                  sum of the values (lane l: output columns l and l + 32).
//                  Shared memory: T·(dh + 4) keys (padded: conflict-free 16-byte reads by rows), T·dh values, 8·dh
//                  queries and 8·T scores, floats.

#include <cstdint>

#include "rows.cuh"

#define SWM_ATT_QUERIES 8

// 16-byte global → shared copy (cp.async; both addresses 16-byte aligned).
__device__ __forceinline__ void copy16(float* dst, const float* src) {
  const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src));
}

extern "C" __global__ void __launch_bounds__(32 * SWM_ATT_QUERIES)
    attention_f32(const float* __restrict__ qkv, float* __restrict__ out, int t, int heads, int dh) {
  extern __shared__ __align__(16) float smem[];
  const int kld = dh + 4;
  float* ks = smem;                            // [t][kld]
  float* vs = ks + t * kld;                    // [t][dh]
  float* qs = vs + t * dh;                     // [SWM_ATT_QUERIES][dh]
  float* sc = qs + SWM_ATT_QUERIES * dh;       // [SWM_ATT_QUERIES][t]
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int inner = heads * dh;
  const long long row3 = 3LL * inner;
  const float* base = qkv + (long long)blockIdx.z * t * row3 + blockIdx.y * dh;
  const int query = blockIdx.x * SWM_ATT_QUERIES + warp;
  // Asynchronous 16-byte copies: every load of the head is in flight at once (a load-then-store loop would wait
  // out the memory latency once per iteration).
  const int quads = dh / 4;
  for (int i = threadIdx.x; i < t * quads; i += blockDim.x) {
    const int r = i / quads;
    const int c = (i - r * quads) * 4;
    const float* src = base + (long long)r * row3;
    copy16(ks + r * kld + c, src + inner + c);
    copy16(vs + r * dh + c, src + 2 * inner + c);
  }
  asm volatile("cp.async.commit_group;\n\tcp.async.wait_all;" ::: "memory");
  float* q = qs + warp * dh;
  for (int c = lane * 4; c < dh; c += 128) {
    const float4 v = query < t ? *reinterpret_cast<const float4*>(base + (long long)query * row3 + c)
                               : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    *reinterpret_cast<float4*>(q + c) = v;
  }
  __syncthreads();
  if (query >= t) return;  // no barrier below
  float* s = sc + warp * t;
  float m = -INFINITY;
  for (int k = lane; k < t; k += 32) {
    const float* kr = ks + k * kld;
    float a = 0.0f;
    for (int c = 0; c < dh; c += 4) {
      const float4 x = *reinterpret_cast<const float4*>(q + c);
      const float4 y = *reinterpret_cast<const float4*>(kr + c);
      a += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
    }
    s[k] = a;
    m = fmaxf(m, a);
  }
  m = warp_max(m);
  float sum = 0.0f;
  for (int k = lane; k < t; k += 32) {
    const float e = expf(s[k] - m);
    s[k] = e;
    sum += e;
  }
  const float inv = 1.0f / warp_sum(sum);
  __syncwarp();  // every lane's exponentials are in s
  float acc0 = 0.0f, acc1 = 0.0f;
  const bool second = lane + 32 < dh;
  for (int k = 0; k < t; ++k) {
    const float p = s[k];
    acc0 += p * vs[k * dh + lane];
    if (second) acc1 += p * vs[k * dh + lane + 32];
  }
  float* o = out + ((long long)blockIdx.z * t + query) * inner + blockIdx.y * dh;
  if (lane < dh) o[lane] = acc0 * inv;
  if (second) o[lane + 32] = acc1 * inv;
}
