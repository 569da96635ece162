// f32-accurate GEMM on tensor cores: C = A · Wᵀ (+ bias, then optionally GELU or SiLU) for a row-major activation
// A (M, K) and a PyTorch Linear weight W (N, K), both K-contiguous.
//
// Each f32 operand x is split into a TF32 "big" part b (x with its 13 low mantissa bits cleared) and a "small"
// part s = x − b (exact in f32; the tensor core reads its top 10 mantissa bits), and every product is accumulated
// as a_s·w_b + a_b·w_s + a_b·w_b on `mma.sync.m16n8k8` TF32 tensor-core instructions (the a_s·w_s term, < 2⁻²⁰
// relative, is dropped). The tensor core's f32 sums truncate, so each K tile of 32 is summed from zero and added
// to the running total with ordinary (rounded) f32 adds. Measured against an f64 reference (tests/gpu/gemm.rs),
// the max error is 1–5× that of cuBLAS's f32 GEMM on the same inputs (≤ ~6e-7 relative), three orders of
// magnitude below plain TF32; it is faster than the f32 SIMT GEMM on the small-M shapes of a rollout.
//
// Tiling: a 64 × 64 output tile per 128-thread block (2 × 2 warps of 32 × 32; the plain `_w8` kernels: 256
// threads, 2 × 4 warps of 32 × 16, for grids too small to fill the SMs), K in steps of 32 staged through shared
// memory by `cp.async`, SWM_STAGES tiles in flight (dynamic shared memory: SWM_STAGES · 18 KiB and the block's 64
// bias values, so the launcher raises the block's limit past 48 KiB). Split-K: blockIdx.z = batch · splits + s
// takes K range [s·k_chunk, (s+1)·k_chunk) and writes its partial tile to `out + (batch · splits + s)·M·N`;
// `gemm_splitk_reduce_f32` (or the consumer kernel, see `residual_norm_f32_N`) then sums the partials in a fixed
// order (results are deterministic) and applies the epilogue.
//
// Batches (an ensemble's heads, or two MLPs on one input): batch b reads A at `a + b·a_batch` (rows `lda` apart, so
// a head can be a column block of a wider activation), W at `w + b·N·K` and the bias at `bias + b·N`, and an
// unsplit GEMM writes its (M, N) result at `out + b·o_batch` with rows `ldo` apart (each head a column block of one
// (M, batches·N) output). One batch with lda = K, ldo = N is the plain GEMM. Fragments are read from shared memory
// with `ldmatrix`. Tiles are copied 16 bytes at a time when K % 4 == 0 and A and W are 16-byte aligned (`vec4`),
// else 4 bytes at a time.
//
//   gemm_3xtf32_f32:          the tiles (epilogue applied when gridDim.z == 1); gemm_3xtf32_f32_w8 with 8 warps.
//   gemm_3xtf32_strided_f32:  the same with batches and strides (see above).
//   gemm_tf32_f32[_w8], gemm_tf32_strided_f32: the same tiles with one product of TF32-rounded operands (TF32 mode:
//                             ~1e-3 relative, as cuBLAS's TF32 GEMMs).
//   gemm_splitk_reduce_f32:   out[i] = epilogue(Σ_z partial[z][i]).

#include <cstdint>

#include "mma.cuh"

#define SWM_BM 64
#define SWM_BN 64
#define SWM_BK 32
#define SWM_LDS (SWM_BK + 4)  // padded row: fragment loads hit 32 distinct banks
#define SWM_THREADS 128
#define SWM_STAGES 3

// Epilogues.
#define SWM_EPI_NONE 0
#define SWM_EPI_BIAS 1
#define SWM_EPI_BIAS_GELU 2
#define SWM_EPI_BIAS_SILU 3

// The activation of a biased epilogue (GELU with the exact erf, or SiLU), applied after the bias.
__device__ __forceinline__ float activate(float v, int mode) {
  if (mode == SWM_EPI_BIAS_GELU) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  if (mode == SWM_EPI_BIAS_SILU) v = v / (1.0f + expf(-v));
  return v;
}

__device__ __forceinline__ float epilogue(float v, const float* bias, int col, int mode) {
  if (mode == SWM_EPI_NONE) return v;
  return activate(v + bias[col], mode);
}

// x rounded to the nearest TF32 value (ties away from zero), as a 32-bit tensor-core operand. `cvt.rna` leaves
// NaN and infinity alone; adding half a TF32 unit to the bits unguarded would carry a NaN's mantissa into its
// sign and exponent and turn it into ±0.
__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// Four 8 × 8 b16 matrices from shared memory (`ldmatrix .x4`); lane l gives the address of row l % 8 of
// matrix l / 8, and register j receives matrix j's element (row lane / 4, 32-bit column lane % 4).
__device__ __forceinline__ void load_matrices(uint32_t (&v)[4], const float* row) {
  const uint32_t addr = (uint32_t)__cvta_generic_to_shared(row);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3])
               : "r"(addr)
               : "memory");
}

// 16-byte global → shared copy; zero-fills when `valid` is false (src is then not read).
__device__ __forceinline__ void copy16(float* dst, const float* src, bool valid) {
  const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(bytes));
}

__device__ __forceinline__ void copy_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void copy_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

// 4-byte global → shared copy; zero-fills when `valid` is false.
__device__ __forceinline__ void copy4(float* dst, const float* src, bool valid) {
  const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
  const int bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(bytes));
}

// Copies the 4 floats of row `row` (< rows) at column k0 + col of a matrix with rows `ld` apart into `dst`,
// zero-filling columns ≥ k_end: one 16-byte copy when `vec4` (16-byte aligned rows), else four 4-byte ones.
__device__ __forceinline__ void copy_chunk(float* dst, const float* base, int row, int rows, int k0, int col,
                                           int k_end, int ld, bool vec4) {
  const bool rin = row < rows;
  const long long at = (long long)row * ld + k0 + col;
  if (vec4) {
    const bool in = rin && k0 + col < k_end;
    copy16(dst, in ? base + at : base, in);
  } else {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const bool in = rin && k0 + col + e < k_end;
      copy4(dst + e, in ? base + at + e : base, in);
    }
  }
}

// Stages the (64 × 32) slices of A rows m0.. and W rows n0.. at column k0 (columns ≥ k_end zero-filled), with
// kThreads threads.
template <int kThreads>
__device__ __forceinline__ void stage(float (*as)[SWM_LDS], float (*ws)[SWM_LDS], const float* a, const float* w,
                                      int m0, int n0, int k0, int k_end, int m, int n, int k, int lda, bool vec4) {
#pragma unroll
  for (int i = 0; i < (SWM_BM * SWM_BK / 4) / kThreads; ++i) {
    const int chunk = threadIdx.x + i * kThreads;
    const int row = chunk / (SWM_BK / 4);
    const int col = (chunk % (SWM_BK / 4)) * 4;
    copy_chunk(&as[row][col], a, m0 + row, m, k0, col, k_end, lda, vec4);
    copy_chunk(&ws[row][col], w, n0 + row, n, k0, col, k_end, k, vec4);
  }
}

// Copies this thread's 16-byte chunks of a 64-row operand tile whose rows and K columns are all inside the matrix:
// with kThreads threads, thread x copies columns 4·(x % 8) .. +3 of rows x / 8 + (kThreads / 8)·i, as `stage`
// does; `src` is the thread's first chunk and `step` kThreads / 8 rows, in elements.
template <int kThreads>
__device__ __forceinline__ void stage_full(float (*dst)[SWM_LDS], const float* src, long long step) {
  const int row = (int)(threadIdx.x >> 3), col = (int)(threadIdx.x & 7) * 4;
#pragma unroll
  for (int i = 0; i < (SWM_BM * SWM_BK / 4) / kThreads; ++i) {
    copy16(&dst[row + (kThreads / 8) * i][col], src + i * step, true);
  }
}

// The 4-warp kernels run four blocks per SM (≤ 128 registers per thread, 4 × 54.25 KiB of shared memory), the
// 8-warp ones two. The small rollout GEMMs are latency-bound and sensitive to code generation; the bounds keep the
// occupancy that the measured builds have.
// kStrided: batches and strides as given; otherwise one batch, lda = k, ldo = n and splits = gridDim.z (the
// plain GEMM compiles as it did before batches existed). kPrecise: the three split-TF32 products; otherwise
// one product of the operands rounded to TF32 (`to_tf32`), TF32 mode's precision. kWarpsN: the block's warps
// are 2 × kWarpsN, each owning a 32 × (64 / kWarpsN) tile: 2 (four warps of 32 × 32, four blocks per SM) or 4
// (eight warps of 32 × 16, two blocks per SM: twice the warps for grids too small to fill the SMs, each with
// half the products in its dependent chain).
template <bool kStrided, bool kPrecise, int kWarpsN>
__device__ __forceinline__ void gemm_tiles(const float* __restrict__ a, const float* __restrict__ w,
                                           const float* __restrict__ bias, float* __restrict__ out, int m, int n,
                                           int k, int k_chunk, int mode, int vec4, int splits_arg, int lda_arg,
                                           long long a_batch, int ldo_arg, int o_batch) {
  extern __shared__ __align__(16) float smem[];
  const int splits = kStrided ? splits_arg : (int)gridDim.z;
  const int lda = kStrided ? lda_arg : k;
  const int ldo = kStrided ? ldo_arg : n;
  float(*as)[SWM_BM][SWM_LDS] = reinterpret_cast<float(*)[SWM_BM][SWM_LDS]>(smem);
  float(*ws)[SWM_BN][SWM_LDS] = reinterpret_cast<float(*)[SWM_BN][SWM_LDS]>(smem + SWM_STAGES * SWM_BM * SWM_LDS);

  const int n0 = blockIdx.x * SWM_BN;
  const int m0 = blockIdx.y * SWM_BM;
  const int batch = kStrided ? (int)blockIdx.z / splits : 0;
  const int k_part = kStrided ? (int)blockIdx.z - batch * splits : (int)blockIdx.z;
  if (kStrided) {
    a += batch * a_batch;
    w += (long long)batch * n * k;
    if (mode != SWM_EPI_NONE) bias += (long long)batch * n;
  }
  const int k_begin = k_part * k_chunk;
  const int k_end = min(k, k_begin + k_chunk);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  constexpr int kThreads = 64 * kWarpsN;
  constexpr int kJ = 8 / kWarpsN;  // n8 fragments per warp
  const int wm = (warp / kWarpsN) * 32;  // warp tile origin inside the block tile
  const int wn = (warp % kWarpsN) * (64 / kWarpsN);
  const int g = lane >> 2;  // fragment group (row of A / column of B)
  const int t = lane & 3;   // thread in group

  // `total` holds the K tiles done so far; `part` sums one K tile on the tensor cores, whose f32 sums truncate,
  // and is added to `total` with rounded f32 adds, so the truncation of a sum never reaches the running total.
  float total[2][kJ][4], part[2][kJ][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < kJ; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) total[i][j][r] = 0.0f;

  const int tiles = (k_end - k_begin + SWM_BK - 1) / SWM_BK;
  // Tiles whose A and W rows are all inside the matrices and whose K columns are all below k_end (with vec4: every
  // tile of a block away from the M and N edges, but a ragged last one) take `stage_full`: an address per copy,
  // no predicates. The others take `stage`.
  const bool interior = vec4 && m0 + SWM_BM <= m && n0 + SWM_BN <= n;
  const int crow = (int)(threadIdx.x >> 3), ccol = k_begin + (int)(threadIdx.x & 7) * 4;
  const float* a_first = a + (long long)min(m0 + crow, m - 1) * lda + ccol;
  const float* w_first = w + (long long)min(n0 + crow, n - 1) * k + ccol;
  auto stage_tile = [&](int buf, int tile) {
    const int k0 = k_begin + tile * SWM_BK;
    if (interior && k0 + SWM_BK <= k_end) {
      stage_full<kThreads>(as[buf], a_first + tile * SWM_BK, (kThreads / 8LL) * lda);
      stage_full<kThreads>(ws[buf], w_first + tile * SWM_BK, (kThreads / 8LL) * k);
    } else {
      stage<kThreads>(as[buf], ws[buf], a, w, m0, n0, k0, k_end, m, n, k, lda, vec4);
    }
  };

  // The bias of the block's 64 columns, staged with the first K tile for a direct biased epilogue: in cp.async
  // group 0, so the first K tile's wait and barrier publish it to every thread (a block has ≥ 1 K tile: the
  // launcher refuses k = 0 and the last split starts below k).
  const bool direct = splits == 1;
  float* bias_s = smem + SWM_STAGES * (SWM_BM + SWM_BN) * SWM_LDS;
  if (direct && mode != SWM_EPI_NONE && threadIdx.x < SWM_BN) {
    const bool in = n0 + (int)threadIdx.x < n;
    copy4(bias_s + threadIdx.x, in ? bias + n0 + threadIdx.x : bias, in);
  }
#pragma unroll
  for (int s = 0; s < SWM_STAGES - 1; ++s) {
    if (s < tiles) stage_tile(s, s);
    copy_commit();
  }

  for (int tile = 0; tile < tiles; ++tile) {
    const int buf = tile % SWM_STAGES;
    copy_wait<SWM_STAGES - 2>();
    __syncthreads();  // tile's copies are visible, and every warp is done with the buffer refilled next
    const int next = tile + SWM_STAGES - 1;
    if (next < tiles) stage_tile(next % SWM_STAGES, next);
    copy_commit();

    if (kPrecise) {
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < kJ; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r) part[i][j][r] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < SWM_BK; kk += 8) {
      // Fragments come from shared memory by ldmatrix: a 32-bit element is a pair of b16, so the 8 × 8 b16
      // matrices it loads are 8 × 4 f32 blocks laid out exactly as the m16n8k8 TF32 fragments.
      uint32_t ab[2][4], asm_[2][4], wb[kJ][2], wsm[kJ][2];
      const int quad = lane >> 3, quad_row = lane & 7;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        uint32_t v[4];
        load_matrices(v, &as[buf][wm + i * 16 + quad_row + (quad & 1) * 8][kk + (quad >> 1) * 4]);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (kPrecise) {
            split(__uint_as_float(v[e]), ab[i][e], asm_[i][e]);
          } else {
            ab[i][e] = to_tf32(__uint_as_float(v[e]));
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kJ; j += 2) {
        uint32_t v[4];
        load_matrices(v, &ws[buf][wn + j * 8 + quad_row + (quad >> 1) * 8][kk + (quad & 1) * 4]);
        if (kPrecise) {
          split(__uint_as_float(v[0]), wb[j][0], wsm[j][0]);
          split(__uint_as_float(v[1]), wb[j][1], wsm[j][1]);
          split(__uint_as_float(v[2]), wb[j + 1][0], wsm[j + 1][0]);
          split(__uint_as_float(v[3]), wb[j + 1][1], wsm[j + 1][1]);
        } else {
          wb[j][0] = to_tf32(__uint_as_float(v[0]));
          wb[j][1] = to_tf32(__uint_as_float(v[1]));
          wb[j + 1][0] = to_tf32(__uint_as_float(v[2]));
          wb[j + 1][1] = to_tf32(__uint_as_float(v[3]));
        }
      }
      // Each product over all eight accumulators before the next: consecutive MMAs are independent (the asm is
      // volatile, so issue order is source order), and every accumulator still sums a_s·w_b, a_b·w_s, a_b·w_b in
      // that order.
      if (kPrecise) {
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < kJ; ++j) mma_tf32(part[i][j], asm_[i], wb[j]);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < kJ; ++j) mma_tf32(part[i][j], ab[i], wsm[j]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < kJ; ++j) mma_tf32(kPrecise ? part[i][j] : total[i][j], ab[i], wb[j]);
    }
    if (kPrecise) {
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < kJ; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r) total[i][j][r] += part[i][j][r];
    }
  }

  float* dst = out + (direct ? (long long)batch * o_batch : (long long)blockIdx.z * m * n);
  const int ld = direct ? ldo : n;
  // The epilogue in three passes over the tile, each free of per-element branches: bias (from shared memory),
  // activation, stores (a pair of columns per 8-byte store when rows and the result are 8-byte aligned).
  if (direct && mode != SWM_EPI_NONE) {
#pragma unroll
    for (int j = 0; j < kJ; ++j) {
      const int c = wn + j * 8 + 2 * t;
      const float b0 = bias_s[c], b1 = bias_s[c + 1];
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          total[i][j][2 * h] += b0;
          total[i][j][2 * h + 1] += b1;
        }
    }
    if (mode != SWM_EPI_BIAS) {
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < kJ; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r) total[i][j][r] = activate(total[i][j][r], mode);
    }
  }
  const bool pairs = (ld & 1) == 0 && (reinterpret_cast<uintptr_t>(dst) & 7) == 0;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < kJ; ++j) {
      const int col = n0 + wn + j * 8 + 2 * t;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + wm + i * 16 + g + 8 * h;
        if (row >= m) continue;
        float* p = dst + (long long)row * ld + col;
        if (pairs && col + 1 < n) {
          *reinterpret_cast<float2*>(p) = make_float2(total[i][j][2 * h], total[i][j][2 * h + 1]);
        } else {
          if (col < n) p[0] = total[i][j][2 * h];
          if (col + 1 < n) p[1] = total[i][j][2 * h + 1];
        }
      }
    }
}

// Per precision (PRECISE: the three split-TF32 products, or one TF32 product): a plain and a strided 4-warp entry
// point and a plain 8-warp one (`_w8`).
#define SWM_GEMM_KERNELS(PLAIN, STRIDED, PRECISE)                                                               \
  extern "C" __global__ void __launch_bounds__(SWM_THREADS, 4)                                                 \
      PLAIN(const float* __restrict__ a, const float* __restrict__ w, const float* __restrict__ bias,          \
            float* __restrict__ out, int m, int n, int k, int k_chunk, int mode, int vec4) {                   \
    gemm_tiles<false, PRECISE, 2>(a, w, bias, out, m, n, k, k_chunk, mode, vec4, 1, k, 0, n, 0);               \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(SWM_THREADS, 4)                                                 \
      STRIDED(const float* __restrict__ a, const float* __restrict__ w, const float* __restrict__ bias,        \
              float* __restrict__ out, int m, int n, int k, int k_chunk, int mode, int vec4, int splits,       \
              int lda, long long a_batch, int ldo, int o_batch) {                                              \
    gemm_tiles<true, PRECISE, 2>(a, w, bias, out, m, n, k, k_chunk, mode, vec4, splits, lda, a_batch, ldo,     \
                                 o_batch);                                                                     \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(2 * SWM_THREADS, 2)                                             \
      PLAIN##_w8(const float* __restrict__ a, const float* __restrict__ w, const float* __restrict__ bias,     \
                 float* __restrict__ out, int m, int n, int k, int k_chunk, int mode, int vec4) {              \
    gemm_tiles<false, PRECISE, 4>(a, w, bias, out, m, n, k, k_chunk, mode, vec4, 1, k, 0, n, 0);               \
  }

SWM_GEMM_KERNELS(gemm_3xtf32_f32, gemm_3xtf32_strided_f32, true)
SWM_GEMM_KERNELS(gemm_tf32_f32, gemm_tf32_strided_f32, false)

// Batch b's partials are (splits, m, n) at `partial + b·splits·m·n`; its result goes to `out + b·o_batch` with rows
// `ldo` apart, with the bias at `bias + b·n`.
extern "C" __global__ void gemm_splitk_reduce_f32(const float* __restrict__ partial, const float* __restrict__ bias,
                                                  float* __restrict__ out, long long m, int n, int splits, int mode,
                                                  int batches, int ldo, int o_batch) {
  const long long per = m * n;
  const long long total = per * batches;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long b = i / per;
    const long long e = i - b * per;
    const float* p = partial + b * splits * per + e;
    float s = 0.0f;
#pragma unroll 4
    for (int z = 0; z < splits; ++z) s += p[z * per];
    const int col = (int)(e % n);
    const long long row = e / n;
    out[b * o_batch + row * ldo + col] = epilogue(s, bias + (mode != SWM_EPI_NONE ? b * n : 0), col, mode);
  }
}
