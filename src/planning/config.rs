//! Planner configuration: the solver (CEM, MPPI, iCEM) with every upstream hyper-parameter and default
//! (docs/spec/planners.md §2.2), the MPC loop around it (docs/spec/planners.md §6.1), sampling seeds, bounds and the fallback action.
//!
//! [`PlannerConfig::validate`] rejects what cannot work with an error naming the field, before anything touches the
//! GPU.

use serde::{Deserialize, Serialize};

use crate::config::{limits, ConfigError};

/// Largest candidate count per environment (the elite-selection kernel sorts a row in shared memory).
pub const MAX_SAMPLES: usize = 4096;
/// Longest horizon iCEM colours noise over (registers of the colouring kernel).
pub const MAX_ICEM_HORIZON: usize = 64;

fn default_samples() -> usize {
    300
}
fn default_var_scale() -> f32 {
    1.0
}
fn default_steps() -> usize {
    30
}
fn default_topk() -> usize {
    30
}
fn default_mppi_topk() -> Option<usize> {
    Some(30)
}
fn default_temperature() -> f32 {
    0.5
}
fn default_beta() -> f32 {
    2.0
}
fn default_alpha() -> f32 {
    0.1
}
fn default_keep() -> usize {
    5
}
fn default_true() -> bool {
    true
}
fn default_one() -> usize {
    1
}

/// Cross-entropy method (`CEMSolver`, docs/spec/planners.md §3): mean and unbiased std of the `topk` best candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CemConfig {
    /// Candidates per iteration N (candidate 0 is the current mean).
    #[serde(default = "default_samples")]
    pub num_samples: usize,
    /// Initial standard deviation of every (step, dim) (upstream calls it `var_scale`; it is a std).
    #[serde(default = "default_var_scale")]
    pub var_scale: f32,
    /// Iterations per plan.
    #[serde(default = "default_steps")]
    pub n_steps: usize,
    /// Elites K (≥ 2: the unbiased std of one elite is NaN upstream).
    #[serde(default = "default_topk")]
    pub topk: usize,
}

impl Default for CemConfig {
    fn default() -> Self {
        Self { num_samples: 300, var_scale: 1.0, n_steps: 30, topk: 30 }
    }
}

/// MPPI (`MPPISolver`, docs/spec/planners.md §4): softmax(−(c − c_min)/T)-weighted mean of the elites; σ stays `var_scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MppiConfig {
    /// Candidates per iteration N.
    #[serde(default = "default_samples")]
    pub num_samples: usize,
    /// Standard deviation of the sampling distribution (never updated).
    #[serde(default = "default_var_scale")]
    pub var_scale: f32,
    /// Iterations per plan.
    #[serde(default = "default_steps")]
    pub n_steps: usize,
    /// Elites K; `None` (or ≥ N) weights every candidate.
    #[serde(default = "default_mppi_topk")]
    pub topk: Option<usize>,
    /// Softmax temperature T (divides the cost difference).
    #[serde(default = "default_temperature")]
    pub temperature: f32,
}

impl Default for MppiConfig {
    fn default() -> Self {
        Self { num_samples: 300, var_scale: 1.0, n_steps: 30, topk: Some(30), temperature: 0.5 }
    }
}

/// iCEM (`ICEMSolver`, docs/spec/planners.md §5): temporally coloured noise, elites carried between iterations, clamping to
/// the action bounds and momentum on mean and std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcemConfig {
    /// Candidates per iteration N.
    #[serde(default = "default_samples")]
    pub num_samples: usize,
    /// Initial standard deviation.
    #[serde(default = "default_var_scale")]
    pub var_scale: f32,
    /// Iterations per plan.
    #[serde(default = "default_steps")]
    pub n_steps: usize,
    /// Elites K (≥ 2).
    #[serde(default = "default_topk")]
    pub topk: usize,
    /// Colour exponent β of the noise power spectrum 1/f^β (0 = white).
    #[serde(default = "default_beta")]
    pub noise_beta: f32,
    /// Momentum: weight of the previous mean/std in each update.
    #[serde(default = "default_alpha")]
    pub alpha: f32,
    /// Elites of the previous iteration re-inserted as candidates 1..=min(n_elite_keep, topk).
    #[serde(default = "default_keep")]
    pub n_elite_keep: usize,
    /// Return the mean (true) or the best candidate of the last iteration.
    #[serde(default = "default_true")]
    pub return_mean: bool,
}

impl Default for IcemConfig {
    fn default() -> Self {
        Self {
            num_samples: 300,
            var_scale: 1.0,
            n_steps: 30,
            topk: 30,
            noise_beta: 2.0,
            alpha: 0.1,
            n_elite_keep: 5,
            return_mean: true,
        }
    }
}

/// A solver family, for [`PlannerOverrides`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolverKind {
    /// The cross-entropy method.
    Cem,
    /// Model-predictive path integral control.
    Mppi,
    /// Improved CEM (coloured noise, elite keeping).
    Icem,
}

impl std::str::FromStr for SolverKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "cem" => Ok(Self::Cem),
            "mppi" => Ok(Self::Mppi),
            "icem" => Ok(Self::Icem),
            other => Err(ConfigError::invalid("solver", format!("{other:?} is not one of cem, mppi, icem"))),
        }
    }
}

/// Changes to a planner configuration (`None` keeps the value): what a daemon config or a C caller states.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannerOverrides {
    /// Another solver, with upstream's defaults.
    pub solver: Option<SolverKind>,
    /// Candidates per iteration.
    pub samples: Option<usize>,
    /// Iterations per plan.
    pub iterations: Option<usize>,
    /// Horizon in macro steps.
    pub horizon: Option<usize>,
    /// Noise seed (persistent sampling).
    pub seed: Option<u64>,
}

/// The sampling planner and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SolverConfig {
    /// Cross-entropy method.
    Cem(CemConfig),
    /// Model-predictive path integral.
    Mppi(MppiConfig),
    /// Improved CEM.
    Icem(IcemConfig),
}

impl SolverConfig {
    /// Solver name as upstream's class (lowercase, without `Solver`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cem(_) => "cem",
            Self::Mppi(_) => "mppi",
            Self::Icem(_) => "icem",
        }
    }

    /// Candidates per iteration N.
    pub fn num_samples(&self) -> usize {
        match self {
            Self::Cem(c) => c.num_samples,
            Self::Mppi(c) => c.num_samples,
            Self::Icem(c) => c.num_samples,
        }
    }

    /// Iterations per plan.
    pub fn n_steps(&self) -> usize {
        match self {
            Self::Cem(c) => c.n_steps,
            Self::Mppi(c) => c.n_steps,
            Self::Icem(c) => c.n_steps,
        }
    }

    /// Initial standard deviation.
    pub fn var_scale(&self) -> f32 {
        match self {
            Self::Cem(c) => c.var_scale,
            Self::Mppi(c) => c.var_scale,
            Self::Icem(c) => c.var_scale,
        }
    }

    /// Elites used by the update: K, or N for MPPI without `topk` (or `topk` ≥ N).
    pub fn elites(&self) -> usize {
        match self {
            Self::Cem(c) => c.topk,
            Self::Mppi(c) => c.topk.filter(|&k| k < c.num_samples).unwrap_or(c.num_samples),
            Self::Icem(c) => c.topk,
        }
    }
}

/// How a planner draws its noise (docs/spec/planners.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Sampling {
    /// Every plan replays the same noise: bit-identical results for identical inputs.
    Fixed {
        /// Philox key.
        seed: u64,
    },
    /// Seeded once, advancing across plans (upstream: a generator seeded at construction, never re-seeded).
    Persistent {
        /// Philox key.
        seed: u64,
    },
    /// Seeded from the OS clock and process at construction, advancing across plans.
    Entropy,
}

impl Default for Sampling {
    fn default() -> Self {
        Self::Persistent { seed: 1234 }
    }
}

/// Per-dimension bounds of one env action (the env's Box); tiled over the action block and clamped to by iCEM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBounds {
    /// Lower bound per env action dim.
    pub low: Vec<f32>,
    /// Upper bound per env action dim.
    pub high: Vec<f32>,
}

/// A planner: solver + MPC loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerConfig {
    /// The solver and its hyper-parameters.
    pub solver: SolverConfig,
    /// Planning horizon H in macro steps.
    pub horizon: usize,
    /// Dimension of one env action (A_env); a macro step holds `action_block` of them.
    pub action_dim: usize,
    /// Env steps per macro step (the model's frameskip).
    #[serde(default = "default_one")]
    pub action_block: usize,
    /// Macro steps executed before replanning (`None` = the whole horizon).
    #[serde(default)]
    pub receding_horizon: Option<usize>,
    /// Seed the next plan's mean with the unexecuted tail of this one.
    #[serde(default = "default_true")]
    pub warm_start: bool,
    /// Clamp candidates to these bounds. Upstream clamps in iCEM only (to the env Box), CEM/MPPI never clip:
    /// set bounds for CEM/MPPI only when you want clipping.
    #[serde(default)]
    pub bounds: Option<ActionBounds>,
    /// Noise seeding.
    #[serde(default)]
    pub sampling: Sampling,
    /// A macro action (`action_dim · action_block` values, normalised space) returned for every step when a
    /// deadline leaves no iteration and there is no warm start.
    #[serde(default)]
    pub fallback_action: Option<Vec<f32>>,
}

impl PlannerConfig {
    /// A config with upstream defaults for `solver`, receding over the whole horizon, warm start on.
    pub fn new(solver: SolverConfig, horizon: usize, action_dim: usize, action_block: usize) -> Self {
        Self {
            solver,
            horizon,
            action_dim,
            action_block,
            receding_horizon: None,
            warm_start: true,
            bounds: None,
            sampling: Sampling::default(),
            fallback_action: None,
        }
    }

    /// Solver action dim Da = `action_dim · action_block` (one macro step). Saturates instead of wrapping;
    /// [`PlannerConfig::validate`] bounds it by [`limits::MAX_ACTION_DIM`].
    pub fn macro_action_dim(&self) -> usize {
        self.action_dim.saturating_mul(self.action_block)
    }

    /// Macro steps executed per plan.
    pub fn receding(&self) -> usize {
        self.receding_horizon.unwrap_or(self.horizon)
    }

    /// Applies `overrides`: the solver first (with upstream's defaults for it), then the sample and iteration
    /// counts, the horizon and the seed (persistent sampling). Call [`PlannerConfig::validate`] afterwards.
    pub fn apply(&mut self, overrides: &PlannerOverrides) {
        if let Some(solver) = overrides.solver {
            self.solver = match solver {
                SolverKind::Cem => SolverConfig::Cem(CemConfig::default()),
                SolverKind::Mppi => SolverConfig::Mppi(MppiConfig::default()),
                SolverKind::Icem => SolverConfig::Icem(IcemConfig::default()),
            };
        }
        let (samples, steps) = match &mut self.solver {
            SolverConfig::Cem(c) => (&mut c.num_samples, &mut c.n_steps),
            SolverConfig::Mppi(c) => (&mut c.num_samples, &mut c.n_steps),
            SolverConfig::Icem(c) => (&mut c.num_samples, &mut c.n_steps),
        };
        if let Some(s) = overrides.samples {
            *samples = s;
        }
        if let Some(i) = overrides.iterations {
            *steps = i;
        }
        if let Some(h) = overrides.horizon {
            self.horizon = h;
        }
        if let Some(seed) = overrides.seed {
            self.sampling = Sampling::Persistent { seed };
        }
    }

    /// Parses a JSON planner config (`swm plan --planner file.json`), naming the offending field on error.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = crate::config::parse_json(text, std::path::Path::new("<planner config>"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; the error names the field and why it cannot work. Besides the solver's own limits
    /// ([`MAX_SAMPLES`], [`MAX_ICEM_HORIZON`]), the horizon is at most [`limits::MAX_HORIZON`], `action_dim`,
    /// `action_block` and their product at most [`limits::MAX_ACTION_DIM`], and a candidate buffer at most
    /// [`limits::MAX_CANDIDATE_VALUES`] values (products with checked arithmetic).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| Err(ConfigError::invalid(field, reason));
        let n = self.solver.num_samples();
        if n == 0 {
            return bad("solver.num_samples", "must be at least 1".into());
        }
        if n > MAX_SAMPLES {
            return bad("solver.num_samples", format!("{n} exceeds the supported {MAX_SAMPLES} per environment"));
        }
        if self.solver.n_steps() == 0 {
            return bad("solver.n_steps", "must be at least 1 iteration".into());
        }
        let var_scale = self.solver.var_scale();
        if !var_scale.is_finite() || var_scale <= 0.0 {
            return bad("solver.var_scale", format!("the initial std must be finite and > 0, got {var_scale}"));
        }
        match &self.solver {
            SolverConfig::Cem(CemConfig { topk, .. }) => check_topk(*topk, n)?,
            SolverConfig::Icem(c) => {
                check_topk(c.topk, n)?;
                if !c.noise_beta.is_finite() || c.noise_beta < 0.0 {
                    return bad("solver.noise_beta", format!("must be finite and ≥ 0, got {}", c.noise_beta));
                }
                if !(0.0..1.0).contains(&c.alpha) {
                    return bad("solver.alpha", format!("momentum must be in [0, 1), got {}", c.alpha));
                }
                if c.n_elite_keep.min(c.topk) >= n {
                    return bad(
                        "solver.n_elite_keep",
                        format!("{} kept elites leave no room for the mean among {n} candidates", c.n_elite_keep),
                    );
                }
                if self.horizon > MAX_ICEM_HORIZON {
                    return bad("horizon", format!("iCEM colours noise over at most {MAX_ICEM_HORIZON} steps"));
                }
            }
            SolverConfig::Mppi(c) => {
                if c.topk == Some(0) {
                    return bad("solver.topk", "must be at least 1 (or null for all candidates)".into());
                }
                if !c.temperature.is_finite() || c.temperature <= 0.0 {
                    return bad("solver.temperature", format!("must be finite and > 0, got {}", c.temperature));
                }
            }
        }
        if self.horizon == 0 {
            return bad("horizon", "must be at least 1 macro step".into());
        }
        if self.action_dim == 0 {
            return bad("action_dim", "must be at least 1".into());
        }
        if self.action_block == 0 {
            return bad("action_block", "must be at least 1 env step per macro step".into());
        }
        crate::config::within!("horizon", self.horizon, 1, MAX_HORIZON)?;
        crate::config::within!("action_dim", self.action_dim, 1, MAX_ACTION_DIM)?;
        crate::config::within!("action_block", self.action_block, 1, MAX_ACTION_DIM)?;
        let macro_dim = ConfigError::checked_mul("action_block", self.action_dim, self.action_block)?;
        let (max, max_values) = (limits::MAX_ACTION_DIM, limits::MAX_CANDIDATE_VALUES);
        if macro_dim > max {
            return bad(
                "action_block",
                format!("action_dim × action_block = {macro_dim} exceeds the limit of {max} (limits::MAX_ACTION_DIM)"),
            );
        }
        let values = ConfigError::checked_mul("horizon", n, self.horizon)
            .and_then(|v| ConfigError::checked_mul("horizon", v, macro_dim))?;
        if values > max_values {
            return bad(
                "horizon",
                format!(
                    "num_samples × horizon × action_dim × action_block = {values} exceeds the limit of \
                     {max_values} (limits::MAX_CANDIDATE_VALUES)"
                ),
            );
        }
        if let Some(r) = self.receding_horizon {
            if r == 0 || r > self.horizon {
                return bad("receding_horizon", format!("{r} is outside 1..={}", self.horizon));
            }
        }
        if let Some(b) = &self.bounds {
            for (name, v) in [("bounds.low", &b.low), ("bounds.high", &b.high)] {
                if v.len() != self.action_dim {
                    return bad(name, format!("{} values for an action of {} dims", v.len(), self.action_dim));
                }
                if v.iter().any(|x| x.is_nan()) {
                    return bad(name, "holds NaN".into());
                }
            }
            if let Some(d) = (0..self.action_dim).find(|&d| b.low[d] > b.high[d]) {
                return bad("bounds", format!("dim {d}: low {} > high {}", b.low[d], b.high[d]));
            }
        }
        if let Some(f) = &self.fallback_action {
            if f.len() != self.macro_action_dim() {
                return bad(
                    "fallback_action",
                    format!("{} values for a macro action of {}", f.len(), self.macro_action_dim()),
                );
            }
            if f.iter().any(|x| !x.is_finite()) {
                return bad("fallback_action", "holds NaN or Inf".into());
            }
        }
        Ok(())
    }
}

fn check_topk(k: usize, n: usize) -> Result<(), ConfigError> {
    if k < 2 {
        return Err(ConfigError::invalid(
            "solver.topk",
            format!("{k} elites: the unbiased std of fewer than 2 elites is undefined (NaN upstream)"),
        ));
    }
    if k > n {
        return Err(ConfigError::invalid("solver.topk", format!("{k} elites out of {n} samples")));
    }
    Ok(())
}
