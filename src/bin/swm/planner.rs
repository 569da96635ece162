//! `PlannerArgs` → `PlannerConfig`, checked on the host before the device is opened.

use std::path::Path;
use std::time::Duration;

use swm::artifact::Artifact;
use swm::config::ConfigError;
use swm::planning::{ActionBounds, CemConfig, IcemConfig, MppiConfig, PlannerConfig, SolverConfig};
use swm::session::Session;

use crate::cli::{existing, PlannerArgs, Solver};
use crate::error::CliError;

/// A planner config checked against the artifact, waiting for the session's action bounds.
pub struct Planned {
    /// The config (flags: bounds still provisional).
    pub config: PlannerConfig,
    /// Read from `--planner FILE` (used as written) rather than built from the flags.
    from_file: bool,
}

impl Planned {
    /// Checks the flags (or reads `--planner FILE`) against `artifact`, whose action block becomes the planner's
    /// (`--action-block`, default: the artifact's). Every failure is a usage error naming the flag or file.
    pub fn new(args: &PlannerArgs, artifact: &mut Artifact) -> Result<Self, CliError> {
        let action_dim = artifact.schema.action_dim;
        if let Some(path) = &args.planner {
            let config = read(path)?;
            if config.macro_action_dim() != action_dim {
                return Err(CliError::usage(format!(
                    "--planner {}: plans {} x {} env actions per model action; this {} model takes {action_dim}",
                    path.display(),
                    config.action_block,
                    config.action_dim,
                    artifact.schema.family
                )));
            }
            set_block(artifact, config.action_block, &format!("--planner {}: action_block", path.display()))?;
            return Ok(Self { config, from_file: true });
        }
        let block = args.action_block.unwrap_or(artifact.preprocess.action.block);
        if block == 0 || !action_dim.is_multiple_of(block) {
            return Err(CliError::usage(format!(
                "--action-block {block}: does not divide the model's action dim {action_dim}"
            )));
        }
        set_block(artifact, block, "--action-block")?;
        let env = action_dim / block;
        let mut config = PlannerConfig::new(solver(args), args.horizon, env, block);
        if matches!(config.solver, SolverConfig::Icem(_)) {
            config.bounds = Some(unit_box(env));
        }
        config.validate().map_err(flag_error)?;
        Ok(Self { config, from_file: false })
    }

    /// The final config: the flags' planner gets the session's action bounds (iCEM without any: [-1, 1], the
    /// normalised Box upstream clamps to); a `--planner FILE` is used as written.
    pub fn finish(self, session: &Session) -> Result<PlannerConfig, CliError> {
        let mut config = self.config;
        if self.from_file {
            return Ok(config);
        }
        config.bounds = match (session.action_bounds()?, &config.solver) {
            (Some(bounds), _) => Some(bounds),
            (None, SolverConfig::Icem(_)) => Some(unit_box(config.action_dim)),
            (None, _) => None,
        };
        config.validate()?;
        Ok(config)
    }
}

/// `--deadline-ms` as a duration.
pub fn deadline(args: &PlannerArgs) -> Result<Option<Duration>, CliError> {
    args.deadline_ms
        .map(|ms| Duration::try_from_secs_f64(ms / 1e3))
        .transpose()
        .map_err(|e| CliError::usage(format!("--deadline-ms: {e}")))
}

/// The solver of the flags, upstream defaults with `--samples` / `--iterations` applied.
fn solver(args: &PlannerArgs) -> SolverConfig {
    let pick = |default: usize, flag: Option<usize>| flag.unwrap_or(default);
    match args.solver {
        Solver::Cem => {
            let d = CemConfig::default();
            let (num_samples, n_steps) = (pick(d.num_samples, args.samples), pick(d.n_steps, args.iterations));
            SolverConfig::Cem(CemConfig { num_samples, n_steps, ..d })
        }
        Solver::Mppi => {
            let d = MppiConfig::default();
            let (num_samples, n_steps) = (pick(d.num_samples, args.samples), pick(d.n_steps, args.iterations));
            SolverConfig::Mppi(MppiConfig { num_samples, n_steps, ..d })
        }
        Solver::Icem => {
            let d = IcemConfig::default();
            let (num_samples, n_steps) = (pick(d.num_samples, args.samples), pick(d.n_steps, args.iterations));
            SolverConfig::Icem(IcemConfig { num_samples, n_steps, ..d })
        }
    }
}

/// [-1, 1] per env action dim.
fn unit_box(env: usize) -> ActionBounds {
    ActionBounds { low: vec![-1.0; env], high: vec![1.0; env] }
}

/// Makes `block` the artifact's action block, revalidating its action statistics against it.
fn set_block(artifact: &mut Artifact, block: usize, what: &str) -> Result<(), CliError> {
    if artifact.preprocess.action.block == block {
        return Ok(());
    }
    artifact.preprocess.action.block = block;
    artifact.validate().map_err(|e| CliError::usage(format!("{what} {block}: {e}")))
}

/// Reads and validates a planner config file; errors name the file and the field.
fn read(path: &Path) -> Result<PlannerConfig, CliError> {
    existing(path, "--planner")?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("--planner {}: cannot read: {e}", path.display())))?;
    let config: PlannerConfig =
        swm::config::parse_json(&text, path).map_err(|e| CliError::usage(format!("--planner {e}")))?;
    config.validate().map_err(|e| CliError::usage(format!("--planner {}", e.in_file(path))))?;
    Ok(config)
}

/// A planner built from the flags that does not validate: the error names the flag.
fn flag_error(e: ConfigError) -> CliError {
    let ConfigError::Invalid { field, reason, .. } = &e else { return CliError::usage(format!("planner flags: {e}")) };
    let flag = match field.as_str() {
        "solver.num_samples" | "solver.topk" | "solver.n_elite_keep" => "--samples",
        "solver.n_steps" => "--iterations",
        "horizon" => "--horizon",
        "action_dim" | "action_block" => "--action-block",
        _ => "planner flags",
    };
    CliError::usage(format!("{flag}: {reason} (planner field `{field}`)"))
}
