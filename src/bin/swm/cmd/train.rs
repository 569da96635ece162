//! `swm train-batch`: AdamW steps of upstream's LeWM objective on one batch, on the GPU, then the trained artifact.

use std::process::ExitCode;
use std::time::Instant;

use swm::checkpoint::LoadOptions;
use swm::config::ModelConfig;
use swm::device;
use swm::training::{Batch, Schedule, TrainOptions, TrainableLeWm, Trainer};

use crate::cli::{existing, TrainBatchArgs};
use crate::error::CliError;
use crate::inputs;

/// Trains `--steps` steps on the batch, printing each step's loss terms, gradient norm and time, and writes the
/// artifact to `--out`.
pub fn run(args: TrainBatchArgs) -> Result<ExitCode, CliError> {
    existing(&args.artifact, "--artifact")?;
    existing(&args.batch, "--batch")?;
    let opened = inputs::open(Some(&args.artifact))?;
    let artifact = &opened.artifact;
    let ModelConfig::Lewm(config) = &artifact.checkpoint.config else {
        return Err(CliError::usage(format!(
            "--artifact {}: training is for LeWM; this is a {} model",
            args.artifact.display(),
            artifact.schema.family
        )));
    };
    let device = device::cuda(args.device.gpu)?;
    device.set_seed(args.seed)?;
    let weights = artifact.checkpoint.state_dict(&LoadOptions::default())?;
    let mut model = TrainableLeWm::from_state_dict(config, &weights, &device)?;
    if let Some(p) = args.dropout {
        model.set_dropout(p)?;
    }
    let batch = Batch::from_npz(&args.batch, &artifact.preprocess.normalization, &device)?;
    let options = TrainOptions {
        lr: args.lr,
        weight_decay: args.weight_decay,
        clip: (args.clip > 0.0).then_some(args.clip),
        num_proj: args.num_proj,
        encoder_grad: args.encoder_grad.into(),
        update: args.update.into(),
        ..TrainOptions::default()
    };
    let mut trainer = Trainer::new(model, options)?;
    let (b, t) = (batch.pixels().dim(0)?, batch.pixels().dim(1)?);
    outln!(
        "training on {}: {b} clips × {t} frames, {} steps, AdamW lr {} weight decay {}, clip {}",
        device::name(&device).unwrap_or_default(),
        args.steps,
        args.lr,
        args.weight_decay,
        options.clip.map_or("off".to_string(), |c| c.to_string())
    );
    let schedule = Schedule { base: args.lr, warmup: args.warmup_steps, cosine: args.cosine, total: args.steps };
    for k in 0..args.steps {
        let start = Instant::now();
        let lr = schedule.lr(k);
        trainer.set_lr(lr)?;
        let out = trainer.step(&batch, None)?;
        // Reading the scalars waits for the step: the time is the step's, on the GPU and the host.
        let scalar = |t: &candle_core::Tensor| t.to_scalar::<f32>();
        let (loss, pred, sigreg, norm) = (
            scalar(&out.loss.loss)?,
            scalar(&out.loss.pred_loss)?,
            scalar(&out.loss.sigreg_loss)?,
            scalar(&out.grad_norm)?,
        );
        if !loss.is_finite() || !norm.is_finite() {
            return Err(swm::Error::invalid_input(
                "batch",
                format!(
                    "step {}: the loss is {loss}, the gradient norm {norm} (NaN or infinite frames in the batch, or \
                     a learning rate too high?); nothing written",
                    k + 1
                ),
            )
            .into());
        }
        outln!(
            "step {:>4}/{}  lr {lr:.3e}  loss {loss:.6}  pred {pred:.6}  sigreg {sigreg:.6}  |grad| {norm:.4}  {:.1} ms",
            k + 1,
            args.steps,
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    let trained = trainer.model().state_dict()?;
    artifact.write_with_weights(&trained, &args.out)?;
    outln!("wrote {} ({} tensors, {} parameters)", args.out.display(), trained.len(), trained.parameter_count());
    Ok(ExitCode::SUCCESS)
}
