// Shared pieces of the tensor-core kernels (gemm.cu, attention.cu): TF32 `mma.sync` and the split of an f32 value
// into two TF32 parts, whose three cross products (small·big, big·small, big·big) give f32-class products.
#pragma once

#include <cstdint>

// x = big + small: big keeps the sign, exponent and top 10 mantissa bits (a TF32 value); small = x − big is
// exact in f32, and the tensor core reads its top 10 mantissa bits (the rest, ~2⁻²² of x, is dropped as the
// a_s·w_s term is).
__device__ __forceinline__ void split(float x, uint32_t& big, uint32_t& small) {
  big = __float_as_uint(x) & 0xffffe000u;
  small = __float_as_uint(x - __uint_as_float(big));
}

// c += a·b on the tensor cores: one m16n8k8 TF32 product with f32 accumulation. Fragments (g = lane / 4,
// t = lane % 4): a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; b = B[t][g], B[t+4][g];
// c = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1].
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
