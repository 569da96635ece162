//! `swm bench tdmpc2`: the official baseline's MPPI 512×6×H3 through an [`Engine`], and one planning cost of 512
//! candidates, per matmul precision.

use std::sync::Arc;

use candle_core::Tensor;

use swm::artifact::{Preprocess, Schema};
use swm::device;
use swm::engine::{Engine, EngineOptions};
use swm::models::tdmpc2::{Config, TdMpc2};
use swm::planning::{CandidateScorer, MppiConfig, PlannerConfig, SolverConfig};
use swm::session::{Session, SessionOptions};
use swm::tools::bench::{self, BenchRow};
use swm::tools::demo;

use super::{keep, profile_once};
use crate::cli::BenchTdmpc2Args;
use crate::error::CliError;
use crate::inputs::RandomObservation;
use crate::precision::Precision;

/// Candidates of the baseline's MPPI and of the cost row.
const SAMPLES: usize = 512;
/// Planning horizon.
const HORIZON: usize = 3;

/// MPPI 512 × 6, top-64, temperature 0.5, H3 (the official baseline's planner).
fn planner(action_dim: usize) -> PlannerConfig {
    let mppi = MppiConfig { num_samples: SAMPLES, n_steps: 6, topk: Some(64), temperature: 0.5, ..Default::default() };
    PlannerConfig::new(SolverConfig::Mppi(mppi), HORIZON, action_dim, 1)
}

/// Three rows per precision (the process's own, cuBLAS f32, TF32 on cuBLAS for plain GEMMs, on cuBLAS throughout and
/// on swm's kernel throughout), on [`Config::bench`] with random weights: a
/// replanned step (warm start, no new observation), a step from a new observation without warm start (the work of
/// the official solver and the PyTorch peer), and the cost of 512 candidates; then the new-observation step with
/// every layer on its own ([`TdMpc2::without_fusion`]), what the fused hot path buys.
pub fn run(args: &BenchTdmpc2Args) -> Result<Vec<BenchRow>, CliError> {
    args.report.check()?;
    let device = device::cuda(args.device.gpu)?;
    outln!("device: {}", device::name(&device).unwrap_or_default());
    let config = Config::bench();
    let model = Arc::new(TdMpc2::from_state_dict(&config, &demo::random_tdmpc2_state_dict(&config, 7)?, &device)?);
    let (schema, preprocess) = (Schema::for_tdmpc2(&config), Preprocess::for_tdmpc2(&config));
    let obs = RandomObservation::new(&schema, &preprocess)?;
    let composed = Arc::new(model.without_fusion());
    let session = Session::tdmpc2(model, schema.clone(), preprocess.clone(), &SessionOptions::default())?;
    let a = config.action_dim;
    let mut engine = Engine::with_session(session, &EngineOptions { planner: Some(planner(a)), ..Default::default() })?;
    engine.session_mut().set_observation(&obs.observation())?;
    if args.profile {
        return profile(&mut engine, &obs, &device).map(|()| Vec::new());
    }
    let candidates = Tensor::rand(-1f32, 1.0, (1, SAMPLES, HORIZON, a), &device)?;
    let mut rows = Vec::new();
    for precision in
        [Precision::current(), Precision::CublasF32, Precision::Tf32, Precision::Tf32Cublas, Precision::Tf32Own]
    {
        let label = precision.label();
        let rows_of_precision = precision.with(|| -> Result<[BenchRow; 3], CliError> {
            // A fresh planner, so that its graph is captured under this precision.
            engine.set_planner(planner(a))?;
            let plan =
                bench::time(&device, &format!("tdmpc2 mppi 512x6 H3 {label}, CUDA graph"), 3, args.iters, || {
                    engine.replan().map(drop)
                })?;
            let name = format!("tdmpc2 mppi 512x6 H3 {label}, new observation, no warm start");
            let fresh = fresh_plans(&device, &mut engine, &obs, &name, args.iters)?;
            let cost = bench::time(&device, &format!("tdmpc2 cost 512 x H3 {label}, eager"), 5, args.iters, || {
                engine.session_mut().score(&candidates).map(drop)
            })?;
            Ok([plan, fresh, cost])
        })?;
        for row in rows_of_precision {
            keep(&mut rows, row)?;
        }
    }
    // The same step with every GEMM running the whole K in one block (no split-K reductions).
    engine.set_planner(planner(a))?;
    let label = Precision::current().label();
    let name = format!("tdmpc2 mppi 512x6 H3 {label}, new observation, no warm start, no split-K");
    swm::ops::gemm::set_split_k(false);
    let unsplit = fresh_plans(&device, &mut engine, &obs, &name, args.iters);
    swm::ops::gemm::set_split_k(true);
    keep(&mut rows, unsplit?)?;
    let session = Session::tdmpc2(composed, schema, preprocess, &SessionOptions::default())?;
    let options = EngineOptions { planner: Some(planner(a)), ..Default::default() };
    let mut engine = Engine::with_session(session, &options)?;
    let name = format!("tdmpc2 mppi 512x6 H3 {label}, new observation, no warm start, layers unfused");
    keep(&mut rows, fresh_plans(&device, &mut engine, &obs, &name, args.iters)?)?;
    Ok(rows)
}

/// The official solver's and the peer's work, timed: a new observation encoded and a plan without warm start (the
/// actor's prior over the whole horizon), the result in host memory.
fn fresh_plans(
    device: &candle_core::Device,
    engine: &mut Engine,
    obs: &RandomObservation,
    name: &str,
    iters: usize,
) -> Result<BenchRow, CliError> {
    let observation = obs.observation();
    Ok(bench::time(device, name, 3, iters, || fresh_plan(engine, &observation))?)
}

/// One plan from a new observation without warm start.
fn fresh_plan(engine: &mut Engine, observation: &swm::session::Observation<'_>) -> swm::Result<()> {
    engine.reset();
    engine.step(observation).map(drop)
}

/// One MPPI plan from a new observation profiled (see [`profile_once`]).
fn profile(engine: &mut Engine, obs: &RandomObservation, device: &candle_core::Device) -> Result<(), CliError> {
    let observation = obs.observation();
    let what = "one MPPI 512x6 H3 plan (new observation, CUDA graphs)";
    profile_once(device, what, || fresh_plan(engine, &observation).map_err(CliError::from))
}
