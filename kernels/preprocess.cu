// Image preprocessing for ViT encoders: interleaved RGB uint8 (N, H, W, 3) -> planar float32 (N, 3, H, W),
// scaled to [0, 1] and normalised per channel: out = (x / 255 - mean_c) / std_c.
// One thread per output pixel; the three channel writes are coalesced across the warp.

#include <stdint.h>

extern "C" __global__ void rgb_u8_hwc_to_nchw_f32(
    const uint8_t* __restrict__ src,  // (N, H, W, 3)
    float* __restrict__ dst,          // (N, 3, H, W)
    int n, int height, int width,
    float mean_r, float mean_g, float mean_b,
    float inv_std_r, float inv_std_g, float inv_std_b) {
  const long long plane = (long long)height * width;
  const long long total = (long long)n * plane;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long img = i / plane;
    const long long pix = i - img * plane;
    const uint8_t* p = src + i * 3;
    float* o = dst + img * 3 * plane + pix;
    const float s = 1.0f / 255.0f;
    o[0] = ((float)p[0] * s - mean_r) * inv_std_r;
    o[plane] = ((float)p[1] * s - mean_g) * inv_std_g;
    o[2 * plane] = ((float)p[2] * s - mean_b) * inv_std_b;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Fused camera-frame preprocessing: one kernel from a decoded frame to the model's input slot.
//
//   source pixel (packed 8-bit RGB/BGR/RGBA/BGRA with a row pitch, NV12, or a JPEG's planar components) -> RGB
//   in [0, 255]
//   -> x * (1/255), (x - mean_c) * inv_std_c                      (torchvision: ToDtype(scale=True), Normalize)
//   -> antialiased bilinear resize, width taps then height taps   (Resize(size, antialias=True), after Normalize)
//   -> planar (3, out_h, out_w) f32 or bf16 at `dst`.
//
// The taps come from a table built on the host once per frame geometry (swm::ops::resize):
//   table = [x_start (out_w) | x_weight (out_w * kx) | y_start (out_h) | y_weight (out_h * ky)], f32, starts as
//   exact integers, weights zero-padded to kx / ky taps. As PyTorch's separable passes: for each output pixel the
//   row sums over the x taps are formed first (from the first tap on), then combined over the y taps.
// One thread per output pixel computes its three channels.

#include <cuda_bf16.h>

struct Rgb {
  float r, g, b;
};

// A JPEG's chroma sample at full-resolution pixel (x, y), upsampled as libjpeg-turbo's "fancy" upsamplers do
// (swm::ops::preprocess::jpeg_chroma is the host twin): 3/4 of the nearer sample, 1/4 of the next one outward per
// subsampled axis (edges replicated), libjpeg's alternating rounding biases.
__device__ __forceinline__ int swm_jpeg_chroma(const uint8_t* __restrict__ c, int cw, int ch, int hs, int vs, int x,
                                               int y) {
  const int cx = x / hs, cy = y / vs;
  // libjpeg-turbo interpolates horizontally subsampled chroma only when the plane is more than two samples wide.
  if ((hs == 1 && vs == 1) || (hs == 2 && cw <= 2)) return c[(long long)cy * cw + cx];
  const bool ox = (x & 1) != 0, oy = (y & 1) != 0;
  const int fx = ox ? min(cx + 1, cw - 1) : max(cx - 1, 0);
  const int fy = oy ? min(cy + 1, ch - 1) : max(cy - 1, 0);
  const uint8_t* row = c + (long long)cy * cw;
  if (vs == 1) return (3 * row[cx] + row[fx] + (ox ? 2 : 1)) >> 2;
  const uint8_t* far = c + (long long)fy * cw;
  if (hs == 1) return (3 * row[cx] + far[cx] + (oy ? 2 : 1)) >> 2;
  const int near_sum = 3 * row[cx] + far[cx];
  const int far_sum = 3 * row[fx] + far[fx];
  return (3 * near_sum + far_sum + (ox ? 7 : 8)) >> 4;
}

// format: 0 RGB, 1 BGR, 2 RGBA, 3 BGRA, 4 NV12, 5..9 JPEG planes (greyscale, 4:4:4, 4:2:2, 4:2:0, 4:4:0: luma
// at pitch, then Cb and Cr planes of ceil(w/hs) x ceil(h/vs), tightly packed, from uv_offset).
// yuv = {y_offset, y_scale, c_scale, r_v, g_u, g_v, b_u}.
__device__ __forceinline__ Rgb swm_fetch(const uint8_t* __restrict__ src, int src_w, int src_h, long long pitch,
                                         long long uv_offset, int format, int x, int y, const float* yuv) {
  Rgb p;
  if (format >= 5) {
    const int luma = src[(long long)y * pitch + x];
    if (format == 5) {
      p.r = p.g = p.b = (float)luma;
      return p;
    }
    // libjpeg's YCbCr -> RGB in its fixed point (jdcolor.c: 16 fraction bits; FIX(1.402), FIX(0.34414),
    // FIX(0.71414), FIX(1.772)), clamped to 8 bits: exactly libjpeg-turbo's integers.
    const int hs = (format == 7 || format == 8) ? 2 : 1;
    const int vs = (format == 8 || format == 9) ? 2 : 1;
    const int cw = (src_w + hs - 1) / hs, ch = (src_h + vs - 1) / vs;
    const uint8_t* cb_plane = src + uv_offset;
    const int cb = swm_jpeg_chroma(cb_plane, cw, ch, hs, vs, x, y) - 128;
    const int cr = swm_jpeg_chroma(cb_plane + (long long)cw * ch, cw, ch, hs, vs, x, y) - 128;
    const int half = 1 << 15;
    const int r = luma + ((91881 * cr + half) >> 16);
    const int g = luma + ((-22554 * cb + half - 46802 * cr) >> 16);
    const int b = luma + ((116130 * cb + half) >> 16);
    p.r = (float)min(max(r, 0), 255);
    p.g = (float)min(max(g, 0), 255);
    p.b = (float)min(max(b, 0), 255);
    return p;
  }
  if (format == 4) {
    const float luma = ((float)src[y * pitch + x] - yuv[0]) * yuv[1];
    const uint8_t* uv = src + uv_offset + (long long)(y >> 1) * pitch + (x & ~1);
    const float u = ((float)uv[0] - 128.0f) * yuv[2];
    const float v = ((float)uv[1] - 128.0f) * yuv[2];
    p.r = fminf(fmaxf(luma + yuv[3] * v, 0.0f), 255.0f);
    p.g = fminf(fmaxf(luma - yuv[4] * u - yuv[5] * v, 0.0f), 255.0f);
    p.b = fminf(fmaxf(luma + yuv[6] * u, 0.0f), 255.0f);
    return p;
  }
  const int bpp = format < 2 ? 3 : 4;
  const uint8_t* q = src + y * pitch + (long long)x * bpp;
  const bool bgr = (format & 1) != 0;
  p.r = (float)q[bgr ? 2 : 0];
  p.g = (float)q[1];
  p.b = (float)q[bgr ? 0 : 2];
  return p;
}

__device__ __forceinline__ void swm_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void swm_store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

template <typename T>
__device__ void swm_frame_to_model(const uint8_t* __restrict__ src, int src_w, int src_h, long long pitch,
                                   long long uv_offset, int format, float yo, float ys, float cs, float rv,
                                   float gu, float gv, float bu, const float* __restrict__ table, int kx, int ky,
                                   int out_w, int out_h, T* __restrict__ dst, float m0, float m1, float m2,
                                   float is0, float is1, float is2) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= out_w * out_h) return;
  const int ox = i % out_w, oy = i / out_w;
  const float* xs = table;
  const float* xw = xs + out_w;
  const float* ysr = xw + (long long)out_w * kx;
  const float* yw = ysr + out_h;
  const int x0 = (int)xs[ox], y0 = (int)ysr[oy];
  const float yuv[7] = {yo, ys, cs, rv, gu, gv, bu};
  const float inv255 = 1.0f / 255.0f;
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
  for (int ty = 0; ty < ky; ++ty) {
    const float wy = yw[(long long)oy * ky + ty];
    const int y = min(y0 + ty, src_h - 1);
    float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f;
    for (int tx = 0; tx < kx; ++tx) {
      const float wx = xw[(long long)ox * kx + tx];
      const int x = min(x0 + tx, src_w - 1);
      const Rgb p = swm_fetch(src, src_w, src_h, pitch, uv_offset, format, x, y, yuv);
      r0 += wx * ((p.r * inv255 - m0) * is0);
      r1 += wx * ((p.g * inv255 - m1) * is1);
      r2 += wx * ((p.b * inv255 - m2) * is2);
    }
    a0 += wy * r0;
    a1 += wy * r1;
    a2 += wy * r2;
  }
  const long long plane = (long long)out_w * out_h;
  swm_store(dst + i, a0);
  swm_store(dst + plane + i, a1);
  swm_store(dst + 2 * plane + i, a2);
}

#define SWM_FRAME_ARGS                                                                                             \
  const uint8_t *__restrict__ src, int src_w, int src_h, long long pitch, long long uv_offset, int format,      \
      float yo, float ys, float cs, float rv, float gu, float gv, float bu, const float *__restrict__ table, int kx, \
      int ky, int out_w, int out_h
#define SWM_FRAME_PASS src, src_w, src_h, pitch, uv_offset, format, yo, ys, cs, rv, gu, gv, bu, table, kx, ky, out_w, out_h

extern "C" __global__ void swm_frame_to_model_f32(SWM_FRAME_ARGS, float* __restrict__ dst, float m0, float m1,
                                                  float m2, float is0, float is1, float is2) {
  swm_frame_to_model<float>(SWM_FRAME_PASS, dst, m0, m1, m2, is0, is1, is2);
}

extern "C" __global__ void swm_frame_to_model_bf16(SWM_FRAME_ARGS, __nv_bfloat16* __restrict__ dst, float m0,
                                                   float m1, float m2, float is0, float is1, float is2) {
  swm_frame_to_model<__nv_bfloat16>(SWM_FRAME_PASS, dst, m0, m1, m2, is0, is1, is2);
}
