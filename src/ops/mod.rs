//! Custom CUDA kernels from `kernels/*.cu`, launched through Candle custom ops on Candle's own stream.

pub mod bias_act;
pub(crate) mod launch;
pub mod predictor;
pub mod preprocess;

pub use preprocess::{normalize_rgb_frames, ImageNormalization};
