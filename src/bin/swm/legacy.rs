//! `swm`: the pipeline binary — inspect, convert, score, parity and bench.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};
use clap::{Args, Parser, Subcommand};

use swm::artifact::{self, Artifact, Checkpoint};
use swm::checkpoint::LoadOptions;
use swm::config::ModelConfig;
use swm::models::lewm::{GraphedEncoder, LeWm, LeWmSession, RolloutSemantics};
use swm::ops::gemm::{self, F32Matmul};
use swm::parity::PlannerCosts;
use swm::planning::{ActionBounds, PlanOptions, Planner, PlannerConfig, SolverConfig};
use swm::{bench, demo, device, parity};

#[derive(Parser)]
#[command(name = "swm", version, about = "CUDA runtime for stable-worldmodel checkpoints")]
struct Cli {
    /// Take the checkpoint from the local Hugging Face cache (`user/repo`, e.g. quentinll/lewm-pusht) when a
    /// command's PATH is omitted (feature `hub`).
    #[arg(long, global = true)]
    hf_repo: Option<String>,
    /// Revision of `--hf-repo` (branch, tag or commit).
    #[arg(long, global = true, default_value = "main")]
    hf_revision: String,
    /// Let f32 matmuls use TF32 tensor cores (upstream's planning speed knob; default: full f32).
    #[arg(long, global = true)]
    tf32: bool,
    /// Run f32 matmuls on cuBLAS's f32 GEMMs instead of swm's split-TF32 tensor-core GEMM (both f32-accurate).
    #[arg(long, global = true)]
    cublas_f32: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the model family, config, parameter count and tensor table of an artifact, checkpoint or weights
    /// file (host only). Without a path, inspects the embedded demo artifact.
    Inspect {
        /// Artifact directory, checkpoint directory, or weights file (.safetensors / .pt).
        path: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        /// Print every tensor (default: the first 40).
        #[arg(long)]
        all: bool,
    },
    /// Convert a checkpoint (config.json + weights.pt) into a validated deployment artifact.
    Convert {
        /// Checkpoint directory or weights file (or `--hf-repo`).
        checkpoint: Option<PathBuf>,
        /// Output artifact directory.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Write the embedded demo artifact (tiny LeWM, deterministic weights) to a directory.
    Demo {
        /// Output directory.
        #[arg(long, default_value = "target/swm-demo")]
        out: PathBuf,
    },
    /// Encode an observation and a goal and score random candidate action sequences on the GPU.
    Score {
        /// Artifact or checkpoint directory (default: the embedded demo).
        path: Option<PathBuf>,
        /// Candidates to score.
        #[arg(long, default_value_t = 300)]
        samples: usize,
        /// Candidate steps.
        #[arg(long, default_value_t = 5)]
        horizon: usize,
        /// Bracket one CUDA-graph replay of the scoring with cuProfilerStart/Stop, for
        /// `ncu --profile-from-start off` (or nsys --capture-range=cudaProfilerApi).
        #[arg(long)]
        profile: bool,
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
    /// Compare swm with a fixture exported from the official Python package.
    Parity {
        #[command(subcommand)]
        family: ParityFamily,
    },
    /// Benchmark rows (CUDA-event and wall-clock timing, p50/p99).
    Bench {
        #[command(subcommand)]
        family: BenchFamily,
    },
    /// Plan on an observation and a goal (random frames of the model's size) and print the executed actions.
    Plan {
        /// Artifact or checkpoint directory (default: the embedded demo).
        path: Option<PathBuf>,
        #[command(flatten)]
        planner: PlannerArgs,
        /// Plans to run in a row (warm-started), to see the steady state.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
}

#[derive(Args, Clone)]
struct PlannerArgs {
    /// Planner config JSON (`PlannerConfig`, docs/planners.md); overrides the flags below.
    #[arg(long)]
    planner: Option<PathBuf>,
    /// Solver: cem, mppi or icem (upstream defaults).
    #[arg(long, default_value = "cem")]
    solver: String,
    /// Candidates per iteration (default: upstream's 300).
    #[arg(long)]
    samples: Option<usize>,
    /// Iterations (default: upstream's 30).
    #[arg(long)]
    iterations: Option<usize>,
    /// Horizon in macro steps.
    #[arg(long, default_value_t = 5)]
    horizon: usize,
    /// Env steps per macro step (the model's frameskip; PushT checkpoints: 5). The model's action-block dim must
    /// be a multiple.
    #[arg(long, default_value_t = 1)]
    action_block: usize,
    /// Deadline per plan in milliseconds (GPU time bound).
    #[arg(long)]
    deadline_ms: Option<f64>,
}

impl PlannerArgs {
    fn config(&self, model_action_dim: usize) -> swm::Result<PlannerConfig> {
        if let Some(path) = &self.planner {
            let text = std::fs::read_to_string(path).map_err(|source| swm::Error::Io { path: path.clone(), source })?;
            return Ok(PlannerConfig::from_json_str(&text).map_err(|e| e.in_file(path))?);
        }
        if self.action_block == 0 || model_action_dim % self.action_block != 0 {
            return Err(swm::Error::invalid_input(
                "--action-block",
                format!("{} does not divide the model's action-block dim {model_action_dim}", self.action_block),
            ));
        }
        let mut solver = match self.solver.as_str() {
            "cem" => SolverConfig::Cem(Default::default()),
            "mppi" => SolverConfig::Mppi(Default::default()),
            "icem" => SolverConfig::Icem(Default::default()),
            other => return Err(swm::Error::invalid_input("--solver", format!("`{other}` (cem, mppi or icem)"))),
        };
        match &mut solver {
            SolverConfig::Cem(c) => {
                c.num_samples = self.samples.unwrap_or(c.num_samples);
                c.n_steps = self.iterations.unwrap_or(c.n_steps);
            }
            SolverConfig::Mppi(c) => {
                c.num_samples = self.samples.unwrap_or(c.num_samples);
                c.n_steps = self.iterations.unwrap_or(c.n_steps);
            }
            SolverConfig::Icem(c) => {
                c.num_samples = self.samples.unwrap_or(c.num_samples);
                c.n_steps = self.iterations.unwrap_or(c.n_steps);
            }
        }
        let a_env = model_action_dim / self.action_block;
        let mut config = PlannerConfig::new(solver, self.horizon, a_env, self.action_block);
        if matches!(config.solver, SolverConfig::Icem(_)) {
            // iCEM clamps to the env Box; LeWM plans in a normalised space, PushT's Box is [-1, 1].
            config.bounds = Some(ActionBounds { low: vec![-1.0; a_env], high: vec![1.0; a_env] });
        }
        config.validate()?;
        Ok(config)
    }

    fn options(&self) -> PlanOptions {
        PlanOptions {
            deadline: self.deadline_ms.map(|ms| Instant::now() + Duration::from_secs_f64(ms / 1e3)),
            eager: false,
        }
    }
}

#[derive(Args, Clone, Default)]
struct LoadArgs {
    /// Strip this key prefix (default: strip `model.` when every key has it).
    #[arg(long)]
    strip_prefix: Option<String>,
    /// Read the state dict under this key of a .pt file (e.g. `state_dict`).
    #[arg(long)]
    state_dict_key: Option<String>,
}

impl LoadArgs {
    fn options(&self) -> LoadOptions {
        LoadOptions { strip_prefix: self.strip_prefix.clone(), state_dict_key: self.state_dict_key.clone() }
    }
}

/// A model parity run: a fixture directory (fixtures.md) and overrides.
#[derive(Args)]
struct ModelParityArgs {
    /// Fixture directory (config.json, weights.pt, fixture.npz, meta.json).
    #[arg(long)]
    fixture: PathBuf,
    /// Weights file (default: the fixture's).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Config file (default: the fixture's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Tolerance overrides, e.g. `--tol cost=5e-3`.
    #[arg(long = "tol")]
    tolerances: Vec<String>,
    /// Also write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
}

/// A family's parity check (`parity::lewm`, `parity::tdmpc2`).
type ParityCheck = fn(
    &parity::FixturePaths,
    &std::collections::BTreeMap<String, f64>,
    &candle_core::Device,
) -> swm::Result<parity::ParityReport>;

impl ModelParityArgs {
    /// Runs `check` with the fixture paths and the tolerances (defaults + overrides), prints the table and
    /// writes the JSON report; the exit code says whether it passed.
    fn run(self, mut tolerances: std::collections::BTreeMap<String, f64>, check: ParityCheck) -> swm::Result<ExitCode> {
        parity::apply_overrides(&mut tolerances, &self.tolerances)?;
        let device = device::cuda(self.gpu)?;
        let paths = parity::FixturePaths { dir: self.fixture, weights: self.weights, config: self.config };
        let report = check(&paths, &tolerances, &device)?;
        print!("{}", report.table());
        if let Some(path) = self.json {
            write_json(&path, &report)?;
        }
        Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}

#[derive(Subcommand)]
enum ParityFamily {
    /// LeWM: encode, action embedding, predict, goal embedding, rollout and cost.
    Lewm(ModelParityArgs),
    /// TD-MPC2: encode, one dynamics/reward step, actor mean, Q ensemble and the planning cost.
    Tdmpc2(ModelParityArgs),
    /// Planners: replay the official solver's noise and compare every iteration (planner_<solver>.npz).
    Planner(PlannerParityArgs),
    /// Decision parity: swm CEM vs the official CEM's plans over many starts (decision.npz from
    /// `swm_tools.decision_parity`); both plans are scored by the same model.
    Decision {
        /// Directory with config.json, weights.pt and decision.npz.
        #[arg(long)]
        dir: PathBuf,
        /// Allowed relative excess cost of swm's plan per start.
        #[arg(long, default_value_t = 0.01)]
        rel_tol: f64,
        /// Also write the per-start results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
}

#[derive(Args)]
struct PlannerParityArgs {
    /// Model fixture directory holding planner_<solver>.npz (from `swm_tools.export_planner`).
    #[arg(long)]
    fixture: PathBuf,
    /// Solvers to check.
    #[arg(long = "solver", default_values = ["cem", "mppi", "icem"])]
    solvers: Vec<String>,
    /// Costs the planner sees: `recorded` (the official model's), `model` (swm's LeWM) or `both`.
    #[arg(long, default_value = "both")]
    costs: String,
    /// Max abs tolerance on candidates, mean, std and actions.
    #[arg(long, default_value_t = 1e-4)]
    tol: f64,
    /// Max abs tolerance on costs when swm's model scores (recorded costs must match to 1e-6).
    #[arg(long, default_value_t = 1e-2)]
    cost_tol: f64,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
}

#[derive(Subcommand)]
enum BenchFamily {
    /// LeWM rows: encode one frame, score S candidates x H steps.
    Lewm {
        /// Artifact or checkpoint (default: PushT-sized config with random weights).
        path: Option<PathBuf>,
        /// Timed iterations per row.
        #[arg(long, default_value_t = 100)]
        iters: usize,
        /// Candidates for the scoring row.
        #[arg(long, default_value_t = 300)]
        samples: usize,
        /// Untimed runs before each row.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Candidate steps for the scoring row.
        #[arg(long, default_value_t = 5)]
        horizon: usize,
        /// Write the rows as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
    /// The rollout's GEMM shapes (PushT-sized LeWM, 300 candidates) on swm's split-TF32 GEMM, cuBLAS f32 and
    /// cuBLAS TF32: GPU time per call.
    Gemm {
        /// Timed calls per row.
        #[arg(long, default_value_t = 200)]
        iters: usize,
        /// Write the rows as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
    /// TD-MPC2 rows: MPPI 512x6 (top-64, temperature 0.5, H3, 6-d actions) on the official baseline's model
    /// size with random weights, CUDA graph; and the planning cost of 512 candidates alone.
    Tdmpc2 {
        /// Timed runs per row.
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Write the rows as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
    /// Planner rows on LeWM: CEM 300x30, MPPI 300x30, iCEM 1024x5 (H5, PushT action blocks), CUDA graphs.
    Plan {
        /// Artifact or checkpoint (default: PushT-sized config with random weights).
        path: Option<PathBuf>,
        /// Timed plans per row.
        #[arg(long, default_value_t = 20)]
        iters: usize,
        /// Write the rows as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// CUDA device ordinal.
        #[arg(long, default_value_t = 0)]
        gpu: usize,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    device::set_tf32(cli.tf32);
    if cli.cublas_f32 {
        gemm::set_f32_matmul(F32Matmul::Cublas);
    }
    let command = match resolve_hub(cli.command, cli.hf_repo.as_deref(), &cli.hf_revision) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Fills an omitted checkpoint PATH from `--hf-repo`.
fn resolve_hub(mut command: Command, repo: Option<&str>, revision: &str) -> swm::Result<Command> {
    let Some(repo) = repo else { return Ok(command) };
    let slot = match &mut command {
        Command::Inspect { path, .. } | Command::Score { path, .. } => path,
        Command::Convert { checkpoint, .. } => checkpoint,
        Command::Bench { family: BenchFamily::Lewm { path, .. } | BenchFamily::Plan { path, .. } } => path,
        Command::Plan { path, .. } => path,
        _ => return Ok(command),
    };
    if slot.is_none() {
        *slot = Some(hub_snapshot(repo, revision)?);
    }
    Ok(command)
}

#[cfg(feature = "hub")]
fn hub_snapshot(repo: &str, revision: &str) -> swm::Result<PathBuf> {
    Ok(swm::hub::resolve_checkpoint(repo, Some(revision), None)?)
}

#[cfg(not(feature = "hub"))]
fn hub_snapshot(repo: &str, _revision: &str) -> swm::Result<PathBuf> {
    Err(swm::Error::invalid_input(
        "--hf-repo",
        format!("`{repo}`: this build has no `hub` feature (cargo build --features hub)"),
    ))
}

fn run(command: Command) -> swm::Result<ExitCode> {
    match command {
        Command::Inspect { path, load, all } => inspect(path.as_deref(), &load.options(), all),
        Command::Convert { checkpoint, out, load } => {
            let checkpoint =
                checkpoint.ok_or_else(|| swm::Error::invalid_input("checkpoint", "give a PATH or --hf-repo"))?;
            let ckpt = Checkpoint::open(&checkpoint)?;
            let artifact = artifact::convert(&ckpt, &load.options(), &out, None)?;
            println!(
                "wrote {} ({} model, action_dim {})",
                out.display(),
                artifact.schema.family,
                artifact.schema.action_dim
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { out } => {
            demo::write_artifact(&out)?;
            println!("wrote the demo artifact to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Score { path, samples, horizon, profile, gpu } => {
            score(path.as_deref(), samples, horizon, profile, gpu)
        }
        Command::Parity { family: ParityFamily::Lewm(args) } => args.run(parity::lewm_tolerances(), parity::lewm),
        Command::Parity { family: ParityFamily::Tdmpc2(args) } => args.run(parity::tdmpc2_tolerances(), parity::tdmpc2),
        Command::Bench { family: BenchFamily::Lewm { path, iters, samples, warmup, horizon, json, gpu } } => {
            let rows = bench_lewm(path.as_deref(), iters, warmup, samples, horizon, gpu)?;
            if let Some(path) = json {
                write_json(&path, &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Parity { family: ParityFamily::Planner(args) } => parity_planner(&args),
        Command::Parity { family: ParityFamily::Decision { dir, rel_tol, json, gpu } } => {
            let device = device::cuda(gpu)?;
            let report = parity::decision(&dir, rel_tol, &device)?;
            print!("{}", report.table());
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
            Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Bench { family: BenchFamily::Tdmpc2 { iters, json, gpu } } => {
            let rows = bench_tdmpc2(iters, gpu)?;
            if let Some(path) = json {
                write_json(&path, &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { family: BenchFamily::Gemm { iters, json, gpu } } => {
            let rows = bench_gemm(iters, gpu)?;
            if let Some(path) = json {
                write_json(&path, &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { family: BenchFamily::Plan { path, iters, json, gpu } } => {
            let rows = bench_plan(path.as_deref(), iters, gpu)?;
            if let Some(path) = json {
                write_json(&path, &rows)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { path, planner, repeat, gpu } => plan(path.as_deref(), &planner, repeat, gpu),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> swm::Result<()> {
    artifact::write_json(path, value)?;
    Ok(())
}

/// The embedded demo artifact written to a temporary directory that is removed on drop.
struct DemoDir(PathBuf);

impl DemoDir {
    fn create() -> swm::Result<Self> {
        let dir = Self(std::env::temp_dir().join(format!("swm-demo-{}", std::process::id())));
        demo::write_artifact(&dir.0)?;
        Ok(dir)
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn inspect(path: Option<&Path>, options: &LoadOptions, all: bool) -> swm::Result<ExitCode> {
    let demo;
    let path = match path {
        Some(p) => p,
        None => {
            demo = DemoDir::create()?;
            println!("(the embedded demo artifact)");
            demo.0.as_path()
        }
    };
    let is_artifact = path.is_dir() && path.join("schema.json").is_file();
    let checkpoint = if is_artifact { Artifact::open(path)?.checkpoint } else { Checkpoint::open(path)? };
    let state = checkpoint.state_dict(options)?;
    println!("path:        {}", path.display());
    println!("kind:        {}", if is_artifact { "deployment artifact" } else { "checkpoint" });
    println!("family:      {}", checkpoint.config.family());
    println!("weights:     {}", checkpoint.weights.display());
    if let ModelConfig::Lewm(cfg) = &checkpoint.config {
        let vit = cfg.encoder.dims()?;
        println!(
            "encoder:     ViT {}x{} patch {} width {} layers {} heads {}",
            vit.image, vit.image, vit.patch, vit.hidden, vit.layers, vit.heads
        );
        println!(
            "predictor:   frames {} width {} depth {} heads {}x{} mlp {}",
            cfg.predictor.num_frames,
            cfg.predictor.hidden_dim,
            cfg.predictor.depth,
            cfg.predictor.heads,
            cfg.predictor.dim_head,
            cfg.predictor.mlp_dim
        );
        println!("actions:     block dim {} -> embedding {}", cfg.action_encoder.input_dim, cfg.action_encoder.emb_dim);
        let mut renamed = state.clone();
        renamed.rename_keys(swm::models::lewm::legacy_vit_key);
        match renamed.validate(&cfg.parameter_table()?) {
            Ok(()) => println!("validation:  ok (every parameter present with the expected shape)"),
            Err(e) => println!("validation:  FAILED: {e}"),
        }
    }
    if let ModelConfig::Tdmpc2(cfg) = &checkpoint.config {
        let encoding: Vec<String> = cfg.wm.encoding.0.iter().map(|(k, w)| format!("{k}->{w}")).collect();
        println!(
            "encoding:    {} (latent {}, SimNorm groups of {})",
            encoding.join(", "),
            cfg.latent_dim(),
            cfg.wm.simnorm_dim
        );
        println!(
            "heads:       mlp {} actions {} Q x{} bins {} over [{}, {}] discount {}",
            cfg.wm.mlp_dim, cfg.action_dim, cfg.wm.num_q, cfg.wm.num_bins, cfg.wm.vmin, cfg.wm.vmax, cfg.wm.discount
        );
        match state.validate(&cfg.parameter_table()) {
            Ok(()) => println!("validation:  ok (every parameter present with the expected shape)"),
            Err(e) => println!("validation:  FAILED: {e}"),
        }
    }
    println!("parameters:  {} in {} tensors", state.parameter_count(), state.len());
    let limit = if all { usize::MAX } else { 40 };
    for (i, (name, t)) in state.iter().enumerate() {
        if i == limit {
            println!("  ... {} more (--all)", state.len() - limit);
            break;
        }
        println!("  {:<64} {:>5?} {:?}", name, t.dtype(), t.dims());
    }
    Ok(ExitCode::SUCCESS)
}

fn load_lewm(
    path: Option<&Path>,
    device: &candle_core::Device,
    default: fn() -> swm::Result<(swm::models::lewm::Config, swm::checkpoint::StateDict)>,
) -> swm::Result<LeWm> {
    let (config, state) = match path {
        Some(p) => {
            let ckpt = Checkpoint::open(p)?;
            let ModelConfig::Lewm(cfg) = &ckpt.config else {
                return Err(swm::Error::invalid_input("model", format!("{} is not a LeWM checkpoint", p.display())));
            };
            (cfg.as_ref().clone(), ckpt.state_dict(&LoadOptions::default())?)
        }
        None => default()?,
    };
    LeWm::from_state_dict(&config, &state, device)
}

/// The PushT-sized LeWM config with deterministic random weights (the benchmarks' default model).
fn pusht_random() -> swm::Result<(swm::models::lewm::Config, swm::checkpoint::StateDict)> {
    let cfg = demo::pusht_config();
    let state = demo::random_state_dict(&cfg, 0)?;
    Ok((cfg, state))
}

/// A 0.1.1-semantics session with a random observation and goal frame encoded.
fn random_session(model: &Arc<LeWm>) -> swm::Result<LeWmSession> {
    let mut session = LeWmSession::new(model.clone(), RolloutSemantics::Release011);
    session.set_observation(&random_frames(model, 1)?)?;
    session.set_goal(&random_frames(model, 1)?)?;
    Ok(session)
}

/// Random frames of the model's input size, already normalised, on the device.
fn random_frames(model: &LeWm, n: usize) -> swm::Result<Tensor> {
    let side = model.config().encoder.image_size;
    Ok(Tensor::randn(0f32, 1f32, (1, n, 3, side, side), model.device())?)
}

fn score(path: Option<&Path>, samples: usize, horizon: usize, profile: bool, gpu: usize) -> swm::Result<ExitCode> {
    let device = device::cuda(gpu)?;
    let model = Arc::new(load_lewm(path, &device, || Ok((demo::config(), demo::state_dict(0x5EED)?)))?);
    let mut session = random_session(&model)?;
    let candidates = Tensor::randn(0f32, 1f32, (1, samples, horizon, model.action_dim()), &device)?;
    let cost = session.score(&candidates)?;
    if profile {
        session.score_graphed(&candidates)?;
        let driver = |e: cudarc::driver::DriverError| swm::Error::from(candle_core::Error::Cuda(Box::new(e)));
        let stream = match &device {
            candle_core::Device::Cuda(d) => d.cuda_stream(),
            _ => return Err(swm::Error::invalid_input("device", "not CUDA")),
        };
        stream.synchronize().map_err(driver)?;
        cudarc::driver::safe::profiler_start().map_err(driver)?;
        session.score_graphed(&candidates)?;
        stream.synchronize().map_err(driver)?;
        cudarc::driver::safe::profiler_stop().map_err(driver)?;
    }
    let best = cost.argmin(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?[0] as usize;
    let costs = cost.to_vec2::<f32>()?;
    println!(
        "scored {samples} candidates x {horizon} steps on {}: best #{best} cost {:.4} (worst {:.4})",
        device::name(&device).unwrap_or_default(),
        costs[0][best],
        costs[0].iter().cloned().fold(f32::MIN, f32::max)
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_lewm(
    path: Option<&Path>,
    iters: usize,
    warmup: usize,
    samples: usize,
    horizon: usize,
    gpu: usize,
) -> swm::Result<Vec<bench::BenchRow>> {
    let device = device::cuda(gpu)?;
    let model = Arc::new(load_lewm(path, &device, pusht_random)?);
    let gpu_name = device::name(&device).unwrap_or_default();
    println!("device: {gpu_name}");
    let frame = random_frames(&model, 1)?;
    let side = model.config().encoder.image_size;
    let mut rows = Vec::new();
    rows.push(bench::time(&device, &format!("lewm encode 1x{side}x{side} fp32"), warmup, iters, || {
        model.encode(&frame).map(drop)
    })?);
    let encoder = GraphedEncoder::new(&model, 1, 1)?;
    rows.push(bench::time(&device, &format!("lewm encode 1x{side}x{side} fp32, CUDA graph"), warmup, iters, || {
        encoder.encode(&frame).map(drop)
    })?);
    let mut session = LeWmSession::new(model.clone(), RolloutSemantics::Release011);
    session.set_observation(&frame)?;
    session.set_goal(&random_frames(&model, 1)?)?;
    let candidates = Tensor::randn(0f32, 1f32, (1, samples, horizon, model.action_dim()), &device)?;
    rows.push(bench::time(&device, &format!("lewm score {samples}x H{horizon} fp32"), warmup, iters, || {
        session.score(&candidates).map(drop)
    })?);
    rows.push(bench::time(
        &device,
        &format!("lewm score {samples}x H{horizon} fp32, CUDA graph"),
        warmup,
        iters,
        || session.score_graphed(&candidates).map(drop),
    )?);
    for row in &rows {
        println!("{row}");
    }
    Ok(rows)
}

fn parity_planner(args: &PlannerParityArgs) -> swm::Result<ExitCode> {
    let device = device::cuda(args.gpu)?;
    let costs = match args.costs.as_str() {
        "recorded" => vec![PlannerCosts::Recorded],
        "model" => vec![PlannerCosts::Model],
        "both" => vec![PlannerCosts::Recorded, PlannerCosts::Model],
        other => return Err(swm::Error::invalid_input("--costs", format!("`{other}` (recorded, model or both)"))),
    };
    let paths = parity::FixturePaths { dir: args.fixture.clone(), weights: None, config: None };
    let mut passed = true;
    for solver in &args.solvers {
        for &source in &costs {
            let report = parity::planner(&paths, solver, source, args.tol, args.cost_tol, &device)?;
            print!("{}", report.table());
            passed &= report.passed();
        }
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn plan(path: Option<&Path>, args: &PlannerArgs, repeat: usize, gpu: usize) -> swm::Result<ExitCode> {
    let device = device::cuda(gpu)?;
    let model = Arc::new(load_lewm(path, &device, || Ok((demo::config(), demo::state_dict(0x5EED)?)))?);
    let config = args.config(model.action_dim())?;
    println!("planner: {}", serde_json::to_string(&config).unwrap_or_default());
    let mut session = random_session(&model)?;
    let mut planner = Planner::new(config, 1, &device)?;
    planner.prepare(&mut session)?;
    for i in 0..repeat.max(1) {
        let t0 = Instant::now();
        let plan = planner.plan(&mut session, &args.options())?;
        let actions = plan.executed_to_host()?;
        let cost = plan.cost.to_vec1::<f32>()?[0];
        println!(
            "plan {i}: {:?} after {} iterations in {:.2} ms, cost {cost:.4}; first env action {:?}",
            plan.source,
            plan.iterations,
            t0.elapsed().as_secs_f64() * 1e3,
            &actions[..model.action_dim() / planner.config().action_block]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The matmul precision of a benchmark row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Precision {
    /// swm's split-TF32 tensor-core GEMM (f32-accurate, the default).
    SplitF32,
    /// cuBLAS's f32 GEMMs.
    CublasF32,
    /// cuBLAS's TF32 GEMMs.
    Tf32,
}

impl Precision {
    fn current() -> Self {
        match (device::tf32(), gemm::f32_matmul()) {
            (true, _) => Self::Tf32,
            (false, F32Matmul::Cublas) => Self::CublasF32,
            (false, F32Matmul::Split3xTf32) => Self::SplitF32,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::SplitF32 => "f32 (split-TF32 GEMM)",
            Self::CublasF32 => "f32 (cuBLAS GEMM)",
            Self::Tf32 => "TF32 GEMMs",
        }
    }

    /// Runs `work` with this precision selected, restoring the previous one afterwards (also on error).
    fn with<T>(self, work: impl FnOnce() -> T) -> T {
        let (tf32, kind) = (device::tf32(), gemm::f32_matmul());
        device::set_tf32(self == Self::Tf32);
        gemm::set_f32_matmul(if self == Self::CublasF32 { F32Matmul::Cublas } else { F32Matmul::Split3xTf32 });
        let out = work();
        device::set_tf32(tf32);
        gemm::set_f32_matmul(kind);
        out
    }
}

/// GPU time per call of the rollout's GEMM shapes under each precision.
fn bench_gemm(iters: usize, gpu: usize) -> swm::Result<Vec<bench::BenchRow>> {
    let device = device::cuda(gpu)?;
    println!("device: {}", device::name(&device).unwrap_or_default());
    // (what, rows, outputs, depth): the PushT-sized predictor at 300 candidates (1- and 3-frame windows), its
    // AdaLN table over 5 action blocks and pred_proj.
    let shapes = [
        ("qkv", 300, 3072, 192),
        ("qkv window", 900, 3072, 192),
        ("attn out", 300, 192, 1024),
        ("attn out window", 900, 192, 1024),
        ("fc1 / pred_proj fc1", 300, 2048, 192),
        ("fc2 / pred_proj fc2", 300, 192, 2048),
        ("fc2 window", 900, 192, 2048),
        ("AdaLN table", 1500, 6912, 192),
    ];
    let mut rows = Vec::new();
    for (name, m, n, k) in shapes {
        let x = Tensor::randn(0f32, 1.0, (m, k), &device)?;
        let w = Tensor::randn(0f32, 0.05, (n, k), &device)?;
        for precision in [Precision::SplitF32, Precision::CublasF32, Precision::Tf32] {
            let row = precision.with(|| {
                bench::time(&device, &format!("gemm {name} {m}x{n}x{k} {}", precision.label()), 20, iters, || {
                    gemm::linear(&x, &w, gemm::Epilogue::None).map(drop)
                })
            })?;
            println!("{row}");
            rows.push(row);
        }
    }
    Ok(rows)
}

/// TD-MPC2 rows: the official baseline's MPPI 512×6×H3 and one `get_cost` of 512 candidates, per precision.
fn bench_tdmpc2(iters: usize, gpu: usize) -> swm::Result<Vec<bench::BenchRow>> {
    use swm::models::tdmpc2::{TdMpc2, TdMpc2Session};
    use swm::planning::{CandidateScorer, MppiConfig};
    let device = device::cuda(gpu)?;
    println!("device: {}", device::name(&device).unwrap_or_default());
    let config = demo::tdmpc2_bench_config();
    let model = Arc::new(TdMpc2::from_state_dict(&config, &demo::random_tdmpc2_state_dict(&config, 7)?, &device)?);
    let mut session = TdMpc2Session::new(model.clone());
    let state = Tensor::randn(0f32, 1.0, (1, config.extra_dims.get("state").copied().unwrap_or(0)), &device)?;
    session.set_observation(&[("state", &state)])?;
    let a = config.action_dim;
    let candidates = Tensor::rand(-1f32, 1.0, (1, 512, 3, a), &device)?;
    let mut rows = Vec::new();
    for precision in [Precision::current(), Precision::CublasF32, Precision::Tf32] {
        let row = precision.with(|| -> swm::Result<Vec<bench::BenchRow>> {
            let solver = SolverConfig::Mppi(MppiConfig {
                num_samples: 512,
                n_steps: 6,
                topk: Some(64),
                temperature: 0.5,
                ..Default::default()
            });
            let mut planner = Planner::new(PlannerConfig::new(solver, 3, a, 1), 1, &device)?;
            let options = PlanOptions::default();
            let label = precision.label();
            let plan = bench::time(&device, &format!("tdmpc2 mppi 512x6 H3 {label}, CUDA graph"), 3, iters, || {
                planner.plan(&mut session, &options).map(drop)
            })?;
            let cost = bench::time(&device, &format!("tdmpc2 cost 512 x H3 {label}, eager"), 5, iters, || {
                session.score(&candidates).map(drop)
            })?;
            Ok(vec![plan, cost])
        })?;
        for r in row {
            println!("{r}");
            rows.push(r);
        }
    }
    Ok(rows)
}

fn bench_plan(path: Option<&Path>, iters: usize, gpu: usize) -> swm::Result<Vec<bench::BenchRow>> {
    let device = device::cuda(gpu)?;
    let model = Arc::new(load_lewm(path, &device, pusht_random)?);
    println!("device: {}{}", device::name(&device).unwrap_or_default(), if device::tf32() { " (TF32 on)" } else { "" });
    let mut session = random_session(&model)?;
    let (block, horizon) = (5, 5);
    let a_env = model.action_dim() / block;
    let cem = || ("cem 300x30", SolverConfig::Cem(Default::default()));
    let mppi = ("mppi 300x30", SolverConfig::Mppi(Default::default()));
    let icem = || {
        (
            "icem 1024x5",
            SolverConfig::Icem(swm::planning::IcemConfig { num_samples: 1024, n_steps: 5, ..Default::default() }),
        )
    };
    // The default precision's rows, then CEM and iCEM on cuBLAS f32 and with TF32 matmuls (upstream's speed
    // knob is torch.compile + TF32).
    let default = Precision::current();
    let rows_spec = [(cem(), default), (mppi, default), (icem(), default)].into_iter().chain([
        (cem(), Precision::CublasF32),
        (icem(), Precision::CublasF32),
        (cem(), Precision::Tf32),
        (icem(), Precision::Tf32),
    ]);
    let mut rows = Vec::new();
    for ((name, solver), precision) in rows_spec {
        let mut config = PlannerConfig::new(solver, horizon, a_env, block);
        if matches!(config.solver, SolverConfig::Icem(_)) {
            // iCEM clamps to the env Box (PushT: [-1, 1]²), as upstream does.
            config.bounds = Some(ActionBounds { low: vec![-1.0; a_env], high: vec![1.0; a_env] });
        }
        let row = precision.with(|| {
            let mut planner = Planner::new(config, 1, &device)?;
            let options = PlanOptions::default();
            bench::time(&device, &format!("lewm {name} H{horizon} {}, CUDA graph", precision.label()), 2, iters, || {
                planner.plan(&mut session, &options).map(drop)
            })
        })?;
        println!("{row}");
        rows.push(row);
    }
    Ok(rows)
}
