//! Planner parity: swm's planner, fed the noise the official solver drew, must reproduce every iteration of a
//! `planner_<solver>.npz` fixture (docs/spec/fixtures.md "Planner fixtures", written by `swm_tools.export_planner`).

use crate::tools::ToolError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

use super::{compare, fixture_file, load_lewm, require, Comparison, FixturePaths, ParityError, ParityReport};
use crate::config::ConfigError;
use crate::models::lewm::{LeWmSession, RolloutSemantics};
use crate::planning::{CandidateScorer, IterationState, NoiseReplay, Planner, PlannerConfig};

/// A `planner_<solver>.npz` fixture on the device.
#[derive(Debug)]
pub struct PlannerFixture {
    /// The npz file.
    pub path: PathBuf,
    /// The exporter's `solver_config` (upstream constructor and `configure` arguments).
    pub solver_config: Value,
    /// The equivalent swm planner configuration (fixed seed, no warm start).
    pub config: PlannerConfig,
    /// Environments B.
    pub batch: usize,
    arrays: HashMap<String, Tensor>,
}

impl PlannerFixture {
    /// Reads `<dir>/planner_<solver>.npz` onto `device`.
    pub fn read(dir: &Path, solver: &str, device: &Device) -> Result<Self, ToolError> {
        let path = fixture_file(dir, &format!("planner_{solver}.npz"))?;
        let arrays = super::read_npz(&path, device)?;
        let (solver_config, config) = solver_config(&arrays, &path)?;
        let batch = require(&arrays, &path, "pixels")?.dim(0)?;
        Ok(Self { path, solver_config, config, batch, arrays })
    }

    /// A named array.
    pub fn get(&self, key: &str) -> Result<&Tensor, ParityError> {
        require(&self.arrays, &self.path, key)
    }
}

/// The `solver_config` array of a planner or decision fixture (JSON as UTF-8 bytes) and the equivalent planner
/// configuration.
pub(crate) fn solver_config(
    arrays: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<(Value, PlannerConfig), ToolError> {
    let bytes = require(arrays, path, "solver_config")?.to_dtype(DType::U8)?.to_vec1::<u8>()?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ParityError::Npz { path: path.to_path_buf(), reason: format!("solver_config: {e}") })?;
    let config = planner_config(&value).map_err(|e| e.in_file(path))?;
    Ok((value, config))
}

/// The swm planner configuration equivalent to an exporter `solver_config`.
///
/// Upstream clamps to the env Box in iCEM only, so bounds are set for iCEM only.
pub fn planner_config(v: &Value) -> Result<PlannerConfig, ConfigError> {
    let field = |k: &str| v.get(k).cloned().ok_or_else(|| ConfigError::invalid(k, "missing from solver_config"));
    let kind = field("solver")?;
    let mut solver = json!({ "kind": kind });
    let keys: &[&str] = match kind.as_str() {
        Some("cem") => &["num_samples", "var_scale", "n_steps", "topk"],
        Some("mppi") => &["num_samples", "var_scale", "n_steps", "topk", "temperature"],
        Some("icem") => {
            &["num_samples", "var_scale", "n_steps", "topk", "noise_beta", "alpha", "n_elite_keep", "return_mean"]
        }
        _ => return Err(ConfigError::invalid("solver", format!("unknown solver {kind}"))),
    };
    for k in keys {
        solver[*k] = field(k)?;
    }
    let mut config = json!({
        "solver": solver,
        "horizon": field("horizon")?,
        "action_dim": field("action_dim")?,
        "action_block": field("action_block")?,
        "warm_start": false,
        "sampling": { "mode": "fixed", "seed": field("seed")? },
    });
    if kind == "icem" {
        config["bounds"] = json!({ "low": field("low")?, "high": field("high")? });
    }
    let config: PlannerConfig = crate::config::from_value(config, Path::new("solver_config"))?;
    config.validate()?;
    Ok(config)
}

/// Which costs the replayed planner sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannerCosts {
    /// The costs the official model returned (isolates the planner's arithmetic).
    Recorded,
    /// swm's own LeWM session on the fixture's model (end to end).
    Model,
}

/// A scorer that returns the recorded costs of successive iterations, whatever the candidates.
#[derive(Debug)]
pub struct RecordedScorer {
    costs: Tensor,
    next: usize,
}

impl RecordedScorer {
    /// `costs`: (n_steps, B, N).
    pub fn new(costs: Tensor) -> Self {
        Self { costs, next: 0 }
    }
}

impl CandidateScorer for RecordedScorer {
    fn score(&mut self, _candidates: &Tensor) -> crate::Result<Tensor> {
        let n = self.costs.dim(0)?;
        if self.next >= n {
            return Err(crate::Error::invalid_input("scorer", format!("only {n} recorded iterations")));
        }
        self.next += 1;
        Ok(self.costs.get(self.next - 1)?)
    }

    fn revision(&self) -> u64 {
        0
    }
}

/// Per-iteration copies of the planner state.
#[derive(Default)]
struct Trace {
    candidates: Vec<Tensor>,
    costs: Vec<Tensor>,
    elite_index: Vec<Tensor>,
    elite_cost: Vec<Tensor>,
    mean: Vec<Tensor>,
    std: Vec<Tensor>,
}

impl Trace {
    fn record(&mut self, s: &IterationState<'_>) -> crate::Result<()> {
        self.candidates.push(s.candidates.copy()?);
        self.costs.push(s.costs.copy()?);
        self.elite_index.push(s.elite_index.to_dtype(DType::I64)?);
        self.elite_cost.push(s.elite_cost.copy()?);
        self.mean.push(s.mean.copy()?);
        self.std.push(s.std.copy()?);
        Ok(())
    }
}

/// Runs the planner parity check of `<dir>/planner_<solver>.npz` on `device`: max abs ≤ `tolerance` on the
/// candidates, mean, std (upstream "var") and returned actions of every iteration, identical elite indices, and
/// the costs within `cost_tolerance` (exact up to rounding with [`PlannerCosts::Recorded`]).
pub fn planner(
    paths: &FixturePaths,
    solver: &str,
    costs: PlannerCosts,
    tolerance: f64,
    cost_tolerance: f64,
    device: &Device,
) -> Result<ParityReport, ToolError> {
    let fixture = PlannerFixture::read(&paths.dir, solver, device)?;
    let mut planner = Planner::new(fixture.config.clone(), fixture.batch, device)?;
    let replay = NoiseReplay { noise: fixture.get("noise")?.to_dtype(DType::F32)? };
    let mut trace = Trace::default();
    let mut observe = |s: &IterationState<'_>| trace.record(s);
    let (actions, cost) = match costs {
        PlannerCosts::Recorded => {
            let mut scorer = RecordedScorer::new(fixture.get("costs")?.to_dtype(DType::F32)?);
            let plan = planner.plan_observed(&mut scorer, Some(&replay), &mut observe)?;
            (plan.actions.copy()?, plan.cost.copy()?)
        }
        PlannerCosts::Model => {
            let model = load_lewm(paths, device)?;
            let mut session = LeWmSession::new(model, RolloutSemantics::Release011);
            session.set_observation(fixture.get("pixels")?)?;
            session.set_goal(fixture.get("goal")?)?;
            let plan = planner.plan_observed(&mut session, Some(&replay), &mut observe)?;
            (plan.actions.copy()?, plan.cost.copy()?)
        }
    };
    let stack = |v: &[Tensor]| Tensor::stack(v, 0);
    let tol: BTreeMap<&str, f64> = [("costs", cost_tolerance), ("elite_cost", cost_tolerance)].into_iter().collect();
    let t = |k: &str| tol.get(k).copied().unwrap_or(tolerance);
    let mut rows: Vec<Comparison> = Vec::new();
    for (key, ours) in [
        ("candidates", stack(&trace.candidates)?),
        ("costs", stack(&trace.costs)?),
        ("elite_cost", stack(&trace.elite_cost)?),
        ("mean", stack(&trace.mean)?),
        ("var", stack(&trace.std)?),
    ] {
        rows.push(compare(key, &ours, fixture.get(key)?, t(key))?);
    }
    rows.push(compare("actions", &actions, fixture.get("actions")?, tolerance)?);
    let last_std = trace.std.last().ok_or_else(|| ToolError::invalid_input("fixture", "no iterations"))?;
    rows.push(compare("final_var", last_std, fixture.get("final_var")?, tolerance)?);
    rows.push(compare("final_cost", &cost, fixture.get("final_cost")?, cost_tolerance)?);
    let ours = stack(&trace.elite_index)?.flatten_all()?.to_vec1::<i64>()?;
    let theirs = fixture.get("elite_index")?.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
    let label = match costs {
        PlannerCosts::Recorded => "recorded costs",
        PlannerCosts::Model => "swm LeWM costs",
    };
    Ok(ParityReport {
        fixture: fixture.path.clone(),
        device: format!("{} ({solver}, {label})", crate::device::name(device).unwrap_or_else(|| format!("{device:?}"))),
        rows,
        decisions: vec![("elite indices, every iteration".into(), ours == theirs)],
    })
}
