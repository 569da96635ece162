//! The daemon's configuration: a TOML file (`configs/loop-*.toml`) in which every field has a documented default,
//! then command-line overrides. `swm-loop --check-config` validates it and exits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::message::FrameSizes;
pub use crate::realtime::RealtimeSection;

/// Why a configuration cannot be used. Names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read: missing, not a regular file, over swm's 16 MiB bound for config files, or not
    /// UTF-8 (read with [`swm::config::read_text`]).
    #[error(transparent)]
    Read(#[from] swm::config::ConfigError),
    /// The TOML is malformed, has an unknown field or a value of the wrong type.
    #[error("{path}: {reason}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the parser reported (with the line and the field).
        reason: String,
    },
    /// A value is out of range or contradicts another.
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        /// The config file (`<command line>` for overrides).
        path: PathBuf,
        /// Dotted field path.
        field: String,
        /// Why it cannot work.
        reason: String,
    },
}

/// What is published when a step's deadline leaves the planner no iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fallback {
    /// The previous plan shifted by the executed steps (the planner's warm start); the prior mean at the start.
    WarmStart,
    /// A fixed macro action (normalised model units, `action_dim × action_block` values) when there is no warm start.
    Fixed {
        /// The action.
        action: Vec<f32>,
    },
}

/// The planner the daemon runs: the artifact's default (CEM 300×30, horizon 5) unless a planner file or
/// overrides are given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerSection {
    /// A planner JSON file (`swm plan --planner` format); relative paths are relative to the config file.
    pub file: Option<PathBuf>,
    /// `cem`, `mppi` or `icem` (overrides the file's or default solver, with upstream defaults).
    pub solver: Option<String>,
    /// Candidates per iteration.
    pub samples: Option<usize>,
    /// Planner iterations per step.
    pub iterations: Option<usize>,
    /// Planning horizon in macro steps.
    pub horizon: Option<usize>,
    /// Noise seed (fixed: a run is replayable).
    pub seed: Option<u64>,
}

/// Service names and queue sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpcSection {
    /// Prefix of every iceoryx2 service name (`<prefix>/observations`, ...), so that several daemons can run
    /// side by side. Default `swm`.
    pub prefix: String,
    /// Name of the daemon's iceoryx2 node. Default `swm-loop`.
    pub node_name: String,
    /// Observations buffered between ingest and inference. 1 (the default) = the newest observation wins and an
    /// older one still waiting is dropped (and counted); larger values queue, oldest dropped when full.
    pub observation_queue: usize,
    /// Finished steps buffered between inference and output; when full, the oldest unpublished action is
    /// replaced by the newer one (and counted), inference never waits for the output thread. Default 4.
    pub action_queue: usize,
    /// Largest observation payload accepted, in bytes (a frame's `pitch × height`). Default 16 MiB.
    pub max_observation_bytes: usize,
    /// Frame sizes an image input takes: `any` (the default: resized on the GPU as upstream's `Resize`) or
    /// `model` (only the model's input size; others are rejected and counted).
    pub frame_sizes: FrameSizes,
    /// Half-width in microseconds of the window in which the inference and output threads poll for their next
    /// message instead of sleeping (around one period after the last observation, and one step time after a step
    /// started): a parked thread takes tens of microseconds to wake. Costs at most twice this much CPU per message
    /// and thread; 0 = always sleep. Default 200.
    pub spin_us: u64,
    /// Whether to create nvJPEG's decoders at start-up by decoding a tiny built-in JPEG through the engine (for
    /// controllers that send JPEG frames: the first JPEG otherwise creates them, ~0.5 s on an H200, and the
    /// observations behind it miss their deadlines). Default false (no nvJPEG handles for other controllers).
    pub warm_jpeg: bool,
}

impl IpcSection {
    /// The spin window.
    pub fn spin(&self) -> Duration {
        Duration::from_micros(self.spin_us)
    }
}

impl Default for IpcSection {
    fn default() -> Self {
        Self {
            prefix: "swm".into(),
            node_name: "swm-loop".into(),
            observation_queue: 1,
            action_queue: 4,
            max_observation_bytes: 16 << 20,
            frame_sizes: FrameSizes::Any,
            spin_us: 200,
            warm_jpeg: false,
        }
    }
}

/// Fault injection, to test the deadline path on a GPU host: every `every`-th step is queued behind a kernel that
/// keeps the GPU busy for `gpu_delay_ms` (the stall a loop must survive; the watchdog answers such a step). Off by
/// default; never meant for production.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSection {
    /// Length of each injected GPU stall in milliseconds (at most 10 000). Default 0 (off).
    pub gpu_delay_ms: f64,
    /// Stall every this many steps (the first at step `every`). Default 0 (off).
    pub every: u64,
}

impl FaultSection {
    /// The stall to inject before step `step` (counted from 1), if any.
    pub fn delay_before(&self, step: u64) -> Option<Duration> {
        (self.every > 0 && self.gpu_delay_ms > 0.0 && step.is_multiple_of(self.every))
            .then(|| Duration::from_secs_f64(self.gpu_delay_ms / 1e3))
    }
}

/// The whole daemon configuration. Every field has a default; a file only states what differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopConfig {
    /// The deployment artifact (`swm convert` output); relative paths are relative to the config file. Required.
    pub artifact: Option<PathBuf>,
    /// CUDA device ordinal. Default 0.
    pub gpu: usize,
    /// Control rate in Hz: one step per period. Default 30.
    pub rate_hz: f64,
    /// Step budget in milliseconds, from the observation's arrival to the action in host memory; default: 80 % of
    /// the period (the rest is ingest, publish and slack).
    pub deadline_ms: Option<f64>,
    /// What is published when the deadline leaves no iteration. Default: the warm start.
    pub fallback: Fallback,
    /// The planner.
    pub planner: PlannerSection,
    /// LeWM: observations kept as the predictor's context (1 = the newest only, upstream's default).
    pub history: usize,
    /// Matmul precision, `"f32"` or `"tf32"` (the fastest mode); default: the artifact's (`schema.json`'s
    /// `matmul`, f32 when absent).
    pub matmul: Option<swm::artifact::MatmulPrecision>,
    /// Service names and queues.
    pub ipc: IpcSection,
    /// Statistics are published (and overruns logged) at most this often, in seconds. Default 1.
    pub stats_period_s: f64,
    /// `tracing` filter (`info`, `swm_loop=debug`, ...); `RUST_LOG` wins when set. Default `info`.
    pub log: String,
    /// Real-time scheduling of the ingest, inference and output threads. Default off.
    pub realtime: RealtimeSection,
    /// Fault injection (testing only). Default off.
    pub fault: FaultSection,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            artifact: None,
            gpu: 0,
            rate_hz: 30.0,
            deadline_ms: None,
            fallback: Fallback::WarmStart,
            planner: PlannerSection::default(),
            history: 1,
            matmul: None,
            ipc: IpcSection::default(),
            stats_period_s: 1.0,
            log: "info".into(),
            realtime: RealtimeSection::default(),
            fault: FaultSection::default(),
        }
    }
}

/// Highest control rate accepted (a step every 100 µs).
pub const MAX_RATE_HZ: f64 = 10_000.0;

impl LoopConfig {
    /// Reads and validates a TOML file; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::load_unvalidated(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads a TOML file without validating it (command-line overrides come next).
    pub fn load_unvalidated(path: &Path) -> Result<Self, ConfigError> {
        let text = swm::config::read_text(path)?;
        let mut config = Self::from_toml(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [config.artifact.as_mut(), config.planner.file.as_mut()].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Parses TOML text (`path` only names it in errors); does not validate.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), reason: e.to_string() })
    }

    /// The control period.
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate_hz)
    }

    /// The step budget: `deadline_ms`, or 80 % of the period.
    pub fn deadline(&self) -> Duration {
        match self.deadline_ms {
            Some(ms) => Duration::from_secs_f64(ms / 1e3),
            None => self.period().mul_f64(0.8),
        }
    }

    /// Checks ranges and consistency; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |field: &str, reason: String| ConfigError::Invalid { path: path.into(), field: field.into(), reason };
        if self.artifact.is_none() {
            return Err(invalid("artifact", "required: the deployment artifact directory to serve".into()));
        }
        if !(self.rate_hz.is_finite() && self.rate_hz > 0.0 && self.rate_hz <= MAX_RATE_HZ) {
            return Err(invalid("rate_hz", format!("{} is not in (0, {MAX_RATE_HZ}]", self.rate_hz)));
        }
        if let Some(ms) = self.deadline_ms {
            let period_ms = 1e3 / self.rate_hz;
            if !(ms.is_finite() && ms > 0.0 && ms <= period_ms) {
                return Err(invalid(
                    "deadline_ms",
                    format!("{ms} is not in (0, {period_ms:.3}] (the period at rate_hz {})", self.rate_hz),
                ));
            }
        }
        if let Fallback::Fixed { action } = &self.fallback {
            if action.is_empty() || action.iter().any(|v| !v.is_finite()) {
                return Err(invalid("fallback.action", "must be a non-empty list of finite values".into()));
            }
        }
        if let Some(solver) = &self.planner.solver {
            if !["cem", "mppi", "icem"].contains(&solver.as_str()) {
                return Err(invalid("planner.solver", format!("{solver:?} is not one of cem, mppi, icem")));
            }
        }
        for (field, value) in [
            ("planner.samples", self.planner.samples),
            ("planner.iterations", self.planner.iterations),
            ("planner.horizon", self.planner.horizon),
        ] {
            if value == Some(0) {
                return Err(invalid(field, "must be positive".into()));
            }
        }
        if self.history == 0 {
            return Err(invalid("history", "must be at least 1".into()));
        }
        if self.ipc.prefix.is_empty() || self.ipc.node_name.is_empty() {
            return Err(invalid("ipc.prefix", "the service prefix and node name must not be empty".into()));
        }
        if self.ipc.observation_queue == 0 || self.ipc.action_queue == 0 {
            return Err(invalid("ipc.observation_queue", "queues hold at least one message".into()));
        }
        if self.ipc.max_observation_bytes == 0 || self.ipc.max_observation_bytes > 1 << 30 {
            return Err(invalid("ipc.max_observation_bytes", "must be in [1, 1 GiB]".into()));
        }
        if !(self.fault.gpu_delay_ms.is_finite() && (0.0..=10_000.0).contains(&self.fault.gpu_delay_ms)) {
            return Err(invalid("fault.gpu_delay_ms", format!("{} is not in [0, 10000]", self.fault.gpu_delay_ms)));
        }
        if self.ipc.spin_us > 100_000 {
            return Err(invalid("ipc.spin_us", format!("{} µs is more than 100 ms of spinning", self.ipc.spin_us)));
        }
        self.realtime.check().map_err(|(field, reason)| invalid(&format!("realtime.{field}"), reason))?;
        if !(self.stats_period_s.is_finite() && self.stats_period_s >= 0.01) {
            return Err(invalid("stats_period_s", format!("{} must be at least 0.01", self.stats_period_s)));
        }
        Ok(())
    }
}
