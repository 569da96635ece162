//! `swm bench train`: one LeWM training step — upstream's objective in train mode, backward, gradient clipping,
//! AdamW — on a batch of 4-frame clips, with f32 GEMMs and with TF32, on swm's GEMM kernel and on cuBLAS's.

use candle_core::{Device, Tensor};

use swm::checkpoint::StateDict;
use swm::models::lewm::Config;

use swm::device;
use swm::ops::gemm::{self, F32Matmul};
use swm::tools::bench::{self, BenchRow};
use swm::training::{
    attention_padding, set_attention_padding, AttentionPadding as Padding, Batch, EncoderGrad, TrainOptions,
    TrainableLeWm, Trainer, UpdateKernels,
};

use super::lewm::{open, weights};
use super::{keep, profile_once};
use crate::cli::BenchTrainArgs;
use crate::error::CliError;

/// Frames per clip in upstream's training (history 3 + 1 prediction target).
const FRAMES: usize = 4;

/// The f32 and TF32 rows (the process-wide TF32 switch is restored afterwards).
pub fn run(args: &BenchTrainArgs) -> Result<Vec<BenchRow>, CliError> {
    let checkpoint = args.path.as_deref().map(open).transpose()?;
    args.report.check()?;
    let device = device::cuda(args.device.gpu)?;
    let (config, state) = weights(checkpoint)?;
    outln!("device: {}", device::name(&device).unwrap_or_default());
    let (b, side) = (args.batch_size, config.encoder.image_size);
    let pixels = Tensor::randn(0f32, 1f32, (b, FRAMES, 3, side, side), &device)?;
    let actions = Tensor::randn(0f32, 1f32, (b, FRAMES, config.action_encoder.input_dim), &device)?;
    let batch = Batch::new(pixels, actions)?;
    if args.profile {
        profile(&config, &state, &batch, &device)?;
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    let (manual, autograd) = (EncoderGrad::Manual, EncoderGrad::Autograd);
    let (fused, candle) = (UpdateKernels::Fused, UpdateKernels::Candle);
    let (own, cublas) = (F32Matmul::Split3xTf32, F32Matmul::Cublas);
    let rows_of = [
        ("f32", false, own, manual, fused, Padding::Tf32, ""),
        ("TF32", true, own, manual, fused, Padding::Tf32, ""),
        ("f32", false, cublas, manual, fused, Padding::Tf32, ", cuBLAS GEMMs"),
        ("TF32", true, cublas, manual, fused, Padding::Tf32, ", cuBLAS GEMMs"),
        ("f32", false, own, manual, fused, Padding::Never, ", attention over unpadded tokens"),
        ("TF32", true, own, manual, fused, Padding::Never, ", attention over unpadded tokens"),
        ("f32", false, own, manual, candle, Padding::Tf32, ", Candle's AdamW"),
        ("TF32", true, own, manual, candle, Padding::Tf32, ", Candle's AdamW"),
        ("f32", false, own, autograd, candle, Padding::Tf32, ", Candle autograd and AdamW throughout"),
    ];
    for (mode, tf32, matmul, encoder_grad, update, padding, how) in rows_of {
        let _tf32 = Scoped::set(tf32, device::tf32, device::set_tf32);
        let _matmul = Scoped::set(matmul, gemm::f32_matmul, gemm::set_f32_matmul);
        let _padding = Scoped::set(padding, attention_padding, set_attention_padding);
        let model = TrainableLeWm::from_state_dict(&config, &state, &device)?;
        let mut trainer = Trainer::new(model, TrainOptions { encoder_grad, update, ..TrainOptions::default() })?;
        let name = format!("lewm train step B{b}x{FRAMES} {side}² {mode} (fwd+bwd+clip+AdamW{how})");
        let row = bench::time(&device, &name, args.warmup, args.iters, || trainer.step(&batch, None).map(drop))?;
        keep(&mut rows, row)?;
    }
    Ok(rows)
}

/// A process-wide switch (TF32, the GEMM kernels, the attention's padding) set for a scope and restored when
/// dropped (also on an early error return).
struct Scoped<T: Copy + 'static> {
    before: T,
    set: fn(T),
}

impl<T: Copy + 'static> Scoped<T> {
    fn set(value: T, get: fn() -> T, set: fn(T)) -> Self {
        let before = get();
        set(value);
        Self { before, set }
    }
}

impl<T: Copy + 'static> Drop for Scoped<T> {
    fn drop(&mut self) {
        (self.set)(self.before);
    }
}

/// One training step profiled (see [`profile_once`]).
fn profile(config: &Config, state: &StateDict, batch: &Batch, device: &Device) -> Result<(), CliError> {
    let mut trainer = Trainer::new(TrainableLeWm::from_state_dict(config, state, device)?, TrainOptions::default())?;
    profile_once(device, "one training step", || trainer.step(batch, None).map(drop).map_err(CliError::from))
}
