//! The command line: clap types only (what each command does lives in `cmd/`).

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::CliError;

mod bench;
mod media;
mod parity;
pub use bench::{
    BenchFamily, BenchGemmArgs, BenchLewmArgs, BenchMediaArgs, BenchPlanArgs, BenchTdmpc2Args, BenchTrainArgs, LewmPart,
};
pub use media::MediaCommand;
pub use parity::{CostSource, DecisionParityArgs, ModelParityArgs, ParityFamily, PlannerParityArgs};
use swm::checkpoint::LoadOptions;

/// CUDA runtime for stable-worldmodel checkpoints.
#[derive(Parser)]
#[command(name = "swm", version, about = "CUDA runtime for stable-worldmodel checkpoints")]
pub struct Cli {
    /// Where an omitted checkpoint PATH comes from.
    #[command(flatten)]
    pub hub: HubArgs,
    /// Let f32 matmuls use TF32 tensor cores (upstream's planning speed knob; default: full f32).
    #[arg(long, global = true)]
    pub tf32: bool,
    /// Run f32 matmuls on cuBLAS's f32 GEMMs instead of swm's split-TF32 tensor-core GEMM (both f32-accurate).
    #[arg(long, global = true)]
    pub cublas_f32: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `--hf-repo`: checkpoints from the local Hugging Face cache.
#[derive(Args)]
pub struct HubArgs {
    /// Take the checkpoint from the local Hugging Face cache (`user/repo`, e.g. quentinll/lewm-pusht) when a
    /// command's PATH is omitted (feature `hub`).
    #[arg(long, global = true)]
    pub hf_repo: Option<String>,
    /// Revision of `--hf-repo` (branch, tag or commit).
    #[arg(long, global = true, default_value = "main")]
    pub hf_revision: String,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Print the model family, config, parameter count and tensor table of an artifact, checkpoint or weights
    /// file (host only). Without a path, inspects the embedded demo artifact.
    Inspect(InspectArgs),
    /// Convert a checkpoint (config.json + weights.pt) into a validated deployment artifact.
    Convert(ConvertArgs),
    /// Write the embedded demo artifact (tiny LeWM, deterministic weights) to a directory.
    Demo(DemoArgs),
    /// Encode a random observation (and goal) and score random candidate action sequences on the GPU.
    Score(ScoreArgs),
    /// Plan on random observations of the model's schema (LeWM: and a random goal) and print the executed actions.
    Plan(PlanArgs),
    /// Compare swm with a fixture exported from the official Python package.
    #[command(subcommand)]
    Parity(ParityFamily),
    /// Benchmark rows (CUDA-event and wall-clock timing, p50/p99).
    #[command(subcommand)]
    Bench(BenchFamily),
    /// The GPU's media engines (nvJPEG, NVDEC) as swm's decoders see them.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Train a LeWM artifact on one batch (NPZ of clips) with upstream's objective and AdamW on the GPU, and write
    /// the trained artifact.
    TrainBatch(TrainBatchArgs),
}

impl Command {
    /// Whether the command runs on the GPU (in `swm-gpu`); `inspect`, `convert` and `demo` run on the host only.
    pub fn needs_gpu(&self) -> bool {
        !matches!(self, Self::Inspect(_) | Self::Convert(_) | Self::Demo(_))
    }
}

/// `--gpu`: the CUDA device a command runs on.
#[derive(Args, Clone, Copy)]
pub struct DeviceArgs {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
}

/// `--json PATH`: also write the result as JSON.
#[derive(Args, Clone)]
pub struct ReportArgs {
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// How weights are read.
#[derive(Args, Clone, Default)]
pub struct LoadArgs {
    /// Strip this key prefix (default: strip `model.` when every key has it).
    #[arg(long)]
    pub strip_prefix: Option<String>,
    /// Read the state dict under this key of a .pt file (e.g. `state_dict`).
    #[arg(long)]
    pub state_dict_key: Option<String>,
}

impl LoadArgs {
    /// The runtime's load options.
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            strip_prefix: self.strip_prefix.clone(),
            state_dict_key: self.state_dict_key.clone(),
            ..LoadOptions::default()
        }
    }
}

/// `swm inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Artifact directory, checkpoint directory, or weights file (.safetensors / .pt).
    pub path: Option<PathBuf>,
    /// How to read the weights.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print every tensor (default: the first 40).
    #[arg(long)]
    pub all: bool,
}

/// `swm convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// Checkpoint directory or weights file (or `--hf-repo`).
    pub checkpoint: Option<PathBuf>,
    /// Output artifact directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Matmul precision the artifact plans with (`schema.json`'s `matmul`): tf32 is the fastest mode; check it with
    /// `swm parity decision --tf32` first.
    #[arg(long, value_enum, default_value_t = Matmul::F32)]
    pub matmul: Matmul,
    /// How to read the weights.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// `--matmul`: an artifact's matmul precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Matmul {
    /// f32 (swm's split-TF32 GEMM, f32-class accuracy).
    F32,
    /// TF32 tensor cores (~1e-3 relative).
    Tf32,
}

impl Matmul {
    /// The artifact's value.
    pub fn precision(self) -> swm::artifact::MatmulPrecision {
        match self {
            Self::F32 => swm::artifact::MatmulPrecision::F32,
            Self::Tf32 => swm::artifact::MatmulPrecision::Tf32,
        }
    }
}

/// `swm demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Output directory.
    #[arg(long, default_value = "target/swm-demo")]
    pub out: PathBuf,
}

/// `swm score`.
#[derive(Args)]
pub struct ScoreArgs {
    /// Artifact or checkpoint directory (default: the embedded demo).
    pub path: Option<PathBuf>,
    /// Candidates to score.
    #[arg(long, default_value_t = 300, value_parser = positive)]
    pub samples: usize,
    /// Candidate steps.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub horizon: usize,
    /// Bracket one CUDA-graph replay of the scoring with cuProfilerStart/Stop, for
    /// `ncu --profile-from-start off` (or nsys --capture-range=cudaProfilerApi). LeWM only.
    #[arg(long)]
    pub profile: bool,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `--encoder-grad`: how a training step computes the ViT encoder's gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EncoderGradArg {
    /// Candle's autograd through the whole model.
    Autograd,
    /// The encoder's hand-written backward (the default; the same gradients, faster).
    Manual,
}

impl From<EncoderGradArg> for swm::training::EncoderGrad {
    fn from(arg: EncoderGradArg) -> Self {
        match arg {
            EncoderGradArg::Autograd => Self::Autograd,
            EncoderGradArg::Manual => Self::Manual,
        }
    }
}

/// `--update`: which kernels run the update after a training step's backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UpdateArg {
    /// Candle's ops and `candle_nn::AdamW`.
    Candle,
    /// swm's fused norm, clipping and AdamW kernels (the default).
    Fused,
}

impl From<UpdateArg> for swm::training::UpdateKernels {
    fn from(arg: UpdateArg) -> Self {
        match arg {
            UpdateArg::Candle => Self::Candle,
            UpdateArg::Fused => Self::Fused,
        }
    }
}

/// `swm train-batch`.
#[derive(Args)]
pub struct TrainBatchArgs {
    /// LeWM artifact (or checkpoint) directory to start from.
    #[arg(long)]
    pub artifact: PathBuf,
    /// NPZ with `pixels` (batch, time, 3, H, W) — uint8 (normalised as the artifact's preprocess.json says) or
    /// float (already preprocessed) — and `actions` (batch, time, action_dim).
    #[arg(long)]
    pub batch: PathBuf,
    /// AdamW steps on the batch.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub steps: usize,
    /// Learning rate (upstream's lewm.yaml: 5e-5); the peak of the schedule.
    #[arg(long, default_value_t = 5e-5, value_parser = non_negative)]
    pub lr: f64,
    /// Linear warm-up from 0 over this many steps (upstream's LinearWarmupCosineAnnealingLR; 0: none).
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    /// Anneal the rate along a cosine to 0 at the last step, after the warm-up.
    #[arg(long)]
    pub cosine: bool,
    /// Decoupled weight decay (upstream: 1e-3).
    #[arg(long, default_value_t = 1e-3, value_parser = non_negative)]
    pub weight_decay: f64,
    /// Global gradient-norm clipping (upstream: 1.0); 0 turns it off.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative)]
    pub clip: f64,
    /// The predictor's dropout probability (default: the config's, upstream 0.1).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Random SIGReg directions per step (upstream: 1024).
    #[arg(long, default_value_t = 1024, value_parser = positive)]
    pub num_proj: usize,
    /// Seed of the device's random generator (SIGReg's directions, dropout masks).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How the encoder's gradients are computed.
    #[arg(long, value_enum, default_value_t = EncoderGradArg::Manual)]
    pub encoder_grad: EncoderGradArg,
    /// Which kernels run the update.
    #[arg(long, value_enum, default_value_t = UpdateArg::Fused)]
    pub update: UpdateArg,
    /// Output artifact directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `swm plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// Artifact or checkpoint directory, LeWM or TD-MPC2 (default: the embedded demo).
    pub path: Option<PathBuf>,
    /// The planner.
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Control steps to run in a row (warm-started), to see the steady state.
    #[arg(long, default_value_t = 3, value_parser = positive)]
    pub repeat: usize,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// A sampling solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Solver {
    /// Cross-entropy method.
    Cem,
    /// Model-predictive path integral.
    Mppi,
    /// Improved CEM (coloured noise, kept elites, clamped to the action bounds).
    Icem,
}

impl Solver {
    /// The solver's name in fixtures and configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cem => "cem",
            Self::Mppi => "mppi",
            Self::Icem => "icem",
        }
    }
}

/// The planner flags of `swm plan`.
#[derive(Args, Clone)]
pub struct PlannerArgs {
    /// Planner config JSON (`PlannerConfig`, docs/planners.md); replaces the solver flags below.
    #[arg(long, value_name = "FILE")]
    pub planner: Option<PathBuf>,
    /// Solver (upstream defaults).
    #[arg(long, value_enum, default_value_t = Solver::Cem)]
    pub solver: Solver,
    /// Candidates per iteration (default: upstream's 300).
    #[arg(long, value_parser = positive)]
    pub samples: Option<usize>,
    /// Iterations (default: upstream's 30).
    #[arg(long, value_parser = positive)]
    pub iterations: Option<usize>,
    /// Horizon in macro steps.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub horizon: usize,
    /// Env steps per macro step (the model's frameskip; default: the artifact's `preprocess.action.block`). The
    /// model's action dim must be a multiple.
    #[arg(long, value_parser = positive)]
    pub action_block: Option<usize>,
    /// Deadline per control step in milliseconds (GPU time bound).
    #[arg(long, value_parser = positive_ms)]
    pub deadline_ms: Option<f64>,
}

/// A count of at least 1.
pub(crate) fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite duration above 0 (milliseconds).
pub(crate) fn positive_ms(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms > 0.0 => Ok(ms),
        Ok(ms) => Err(format!("must be a finite number of milliseconds above 0, got {ms}")),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite number of at least 0 (tolerances, learning rates).
pub(crate) fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        Ok(t) => Err(format!("must be finite and at least 0, got {t}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `path`, given on the command line (as `what`), must exist: a usage error naming it otherwise.
pub fn existing<'a>(path: &'a Path, what: &str) -> Result<&'a Path, CliError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(CliError::usage(format!("{what} {}: no such file or directory", path.display())))
    }
}

impl ReportArgs {
    /// Checks, before any work, that the JSON report can be written where asked (its directory exists).
    pub fn check(&self) -> Result<(), CliError> {
        let Some(path) = &self.json else { return Ok(()) };
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
                Err(CliError::usage(format!("--json {}: directory {} does not exist", path.display(), dir.display())))
            }
            _ => Ok(()),
        }
    }

    /// Writes `value` as pretty JSON when `--json` was given.
    pub fn write<T: serde::Serialize>(&self, value: &T) -> Result<(), CliError> {
        if let Some(path) = &self.json {
            swm::artifact::write_json(path, value)?;
        }
        Ok(())
    }
}
