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
//! to 8 bits) and clamped to `[0, 255]`.

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
        }
    }

    /// Bytes per pixel of a packed format (NV12: 1, its luma plane).
    pub fn bytes_per_pixel(&self) -> usize {
        match self {
            Self::Rgb | Self::Bgr => 3,
            Self::Rgba | Self::Bgra => 4,
            Self::Nv12(_) => 1,
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
    /// Bytes from one row to the next (≥ width × bytes per pixel); NV12: of both planes.
    pub pitch: usize,
    /// NV12: bytes from the start of the buffer to the UV plane (≥ pitch × height; decoders may pad the luma plane).
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
            _ => self.pitch.saturating_mul(self.height.saturating_sub(1)).saturating_add(self.row_bytes()),
        }
    }

    fn row_bytes(&self) -> usize {
        self.width.saturating_mul(self.format.bytes_per_pixel())
    }

    /// Checks the layout against a buffer of `bytes`.
    fn check(&self, bytes: usize) -> Result<()> {
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
    // holds every byte the kernel reads (rows below height at `pitch`, the UV plane at `uv_offset`; taps are
    // clamped to the frame); the table holds out_w·(kx+1) + out_h·(ky+1) values (ResizeTable); `out` is slot
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
    fn yuv_coefficients_map_white_black_and_grey() {
        for matrix in [YuvMatrix::Bt601, YuvMatrix::Bt709] {
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
            let (kr, kb) = if matrix == YuvMatrix::Bt601 { (0.299, 0.114) } else { (0.2126, 0.0722) };
            let red = rgb(full, 255.0 * kr, 128.0 - 127.5 * kr / (1.0 - kb), 255.5);
            assert!((red[0] - 255.0).abs() < 1.0 && red[1].abs() < 1.5 && red[2].abs() < 1.5, "{matrix:?} {red:?}");
        }
    }
}
