//! Fused frame preprocessing (`kernels/preprocess.cu`): interleaved RGB `u8` frames (N, H, W, 3) to normalised
//! planar `f32` (N, 3, H, W) in one pass: `(x / 255 − mean_c) / std_c`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Layout, Shape, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};

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
    if norm.std.iter().any(|s| !s.is_finite() || *s <= 0.0) || norm.mean.iter().any(|m| !m.is_finite()) {
        return Err(KernelError::operand("normalization", format!("invalid mean/std {norm:?}")));
    }
    Ok(frames.contiguous()?.apply_op1_no_bwd(&NormalizeRgb(*norm))?)
}
