//! Custom CUDA kernels from `kernels/*.cu`, launched on Candle's own stream. Every kernel launch of swm lives in
//! this module, under one rule:
//!
//! - a kernel that reads at most three tensors and writes one fresh output is a Candle `CustomOp`
//!   (`bias_act`, `preprocess`): Candle allocates the output and orders it like its own ops;
//! - every other kernel (several outputs, buffers updated in place, caches) is a function — or, beyond five device
//!   buffers, an argument struct with a `launch` method — over contiguous Candle CUDA tensors, launched through
//!   their device addresses ([`launch`]) on the tensors' stream, so it is ordered with Candle's ops and can be
//!   captured into a CUDA graph.
//!
//! Launchers check their operands (shape, dtype, layout, device) and return [`KernelError`]; each `unsafe` launch
//! states the kernel's signature and the buffer sizes it relies on in a `// SAFETY:` comment.

pub mod adamw;
pub mod attention;
pub mod bias_act;
mod error;
pub mod fault;
pub mod gemm;
pub(crate) mod launch;
pub(crate) mod planner;
pub mod predictor;
pub mod preprocess;
pub mod resize;
pub mod tdmpc2;
pub mod train;

pub use error::{DriverFailure, KernelError, Result};
pub use preprocess::{
    frame_into, frame_to_model, jpeg_rgb, normalize_rgb_frames, FrameLayout, ImageNormalization, JpegSampling,
    PixelFormat, YuvColor, YuvMatrix, YuvRange,
};
pub use resize::ResizeTable;
