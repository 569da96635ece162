//! `swm bench plan`: planner rows through an [`Engine`] (`replan`, every iteration from a CUDA graph) per matmul
//! precision, and one full control step (`step`: upload, encode, CEM 300×30, copy).

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;

use swm::artifact::{Artifact, Preprocess, Schema};
use swm::config::Family;
use swm::device;
use swm::engine::{Engine, EngineOptions};
use swm::models::lewm::{Config, LeWm};
use swm::planning::{ActionBounds, IcemConfig, PlannerConfig, SolverConfig};
use swm::session::{Session, SessionOptions};
use swm::tools::bench::{self, BenchRow};
use swm::tools::demo;

use super::keep;
use crate::cli::BenchPlanArgs;
use crate::error::CliError;
use crate::inputs::{self, RandomObservation};
use crate::precision::Precision;

/// Env steps per LeWM action block (PushT's frameskip).
const BLOCK: usize = 5;
/// Planning horizon in blocks.
const HORIZON: usize = 5;

/// CEM 300 × 30, upstream defaults.
fn cem() -> (&'static str, SolverConfig) {
    ("cem 300x30", SolverConfig::Cem(Default::default()))
}

/// MPPI 300 × 30, upstream defaults.
fn mppi() -> (&'static str, SolverConfig) {
    ("mppi 300x30", SolverConfig::Mppi(Default::default()))
}

/// iCEM 1024 × 5.
fn icem() -> (&'static str, SolverConfig) {
    ("icem 1024x5", SolverConfig::Icem(IcemConfig { num_samples: 1024, n_steps: 5, ..Default::default() }))
}

/// The process's precision for CEM, MPPI and iCEM, then CEM and iCEM on cuBLAS f32 and with TF32 matmuls
/// (upstream's speed knob is torch.compile + TF32); then the engine step row.
pub fn run(args: &BenchPlanArgs) -> Result<Vec<BenchRow>, CliError> {
    let artifact = args.path.as_deref().map(open).transpose()?;
    args.report.check()?;
    let device = device::cuda(args.device.gpu)?;
    let session = match &artifact {
        Some(artifact) => Session::open(artifact, &device, &SessionOptions::default())?,
        None => pusht_session(&device)?,
    };
    let tf32 = if device::tf32() { " (TF32 on)" } else { "" };
    outln!("device: {}{tf32}", device::name(&device).unwrap_or_default());
    let family = session.family();
    let (block, env) = (session.action_block(), session.env_action_dim());
    let obs = RandomObservation::new(session.schema(), session.preprocess())?;
    let goal = RandomObservation::new(session.schema(), session.preprocess())?;
    let config = |solver: SolverConfig| {
        let mut config = PlannerConfig::new(solver, HORIZON, env, block);
        if matches!(config.solver, SolverConfig::Icem(_)) {
            // iCEM clamps to the env Box (PushT: [-1, 1]²), as upstream does; CEM and MPPI do not clip.
            config.bounds = Some(ActionBounds { low: vec![-1.0; env], high: vec![1.0; env] });
        }
        config
    };
    let options = EngineOptions { planner: Some(config(cem().1)), ..Default::default() };
    let mut engine = Engine::with_session(session, &options)?;
    if family == Family::Lewm {
        engine.set_goal(&goal.observation())?;
    }
    engine.session_mut().set_observation(&obs.observation())?;
    let default = Precision::current();
    let specs = [(cem(), default), (mppi(), default), (icem(), default)].into_iter().chain([
        (cem(), Precision::CublasF32),
        (icem(), Precision::CublasF32),
        (cem(), Precision::Tf32),
        (icem(), Precision::Tf32),
        (cem(), Precision::Tf32Cublas),
        (icem(), Precision::Tf32Cublas),
        (cem(), Precision::Tf32Own),
        (icem(), Precision::Tf32Own),
    ]);
    let mut rows = Vec::new();
    for ((name, solver), precision) in specs {
        let label = format!("{family} {name} H{HORIZON} {}, CUDA graph", precision.label());
        let row = precision.with(|| -> Result<BenchRow, CliError> {
            // A fresh planner, so that its graph is captured under this precision.
            engine.set_planner(config(solver))?;
            Ok(bench::time(&device, &label, 2, args.iters, || engine.replan().map(drop))?)
        })?;
        keep(&mut rows, row)?;
    }
    // CEM with every GEMM running the whole K in one block (no split-K partial sums).
    let (name, solver) = cem();
    let label = format!("{family} {name} H{HORIZON} {}, CUDA graph, no split-K", default.label());
    engine.set_planner(config(solver))?;
    swm::ops::gemm::set_split_k(false);
    let unsplit = bench::time(&device, &label, 2, args.iters, || engine.replan().map(drop));
    swm::ops::gemm::set_split_k(true);
    keep(&mut rows, unsplit?)?;
    engine.set_planner(config(cem().1))?;
    let label = format!("{family} engine step (encode + CEM 300x30)");
    let row = bench::time(&device, &label, 2, args.iters, || engine.step(&obs.observation()).map(drop))?;
    keep(&mut rows, row)?;
    Ok(rows)
}

/// The PATH's artifact (or checkpoint with the default interface), on the host; LeWM plans in blocks of 5.
fn open(path: &Path) -> Result<Artifact, CliError> {
    let mut artifact = inputs::open(Some(path))?.artifact;
    if artifact.schema.family == Family::Lewm && artifact.preprocess.action.block != BLOCK {
        artifact.preprocess.action.block = BLOCK;
        artifact.validate().map_err(|e| {
            CliError::usage(format!("{}: bench plan plans LeWM in action blocks of {BLOCK}: {e}", path.display()))
        })?;
    }
    Ok(artifact)
}

/// The PushT-sized LeWM with deterministic random weights, planning in blocks of 5.
fn pusht_session(device: &Device) -> Result<Session, CliError> {
    let cfg = Config::pusht();
    let model = Arc::new(LeWm::from_state_dict(&cfg, &demo::random_state_dict(&cfg, 0)?, device)?);
    let mut preprocess = Preprocess::for_lewm(&cfg);
    preprocess.action.block = BLOCK;
    Ok(Session::lewm(model, Schema::for_lewm(&cfg), preprocess, &SessionOptions::default())?)
}
