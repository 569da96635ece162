//! Training (issue 15, in progress): LeWM's objective terms and the PLDM baseline's, as differentiable Candle ops.
//!
//! [`losses`] holds the loss terms of upstream's `stable_worldmodel/wm/loss.py` and LeWM's training objective
//! (`../shared/spec/losses.md` is our contract of them). They run on CUDA tensors (the training step is a GPU
//! workload like the rest of swm); the AdamW step and the training CLI are not written yet.

pub mod losses;
