//! Training LeWM on the GPU (issue 15; `../shared/spec/losses.md` is our contract of upstream's training):
//!
//! - [`losses`]: the loss terms of upstream's `stable_worldmodel/wm/loss.py` and LeWM's objective, as
//!   differentiable Candle ops;
//! - [`TrainableLeWm`]: LeWM's train-mode forward (BatchNorm on batch statistics, dropout) over its parameters as
//!   Candle `Var`s under upstream's names;
//! - [`Trainer`]: upstream's step — the objective, backward, gradient-norm clipping, AdamW — and [`Batch`], a
//!   batch of clips on the device.
//!
//! Everything runs on the CUDA device; the trained state dict is written as an artifact that `swm inspect`,
//! `swm plan` and the engine load.

mod encoder;
mod lewm;
pub mod losses;
mod optimizer;
mod trainer;

pub use encoder::{attention_padding, set_attention_padding, AttentionPadding};
pub use lewm::{Mode, TrainableLeWm};
pub use trainer::{Batch, EncoderGrad, Schedule, StepOutput, TrainOptions, Trainer, UpdateKernels};

#[cfg(test)]
mod tests;
