// Planner noise on the GPU (docs/spec/planners.md §3-§5), on the caller's stream.
//
//   philox_normal_f32: out[i] ~ N(0, 1), i < n. Counter-based: element quadruple q of draw d is cuRAND's
//                      Philox4x32-10 block of counter (q, d) under key `seed`, Box-Muller'd into 4 normals. The
//                      draw index d is read from device memory (state[0]) so that a captured CUDA graph draws
//                      fresh noise on every replay; `advance_draw` bumps it.
//   colour_noise_f32:  iCEM's temporally coloured noise. `white` is (rows, H) with rows = B·N·Da in (b, n, d)
//                      order (the time axis last, as upstream draws it); C = W·M with M the (H, H) real matrix of
//                      irfft(rfft(·)·g) (built on the host), re-standardised by its unbiased std over time
//                      (clamped at 1e-8) and written transposed to (B, N, H, Da).
#include <curand_philox4x32_x.h>

__device__ __forceinline__ float open_unit(unsigned int x) {
  // 24 random bits -> (0, 1), never 0 (log) and never 1.
  return ((float)(x >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

extern "C" __global__ void philox_normal_f32(float* __restrict__ out, long long n, unsigned long long seed,
                                             const long long* __restrict__ state) {
  const unsigned long long draw = (unsigned long long)state[0];
  const uint2 key = make_uint2((unsigned int)seed, (unsigned int)(seed >> 32));
  const long long quads = (n + 3) / 4;
  for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < quads;
       q += (long long)gridDim.x * blockDim.x) {
    const uint4 counter = make_uint4((unsigned int)q, (unsigned int)((unsigned long long)q >> 32), (unsigned int)draw,
                                     (unsigned int)(draw >> 32));
    const uint4 bits = curand_Philox4x32_10(counter, key);
    const float r0 = sqrtf(-2.0f * logf(open_unit(bits.x)));
    const float r1 = sqrtf(-2.0f * logf(open_unit(bits.z)));
    float s0, c0, s1, c1;
    sincospif(2.0f * open_unit(bits.y), &s0, &c0);
    sincospif(2.0f * open_unit(bits.w), &s1, &c1);
    const float v[4] = {r0 * c0, r0 * s0, r1 * c1, r1 * s1};
    const long long base = 4 * q;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (base + i < n) out[base + i] = v[i];
    }
  }
}

extern "C" __global__ void advance_draw(long long* state) {
  if (blockIdx.x == 0 && threadIdx.x == 0) state[0] += 1;
}

#define SWM_MAX_HORIZON 64

extern "C" __global__ void colour_noise_f32(const float* __restrict__ white, const float* __restrict__ m,
                                            float* __restrict__ out, long long rows, int h, int da) {
  for (long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x; r < rows;
       r += (long long)gridDim.x * blockDim.x) {
    const float* w = white + r * h;
    float c[SWM_MAX_HORIZON];
    float mean = 0.0f;
    for (int t = 0; t < h; ++t) {
      float acc = 0.0f;
      for (int s = 0; s < h; ++s) acc += w[s] * m[s * h + t];
      c[t] = acc;
      mean += acc;
    }
    mean /= (float)h;
    float var = 0.0f;
    for (int t = 0; t < h; ++t) var += (c[t] - mean) * (c[t] - mean);
    const float inv = 1.0f / fmaxf(sqrtf(var / (float)(h - 1)), 1e-8f);
    const long long bn = r / da;
    const int d = (int)(r % da);
    for (int t = 0; t < h; ++t) out[(bn * h + t) * da + d] = c[t] * inv;
  }
}
