//! The clap types of `swm bench`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{positive, DeviceArgs, ReportArgs};

/// `swm bench <rows>`.
#[derive(Subcommand)]
pub enum BenchFamily {
    /// LeWM rows: encode one frame, score S candidates x H steps.
    Lewm(BenchLewmArgs),
    /// The rollout's GEMM shapes (PushT-sized LeWM, 300 candidates) on swm's split-TF32 GEMM, cuBLAS f32 and
    /// cuBLAS TF32: GPU time per call.
    Gemm(BenchGemmArgs),
    /// TD-MPC2 rows: MPPI 512x6 (top-64, temperature 0.5, H3, 6-d actions) on the official baseline's model
    /// size with random weights, CUDA graph; and the planning cost of 512 candidates alone.
    Tdmpc2(BenchTdmpc2Args),
    /// Planner rows on LeWM: CEM 300x30, MPPI 300x30, iCEM 1024x5 (H5, PushT action blocks), CUDA graphs; and
    /// one control step of the engine (encode + CEM 300x30).
    Plan(BenchPlanArgs),
    /// Media rows: camera bytes to the model's input tensor on the GPU — JPEG 224² and 640×480 (nvJPEG + the
    /// fused kernel), a history batch of four, packed RGB and NV12 1080p frames already on the device, and an
    /// H.264 access unit through NVDEC.
    Media(BenchMediaArgs),
    /// Training rows: one LeWM training step (upstream's objective, backward, clipping, AdamW) on a batch of clips
    /// of 4 frames, f32 and TF32 (PushT-sized config with random weights unless PATH is given).
    Train(BenchTrainArgs),
}

/// `swm bench train`.
#[derive(Args)]
pub struct BenchTrainArgs {
    /// LeWM artifact or checkpoint (default: PushT-sized config with random weights).
    pub path: Option<PathBuf>,
    /// Clips per batch (upstream trains with 128).
    #[arg(long, default_value_t = 128, value_parser = positive)]
    pub batch_size: usize,
    /// Timed steps per row.
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub iters: usize,
    /// Untimed steps before each row.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Instead of the rows: two f32 steps, then one between cuProfilerStart/Stop, for
    /// `ncu --profile-from-start off` or `nsys --capture-range=cudaProfilerApi`.
    #[arg(long)]
    pub profile: bool,
    /// The rows as JSON.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `swm bench media`.
#[derive(Args)]
pub struct BenchMediaArgs {
    /// Directory of the test media (tests/data/media of the repository; default: under `CARGO_MANIFEST_DIR`, else
    /// ./tests/data/media).
    #[arg(long)]
    pub media: Option<PathBuf>,
    /// Timed iterations per row.
    #[arg(long, default_value_t = 200, value_parser = positive)]
    pub iters: usize,
    /// The rows as JSON.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `swm bench lewm`.
#[derive(Args)]
pub struct BenchLewmArgs {
    /// Artifact or checkpoint (default: PushT-sized config with random weights).
    pub path: Option<PathBuf>,
    /// Timed iterations per row.
    #[arg(long, default_value_t = 100, value_parser = positive)]
    pub iters: usize,
    /// Candidates for the scoring row.
    #[arg(long, default_value_t = 300, value_parser = positive)]
    pub samples: usize,
    /// Untimed runs before each row.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Candidate steps for the scoring row.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub horizon: usize,
    /// Profile PART instead of timing rows: two graph-replayed runs, then one between cuProfilerStart/Stop
    /// (`tools/gpu/profile_bench.sh lewm [PART]`); `--profile` alone profiles the encode.
    #[arg(long, value_enum, value_name = "PART", num_args = 0..=1, default_missing_value = "encode")]
    pub profile: Option<LewmPart>,
    /// The rows as JSON.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// What `swm bench lewm --profile` profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LewmPart {
    /// One encode of one frame (CUDA graph).
    Encode,
    /// One scoring of `--samples` candidates × `--horizon` steps (CUDA graph): a CEM iteration's model work.
    Score,
}

/// `swm bench gemm`.
#[derive(Args)]
pub struct BenchGemmArgs {
    /// Timed calls per row.
    #[arg(long, default_value_t = 200, value_parser = positive)]
    pub iters: usize,
    /// The rows as JSON.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `swm bench tdmpc2`.
#[derive(Args)]
pub struct BenchTdmpc2Args {
    /// Timed runs per row.
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub iters: usize,
    /// Instead of the rows: two f32 plans from a new observation, then one between cuProfilerStart/Stop, for
    /// `ncu --profile-from-start off` or `nsys --capture-range=cudaProfilerApi` (tools/gpu/profile_bench.sh).
    #[arg(long)]
    pub profile: bool,
    /// The rows as JSON.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `swm bench plan`.
#[derive(Args)]
pub struct BenchPlanArgs {
    /// Artifact or checkpoint (default: PushT-sized config with random weights).
    pub path: Option<PathBuf>,
    /// Timed plans per row.
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub iters: usize,
    /// The rows as JSON.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}
