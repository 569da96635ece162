//! The inference actor's work, behind a trait: [`EngineBackend`] runs swm's [`Engine`] on the GPU; tests plug in a
//! double so that the IPC and actor plumbing run on machines without one.

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use swm::device::UploadKind;
use swm::engine::{default_planner, Engine, EngineOptions};
pub use swm::media::nvdec::Codec;
use swm::ops::{FrameLayout, PixelFormat, YuvColor, YuvMatrix, YuvRange};
use swm::planning::{PlanSource, PlannerConfig, PlannerOverrides, SolverKind};
use swm::session::{Observation, Session, SessionOptions};
use swm_ipc::{ActionSlot, ActionStatus, Encoding, MAX_ACTION_DIM, MAX_PLAN_VALUES};

use crate::config::{Fallback, FaultSection, LoopConfig, PlannerSection};
use crate::message::{InputSpec, Message, Payload};

/// What the backend measured of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimes {
    /// Upload, preprocessing and encoding (GPU time).
    pub encode: Duration,
    /// Host time spent issuing the encode (see [`swm::engine::StageTimes::encode_issue`]).
    pub encode_issue: Duration,
    /// Planning (GPU time).
    pub plan: Duration,
    /// The whole step on the host (upload, engine step, copy into the slot): what the loop adds is measured
    /// against it.
    pub wall: Duration,
}

/// A planner change requested over the control service (zero fields keep their value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlannerUpdate {
    /// Candidates per iteration.
    pub samples: usize,
    /// Iterations per step.
    pub iterations: usize,
    /// Horizon in macro steps.
    pub horizon: usize,
    /// Step budget.
    pub deadline: Option<Duration>,
    /// Noise seed.
    pub seed: u64,
}

/// The ingest thread's half of a backend: moves an accepted message's bytes to where the backend's step reads
/// them (created by the backend on the inference thread, then owned by the ingest thread).
pub trait Stager: Send {
    /// The payload of one checked message for input `spec`.
    fn stage(&mut self, spec: &InputSpec, bytes: &[u8]) -> Result<Payload, swm::Error>;
    /// Decodes one video access unit (every one of a stream, in order) of input `input`: the frame it completes,
    /// if any. Backends without a GPU refuse video.
    fn decode(&mut self, input: usize, codec: Codec, bytes: &[u8]) -> Result<Option<Payload>, swm::Error> {
        let _ = (input, codec, bytes);
        Err(swm::Error::invalid_input("encoding", "video access units need the GPU backend"))
    }
}

/// Keeps payloads on the host (backends without a GPU, such as test doubles).
#[derive(Debug, Default)]
pub struct HostStager;

impl Stager for HostStager {
    fn stage(&mut self, _: &InputSpec, bytes: &[u8]) -> Result<Payload, swm::Error> {
        Ok(Payload::Host(bytes.to_vec()))
    }
}

/// Uploads payloads on a stream of its own ([`swm::device::Uploader`]): one copy from shared memory into
/// pinned memory, an asynchronous copy to the device, a CUDA event for the inference stream to wait on (small state
/// vectors, up to [`HOST_STATE_BYTES`], are kept on the host instead). Video
/// access units are decoded here with NVDEC, one decoder per input (created on the first access unit), so that
/// every access unit of a stream is decoded even when observations are dropped as stale; the frames are written
/// on the engine's stream, ahead of the step that reads them. Because this thread enqueues on the engine's stream,
/// the engine must not capture CUDA graphs while ingest runs (work from another thread would join the capture):
/// the daemon captures only in [`EngineBackend::open`]'s warm-up, before the ingest thread starts, and plans under
/// a deadline afterwards, which never captures.
pub struct DeviceStager {
    uploader: swm::device::Uploader,
    device: Device,
    decoders: Vec<Option<(Codec, swm::media::nvdec::Decoder)>>,
    decoded: i64,
}

impl std::fmt::Debug for DeviceStager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStager").field("uploader", &self.uploader).finish_non_exhaustive()
    }
}

/// State vectors up to this many bytes stay on the host and are uploaded by the inference step: for a few hundred
/// bytes the staged upload's driver calls (pinned copy, asynchronous copy, two events) cost more than the copy
/// itself, on the path from receipt to the step (ingest measured 31 µs p50 on the H200 for TD-MPC2's state).
pub const HOST_STATE_BYTES: usize = 64 << 10;

impl Stager for DeviceStager {
    fn stage(&mut self, spec: &InputSpec, bytes: &[u8]) -> Result<Payload, swm::Error> {
        let kind = match spec {
            InputSpec::Frame { .. } => UploadKind::U8,
            InputSpec::State { .. } if bytes.len() <= HOST_STATE_BYTES => return Ok(Payload::Host(bytes.to_vec())),
            InputSpec::State { .. } => UploadKind::F32,
        };
        Ok(Payload::Device(self.uploader.upload(kind, bytes)?))
    }

    fn decode(&mut self, input: usize, codec: Codec, bytes: &[u8]) -> Result<Option<Payload>, swm::Error> {
        if self.decoders.len() <= input {
            self.decoders.resize_with(input + 1, || None);
        }
        let slot = &mut self.decoders[input];
        if !matches!(slot, Some((c, _)) if *c == codec) {
            *slot = Some((codec, swm::media::nvdec::Decoder::new(&self.device, codec)?));
        }
        let Some((_, decoder)) = slot.as_mut() else { return Ok(None) };
        self.decoded += 1;
        let frames = decoder.decode(bytes, self.decoded)?;
        // Without B-frames one frame per access unit; with reordering, the newest one displayed.
        Ok(frames.into_iter().next_back().map(|f| Payload::Decoded {
            nv12: f.nv12,
            width: f.width as usize,
            height: f.height as usize,
            color: f.color,
        }))
    }
}

/// The work of the inference actor. Owned by that one thread (an [`Engine`] holds CUDA graphs).
pub trait Backend {
    /// The model's inputs, in the order [`Backend::step`] receives them.
    fn inputs(&self) -> &[InputSpec];
    /// Plans for one complete observation (one message per input, in [`Backend::inputs`] order) and writes the
    /// first env action, the planned sequence, status, cost and iterations into `slot`. `deadline` is when the
    /// action must be in host memory: a planner that cannot finish by then stops early (`Truncated`) or uses its
    /// warm start or fallback.
    fn step(
        &mut self,
        observation: &[Message],
        deadline: Instant,
        slot: &mut ActionSlot,
    ) -> Result<StepTimes, swm::Error>;
    /// The configured fixed fallback as one env action in env units, for the daemon's watchdog (which answers a
    /// step that has not come back in time without the GPU); `None` when none is configured.
    fn fallback_action(&self) -> Option<Vec<f32>> {
        None
    }
    /// The ingest thread's half ([`HostStager`] unless the backend uploads on a stream of its own).
    fn stage(&self) -> Result<Box<dyn Stager>, swm::Error> {
        Ok(Box::new(HostStager))
    }
    /// Sets the goal (LeWM) from one complete observation.
    fn set_goal(&mut self, goal: &[Message]) -> Result<(), swm::Error>;
    /// Starts a new episode: context, warm start and goal cleared.
    fn reset(&mut self);
    /// Changes the planner's parameters.
    fn update_planner(&mut self, update: PlannerUpdate) -> Result<(), swm::Error>;
}

/// [`Backend`] over swm's [`Engine`]: hands each message's device bytes (or JPEG file) to the engine with its
/// layout — pitch, channel order, NV12 colour and the resize to the model's size are done by the fused
/// preprocessing kernel — runs the control step and copies its result into the slot.
pub struct EngineBackend {
    engine: Engine,
    inputs: Vec<InputSpec>,
    device: Device,
    /// The fixed fallback's first env action in env units.
    fallback: Option<Vec<f32>>,
    /// Injected GPU stalls (testing the deadline path).
    fault: FaultSection,
    steps: u64,
    /// Whether the warm-up also decodes a JPEG (`ipc.warm_jpeg`).
    warm_jpeg: bool,
}

/// A tiny baseline 4:2:0 JPEG (17×9, two MCUs; `tests/data/media/odd_420_17x9.jpg` from `tools/media/gen.py`):
/// decoding it once at start-up creates nvJPEG's hardware decoder and batch state (`ipc.warm_jpeg`).
const WARM_JPEG: &[u8] = include_bytes!("../assets/warm_420_17x9.jpg");

impl EngineBackend {
    /// Opens the artifact of `config` on its GPU with its planner, deadline and fallback, and captures the step
    /// (one warm-up step on zero inputs, then a reset) so that the first real step runs from CUDA graphs.
    pub fn open(config: &LoopConfig) -> Result<Self, swm::Error> {
        let artifact_dir = config.artifact.as_ref().ok_or_else(|| swm::Error::invalid_input("artifact", "missing"))?;
        let device = swm::device::cuda(config.gpu)?;
        let artifact = swm::artifact::Artifact::open(artifact_dir)?;
        let session_options =
            SessionOptions { history: config.history, matmul: config.matmul, ..SessionOptions::default() };
        let session = Session::open(&artifact, &device, &session_options)?;
        let planner = planner_config(&session, &config.planner, &config.fallback)?;
        let options = EngineOptions {
            gpu: config.gpu,
            session: session_options,
            planner: Some(planner),
            deadline: Some(config.deadline()),
            ..EngineOptions::default()
        };
        let inputs = inputs(session.schema());
        let engine = Engine::with_session(session, &options)?;
        let env_dim = engine.session().env_action_dim();
        let fallback = match &config.fallback {
            Fallback::Fixed { action } => Some(engine.to_env_units(&action[..env_dim.min(action.len())])),
            Fallback::WarmStart => None,
        };
        if config.fault.every > 0 {
            // Loads the stall kernel now, so that the first injected stall does not also block the host.
            swm::ops::fault::gpu_delay(&device, std::time::Duration::ZERO)?;
        }
        let mut backend = Self {
            engine,
            inputs,
            device,
            fallback,
            fault: config.fault.clone(),
            steps: 0,
            warm_jpeg: config.ipc.warm_jpeg,
        };
        backend.warm_up()?;
        Ok(backend)
    }

    /// The engine (for reports).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// One step on zero inputs without a deadline (captures the graphs), two with one (graph upload, the planner's
    /// iteration time), then a reset (LeWM: the goal too, so that steps fail, naming the missing goal, until a
    /// controller sends one).
    fn warm_up(&mut self) -> Result<(), swm::Error> {
        let tensors = self
            .inputs
            .iter()
            .map(|i| match i {
                InputSpec::Frame { height, width, .. } => {
                    Tensor::zeros((1, *height, *width, 3), candle_core::DType::U8, &self.device)
                }
                InputSpec::State { dim, .. } => Tensor::zeros((1, *dim), candle_core::DType::F32, &self.device),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let obs = observation(&self.inputs, &tensors);
        if self.engine.session().family() == swm::config::Family::Lewm {
            // LeWM plans toward a goal: a zero one for the capture, cleared by the reset below.
            self.engine.set_goal(&obs)?;
        }
        self.engine.warm_up(&obs)?;
        // Two deadline-bounded steps replaying the graph (the second from a warm start): the first launch of a graph
        // uploads it, and the planner learns its iteration time, so that the first real step is as fast as the rest.
        self.engine.set_deadline(Some(Duration::from_secs(1)));
        for _ in 0..2 {
            self.engine.step(&obs)?;
        }
        if self.warm_jpeg && self.inputs.iter().any(|i| matches!(i, InputSpec::Frame { .. })) {
            // Every frame input as the built-in JPEG: creates the session's nvJPEG decoders now.
            let files = [WARM_JPEG];
            let jpeg = self.inputs.iter().zip(&tensors).fold(Observation::new(), |obs, (spec, t)| match spec {
                InputSpec::Frame { name, .. } => obs.jpeg(name, &files),
                InputSpec::State { name, .. } => obs.state(name, t),
            });
            self.engine.step(&jpeg)?;
        }
        self.engine.reset();
        Ok(())
    }

    /// The engine inputs of one observation. Device payloads are waited for on the engine's stream (no host
    /// wait); host payloads are uploaded here; JPEG files stay on the host (nvJPEG parses them there).
    fn upload(&self, messages: &[Message]) -> Result<Vec<StepInput>, swm::Error> {
        messages
            .iter()
            .zip(&self.inputs)
            .map(|(m, spec)| -> Result<StepInput, swm::Error> {
                let bytes = || -> Result<Tensor, swm::Error> {
                    Ok(match &m.payload {
                        Payload::Device(upload) => upload.tensor(&self.device)?.unsqueeze(0)?,
                        Payload::Host(bytes) => Tensor::from_slice(bytes, (1, bytes.len()), &self.device)?,
                        Payload::Decoded { nv12, .. } => nv12.flatten_all()?.unsqueeze(0)?,
                    })
                };
                match spec {
                    InputSpec::Frame { .. } if matches!(m.payload, Payload::Decoded { .. }) => {
                        let Payload::Decoded { width, height, color, .. } = m.payload else { unreachable!() };
                        // NVDEC's frames, converted as the stream's VUI says.
                        Ok(StepInput::Image(bytes()?, FrameLayout::packed(PixelFormat::Nv12(color), width, height)))
                    }
                    InputSpec::Frame { .. } => {
                        let encoding = Encoding::from_raw(m.header.encoding);
                        if encoding == Some(Encoding::Jpeg) {
                            return match &m.payload {
                                Payload::Host(file) => Ok(StepInput::Jpeg(file.clone())),
                                Payload::Device(_) | Payload::Decoded { .. } => {
                                    Err(swm::Error::Internal("a JPEG payload was uploaded instead of kept".into()))
                                }
                            };
                        }
                        let layout = frame_layout(&m.header)
                            .ok_or_else(|| swm::Error::invalid_input(spec.name(), "not a frame encoding"))?;
                        // The upload buffer is read by the step's kernel, enqueued before the message is dropped.
                        Ok(StepInput::Image(bytes()?, layout))
                    }
                    InputSpec::State { dim, .. } => match &m.payload {
                        Payload::Device(upload) => {
                            Ok(StepInput::State(upload.tensor(&self.device)?.reshape((1, *dim))?.force_contiguous()?))
                        }
                        Payload::Host(_) => Ok(StepInput::State(Tensor::from_vec(m.state(), (1, *dim), &self.device)?)),
                        Payload::Decoded { .. } => {
                            Err(swm::Error::Internal("a decoded frame for a state input".into()))
                        }
                    },
                }
            })
            .collect()
    }
}

/// One input of a step, as the engine takes it.
enum StepInput {
    /// Frame bytes on the device, `(1, bytes)`, and where the pixels are in them.
    Image(Tensor, FrameLayout),
    /// A JPEG file.
    Jpeg(Vec<u8>),
    /// A state vector, `(1, d)`.
    State(Tensor),
}

/// The pixel layout a frame header describes (`None` for a non-frame or compressed encoding).
fn frame_layout(h: &swm_ipc::ObservationHeader) -> Option<FrameLayout> {
    let yuv = |matrix, range| PixelFormat::Nv12(YuvColor { matrix, range });
    let format = match Encoding::from_raw(h.encoding)? {
        Encoding::Rgb8 => PixelFormat::Rgb,
        Encoding::Bgr8 => PixelFormat::Bgr,
        Encoding::Rgba8 => PixelFormat::Rgba,
        Encoding::Bgra8 => PixelFormat::Bgra,
        Encoding::Nv12 => yuv(YuvMatrix::Bt601, YuvRange::Limited),
        Encoding::Nv12Bt709 => yuv(YuvMatrix::Bt709, YuvRange::Limited),
        Encoding::Nv12Full => yuv(YuvMatrix::Bt601, YuvRange::Full),
        Encoding::Nv12Bt709Full => yuv(YuvMatrix::Bt709, YuvRange::Full),
        Encoding::F32 | Encoding::Jpeg | Encoding::H264 | Encoding::Hevc => return None,
    };
    let (width, height, pitch) = (h.width as usize, h.height as usize, h.pitch as usize);
    Some(FrameLayout { format, width, height, pitch, uv_offset: pitch * height })
}

impl Backend for EngineBackend {
    fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    fn step(
        &mut self,
        observation_messages: &[Message],
        deadline: Instant,
        slot: &mut ActionSlot,
    ) -> Result<StepTimes, swm::Error> {
        let start = Instant::now();
        self.steps += 1;
        if let Some(stall) = self.fault.delay_before(self.steps) {
            swm::ops::fault::gpu_delay(&self.device, stall)?;
        }
        // The budget counts from the observation's arrival, not from this call.
        self.engine.set_deadline(Some(deadline.saturating_duration_since(Instant::now())));
        let staged = self.upload(observation_messages)?;
        let files = jpeg_files(&staged);
        let obs = staged_observation(&self.inputs, &staged, &files);
        let step = self.engine.step(&obs)?;
        let first = step.first_action(0);
        let n = first.len().min(MAX_ACTION_DIM);
        slot.action[..n].copy_from_slice(&first[..n]);
        slot.action_dim = n as u32;
        let per_env = step.steps * step.env_action_dim;
        let plan = &step.actions[..per_env.min(step.actions.len())];
        let m = plan.len().min(MAX_PLAN_VALUES);
        slot.plan[..m].copy_from_slice(&plan[..m]);
        slot.horizon = m.checked_div(step.env_action_dim).unwrap_or(0) as u32;
        slot.status = status(step.source) as u32;
        slot.cost = step.cost.first().copied().unwrap_or(f32::NAN);
        slot.iterations = step.iterations as u32;
        let t = step.times;
        Ok(StepTimes { encode: t.encode, encode_issue: t.encode_issue, plan: t.plan, wall: start.elapsed() })
    }

    fn fallback_action(&self) -> Option<Vec<f32>> {
        self.fallback.clone()
    }

    fn stage(&self) -> Result<Box<dyn Stager>, swm::Error> {
        Ok(Box::new(DeviceStager {
            uploader: swm::device::Uploader::new(&self.device)?,
            device: self.device.clone(),
            decoders: Vec::new(),
            decoded: 0,
        }))
    }

    fn set_goal(&mut self, goal: &[Message]) -> Result<(), swm::Error> {
        let staged = self.upload(goal)?;
        let files = jpeg_files(&staged);
        self.engine.set_goal(&staged_observation(&self.inputs, &staged, &files))
    }

    fn reset(&mut self) {
        self.engine.reset();
    }

    fn update_planner(&mut self, update: PlannerUpdate) -> Result<(), swm::Error> {
        let mut config = self.engine.planner().config().clone();
        let section = PlannerSection {
            samples: (update.samples > 0).then_some(update.samples),
            iterations: (update.iterations > 0).then_some(update.iterations),
            horizon: (update.horizon > 0).then_some(update.horizon),
            seed: (update.seed > 0).then_some(update.seed),
            ..PlannerSection::default()
        };
        apply(&mut config, &section);
        config.validate()?;
        // A new deadline is the daemon's (it sets each step's budget).
        self.engine.set_planner(config)
    }
}

/// The published status of a plan's source (the runtime does not depend on the IPC types).
fn status(source: PlanSource) -> ActionStatus {
    match source {
        PlanSource::Solved => ActionStatus::Solved,
        PlanSource::Truncated { .. } => ActionStatus::Truncated,
        PlanSource::WarmStart => ActionStatus::WarmStart,
        PlanSource::Fallback => ActionStatus::Fallback,
        PlanSource::Prior => ActionStatus::Prior,
    }
}

/// The engine's observation over `tensors` (one per input, in order).
fn observation<'a>(inputs: &'a [InputSpec], tensors: &'a [Tensor]) -> Observation<'a> {
    inputs.iter().zip(tensors).fold(Observation::new(), |obs, (spec, t)| match spec {
        InputSpec::Frame { name, .. } => obs.frames(name, t),
        InputSpec::State { name, .. } => obs.state(name, t),
    })
}

/// The observation of staged step inputs (`files` holds each JPEG's one-element file list).
fn staged_observation<'a>(
    inputs: &'a [InputSpec],
    staged: &'a [StepInput],
    files: &'a [[&'a [u8]; 1]],
) -> Observation<'a> {
    inputs.iter().zip(staged).zip(files).fold(Observation::new(), |obs, ((spec, s), file)| match s {
        StepInput::Image(t, layout) => obs.image(spec.name(), t, *layout),
        StepInput::Jpeg(_) => obs.jpeg(spec.name(), file),
        StepInput::State(t) => obs.state(spec.name(), t),
    })
}

/// Each staged input's file list for [`staged_observation`] (empty bytes for inputs that are not JPEG files).
fn jpeg_files(staged: &[StepInput]) -> Vec<[&[u8]; 1]> {
    staged
        .iter()
        .map(|s| match s {
            StepInput::Jpeg(file) => [file.as_slice()],
            _ => [&[][..]],
        })
        .collect()
}

/// The model's inputs from its artifact's schema.
pub fn inputs(schema: &swm::artifact::Schema) -> Vec<InputSpec> {
    use swm::artifact::ObservationKind;
    schema
        .observations
        .iter()
        .map(|o| match (o.kind, o.shape.as_slice()) {
            (ObservationKind::State, [d]) => InputSpec::State { name: o.name.clone(), dim: *d },
            (_, [_, h, w]) => InputSpec::Frame { name: o.name.clone(), height: *h, width: *w },
            // Artifact validation guarantees one of the two shapes.
            _ => InputSpec::State { name: o.name.clone(), dim: o.shape.iter().product() },
        })
        .collect()
}

/// The daemon's planner: the artifact's default (or the planner file), the overrides of `section`, the fallback.
pub fn planner_config(
    session: &Session,
    section: &PlannerSection,
    fallback: &Fallback,
) -> Result<PlannerConfig, swm::Error> {
    let mut config = match &section.file {
        Some(path) => {
            let text = swm::config::read_text(path)?;
            PlannerConfig::from_json_str(&text).map_err(|e| e.in_file(path))?
        }
        None => default_planner(session)?,
    };
    apply(&mut config, section);
    if let Fallback::Fixed { action } = fallback {
        config.fallback_action = Some(action.clone());
    }
    config.validate()?;
    Ok(config)
}

/// Applies the overrides of `section` (solver first, with upstream defaults, then counts, horizon, seed).
fn apply(config: &mut PlannerConfig, section: &PlannerSection) {
    // `validate` accepted the solver name.
    let solver = section.solver.as_deref().and_then(|s| s.parse::<SolverKind>().ok());
    config.apply(&PlannerOverrides {
        solver,
        samples: section.samples,
        iterations: section.iterations,
        horizon: section.horizon,
        seed: section.seed,
    });
}
