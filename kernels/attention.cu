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
//   attention_mma_f32_{16,32,48,64}: the same operands and result for heads of dh = 16, 32, 48 or 64 columns, on
//                  the tensor cores. Block (x, h, n) answers queries 16x.. of head h of frame n with 8 warps that
//                  split the keys: warp w takes 16-key chunks w, w + 8, …, scores them against the 16 queries
//                  (q·kᵀ as m16n8k8 TF32 products of split operands: small·big + big·small + big·big, f32-class as
//                  in gemm.cu), keeps a running row maximum and sum (an online softmax in base 2, rescaling its
//                  output when the maximum grows) and adds p·v from a fresh accumulator each chunk. The warps'
//                  maxima, sums and outputs are then merged through shared memory. Operands are read straight from
//                  global memory (the block's keys and values once, 16- and 8-byte loads): no limit on T.

#include <cstdint>

#include "mma.cuh"
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

#define SWM_MMA_WARPS 8
#define SWM_MMA_QUERIES 16

__device__ __forceinline__ float4 load4(const float* p, bool valid) {
  return valid ? __ldg(reinterpret_cast<const float4*>(p)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

__device__ __forceinline__ float2 load2(const float* p, bool valid) {
  return valid ? __ldg(reinterpret_cast<const float2*>(p)) : make_float2(0.0f, 0.0f);
}

__device__ __forceinline__ void split4(const float (&x)[4], uint32_t (&big)[4], uint32_t (&small)[4]) {
#pragma unroll
  for (int e = 0; e < 4; ++e) split(x[e], big[e], small[e]);
}

__device__ __forceinline__ void split2(float x0, float x1, uint32_t (&big)[2], uint32_t (&small)[2]) {
  split(x0, big[0], small[0]);
  split(x1, big[1], small[1]);
}

// Fragment layouts (see mma_tf32; g = lane / 4, t = lane % 4). A sum's terms may be taken in any order, so each
// product reads its operands where they are cheapest to load:
// - q·kᵀ over a head's dims: dims 16p.. form two k-steps; thread t loads dims 16p + 4t .. 4t + 3 of its query rows
//   (g, g + 8) and of key g as one float4, whose x, y are the first step's k = t, t + 4 and z, w the second's.
// - p·v over a chunk's keys: the scores' accumulator (keys 2t, 2t + 1 of rows g, g + 8) is the A fragment of the
//   step whose k = t, t + 4 are keys 2t, 2t + 1; output column n of n-tile j is head dim n·(DH/8) + j, so thread g
//   loads v's dims g·DH/8 .. (g + 1)·DH/8 of a key as float2s, and thread t ends up holding dims t·DH/4 .. + DH/4
//   of its rows.
template <int DH>
__device__ __forceinline__ void attention_mma(const float* __restrict__ qkv, float* __restrict__ out, int t,
                                              int heads) {
  constexpr int P = DH / 16;  // pairs of k-steps over the head's dims
  constexpr int NT = DH / 8;  // n-tiles of the output
  __shared__ __align__(16) float so[SWM_MMA_WARPS][SWM_MMA_QUERIES][DH + 4];
  __shared__ float sm[SWM_MMA_WARPS][SWM_MMA_QUERIES];
  __shared__ float sl[SWM_MMA_WARPS][SWM_MMA_QUERIES];
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int tq = lane & 3;
  const int inner = heads * DH;
  const long long row3 = 3LL * inner;
  const float* base = qkv + (long long)blockIdx.z * t * row3 + blockIdx.y * DH;
  const int q0 = blockIdx.x * SWM_MMA_QUERIES;
  const float log2e = 1.4426950408889634f;

  float4 qa[P], qb[P];  // query rows q0 + g, q0 + g + 8
#pragma unroll
  for (int p = 0; p < P; ++p) {
    qa[p] = load4(base + (long long)(q0 + g) * row3 + 16 * p + 4 * tq, q0 + g < t);
    qb[p] = load4(base + (long long)(q0 + g + 8) * row3 + 16 * p + 4 * tq, q0 + g + 8 < t);
  }

  float o[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int r = 0; r < 4; ++r) o[j][r] = 0.0f;
  // Running maxima (base 2) and this thread's share of the sums, rows g and g + 8.
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  const int chunks = (t + 15) / 16;
  for (int c = warp; c < chunks; c += SWM_MMA_WARPS) {
    const int k0 = c * 16;
    float4 kf[2][P];      // key k0 + 8i + g
    float2 vf[2][2][P];  // keys k0 + 8i + 2tq + e, dims g·NT + 2j, +1 (NT / 2 = P pairs)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int key = k0 + 8 * i + g;
#pragma unroll
      for (int p = 0; p < P; ++p) kf[i][p] = load4(base + (long long)key * row3 + inner + 16 * p + 4 * tq, key < t);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int vkey = k0 + 8 * i + 2 * tq + e;
        const float* vrow = base + (long long)vkey * row3 + 2 * inner + g * NT;
#pragma unroll
        for (int j = 0; j < P; ++j) vf[i][e][j] = load2(vrow + 2 * j, vkey < t);
      }
    }

    // Scores s[i]: rows g, g + 8 × keys k0 + 8i + 2tq, +1, in base-2 units; keys past T are −∞.
    float s[2][4];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float big[2][4], small[2][4];
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int r = 0; r < 4; ++r) big[h][r] = small[h][r] = 0.0f;
#pragma unroll
      for (int p = 0; p < P; ++p) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float a[4] = {h ? qa[p].z : qa[p].x, h ? qb[p].z : qb[p].x, h ? qa[p].w : qa[p].y,
                              h ? qb[p].w : qb[p].y};
          uint32_t ab[4], as[4], bb[2], bs[2];
          split4(a, ab, as);
          split2(h ? kf[i][p].z : kf[i][p].x, h ? kf[i][p].w : kf[i][p].y, bb, bs);
          mma_tf32(small[h], as, bb);
          mma_tf32(small[h], ab, bs);
          mma_tf32(big[h], ab, bb);
        }
      }
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int key = k0 + 8 * i + 2 * tq + (r & 1);
        const float v = (small[0][r] + small[1][r]) + (big[0][r] + big[1][r]);
        s[i][r] = key < t ? v * log2e : -INFINITY;
      }
    }

    // Online softmax: the chunk's row maxima (over the quad's 16 keys), the rescale of what came before, and the
    // exponentials. Key k0 < T, so every row has a finite maximum.
    float c0 = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
    float c1 = fmaxf(fmaxf(s[0][2], s[0][3]), fmaxf(s[1][2], s[1][3]));
#pragma unroll
    for (int x = 1; x < 4; x <<= 1) {
      c0 = fmaxf(c0, __shfl_xor_sync(0xffffffffu, c0, x));
      c1 = fmaxf(c1, __shfl_xor_sync(0xffffffffu, c1, x));
    }
    const float n0 = fmaxf(m0, c0), n1 = fmaxf(m1, c1);
    const float a0 = exp2f(m0 - n0), a1 = exp2f(m1 - n1);
    m0 = n0;
    m1 = n1;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      s[i][0] = exp2f(s[i][0] - n0);
      s[i][1] = exp2f(s[i][1] - n0);
      s[i][2] = exp2f(s[i][2] - n1);
      s[i][3] = exp2f(s[i][3] - n1);
    }
    l0 = l0 * a0 + ((s[0][0] + s[0][1]) + (s[1][0] + s[1][1]));
    l1 = l1 * a1 + ((s[0][2] + s[0][3]) + (s[1][2] + s[1][3]));

    // p·v for the chunk from zero (the tensor core's sums truncate; the running output adds it rounded).
    float pv[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) pv[j][r] = 0.0f;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float a[4] = {s[i][0], s[i][2], s[i][1], s[i][3]};
      uint32_t pb[4], ps[4];
      split4(a, pb, ps);
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const float2 v0 = vf[i][0][j / 2], v1 = vf[i][1][j / 2];
        uint32_t vb[2], vs[2];
        split2((j & 1) ? v0.y : v0.x, (j & 1) ? v1.y : v1.x, vb, vs);
        mma_tf32(pv[j], ps, vb);
        mma_tf32(pv[j], pb, vs);
        mma_tf32(pv[j], pb, vb);
      }
    }
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      o[j][0] = o[j][0] * a0 + pv[j][0];
      o[j][1] = o[j][1] * a0 + pv[j][1];
      o[j][2] = o[j][2] * a1 + pv[j][2];
      o[j][3] = o[j][3] * a1 + pv[j][3];
    }
  }

  // Merge the warps (a warp without chunks has m = −∞, l = 0, o = 0 and weighs nothing).
#pragma unroll
  for (int x = 1; x < 4; x <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, x);
    l1 += __shfl_xor_sync(0xffffffffu, l1, x);
  }
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    so[warp][g][2 * tq * NT + j] = o[j][0];
    so[warp][g][(2 * tq + 1) * NT + j] = o[j][1];
    so[warp][g + 8][2 * tq * NT + j] = o[j][2];
    so[warp][g + 8][(2 * tq + 1) * NT + j] = o[j][3];
  }
  if (tq == 0) {
    sm[warp][g] = m0;
    sm[warp][g + 8] = m1;
    sl[warp][g] = l0;
    sl[warp][g + 8] = l1;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < SWM_MMA_QUERIES * (DH / 4); idx += blockDim.x) {
    const int r = idx / (DH / 4);
    const int col = (idx - r * (DH / 4)) * 4;
    const int query = q0 + r;
    if (query >= t) continue;
    float m = -INFINITY;
#pragma unroll
    for (int w = 0; w < SWM_MMA_WARPS; ++w) m = fmaxf(m, sm[w][r]);
    float l = 0.0f;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int w = 0; w < SWM_MMA_WARPS; ++w) {
      const float f = exp2f(sm[w][r] - m);
      const float4 v = *reinterpret_cast<const float4*>(&so[w][r][col]);
      l += f * sl[w][r];
      acc.x += f * v.x;
      acc.y += f * v.y;
      acc.z += f * v.z;
      acc.w += f * v.w;
    }
    const float inv = 1.0f / l;
    const float4 res = make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
    *reinterpret_cast<float4*>(out + ((long long)blockIdx.z * t + query) * inner + blockIdx.y * DH + col) = res;
  }
}

#define SWM_ATTENTION_MMA(DH)                                                                                   \
  extern "C" __global__ void __launch_bounds__(32 * SWM_MMA_WARPS, 1)                                          \
      attention_mma_f32_##DH(const float* __restrict__ qkv, float* __restrict__ out, int t, int heads) {       \
    attention_mma<DH>(qkv, out, t, heads);                                                                     \
  }

SWM_ATTENTION_MMA(16)
SWM_ATTENTION_MMA(32)
SWM_ATTENTION_MMA(48)
SWM_ATTENTION_MMA(64)
