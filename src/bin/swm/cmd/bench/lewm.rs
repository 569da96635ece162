//! `swm bench lewm`: encode one frame and score S candidates × H steps, eager and from CUDA graphs.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};

use swm::artifact::Checkpoint;
use swm::checkpoint::{LoadOptions, StateDict};
use swm::config::ModelConfig;
use swm::device;
use swm::models::lewm::{Config, GraphedEncoder, LeWm, LeWmSession, RolloutSemantics};
use swm::tools::bench::{self, BenchRow};
use swm::tools::demo;

use super::{keep, profile_once};
use crate::cli::{existing, BenchLewmArgs, LewmPart};
use crate::error::CliError;

/// The four LeWM rows, or `--profile`'s one profiled run.
pub fn run(args: &BenchLewmArgs) -> Result<Vec<BenchRow>, CliError> {
    let checkpoint = args.path.as_deref().map(open).transpose()?;
    args.report.check()?;
    let device = device::cuda(args.device.gpu)?;
    let model = Arc::new(model(checkpoint, &device)?);
    outln!("device: {}", device::name(&device).unwrap_or_default());
    let (warmup, iters, samples, horizon) = (args.warmup, args.iters, args.samples, args.horizon);
    let frame = random_frame(&model)?;
    let side = model.config().encoder.image_size;
    let mut rows = Vec::new();
    let row = bench::time(&device, &format!("lewm encode 1x{side}x{side} fp32"), warmup, iters, || {
        model.encode(&frame).map(drop)
    })?;
    keep(&mut rows, row)?;
    let encoder = GraphedEncoder::new(&model, 1, 1)?;
    let mut session = LeWmSession::new(model.clone(), RolloutSemantics::Release011);
    session.set_observation(&frame)?;
    session.set_goal(&random_frame(&model)?)?;
    let candidates = Tensor::randn(0f32, 1f32, (1, samples, horizon, model.action_dim()), &device)?;
    match args.profile {
        Some(LewmPart::Encode) => {
            let what = format!("one {side}x{side} encode (CUDA graph)");
            return profile_once(&device, &what, || encoder.encode(&frame).map(drop).map_err(CliError::from))
                .map(|()| rows);
        }
        Some(LewmPart::Score) => {
            let what = format!("one score of {samples} candidates x H{horizon} (CUDA graph)");
            let mut work = || session.score_graphed(&candidates).map(drop).map_err(CliError::from);
            return profile_once(&device, &what, &mut work).map(|()| rows);
        }
        None => {}
    }
    let row = bench::time(&device, &format!("lewm encode 1x{side}x{side} fp32, CUDA graph"), warmup, iters, || {
        encoder.encode(&frame).map(drop)
    })?;
    keep(&mut rows, row)?;
    let name = format!("lewm score {samples}x H{horizon} fp32");
    let row = bench::time(&device, &name, warmup, iters, || session.score(&candidates).map(drop))?;
    keep(&mut rows, row)?;
    let row = bench::time(&device, &format!("{name}, CUDA graph"), warmup, iters, || {
        session.score_graphed(&candidates).map(drop)
    })?;
    keep(&mut rows, row)?;
    Ok(rows)
}

/// A LeWM checkpoint or artifact given as PATH (opened on the host; usage errors for a missing path or another
/// family).
pub(super) fn open(path: &Path) -> Result<(Config, Checkpoint), CliError> {
    let checkpoint = Checkpoint::open(existing(path, "PATH")?)?;
    let ModelConfig::Lewm(config) = &checkpoint.config else {
        return Err(CliError::usage(format!("{}: not a LeWM checkpoint", path.display())));
    };
    Ok((config.as_ref().clone(), checkpoint))
}

/// The checkpoint's model, or the PushT-sized config with deterministic random weights.
fn model(checkpoint: Option<(Config, Checkpoint)>, device: &Device) -> Result<LeWm, CliError> {
    let (config, state) = weights(checkpoint)?;
    Ok(LeWm::from_state_dict(&config, &state, device)?)
}

/// The checkpoint's config and weights, or the PushT-sized config with deterministic random weights.
pub(super) fn weights(checkpoint: Option<(Config, Checkpoint)>) -> Result<(Config, StateDict), CliError> {
    Ok(match checkpoint {
        Some((config, checkpoint)) => {
            let state = checkpoint.state_dict(&LoadOptions::default())?;
            (config, state)
        }
        None => {
            let config = Config::pusht();
            let state = demo::random_state_dict(&config, 0)?;
            (config, state)
        }
    })
}

/// A random, already-normalised frame (1, 1, 3, S, S) of the model's input size, on the device.
fn random_frame(model: &LeWm) -> Result<Tensor, CliError> {
    let side = model.config().encoder.image_size;
    Ok(Tensor::randn(0f32, 1f32, (1, 1, 3, side, side), model.device())?)
}
