//! Custom CUDA kernels from `kernels/*.cu`, launched on Candle's own stream: through Candle custom ops where they
//! fit the trait, on raw device addresses of Candle tensors otherwise (see `launch`).

pub mod bias_act;
pub mod gemm;
pub(crate) mod launch;
pub mod predictor;
pub mod preprocess;
pub mod tdmpc2;

pub use preprocess::{normalize_rgb_frames, ImageNormalization};
