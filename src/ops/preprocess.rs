//! Fused frame preprocessing (`kernels/preprocess.cu`).
//!
//! - [`frame_into`] / [`frame_to_model`]: one decoded camera frame of any size — packed 8-bit RGB/BGR/RGBA/BGRA
//!   with a row pitch, or NV12 (BT.601/BT.709, limited/full range) — to the model's input in one kernel: to
//!   `[0, 1]`, normalised, resized as upstream's `Resize(size)` (antialiased bilinear, after normalisation, taps
//!   from a [`ResizeTable`]), planar `f32` or `bf16`, written into a chosen slot of a persistent tensor (a
//!   `[batch, time]` history) or a fresh one.
//! - [`normalize_rgb_frames`]: interleaved RGB `u8` frames (N, H, W, 3) already of the model's size to normalised
//!   planar `f32` (N, 3, H, W): `(x / 255 − mean_c) / std_c`.
//!
//! NV12 chroma is replicated over each 2×2 block (no chroma interpolation), converted to RGB in float (not rounded
//! to 8 bits) and clamped to `[0, 255]`. A JPEG's planar components ([`PixelFormat::Jpeg`]) are upsampled and
//! converted exactly as libjpeg-turbo does by default (integer arithmetic, 8-bit RGB), so the kernel sees Pillow's
//! pixels wherever the IDCT outputs agree; [`jpeg_rgb`] is that decode step on the host, the reference the GPU
//! tests hold the kernel to.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Layout, Shape, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::launch::{address, cuda, launched};
use super::resize::ResizeTable;
use super::{KernelError, Result};
use crate::kernels;

/// Per-channel normalisation of RGB frames after scaling to [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageNormalization {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl ImageNormalization {
    /// ImageNet statistics, as LeWM's training and evaluation pipelines use (docs/spec/lewm.md §8).
    pub const IMAGENET: Self = Self { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
}

impl Default for ImageNormalization {
    fn default() -> Self {
        Self::IMAGENET
    }
}

struct NormalizeRgb(ImageNormalization);

impl CustomOp1 for NormalizeRgb {
    fn name(&self) -> &'static str {
        "swm-normalize-rgb"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("swm preprocessing runs on CUDA only; move the frames to the GPU first")
    }

    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let (n, h, w, c) = layout.shape().dims4()?;
        if c != 3 || !layout.is_contiguous() {
            candle_core::bail!("expected contiguous (N, H, W, 3) frames, got {:?}", layout.shape());
        }
        let dev = storage.device().clone();
        let src = storage.as_cuda_slice::<u8>()?;
        let src = src.slice(layout.start_offset()..);
        let pixels = n * h * w;
        // SAFETY: every element of `dst` is written by the kernel below before the tensor is read.
        let dst = unsafe { dev.alloc::<f32>(pixels * 3)? };
        let func = dev.get_or_load_custom_func("rgb_u8_hwc_to_nchw_f32", "swm_preprocess", kernels::PREPROCESS)?;
        let (n, h, w) = (n as i32, h as i32, w as i32);
        let m = self.0.mean;
        let inv = self.0.std.map(|s| 1.0 / s);
        let mut launch = func.builder();
        launch.arg(&src).arg(&dst).arg(&n).arg(&h).arg(&w);
        launch.arg(&m[0]).arg(&m[1]).arg(&m[2]).arg(&inv[0]).arg(&inv[1]).arg(&inv[2]);
        let cfg = LaunchConfig::for_num_elems(pixels.min(u32::MAX as usize) as u32);
        // SAFETY: the kernel's signature matches the arguments pushed above (two device pointers, three i32,
        // six f32); it reads n·h·w·3 bytes from `src` and writes n·3·h·w floats to `dst`, both that large, and
        // strides over the grid so any block count covers every pixel.
        unsafe { launch.launch(cfg) }.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        let out = CudaStorage::wrap_cuda_slice(dst, dev);
        Ok((out, Shape::from((n as usize, 3, h as usize, w as usize))))
    }
}

/// Normalises RGB `u8` frames (N, H, W, 3) on the GPU into planar `f32` (N, 3, H, W).
pub fn normalize_rgb_frames(frames: &Tensor, norm: &ImageNormalization) -> Result<Tensor> {
    if frames.dtype() != DType::U8 || frames.rank() != 4 || frames.dim(3)? != 3 {
        return Err(KernelError::operand(
            "frames",
            format!("expected u8 (N, H, W, 3) RGB frames, got {:?} {:?}", frames.dtype(), frames.dims()),
        ));
    }
    if !frames.device().is_cuda() {
        return Err(KernelError::operand("frames", "frames must be on the CUDA device"));
    }
    check_norm(norm)?;
    Ok(frames.contiguous()?.apply_op1_no_bwd(&NormalizeRgb(*norm))?)
}

/// YUV → RGB matrix of an NV12 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum YuvMatrix {
    /// ITU-R BT.601 (SD video, most JPEG-derived and webcam streams).
    #[default]
    Bt601,
    /// ITU-R BT.709 (HD video).
    Bt709,
    /// ITU-R BT.2020 non-constant luminance (UHD/HDR video; 8-bit NV12 only here).
    Bt2020,
}

/// Value range of an NV12 frame's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum YuvRange {
    /// Luma 16–235, chroma 16–240 ("TV" range; what H.264/HEVC encoders produce by default).
    #[default]
    Limited,
    /// 0–255 ("PC"/JPEG range).
    Full,
}

/// Colour description of an NV12 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct YuvColor {
    /// The matrix.
    pub matrix: YuvMatrix,
    /// The range.
    pub range: YuvRange,
}

impl YuvColor {
    /// `[y_offset, y_scale, c_scale, r_v, g_u, g_v, b_u]`: `R = Y' + r_v·V'`, `G = Y' − g_u·U' − g_v·V'`,
    /// `B = Y' + b_u·U'` with `Y' = (Y − y_offset)·y_scale`, `U' = (U − 128)·c_scale`, `V'` likewise.
    fn coefficients(&self) -> [f32; 7] {
        let (kr, kb) = match self.matrix {
            YuvMatrix::Bt601 => (0.299f64, 0.114f64),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
            YuvMatrix::Bt2020 => (0.2627, 0.0593),
        };
        let kg = 1.0 - kr - kb;
        let (yo, ys, cs) = match self.range {
            YuvRange::Limited => (16.0, 255.0 / 219.0, 255.0 / 224.0),
            YuvRange::Full => (0.0, 1.0, 1.0),
        };
        let c =
            [yo, ys, cs, 2.0 * (1.0 - kr), 2.0 * kb * (1.0 - kb) / kg, 2.0 * kr * (1.0 - kr) / kg, 2.0 * (1.0 - kb)];
        c.map(|v| v as f32)
    }
}

/// The pixel format of a decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PixelFormat {
    /// Interleaved 8-bit R, G, B.
    Rgb,
    /// Interleaved 8-bit B, G, R (OpenCV's order).
    Bgr,
    /// Interleaved 8-bit R, G, B, A (alpha ignored).
    Rgba,
    /// Interleaved 8-bit B, G, R, A (alpha ignored).
    Bgra,
    /// 8-bit 4:2:0 NV12: a luma plane, then a half-height plane of interleaved U, V (NVDEC's output).
    Nv12(YuvColor),
    /// A JPEG's components as its decoder's IDCT leaves them (nvJPEG's planar YUV output): the luma plane, then
    /// (unless greyscale) the Cb and Cr planes at their own sampling, tightly packed one after the other. The
    /// kernel finishes the decode as libjpeg(-turbo) does by default — Pillow's decode, which upstream uses —
    /// "fancy" (triangular) chroma upsampling and JFIF's full-range BT.601 conversion in libjpeg's fixed point —
    /// so the model sees libjpeg's pixels, not those of nvJPEG's own colour conversion (which replicates chroma).
    Jpeg(JpegSampling),
}

/// Chroma sampling of a [`PixelFormat::Jpeg`] frame (the ones libjpeg-turbo upsamples by interpolation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JpegSampling {
    /// One component (greyscale): R = G = B = Y.
    Gray,
    /// 4:4:4: chroma at full resolution.
    S444,
    /// 4:2:2: chroma at half width.
    S422,
    /// 4:2:0: chroma at half width and half height.
    S420,
    /// 4:4:0: chroma at half height.
    S440,
}

impl JpegSampling {
    /// Horizontal and vertical chroma subsampling factors (greyscale: 1, 1).
    pub fn factors(self) -> (usize, usize) {
        match self {
            Self::Gray | Self::S444 => (1, 1),
            Self::S422 => (2, 1),
            Self::S420 => (2, 2),
            Self::S440 => (1, 2),
        }
    }

    /// Width and height of each chroma plane of a `width × height` image (none for greyscale).
    pub fn chroma_size(self, width: usize, height: usize) -> Option<(usize, usize)> {
        let (h, v) = self.factors();
        (self != Self::Gray).then(|| (width.div_ceil(h), height.div_ceil(v)))
    }
}

impl PixelFormat {
    /// The kernel's format code.
    fn code(&self) -> i32 {
        match self {
            Self::Rgb => 0,
            Self::Bgr => 1,
            Self::Rgba => 2,
            Self::Bgra => 3,
            Self::Nv12(_) => 4,
            Self::Jpeg(JpegSampling::Gray) => 5,
            Self::Jpeg(JpegSampling::S444) => 6,
            Self::Jpeg(JpegSampling::S422) => 7,
            Self::Jpeg(JpegSampling::S420) => 8,
            Self::Jpeg(JpegSampling::S440) => 9,
        }
    }

    /// Bytes per pixel of a packed format (NV12 and JPEG planes: 1, the luma plane's).
    pub fn bytes_per_pixel(&self) -> usize {
        match self {
            Self::Rgb | Self::Bgr => 3,
            Self::Rgba | Self::Bgra => 4,
            Self::Nv12(_) | Self::Jpeg(_) => 1,
        }
    }
}

/// Where a frame's pixels are in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes from one row to the next (≥ width × bytes per pixel); NV12: of both planes; JPEG: of the luma plane.
    pub pitch: usize,
    /// NV12: bytes from the start of the buffer to the UV plane (≥ pitch × height; decoders may pad the luma plane).
    /// JPEG: to the Cb plane, which the Cr plane follows (each [`JpegSampling::chroma_size`], rows not padded).
    pub uv_offset: usize,
}

impl FrameLayout {
    /// A tightly packed frame (pitch = width × bytes per pixel; NV12: UV plane right after the luma plane).
    pub fn packed(format: PixelFormat, width: usize, height: usize) -> Self {
        let pitch = width.saturating_mul(format.bytes_per_pixel());
        Self { format, width, height, pitch, uv_offset: pitch.saturating_mul(height) }
    }

    /// Bytes the buffer must hold.
    pub fn required_bytes(&self) -> usize {
        match self.format {
            PixelFormat::Nv12(_) => self.uv_offset.saturating_add(self.pitch.saturating_mul(self.height.div_ceil(2))),
            PixelFormat::Jpeg(sampling) => match sampling.chroma_size(self.width, self.height) {
                Some((cw, ch)) => self.uv_offset.saturating_add(cw.saturating_mul(ch).saturating_mul(2)),
                None => self.luma_bytes(),
            },
            _ => self.luma_bytes(),
        }
    }

    /// Bytes from the start of the buffer to the end of the last row of the (luma) plane.
    fn luma_bytes(&self) -> usize {
        self.pitch.saturating_mul(self.height.saturating_sub(1)).saturating_add(self.row_bytes())
    }

    fn row_bytes(&self) -> usize {
        self.width.saturating_mul(self.format.bytes_per_pixel())
    }

    /// Checks the layout against a buffer of `bytes` (what [`frame_into`] does first): sizes within
    /// `1..=MAX_SIDE`, the pitch at least a row, NV12 sides even and planes apart, and `bytes` covering it all.
    pub fn check(&self, bytes: usize) -> Result<()> {
        let max = super::resize::MAX_SIDE;
        if self.width == 0 || self.height == 0 || self.width > max || self.height > max {
            return Err(KernelError::operand(
                "frame",
                format!("{}x{} is not a frame size in 1..={max}", self.width, self.height),
            ));
        }
        if self.pitch < self.row_bytes() {
            return Err(KernelError::operand(
                "frame",
                format!("pitch {} is below a row of {} bytes", self.pitch, self.row_bytes()),
            ));
        }
        if let PixelFormat::Nv12(_) = self.format {
            if !self.width.is_multiple_of(2) || !self.height.is_multiple_of(2) {
                return Err(KernelError::operand(
                    "frame",
                    format!("NV12 needs even sides, got {}x{}", self.width, self.height),
                ));
            }
            let luma = self.pitch.saturating_mul(self.height);
            if self.uv_offset < luma {
                return Err(KernelError::operand(
                    "frame",
                    format!("NV12 UV plane at {} overlaps the luma plane ({luma} bytes)", self.uv_offset),
                ));
            }
        }
        if let PixelFormat::Jpeg(sampling) = self.format {
            if sampling != JpegSampling::Gray && self.uv_offset < self.luma_bytes() {
                return Err(KernelError::operand(
                    "frame",
                    format!(
                        "JPEG Cb plane at {} overlaps the luma plane ({} bytes)",
                        self.uv_offset,
                        self.luma_bytes()
                    ),
                ));
            }
        }
        if bytes < self.required_bytes() || i64::try_from(self.required_bytes()).is_err() {
            return Err(KernelError::operand(
                "frame",
                format!(
                    "{bytes} bytes hold no {:?} frame of {}x{} (pitch {}): {} needed",
                    self.format,
                    self.width,
                    self.height,
                    self.pitch,
                    self.required_bytes()
                ),
            ));
        }
        Ok(())
    }
}

/// libjpeg's fixed-point constants (`jdcolor.c`'s scale: 16 fraction bits): FIX(1.402), FIX(1.772), FIX(0.71414),
/// FIX(0.34414), and one half.
const JFIX_CR_R: i32 = 91881;
const JFIX_CB_B: i32 = 116130;
const JFIX_CR_G: i32 = 46802;
const JFIX_CB_G: i32 = 22554;
const JFIX_HALF: i32 = 1 << 15;

/// The chroma sample of plane `c` (`cw × ch`, rows of `cw` bytes) at full-resolution pixel `(x, y)`, upsampled as
/// libjpeg-turbo's "fancy" upsamplers do: the nearer chroma sample weighted 3/4 and the next one outward 1/4 per
/// subsampled axis (edges replicated), with libjpeg's alternating rounding biases; horizontally subsampled planes of
/// at most two samples a row are replicated instead, as libjpeg-turbo does.
fn jpeg_chroma(c: &[u8], cw: usize, ch: usize, (hs, vs): (usize, usize), x: usize, y: usize) -> i32 {
    let at = |cx: usize, cy: usize| i32::from(c[cy * cw + cx]);
    // The neighbour outward from the pixel's position within its chroma sample: before it for the first of the
    // two pixels a sample covers, after it for the second (clamped to the plane).
    let outward = |i: usize, n: usize, second: bool| if second { (i + 1).min(n - 1) } else { i.saturating_sub(1) };
    let (cx, cy) = (x / hs, y / vs);
    // libjpeg-turbo interpolates horizontally subsampled chroma only when the plane is more than two samples wide
    // (`jinit_upsampler`); narrower planes (images up to 4 pixels wide) are replicated, 4:2:0 in both directions.
    if hs == 2 && cw <= 2 {
        return at(cx, cy);
    }
    match (hs, vs) {
        (1, 1) => at(cx, cy),
        (2, 1) => {
            let odd = x % 2 == 1;
            (3 * at(cx, cy) + at(outward(cx, cw, odd), cy) + if odd { 2 } else { 1 }) >> 2
        }
        (1, 2) => {
            let odd = y % 2 == 1;
            (3 * at(cx, cy) + at(cx, outward(cy, ch, odd)) + if odd { 2 } else { 1 }) >> 2
        }
        _ => {
            let fy = outward(cy, ch, y % 2 == 1);
            let colsum = |cx: usize| 3 * at(cx, cy) + at(cx, fy);
            let odd = x % 2 == 1;
            (3 * colsum(cx) + colsum(outward(cx, cw, odd)) + if odd { 7 } else { 8 }) >> 4
        }
    }
}

/// libjpeg's YCbCr → RGB (JFIF full-range BT.601, `jdcolor.c`'s integer tables), clamped to 8 bits.
fn jpeg_ycc_to_rgb(y: i32, cb: i32, cr: i32) -> [u8; 3] {
    let (cb, cr) = (cb - 128, cr - 128);
    let r = y + ((JFIX_CR_R * cr + JFIX_HALF) >> 16);
    let g = y + ((-JFIX_CB_G * cb + JFIX_HALF - JFIX_CR_G * cr) >> 16);
    let b = y + ((JFIX_CB_B * cb + JFIX_HALF) >> 16);
    [r, g, b].map(|v| v.clamp(0, 255) as u8)
}

/// The 8-bit RGB image (H, W, 3) that libjpeg-turbo's default decode makes of a [`PixelFormat::Jpeg`] frame's
/// planes, on the host: the reference of the kernel's JPEG path (which computes the same integers per tap).
pub fn jpeg_rgb(planes: &[u8], layout: &FrameLayout) -> Result<Vec<u8>> {
    let PixelFormat::Jpeg(sampling) = layout.format else {
        return Err(KernelError::operand("frame", format!("{:?} is not a JPEG planar format", layout.format)));
    };
    layout.check(planes.len())?;
    let (w, h) = (layout.width, layout.height);
    let mut rgb = Vec::with_capacity(w * h * 3);
    let luma = |x: usize, y: usize| i32::from(planes[y * layout.pitch + x]);
    match sampling.chroma_size(w, h) {
        None => {
            for y in 0..h {
                for x in 0..w {
                    let v = planes[y * layout.pitch + x];
                    rgb.extend_from_slice(&[v, v, v]);
                }
            }
        }
        Some((cw, ch)) => {
            let cb = &planes[layout.uv_offset..layout.uv_offset + cw * ch];
            let cr = &planes[layout.uv_offset + cw * ch..layout.uv_offset + 2 * cw * ch];
            let f = sampling.factors();
            for y in 0..h {
                for x in 0..w {
                    let (u, v) = (jpeg_chroma(cb, cw, ch, f, x, y), jpeg_chroma(cr, cw, ch, f, x, y));
                    rgb.extend_from_slice(&jpeg_ycc_to_rgb(luma(x, y), u, v));
                }
            }
        }
    }
    Ok(rgb)
}

/// Preprocesses one frame into slot `slot` of `dst`: a contiguous CUDA `f32` or `bf16` tensor whose last three
/// dims are `(3, out_h, out_w)` of `table` and whose leading dims are flattened into slots (e.g. a
/// `(batch, time, 3, h, w)` history: slot `b·time + t`). `frame` is a contiguous CUDA `u8` tensor holding at least
/// [`FrameLayout::required_bytes`]. Runs on `dst`'s stream (Candle's), without a host wait.
pub fn frame_into(
    frame: &Tensor,
    layout: &FrameLayout,
    table: &ResizeTable,
    norm: &ImageNormalization,
    dst: &Tensor,
    slot: usize,
) -> Result<()> {
    if frame.dtype() != DType::U8 || !frame.device().is_cuda() {
        return Err(KernelError::operand(
            "frame",
            format!("expected u8 bytes on the CUDA device, got {:?} on {:?}", frame.dtype(), frame.device().location()),
        ));
    }
    layout.check(frame.elem_count())?;
    if (layout.height, layout.width) != table.source() {
        return Err(KernelError::operand(
            "frame",
            format!("a {}x{} frame for a resize table built for {:?}", layout.height, layout.width, table.source()),
        ));
    }
    check_norm(norm)?;
    let (out_h, out_w) = table.output();
    let dims = dst.dims();
    let plane = 3 * out_h * out_w;
    if dims.len() < 3 || dims[dims.len() - 3..] != [3, out_h, out_w] {
        return Err(KernelError::operand("dst", format!("expected (…, 3, {out_h}, {out_w}), got {dims:?}")));
    }
    let slots = dst.elem_count() / plane;
    if slot >= slots {
        return Err(KernelError::operand("slot", format!("slot {slot} of a tensor with {slots}")));
    }
    let kernel = match dst.dtype() {
        DType::F32 => "swm_frame_to_model_f32",
        DType::BF16 => "swm_frame_to_model_bf16",
        other => return Err(KernelError::operand("dst", format!("expected f32 or bf16, got {other:?}"))),
    };
    if !frame.device().same_device(dst.device()) || !table.table().device().same_device(dst.device()) {
        return Err(KernelError::operand("dst", "frame, table and destination must be on the same device"));
    }
    let dev = cuda(dst.device())?;
    let size = if dst.dtype() == DType::F32 { 4 } else { 2 };
    let src = address(frame)?;
    let out = address(dst)? + (slot * plane * size) as u64;
    let taps = address(table.table())?;
    let yuv = match layout.format {
        PixelFormat::Nv12(color) => color.coefficients(),
        _ => [0.0; 7],
    };
    let (kx, ky) = table.taps();
    let ints = [layout.width, layout.height, kx, ky, out_w, out_h].map(|v| v as i32);
    let (pitch, uv) = (layout.pitch as i64, layout.uv_offset as i64);
    let code = layout.format.code();
    let inv = norm.std.map(|s| 1.0 / s);
    let func = dev.get_or_load_custom_func(kernel, "swm_preprocess", kernels::PREPROCESS)?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&func);
    b.arg(&src).arg(&ints[0]).arg(&ints[1]).arg(&pitch).arg(&uv).arg(&code);
    for c in &yuv {
        b.arg(c);
    }
    b.arg(&taps).arg(&ints[2]).arg(&ints[3]).arg(&ints[4]).arg(&ints[5]).arg(&out);
    for m in &norm.mean {
        b.arg(m);
    }
    for i in &inv {
        b.arg(i);
    }
    let pixels = (out_h * out_w) as u32;
    let cfg = LaunchConfig { grid_dim: (pixels.div_ceil(128), 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: the arguments match swm_frame_to_model_{f32,bf16}(src, src_w, src_h, pitch, uv_offset, format,
    // 7 × yuv f32, table, kx, ky, out_w, out_h, dst, 3 × mean, 3 × inv_std). `layout.check` proved the frame buffer
    // holds every byte the kernel reads (rows below height at `pitch`, the UV plane — or a JPEG's Cb and Cr
    // planes of `JpegSampling::chroma_size` — at `uv_offset`; taps and chroma neighbours are clamped to the frame); the table holds out_w·(kx+1) + out_h·(ky+1) values (ResizeTable); `out` is slot
    // `slot` < slots of `dst`, which holds 3·out_h·out_w values of its dtype from there. The tensors outlive the
    // launch on their shared stream.
    launched(unsafe { b.launch(cfg) })
}

/// [`frame_into`] a fresh `(1, 3, out_h, out_w)` `f32` tensor.
pub fn frame_to_model(
    frame: &Tensor,
    layout: &FrameLayout,
    table: &ResizeTable,
    norm: &ImageNormalization,
) -> Result<Tensor> {
    let (h, w) = table.output();
    let dst = super::launch::uninit_f32(cuda(frame.device())?, (1, 3, h, w))?;
    frame_into(frame, layout, table, norm, &dst, 0)?;
    Ok(dst)
}

fn check_norm(norm: &ImageNormalization) -> Result<()> {
    if norm.std.iter().any(|s| !s.is_finite() || *s <= 0.0) || norm.mean.iter().any(|m| !m.is_finite()) {
        return Err(KernelError::operand("normalization", format!("invalid mean/std {norm:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_check_their_buffers() {
        let rgb = FrameLayout::packed(PixelFormat::Rgb, 640, 480);
        assert_eq!(rgb.required_bytes(), 640 * 480 * 3);
        assert!(rgb.check(640 * 480 * 3).is_ok());
        assert!(rgb.check(640 * 480 * 3 - 1).is_err());
        let padded = FrameLayout { pitch: 2048, ..rgb };
        assert_eq!(padded.required_bytes(), 2048 * 479 + 1920);
        assert!(FrameLayout { pitch: 1000, ..rgb }.check(1 << 24).is_err(), "pitch below a row");
        let nv12 = FrameLayout::packed(PixelFormat::Nv12(YuvColor::default()), 1920, 1080);
        assert_eq!(nv12.required_bytes(), 1920 * 1080 * 3 / 2);
        assert!(nv12.check(1920 * 1080 * 3 / 2).is_ok());
        assert!(FrameLayout { uv_offset: 100, ..nv12 }.check(1 << 24).is_err(), "UV over luma");
        assert!(FrameLayout::packed(PixelFormat::Nv12(YuvColor::default()), 3, 2).check(100).is_err(), "odd width");
        assert!(FrameLayout::packed(PixelFormat::Bgra, 0, 2).check(100).is_err());
    }

    #[test]
    fn jpeg_chroma_is_upsampled_as_libjpeg_turbo_does() {
        // 4:2:2, one row [0, 100, 200]: the first and last pixels keep their sample, the others mix 3:1 with the
        // outward neighbour (+1 / +2 biases).
        let row = [0u8, 100, 200];
        let got: Vec<i32> = (0..6).map(|x| jpeg_chroma(&row, 3, 1, (2, 1), x, 0)).collect();
        assert_eq!(got, [0, 25, 75, 125, 175, 200]);
        // 4:4:0, one column [0, 100]: the same vertically.
        let col = [0u8, 100];
        let got: Vec<i32> = (0..4).map(|y| jpeg_chroma(&col, 1, 2, (1, 2), 0, y)).collect();
        assert_eq!(got, [0, 25, 75, 100]);
        // 4:2:0, 3x2 [[0, 64, 10], [128, 255, 20]]: column sums 3·near + far, then 3:1 across with +8 / +7.
        let block = [0u8, 64, 10, 128, 255, 20];
        let at = |x, y| jpeg_chroma(&block, 3, 2, (2, 2), x, y);
        assert_eq!(at(0, 0), 0);
        // Column sums (3·near + far) for row 1 of the output (near: chroma row 0, far: row 1): 3·0 + 128 = 128 at
        // x = 0, 3·64 + 255 = 447 at x = 1.
        assert_eq!(at(1, 1), (3 * 128 + 447 + 7) >> 4);
        assert_eq!(at(2, 1), (3 * 447 + 128 + 8) >> 4);
        assert_eq!(at(5, 3), 20, "the far corner keeps its sample");
        assert_eq!(jpeg_chroma(&block, 3, 2, (1, 1), 1, 1), 255, "4:4:4 reads the sample");
        // A plane two samples wide (an image up to 4 pixels wide) is replicated, as libjpeg-turbo does.
        let narrow = [0u8, 64, 128, 255];
        assert_eq!(jpeg_chroma(&narrow, 2, 2, (2, 2), 1, 1), 0);
        assert_eq!(jpeg_chroma(&narrow, 2, 2, (2, 2), 2, 3), 255);
        assert_eq!(jpeg_chroma(&[0, 100], 2, 1, (2, 1), 1, 0), 0, "4:2:2 too");
    }

    #[test]
    fn jpeg_colour_conversion_uses_libjpeg_integers() {
        assert_eq!(jpeg_ycc_to_rgb(100, 128, 128), [100, 100, 100]);
        // JFIF red: 254, 0, 0 in libjpeg's tables (a float matrix gives 254.6, −0.3, −0.2 before rounding).
        assert_eq!(jpeg_ycc_to_rgb(76, 85, 255), [254, 0, 0]);
        assert_eq!(jpeg_ycc_to_rgb(255, 255, 255), [255, 121, 255]);
        assert_eq!(jpeg_ycc_to_rgb(0, 0, 0), [0, 135, 0]);
    }

    #[test]
    fn jpeg_planes_become_rgb_and_their_layout_is_checked() {
        let sampling = JpegSampling::S420;
        assert_eq!(sampling.chroma_size(17, 9), Some((9, 5)));
        assert_eq!(JpegSampling::Gray.chroma_size(17, 9), None);
        let layout = FrameLayout::packed(PixelFormat::Jpeg(sampling), 3, 3);
        assert_eq!((layout.pitch, layout.uv_offset, layout.required_bytes()), (3, 9, 9 + 2 * 4));
        let mut planes = vec![50u8; 9];
        planes.extend_from_slice(&[128; 4]); // Cb
        planes.extend_from_slice(&[128; 4]); // Cr
        assert_eq!(jpeg_rgb(&planes, &layout).unwrap(), vec![50u8; 27]);
        assert!(jpeg_rgb(&planes[..16], &layout).is_err(), "one byte short");
        assert!(FrameLayout { uv_offset: 4, ..layout }.check(64).is_err(), "Cb over luma");
        let gray = FrameLayout::packed(PixelFormat::Jpeg(JpegSampling::Gray), 3, 3);
        assert_eq!(gray.required_bytes(), 9);
        let rgb = jpeg_rgb(&(0..9).collect::<Vec<u8>>(), &gray).unwrap();
        assert_eq!(&rgb[..6], &[0, 0, 0, 1, 1, 1]);
        let not_jpeg = FrameLayout::packed(PixelFormat::Rgb, 1, 1);
        assert!(jpeg_rgb(&[0; 3], &not_jpeg).is_err());
    }

    #[test]
    fn yuv_coefficients_map_white_black_and_grey() {
        for matrix in [YuvMatrix::Bt601, YuvMatrix::Bt709, YuvMatrix::Bt2020] {
            let limited = YuvColor { matrix, range: YuvRange::Limited }.coefficients();
            let full = YuvColor { matrix, range: YuvRange::Full }.coefficients();
            let rgb = |c: [f32; 7], y: f32, u: f32, v: f32| {
                let (l, u, v) = ((y - c[0]) * c[1], (u - 128.0) * c[2], (v - 128.0) * c[2]);
                [l + c[3] * v, l - c[4] * u - c[5] * v, l + c[6] * u]
            };
            for (c, white, black) in [(limited, 235.0, 16.0), (full, 255.0, 0.0)] {
                assert!(rgb(c, white, 128.0, 128.0).iter().all(|v| (v - 255.0).abs() < 1e-3));
                assert!(rgb(c, black, 128.0, 128.0).iter().all(|v| v.abs() < 1e-3));
            }
            // Pure red in full range: Y = 255·Kr, U = 128 + (0 − Y)/(2(1 − Kb)), V = 128 + (255 − Y)/(2(1 − Kr)).
            let (kr, kb) = match matrix {
                YuvMatrix::Bt601 => (0.299, 0.114),
                YuvMatrix::Bt709 => (0.2126, 0.0722),
                YuvMatrix::Bt2020 => (0.2627, 0.0593),
            };
            let red = rgb(full, 255.0 * kr, 128.0 - 127.5 * kr / (1.0 - kb), 255.5);
            assert!((red[0] - 255.0).abs() < 1.0 && red[1].abs() < 1.5 && red[2].abs() < 1.5, "{matrix:?} {red:?}");
        }
    }
}
