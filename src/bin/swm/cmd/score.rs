//! `swm score`: a GPU smoke run — encode a random observation (LeWM: and goal), score random candidates.

use std::process::ExitCode;

use candle_core::{DType, Device, Tensor};

use swm::config::Family;
use swm::device;
use swm::planning::CandidateScorer;
use swm::session::{Session, SessionOptions};

use crate::cli::ScoreArgs;
use crate::error::CliError;
use crate::inputs::{self, RandomObservation};

/// Scores `--samples` random candidates of `--horizon` steps through a [`Session`] and prints the best and worst.
pub fn run(args: ScoreArgs) -> Result<ExitCode, CliError> {
    let opened = inputs::open(args.path.as_deref())?;
    let artifact = &opened.artifact;
    if args.profile && artifact.schema.family != Family::Lewm {
        return Err(CliError::usage(format!(
            "--profile: scoring graphs exist for LeWM only; this is a {} model",
            artifact.schema.family
        )));
    }
    let obs = RandomObservation::new(&artifact.schema, &artifact.preprocess)?;
    let device = device::cuda(args.device.gpu)?;
    let mut session = Session::open(artifact, &device, &SessionOptions::default())?;
    session.set_observation(&obs.observation())?;
    if session.family() == Family::Lewm {
        let goal = RandomObservation::new(&artifact.schema, &artifact.preprocess)?;
        session.set_goal(&goal.observation())?;
    }
    let candidates = Tensor::randn(0f32, 1f32, (1, args.samples, args.horizon, session.action_dim()), &device)?;
    let cost = session.score(&candidates)?;
    if args.profile {
        profile(&mut session, &candidates, &device)?;
    }
    let best = cost.argmin(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?.first().copied().unwrap_or(0) as usize;
    let costs = cost.to_vec2::<f32>()?;
    let row = costs.first().map(Vec::as_slice).unwrap_or_default();
    outln!(
        "scored {} candidates x {} steps on {}: best #{best} cost {:.4} (worst {:.4})",
        args.samples,
        args.horizon,
        device::name(&device).unwrap_or_default(),
        row.get(best).copied().unwrap_or(f32::NAN),
        row.iter().copied().fold(f32::MIN, f32::max)
    );
    Ok(ExitCode::SUCCESS)
}

/// One graph replay of the LeWM scoring between cuProfilerStart and cuProfilerStop (captured before, so the
/// capture stays outside the profiled range).
fn profile(session: &mut Session, candidates: &Tensor, device: &Device) -> Result<(), CliError> {
    let not_lewm = || CliError::usage("--profile: LeWM only");
    let Device::Cuda(cuda) = device else { return Err(CliError::usage("--profile: needs a CUDA device")) };
    let stream = cuda.cuda_stream();
    let driver = |e: cudarc::driver::DriverError| CliError::from(swm::Error::from(e));
    session.as_lewm_mut().ok_or_else(not_lewm)?.score_graphed(candidates)?;
    stream.synchronize().map_err(driver)?;
    cudarc::driver::safe::profiler_start().map_err(driver)?;
    session.as_lewm_mut().ok_or_else(not_lewm)?.score_graphed(candidates)?;
    stream.synchronize().map_err(driver)?;
    cudarc::driver::safe::profiler_stop().map_err(driver)?;
    Ok(())
}
