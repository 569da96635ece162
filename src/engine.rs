//! The control step: an artifact's [`Session`] and a [`Planner`] on one CUDA stream.
//!
//! [`Engine::step`] takes the newest observation and returns the actions to execute: it encodes the observation
//! into the session's context, plans (warm-started from the previous plan, shifted by the receding horizon,
//! bounded by the deadline when one is set), maps the executed actions to env units, and copies them — with the
//! plan's cost — to pinned host memory in **one** device-to-host copy. Nothing else leaves the GPU; without a
//! deadline the host does not wait for the GPU before that copy.
//!
//! [`Engine::issue`] and [`Engine::collect`] are the two halves of a step, for callers that overlap host work with
//! the GPU's: `issue` returns once the result's copy to host memory is enqueued ([`Engine::done_event`] marks it),
//! `collect` waits for it.
//!
//! # Threading
//! An `Engine` is neither `Send` nor `Sync` (it holds CUDA graphs, whose strided-op parameters live in a cache of
//! the thread that captured them: see [`crate::graph`]): create it on the inference thread and keep it there (the
//! daemon and the C ABI hand requests to that thread instead of sharing the engine). Moving it within that thread
//! is fine: the captured graphs stay valid (the session is boxed, so the address they are keyed by does not
//! change).
//!
//! ```no_run
//! # fn demo(obs: &candle_core::Tensor, goal: &candle_core::Tensor) -> swm::Result<()> {
//! use swm::engine::{Engine, EngineOptions};
//! use swm::session::Observation;
//! let mut engine = Engine::open("artifacts/lewm-pusht", &EngineOptions::default())?;
//! engine.set_goal(&Observation::new().frames("pixels", goal))?;
//! let step = engine.step(&Observation::new().frames("pixels", obs))?;
//! println!("{:?}: first action {:?}", step.source, step.first_action(0));
//! # Ok(()) }
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaEvent;

use crate::artifact::Artifact;
use crate::device::PinnedOutput;
use crate::error::{Error, Result};
use crate::planning::{CemConfig, PlanOptions, PlanSource, Planner, PlannerConfig, SolverConfig};
use crate::session::{Observation, Session, SessionOptions};

/// How an [`Engine`] is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// CUDA device ordinal (for [`Engine::open`]).
    pub gpu: usize,
    /// Session options (LeWM history and semantics, TD-MPC2 actor prior).
    pub session: SessionOptions,
    /// The planner; `None`: [`default_planner`] for the artifact.
    pub planner: Option<PlannerConfig>,
    /// Environments planned together (observations carry this batch dim).
    pub batch: usize,
    /// Time budget of a step, from the call to the action in host memory; `None`: every iteration runs.
    pub deadline: Option<Duration>,
    /// Run planner iterations eagerly instead of replaying a captured CUDA graph (debugging, comparisons).
    pub eager: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { gpu: 0, session: SessionOptions::default(), planner: None, batch: 1, deadline: None, eager: false }
    }
}

/// GPU time of each stage of a step (CUDA events on the engine's stream).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StageTimes {
    /// Observation upload, preprocessing and encoding.
    pub encode: Duration,
    /// Host time spent issuing the encode stage (uploads, kernel launches): close to `encode` when the GPU waited
    /// for the host, e.g. a preempted thread.
    pub encode_issue: Duration,
    /// Planning (every iteration, the actor prior, the action mapping).
    pub plan: Duration,
    /// The device-to-host copy of the result.
    pub copy: Duration,
    /// Host wall-clock time of the whole call.
    pub wall: Duration,
}

/// The result of one control step; borrows the engine's pinned output until the next step.
#[derive(Debug)]
pub struct Step<'a> {
    /// Executed env actions in env units, env-major: (envs, steps, env_action_dim) flattened.
    pub actions: &'a [f32],
    /// Reported plan cost per env (NaN when no iteration ran).
    pub cost: &'a [f32],
    /// Env steps to execute before the next step (receding horizon × action block).
    pub steps: usize,
    /// Env action dim.
    pub env_action_dim: usize,
    /// Where the actions came from.
    pub source: PlanSource,
    /// Planner iterations that ran.
    pub iterations: usize,
    /// Per-stage GPU times.
    pub times: StageTimes,
}

impl Step<'_> {
    /// The first env action of env `env` (what a robot executes now).
    pub fn first_action(&self, env: usize) -> &[f32] {
        let start = env * self.steps * self.env_action_dim;
        self.actions.get(start..start + self.env_action_dim).unwrap_or(&[])
    }
}

/// The planner an artifact gets by default: upstream's CEM (300 × 30) over 5 model actions, the artifact's action
/// block and bounds.
pub fn default_planner(session: &Session) -> Result<PlannerConfig> {
    let mut config = PlannerConfig::new(
        SolverConfig::Cem(CemConfig::default()),
        5,
        session.env_action_dim(),
        session.action_block(),
    );
    config.bounds = session.action_bounds()?;
    config.validate()?;
    Ok(config)
}

/// Session + planner + output buffers on one CUDA stream (see the module docs).
#[derive(Debug)]
pub struct Engine {
    /// Boxed: the planner keys its captured graph by the scorer's address, which must not change when the engine
    /// moves (into a thread, a struct, a `Result`) after the graph was captured, or every later deadline-bounded
    /// step would find the graph stale and run eagerly.
    session: Box<Session>,
    planner: Planner,
    device: Device,
    deadline: Option<Duration>,
    eager: bool,
    /// Env-unit mapping `x·std + mean` per env action dim, from `preprocess.json`.
    env_map: Option<(Tensor, Tensor)>,
    /// Device staging of one result: executed actions then costs; copied to `output` in one transfer.
    staging: Tensor,
    output: PinnedOutput,
    /// The step [`Engine::issue`] left for [`Engine::collect`].
    pending: Option<Pending>,
    /// Stage boundaries: start, encoded, planned, copied.
    events: [CudaEvent; 4],
}

impl Engine {
    /// Opens the artifact directory on GPU `options.gpu` (its own stream).
    pub fn open(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let artifact = Artifact::open(dir)?;
        let device = crate::device::cuda(options.gpu)?;
        Self::new(&artifact, &device, options)
    }

    /// Builds the artifact's session on `device` and the planner.
    pub fn new(artifact: &Artifact, device: &Device, options: &EngineOptions) -> Result<Self> {
        let session = Session::open(artifact, device, &options.session)?;
        Self::with_session(session, options)
    }

    /// An engine over an existing session (e.g. a model with random weights for benchmarks).
    pub fn with_session(session: Session, options: &EngineOptions) -> Result<Self> {
        let device = session.device().clone();
        let config = match &options.planner {
            Some(c) => c.clone(),
            None => default_planner(&session)?,
        };
        check_planner(&session, &config)?;
        let planner = Planner::new(config, options.batch, &device)?;
        let env_map = env_map(&session, &device)?;
        let (staging, output) = output_buffers(&planner, &device)?;
        let Device::Cuda(cuda) = &device else {
            return Err(Error::Internal("a session on a non-CUDA device".into()));
        };
        let ctx = cuda.cuda_stream().context().clone();
        let event = || ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT));
        Ok(Self {
            session: Box::new(session),
            planner,
            device,
            deadline: options.deadline,
            eager: options.eager,
            env_map,
            staging,
            output,
            events: [event()?, event()?, event()?, event()?],
            pending: None,
        })
    }

    /// `normalised` model-unit actions (env-action-dim values per env step) in env units, `x·std + mean` per env
    /// dim as the step maps its plan (host arithmetic; identity without an action normaliser).
    pub fn to_env_units(&self, normalised: &[f32]) -> Vec<f32> {
        let a = &self.session.preprocess().action;
        match (&a.std, &a.mean) {
            (Some(std), Some(mean)) if !std.is_empty() && std.len() == mean.len() => {
                normalised.iter().enumerate().map(|(i, x)| x * std[i % std.len()] + mean[i % mean.len()]).collect()
            }
            _ => normalised.to_vec(),
        }
    }

    /// The session (schema, preprocessing, model).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, mutably.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The planner.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The CUDA device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Replaces the planner (new buffers; the warm start is lost). Graphs are captured again on the next step. An
    /// error while a step is in flight ([`Engine::issue`]).
    pub fn set_planner(&mut self, config: PlannerConfig) -> Result<()> {
        // The issued step's copy still targets the current output buffer.
        self.check_idle()?;
        check_planner(&self.session, &config)?;
        let planner = Planner::new(config, self.planner.batch(), &self.device)?;
        let (staging, output) = output_buffers(&planner, &self.device)?;
        (self.planner, self.staging, self.output) = (planner, staging, output);
        Ok(())
    }

    /// Sets the step deadline (`None`: every iteration runs).
    pub fn set_deadline(&mut self, deadline: Option<Duration>) {
        self.deadline = deadline;
    }

    /// Sets the goal (LeWM).
    pub fn set_goal(&mut self, goal: &Observation<'_>) -> Result<()> {
        self.session.set_goal(goal)
    }

    /// Starts a new episode: forgets the observation history and the warm start.
    pub fn reset(&mut self) {
        self.session.reset();
        self.planner.reset();
    }

    /// Captures the planner's CUDA graph now (after the first observation and goal are set), so that the first
    /// deadline-bounded step does not run eagerly.
    pub fn prepare(&mut self) -> Result<()> {
        self.check_idle()?;
        if !self.eager {
            self.planner.prepare(&mut *self.session)?;
        }
        Ok(())
    }

    /// Whether the planner's CUDA graph is captured for the session as it is now (deadline-bounded steps replay
    /// it; without it they run eagerly).
    pub fn is_prepared(&self) -> bool {
        self.planner.is_prepared(&*self.session)
    }

    /// Encodes `obs` into the context and captures the planner's CUDA graph, without planning: call it once before
    /// the first deadline-bounded step, whose budget would otherwise be spent on eager iterations (kernel loading,
    /// no graph). The observation stays in the context (LeWM's window).
    pub fn warm_up(&mut self, obs: &Observation<'_>) -> Result<()> {
        self.check_idle()?;
        self.session.push_observation(obs)?;
        self.prepare()?;
        self.stream()?.synchronize()?;
        Ok(())
    }

    /// One control step: encode `obs` (appended to the context), plan, return the executed actions
    /// ([`Engine::issue`] then [`Engine::collect`]).
    pub fn step(&mut self, obs: &Observation<'_>) -> Result<Step<'_>> {
        self.issue(obs)?;
        self.collect()
    }

    /// Plans again from the current context without a new observation.
    pub fn replan(&mut self) -> Result<Step<'_>> {
        self.check_idle()?;
        let start = Instant::now();
        let stream = self.stream()?;
        self.events[0].record(&stream)?;
        self.events[1].record(&stream)?;
        self.pending = Some(self.finish(start, Duration::ZERO)?);
        self.collect()
    }

    /// The first half of [`Engine::step`]: encodes `obs`, plans and enqueues the copy of the result to pinned host
    /// memory, without waiting for the GPU to finish (with a deadline the planner still watches the GPU's progress
    /// to stop in time). [`Engine::done_event`] is recorded after the copy; [`Engine::collect`] waits for it and
    /// returns the step. A second `issue` (or `step`) before `collect` is an error.
    pub fn issue(&mut self, obs: &Observation<'_>) -> Result<()> {
        self.check_idle()?;
        let start = Instant::now();
        let stream = self.stream()?;
        self.events[0].record(&stream)?;
        self.session.push_observation(obs)?;
        self.events[1].record(&stream)?;
        let issued = start.elapsed();
        self.pending = Some(self.finish(start, issued)?);
        Ok(())
    }

    /// The CUDA event recorded after the issued step's result reached host memory (the engine stream's last
    /// work of [`Engine::issue`]): another stream or a caller's poll can wait on it.
    pub fn done_event(&self) -> &CudaEvent {
        &self.events[3]
    }

    /// Whether a step was issued and not collected yet.
    pub fn in_flight(&self) -> bool {
        self.pending.is_some()
    }

    /// The second half of [`Engine::step`]: waits for the issued step's result and returns it.
    pub fn collect(&mut self) -> Result<Step<'_>> {
        let p = self.pending.take().ok_or_else(|| Error::invalid_input("collect", "no step in flight"))?;
        let out = self.output.wait()?;
        let elapsed = |i: usize| -> Result<Duration> {
            let ms = self.events[i].elapsed_ms(&self.events[i + 1])?;
            Ok(Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1e3))
        };
        let times = StageTimes {
            encode: elapsed(0)?,
            encode_issue: p.encode_issue,
            plan: elapsed(1)?,
            copy: elapsed(2)?,
            wall: p.start.elapsed(),
        };
        let (n, b) = (p.envs * p.steps * p.action_dim, p.envs);
        Ok(Step {
            actions: &out[..n],
            cost: &out[n..n + b],
            steps: p.steps,
            env_action_dim: p.action_dim,
            source: p.source,
            iterations: p.iterations,
            times,
        })
    }

    fn check_idle(&self) -> Result<()> {
        if self.pending.is_some() {
            return Err(Error::invalid_input("step", "a step is in flight: collect it first"));
        }
        Ok(())
    }

    fn stream(&self) -> Result<std::sync::Arc<cudarc::driver::CudaStream>> {
        match &self.device {
            Device::Cuda(cuda) => Ok(cuda.cuda_stream()),
            _ => Err(Error::Internal("an engine on a non-CUDA device".into())),
        }
    }

    /// Plans, maps and enqueues the copy to pinned memory; `events[0..2]` are recorded, `events[3]` after the copy.
    fn finish(&mut self, start: Instant, encode_issue: Duration) -> Result<Pending> {
        let stream = self.stream()?;
        // A step without a deadline captures (once) and replays the iteration graph; with one, it replays the
        // graph if it is current and otherwise runs eagerly rather than capture inside the budget.
        if self.deadline.is_none()
            && !self.eager
            && !self.planner.is_prepared(&*self.session)
            && crate::graph::may_capture()
        {
            self.planner.prepare(&mut *self.session)?;
        }
        let options = PlanOptions { deadline: self.deadline.map(|d| start + d), eager: self.eager };
        let plan = self.planner.plan(&mut *self.session, &options)?;
        let (source, iterations) = (plan.source, plan.iterations);
        let executed = plan.executed()?; // (B, steps, A_env)
        let (b, steps, a) = executed.dims3()?;
        let executed = match &self.env_map {
            Some((std, mean)) => executed.broadcast_mul(std)?.broadcast_add(mean)?,
            None => executed,
        };
        let n = b * steps * a;
        self.staging.slice_set(&executed.flatten_all()?, 0, 0)?;
        self.staging.slice_set(&plan.cost.to_dtype(DType::F32)?, 0, n)?;
        self.events[2].record(&stream)?;
        self.output.copy_from(&self.staging)?;
        self.events[3].record(&stream)?;
        Ok(Pending { start, encode_issue, envs: b, steps, action_dim: a, source, iterations })
    }
}

/// What [`Engine::issue`] leaves for [`Engine::collect`].
#[derive(Debug, Clone, Copy)]
struct Pending {
    start: Instant,
    encode_issue: Duration,
    /// The pinned output holds envs × steps × action dim executed action values, then `envs` costs.
    envs: usize,
    steps: usize,
    action_dim: usize,
    source: PlanSource,
    iterations: usize,
}

/// The planner must produce the session's actions.
fn check_planner(session: &Session, config: &PlannerConfig) -> Result<()> {
    if config.macro_action_dim() != session.action_dim() {
        return Err(Error::invalid_input(
            "planner",
            format!(
                "plans {} x {} env actions per model action; this {} model takes {} (action block {})",
                config.action_block,
                config.action_dim,
                session.family(),
                session.action_dim(),
                session.action_block()
            ),
        ));
    }
    Ok(())
}

/// `(std, mean)` per env action dim from `preprocess.action`, when the artifact has dataset statistics.
fn env_map(session: &Session, device: &Device) -> Result<Option<(Tensor, Tensor)>> {
    let a = &session.preprocess().action;
    let env = session.env_action_dim();
    match (&a.std, &a.mean) {
        (Some(std), Some(mean)) if std.len() == env && mean.len() == env => {
            Ok(Some((Tensor::new(std.as_slice(), device)?, Tensor::new(mean.as_slice(), device)?)))
        }
        (None, None) => Ok(None),
        _ => Err(Error::invalid_input(
            "preprocess.action",
            format!("mean and std must both be given with {env} values (the env action dim)"),
        )),
    }
}

/// The device staging tensor and pinned host buffer of one step's result.
fn output_buffers(planner: &Planner, device: &Device) -> Result<(Tensor, PinnedOutput)> {
    let c = planner.config();
    let len = planner.batch() * (c.receding() * c.action_block * c.action_dim + 1);
    Ok((Tensor::zeros(len, DType::F32, device)?, PinnedOutput::new(device, len)?))
}
