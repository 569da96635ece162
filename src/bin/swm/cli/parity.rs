//! The clap types of `swm parity`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::{non_negative, DeviceArgs, EncoderGradArg, ReportArgs, Solver, UpdateArg};

/// Which costs a replayed planner sees in `swm parity planner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CostSource {
    /// The official model's recorded costs (isolates the planner's arithmetic).
    Recorded,
    /// swm's LeWM on the fixture's model (end to end).
    Model,
    /// Both, one after the other.
    Both,
}

/// `swm parity <family>`.
#[derive(Subcommand)]
pub enum ParityFamily {
    /// LeWM: encode, action embedding, predict, goal embedding, rollout and cost.
    Lewm(ModelParityArgs),
    /// TD-MPC2: encode, one dynamics/reward step, actor mean, Q ensemble and the planning cost.
    Tdmpc2(ModelParityArgs),
    /// Planners: replay the official solver's noise and compare every iteration (planner_<solver>.npz).
    Planner(PlannerParityArgs),
    /// Decision parity: swm CEM vs the official CEM's plans over many starts (decision.npz from
    /// `swm_tools.decision_parity`); both plans are scored by the same model.
    Decision(DecisionParityArgs),
    /// Media: a camera JPEG through swm's decode + preprocessing + LeWM encode against the official pipeline
    /// (`swm_tools.export_media_parity`: media_parity.safetensors beside config.json and weights.pt).
    Media(MediaParityArgs),
    /// Training: the fixture's LeWM training steps (train-mode objective, gradients, clipping, AdamW)
    /// against the official ones (`swm_tools.export_train`: config.json, model.safetensors, batch/steps
    /// .safetensors, meta.json). Tolerances: first_loss (absolute), grad, loss, grad_norm, weights (relative).
    Train(TrainParityArgs),
}

/// `swm parity train`.
#[derive(Args)]
pub struct TrainParityArgs {
    /// The fixture and the checks (`--fixture`, `--tol`, `--json`, `--gpu` as for `swm parity lewm`; the
    /// fixture's own model is trained: no `--weights`, `--config`).
    #[command(flatten)]
    pub model: ModelParityArgs,
    /// How the encoder's gradients are computed.
    #[arg(long, value_enum, default_value_t = EncoderGradArg::Manual)]
    pub encoder_grad: EncoderGradArg,
    /// Which kernels run the update.
    #[arg(long, value_enum, default_value_t = UpdateArg::Fused)]
    pub update: UpdateArg,
}

/// `swm parity media`.
#[derive(Args)]
pub struct MediaParityArgs {
    /// The model and the official outputs (`--fixture`, `--tol`, `--json`, `--gpu` as for `swm parity lewm`).
    #[command(flatten)]
    pub model: ModelParityArgs,
    /// The JPEG the official pipeline decoded.
    #[arg(long)]
    pub jpeg: PathBuf,
}

/// A model parity run: a fixture directory (fixtures.md) and overrides.
#[derive(Args)]
pub struct ModelParityArgs {
    /// Fixture directory (config.json, weights.pt, fixture.npz, meta.json).
    #[arg(long)]
    pub fixture: PathBuf,
    /// Weights file (default: the fixture's).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Config file (default: the fixture's).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Tolerance overrides, e.g. `--tol cost=5e-3`.
    #[arg(long = "tol")]
    pub tolerances: Vec<String>,
    /// The JSON report.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `swm parity planner`.
#[derive(Args)]
pub struct PlannerParityArgs {
    /// Model fixture directory holding planner_<solver>.npz (from `swm_tools.export_planner`).
    #[arg(long)]
    pub fixture: PathBuf,
    /// Solvers to check.
    #[arg(long = "solver", value_enum, default_values_t = [Solver::Cem, Solver::Mppi, Solver::Icem])]
    pub solvers: Vec<Solver>,
    /// Costs the planner sees.
    #[arg(long, value_enum, default_value_t = CostSource::Both)]
    pub costs: CostSource,
    /// Max abs tolerance on candidates, mean, std and actions.
    #[arg(long, default_value_t = 1e-4, value_parser = non_negative)]
    pub tol: f64,
    /// Max abs tolerance on costs when swm's model scores (recorded costs must match to 1e-6).
    #[arg(long, default_value_t = 1e-2, value_parser = non_negative)]
    pub cost_tol: f64,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `swm parity decision`.
#[derive(Args)]
pub struct DecisionParityArgs {
    /// Directory with config.json, weights.pt and decision.npz.
    #[arg(long)]
    pub dir: PathBuf,
    /// Allowed relative excess cost of swm's plan per start.
    #[arg(long, default_value_t = 0.01, value_parser = non_negative)]
    pub rel_tol: f64,
    /// The per-start results as JSON.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The GPU.
    #[command(flatten)]
    pub device: DeviceArgs,
}
