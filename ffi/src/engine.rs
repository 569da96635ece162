//! What a handle's engine thread owns (the [`Engine`]) and what it runs: observations built from the inputs a
//! calling thread staged ([`crate::handle::Handle`] keeps those, on the caller's side).

use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use runtime::engine::{Engine, EngineOptions};
use runtime::ops::FrameLayout;
use runtime::planning::{PlanSource, PlannerOverrides};
use runtime::session::{Observation, SessionOptions};

use crate::error::Failure;
use crate::swm_status as SwmStatus;

/// One staged input, made ready for an [`Observation`] on the staging caller's thread (host tensors built there,
/// not on the plan's critical path).
pub(crate) enum Staged {
    /// A state vector: a `(1, n)` host tensor (moved, not copied, out of the staged values).
    State(Tensor),
    /// A frame: a host or device tensor of its bytes, `(1, bytes)`, and their layout. Host bytes are uploaded by
    /// the step, exactly as for a Rust caller of `Engine::step` with host tensors; device bytes were copied on the
    /// engine's stream at staging.
    Frame(Tensor, FrameLayout),
    /// A JPEG file.
    Jpeg(Vec<u8>),
}

impl Staged {
    /// A state vector of `values`.
    pub fn state(values: Vec<f32>) -> Result<Self, Failure> {
        let n = values.len();
        Ok(Self::State(Tensor::from_vec(values, (1, n), &Device::Cpu)?))
    }

    /// Frame bytes in host memory.
    pub fn host_frame(bytes: Vec<u8>, layout: FrameLayout) -> Result<Self, Failure> {
        let n = bytes.len();
        Ok(Self::Frame(Tensor::from_vec(bytes, (1, n), &Device::Cpu)?, layout))
    }
}

/// Where a plan's actions go: the caller's buffer, written by the job itself (on whichever thread runs it) straight
/// from the engine's pinned result, with no intermediate copy. The caller is blocked in the C call until the job
/// replies, so the buffer outlives every write.
pub(crate) struct ActionsOut {
    /// The caller's `float *`, as an address (a job may run on the engine thread).
    ptr: usize,
    capacity: usize,
    /// Every executed action (steps × action dim) instead of the first.
    sequence: bool,
}

impl ActionsOut {
    /// `ptr` non-NULL, valid for `capacity` floats until the job that takes this has replied.
    ///
    /// # Safety
    /// As above: the caller of the C entry point guarantees the buffer; it stays blocked in the call while the
    /// job runs.
    pub unsafe fn new(ptr: *mut f32, capacity: usize, sequence: bool) -> Self {
        Self { ptr: ptr as usize, capacity, sequence }
    }

    /// Writes env 0's first action (or its whole executed sequence) of `actions` (steps × `action_dim`); returns
    /// the number of floats written. Consumes the destination: one write per call.
    fn write(self, actions: &[f32], action_dim: usize) -> Result<usize, Failure> {
        let n = if self.sequence { actions.len() } else { action_dim.min(actions.len()) };
        if self.capacity < n {
            return Err(Failure::new(
                SwmStatus::BufferTooSmall,
                format!("actions holds {} floats, the plan has {n} (the plan was made and is lost)", self.capacity),
            ));
        }
        // SAFETY: `ptr` holds `capacity >= n` floats while the caller is blocked in the call (`ActionsOut::new`'s
        // contract); the pinned result does not overlap the caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(actions.as_ptr(), self.ptr as *mut f32, n) };
        Ok(n)
    }
}

/// One input of the model's observations.
#[derive(Clone)]
pub(crate) struct Input {
    pub name: String,
    pub shape: Shape,
}

/// An input's shape.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// A state vector of this many values.
    State(usize),
    /// Frames of (height, width) at the model's input.
    Frame(usize, usize),
}

/// The result of a plan.
pub(crate) struct Planned {
    pub source: PlanSource,
    pub iterations: usize,
    pub steps: usize,
    pub action_dim: usize,
    pub cost: f32,
    /// Floats written into the caller's buffer ([`ActionsOut`]).
    pub written: usize,
    pub encode: Duration,
    pub plan: Duration,
    pub wall: Duration,
    /// The whole job on the engine thread (observation, step, result).
    pub job: Duration,
    /// Of `job`, the time before the step's call (the observation built from the staged inputs).
    pub before_step: Duration,
    /// Of `job`, the time after the step's call returned (the result written into the caller's buffer).
    pub after_step: Duration,
}

/// Inputs staged by one calling thread, by input name.
pub(crate) type StagedInputs = Vec<(String, Staged)>;

/// The engine thread's state.
pub(crate) struct State {
    pub engine: Engine,
    pub device: Device,
    /// The last job's inputs, dropped after its reply ([`State::after_reply`]) or, after a plan on a calling
    /// thread, while the next plan's GPU work runs.
    spent: StagedInputs,
    /// The last job stepped the engine: check after the reply that the planner's graph is captured.
    stepped: bool,
    /// A capture after a reply failed: not tried again until the planner changes (each try costs a warm-up
    /// iteration and a capture, paid by the next call).
    capture_failed: bool,
    /// Steps taken (plans and collected split plans), on any thread.
    steps: u64,
}

impl State {
    /// Opens `dir` on GPU `gpu`.
    pub fn open(dir: &std::path::Path, options: &EngineOptions) -> Result<Self, Failure> {
        let engine = Engine::open(dir, options)?;
        let device = engine.device().clone();
        Ok(Self { engine, device, spent: Vec::new(), stepped: false, capture_failed: false, steps: 0 })
    }

    /// Makes the engine's CUDA context — the device's primary context — current on the calling thread. A thread
    /// that had another context current gets it back when the returned guard drops; one that had none keeps the
    /// primary context (what the CUDA runtime's first call on that thread would bind), so that a control loop's
    /// calls do not rebind it twice each (about a microsecond each on the GPU hosts).
    pub fn make_current(&self) -> Result<Current, Failure> {
        let failed = |e: cudarc::driver::DriverError| {
            Failure::new(SwmStatus::Runtime, format!("making the engine's CUDA context current: {e}"))
        };
        let Device::Cuda(cuda) = &self.device else {
            return Ok(Current(None));
        };
        let stream = cuda.cuda_stream();
        let context = stream.context();
        match cudarc::driver::result::ctx::get_current().map_err(failed)? {
            Some(current) if current == context.cu_ctx() => Ok(Current(None)),
            previous => {
                context.bind_to_thread().map_err(failed)?;
                Ok(Current(previous))
            }
        }
    }

    /// Whether a plan may run on a calling thread (`Wait::Inline`): every graph it replays is captured, and it
    /// uses no per-thread library state (TD-MPC2's pixel encoder runs cuDNN convolutions, whose handles Candle
    /// keeps per thread: those plans stay on the engine thread). An eager engine (no graphs) is never steady.
    pub fn is_steady(&self) -> bool {
        let cudnn = self.engine.session().as_tdmpc2().is_some_and(|s| s.model().has_pixel_encoder());
        self.engine.is_prepared() && !self.capture_failed && !cudnn
    }

    /// Steps taken so far (plans and collected split plans).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Runs `f` on the observation made of `staged`, handing it the previous job's inputs to drop (a plan drops
    /// them while the GPU works); the inputs are kept until [`State::after_reply`] or the next job (a plan on a
    /// calling thread leaves them for the next one, which frees them off its critical path).
    fn with_observation<R>(
        &mut self,
        staged: StagedInputs,
        f: impl FnOnce(&mut Engine, &Observation<'_>, StagedInputs) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        let previous = std::mem::take(&mut self.spent);
        let result = {
            // `Observation::jpeg` takes a slice of files per input: one single-file slice per staged JPEG.
            let files: Vec<[&[u8]; 1]> = staged
                .iter()
                .filter_map(|(_, s)| match s {
                    Staged::Jpeg(bytes) => Some([bytes.as_slice()]),
                    _ => None,
                })
                .collect();
            let mut files = files.iter();
            let mut obs = Observation::new();
            for (name, s) in &staged {
                obs = match s {
                    Staged::State(t) => obs.state(name, t),
                    Staged::Frame(t, layout) => obs.image(name, t, *layout),
                    Staged::Jpeg(_) => match files.next() {
                        Some(file) => obs.jpeg(name, file),
                        None => return Err(Failure::new(SwmStatus::Runtime, "a staged JPEG went missing")),
                    },
                };
            }
            f(&mut self.engine, &obs, previous)
        };
        self.spent = staged;
        result
    }

    /// What a job leaves for after its reply: its inputs are dropped (a device frame's buffer freed) and, after a
    /// step, the planner's graph is captured if the step left it missing (a deadline-bounded step never captures
    /// it, and the C ABI has no warm-up call). A capture that fails here is tried once per planner (see
    /// `capture_failed`) and is not lost: a step without a deadline captures before it plans and reports the
    /// failure to its caller; one with a deadline plans eagerly, as it did before the capture.
    pub fn after_reply(&mut self) {
        self.spent.clear();
        if std::mem::take(&mut self.stepped) && !self.capture_failed && !self.engine.is_prepared() {
            self.capture_failed = self.engine.prepare().is_err();
        }
    }

    /// `staged` becomes the goal (LeWM).
    pub fn commit_goal(&mut self, staged: StagedInputs) -> Result<(), Failure> {
        self.with_observation(staged, |engine, obs, _| Ok(engine.set_goal(obs)?))
    }

    /// Plans from the observation `staged` (every input of the model's schema), writing the actions into `out`.
    pub fn plan(&mut self, staged: StagedInputs, out: ActionsOut) -> Result<Planned, Failure> {
        let start = std::time::Instant::now();
        let mut called = start;
        let mut returned = start;
        let planned = self.with_observation(staged, |engine, obs, previous| {
            called = std::time::Instant::now();
            // `Engine::step`, with the previous plan's inputs freed while the GPU plans.
            engine.issue(obs)?;
            drop(previous);
            let step = engine.collect()?;
            returned = std::time::Instant::now();
            // A step that cannot be written out (a short buffer) still counts as a step.
            Ok(planned(&step, out))
        })?;
        self.stepped = true;
        self.steps += 1;
        let mut planned = planned?;
        planned.job = start.elapsed();
        planned.before_step = called - start;
        planned.after_step = returned.elapsed();
        Ok(planned)
    }

    /// Issues a plan from the observation `staged` without waiting (`Engine::issue`); returns the `CUevent`
    /// recorded after its result's copy to host memory.
    pub fn plan_issue(&mut self, staged: StagedInputs) -> Result<u64, Failure> {
        self.with_observation(staged, |engine, obs, _| {
            engine.issue(obs)?;
            Ok(engine.done_event().cu_event() as u64)
        })
    }

    /// Waits for the issued plan and returns it (`Engine::collect`), its actions written into `out`;
    /// `SWM_STATUS_BAD_INPUT` when none is in flight.
    pub fn plan_collect(&mut self, out: ActionsOut) -> Result<Planned, Failure> {
        let start = std::time::Instant::now();
        let step = self.engine.collect()?;
        let returned = std::time::Instant::now();
        let planned = planned(&step, out);
        self.stepped = true;
        self.steps += 1;
        let mut planned = planned?;
        planned.job = start.elapsed();
        planned.before_step = Duration::ZERO;
        planned.after_step = returned.elapsed();
        Ok(planned)
    }

    /// TD-MPC2's actor on the observation `staged`: the policy mean, or a sample of it, in env units.
    pub fn act(&mut self, staged: StagedInputs, sample: bool) -> Result<Vec<f32>, Failure> {
        self.with_observation(staged, |engine, obs, _| {
            engine.session_mut().set_observation(obs)?;
            let Some(session) = engine.session().as_tdmpc2() else {
                return Err(Failure::new(SwmStatus::BadInput, "the actor is TD-MPC2's; this is a LeWM artifact"));
            };
            let z =
                session.latent().ok_or_else(|| Failure::new(SwmStatus::BadInput, "the observation did not encode"))?;
            let model = session.model();
            let action = if sample {
                let eps = Tensor::randn(0f32, 1.0, (z.dim(0)?, model.action_dim()), z.device())?;
                model.pi_sample(z, &eps)?
            } else {
                model.pi_mean(z)?
            };
            let normalised = action.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            Ok(engine.to_env_units(&normalised))
        })
    }

    /// Applies planner overrides (validated; the planner is rebuilt).
    pub fn set_planner(&mut self, overrides: &PlannerOverrides) -> Result<(), Failure> {
        let mut config = self.engine.planner().config().clone();
        config.apply(overrides);
        config.validate().map_err(|e| Failure::new(SwmStatus::InvalidArgument, e.to_string()))?;
        self.engine.set_planner(config)?;
        self.capture_failed = false;
        Ok(())
    }

    /// Copies `bytes` of device memory at `src` (after the caller's `event`, if any) into a new buffer on the
    /// engine's stream.
    pub fn copy_device(&self, src: u64, bytes: usize, event: usize) -> Result<Tensor, Failure> {
        let Device::Cuda(cuda) = &self.device else {
            return Err(Failure::new(SwmStatus::Runtime, "the engine is not on a CUDA device"));
        };
        let stream = cuda.cuda_stream();
        if event != 0 {
            // SAFETY: the caller passes a live CUevent of this context (documented in the header); waiting on it
            // only orders our stream after the work it records.
            unsafe {
                cudarc::driver::result::stream::wait_event(
                    stream.cu_stream(),
                    event as cudarc::driver::sys::CUevent,
                    cudarc::driver::sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
                )
            }
            .map_err(|e| Failure::new(SwmStatus::Runtime, format!("waiting on the caller's event: {e}")))?;
        }
        let dst = Tensor::zeros(bytes, DType::U8, &self.device)?;
        {
            let (storage, _) = dst.storage_and_layout();
            let candle_core::Storage::Cuda(s) = &*storage else {
                return Err(Failure::new(SwmStatus::Runtime, "a host buffer"));
            };
            let slice = s.as_cuda_slice::<u8>()?;
            let (dst_ptr, _guard) = cudarc::driver::DevicePtr::device_ptr(slice, &stream);
            // SAFETY: `dst_ptr` is the start of a fresh `bytes`-byte device buffer; the caller guarantees `src`
            // holds `bytes` readable bytes until the plan that uses them returns or, split, completes (documented
            // in the header). The copy is ordered on the engine's stream after the buffer's zero-fill and before
            // every read.
            unsafe { cudarc::driver::result::memcpy_dtod_async(dst_ptr, src, bytes, stream.cu_stream()) }
                .map_err(|e| Failure::new(SwmStatus::Runtime, format!("copying the caller's frame: {e}")))?;
        }
        Ok(dst)
    }

    /// The model family (0 LeWM, 1 TD-MPC2), the env action dim and the number of inputs.
    pub fn info(&self) -> (u32, usize, usize) {
        let session = self.engine.session();
        let family = match session.family() {
            runtime::config::Family::Lewm => 0,
            runtime::config::Family::Tdmpc2 => 1,
        };
        (family, session.env_action_dim(), session.schema().observations.len())
    }

    /// Input `index`, if the model has it.
    pub fn input(&self, index: usize) -> Option<Input> {
        let spec = self.engine.session().schema().observations.get(index)?;
        let shape = match (spec.kind, spec.shape.as_slice()) {
            (runtime::artifact::ObservationKind::State, [d]) => Shape::State(*d),
            (_, [_, h, w]) => Shape::Frame(*h, *w),
            _ => Shape::State(spec.shape.iter().product()),
        };
        Some(Input { name: spec.name.clone(), shape })
    }
}

/// The calling thread's own CUDA context before [`State::make_current`], restored on drop (none: nothing to do).
pub(crate) struct Current(Option<cudarc::driver::sys::CUcontext>);

impl Drop for Current {
    fn drop(&mut self) {
        if let Some(previous) = self.0 {
            // SAFETY: the context was current on this thread when the guard was made; setting it back only
            // changes this thread's binding.
            let _ = unsafe { cudarc::driver::result::ctx::set_current(previous) };
        }
    }
}

/// The C-side result of a step: env 0's executed actions written into `out`, its cost and the step's times.
fn planned(step: &runtime::engine::Step<'_>, out: ActionsOut) -> Result<Planned, Failure> {
    let per_env = step.steps * step.env_action_dim;
    let written = out.write(&step.actions[..per_env.min(step.actions.len())], step.env_action_dim)?;
    Ok(Planned {
        source: step.source,
        iterations: step.iterations,
        steps: step.steps,
        action_dim: step.env_action_dim,
        cost: step.cost.first().copied().unwrap_or(f32::NAN),
        written,
        encode: step.times.encode,
        plan: step.times.plan,
        wall: step.times.wall,
        job: Duration::ZERO,
        before_step: Duration::ZERO,
        after_step: Duration::ZERO,
    })
}

/// Engine options from the C options.
pub(crate) fn engine_options(gpu: usize, history: usize, deadline: Option<Duration>, eager: bool) -> EngineOptions {
    EngineOptions {
        gpu,
        session: SessionOptions { history: history.max(1), ..SessionOptions::default() },
        deadline,
        eager,
        ..EngineOptions::default()
    }
}
