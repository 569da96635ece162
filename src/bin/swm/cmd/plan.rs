//! `swm plan`: control steps of an [`Engine`] on random observations, for any artifact or checkpoint.

use std::process::ExitCode;

use swm::config::Family;
use swm::device;
use swm::engine::{Engine, EngineOptions};
use swm::session::{Session, SessionOptions};

use crate::cli::PlanArgs;
use crate::error::CliError;
use crate::inputs::{self, RandomObservation};
use crate::planner::{self, Planned};

/// Opens the artifact, checks the planner flags, builds the engine, then runs `--repeat` warm-started control
/// steps on one random observation (LeWM: towards a random goal) and prints each step.
pub fn run(args: PlanArgs) -> Result<ExitCode, CliError> {
    let mut opened = inputs::open(args.path.as_deref())?;
    let planned = Planned::new(&args.planner, &mut opened.artifact)?;
    let deadline = planner::deadline(&args.planner)?;
    let artifact = &opened.artifact;
    let obs = RandomObservation::new(&artifact.schema, &artifact.preprocess)?;
    let goal = RandomObservation::new(&artifact.schema, &artifact.preprocess)?;

    let device = device::cuda(args.device.gpu)?;
    let session = Session::open(artifact, &device, &SessionOptions::default())?;
    let config = planned.finish(&session)?;
    outln!("planner: {}", serde_json::to_string(&config).unwrap_or_default());
    let options = EngineOptions { gpu: args.device.gpu, planner: Some(config), deadline, ..Default::default() };
    let mut engine = Engine::with_session(session, &options)?;
    if engine.session().family() == Family::Lewm {
        engine.set_goal(&goal.observation())?;
    }
    // The first observation and the goal are set, so the planner's graph is captured before the first
    // (possibly deadline-bounded) step.
    engine.session_mut().set_observation(&obs.observation())?;
    engine.prepare()?;
    for i in 0..args.repeat {
        let step = engine.step(&obs.observation())?;
        let t = step.times;
        outln!(
            "plan {i}: {:?} after {} iterations in {:.2} ms (GPU: encode {:.3} ms, plan {:.3} ms, copy {:.3} ms), \
             cost {:.4}; first env action {:?}",
            step.source,
            step.iterations,
            t.wall.as_secs_f64() * 1e3,
            t.encode.as_secs_f64() * 1e3,
            t.plan.as_secs_f64() * 1e3,
            t.copy.as_secs_f64() * 1e3,
            step.cost.first().copied().unwrap_or(f32::NAN),
            step.first_action(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}
