//! Decision parity: over many random starts and goals, swm's CEM and the official CEM (each with its own noise)
//! should choose plans of the same quality. Both plans are scored by swm's LeWM session (whose costs match the
//! official model to ~1e-5, see `swm parity lewm`), so the comparison isolates the planners.

use crate::tools::ToolError;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;
use serde_json::Value;

use super::{fixture_file, load_lewm, read_npz, require, FixturePaths};
use crate::models::lewm::{LeWmSession, RolloutSemantics};
use crate::planning::{PlanOptions, Planner, Sampling};

/// One start: the cost of each planner's plan under the same model.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRow {
    /// Start index.
    pub start: usize,
    /// Cost of the official plan (swm's scorer).
    pub official: f32,
    /// Cost of the official plan as the official model reported it.
    pub official_python: f32,
    /// Cost of the official CEM's plan with another seed (the official run-to-run spread).
    pub official_rerun: f32,
    /// Cost of swm's plan (swm's scorer).
    pub swm: f32,
    /// (swm − official) / |official|.
    pub rel_diff: f32,
    /// (official rerun − official) / |official|.
    pub rerun_rel_diff: f32,
}

/// The decision-parity result.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionReport {
    /// decision.npz.
    pub fixture: PathBuf,
    /// GPU name.
    pub device: String,
    /// The official solver configuration used for both planners.
    pub solver_config: Value,
    /// Per-start costs.
    pub rows: Vec<DecisionRow>,
    /// Allowed relative excess cost of swm's plan.
    pub rel_tol: f32,
}

fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

impl DecisionReport {
    /// swm's plan is never worse than the official one by more than `rel_tol` (relative cost), on every start.
    pub fn passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.rel_diff.is_finite() && r.rel_diff <= self.rel_tol)
    }

    /// Per-start table and the distribution of relative differences.
    pub fn table(&self) -> String {
        let mut s = format!("decision parity {} on {}\n", self.fixture.display(), self.device);
        s.push_str(&format!("solver: {}\n", self.solver_config));
        s.push_str(&format!(
            "{:>5} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}\n",
            "start", "official", "off.(torch)", "off.rerun", "swm", "swm rel", "rerun rel"
        ));
        for r in &self.rows {
            s.push_str(&format!(
                "{:>5} {:>12.5} {:>12.5} {:>12.5} {:>12.5} {:>8.2}% {:>8.2}%\n",
                r.start,
                r.official,
                r.official_python,
                r.official_rerun,
                r.swm,
                100.0 * r.rel_diff,
                100.0 * r.rerun_rel_diff
            ));
        }
        for (label, values) in [
            ("swm vs official", self.rows.iter().map(|r| r.rel_diff).collect::<Vec<_>>()),
            ("official rerun vs official", self.rows.iter().map(|r| r.rerun_rel_diff).collect()),
        ] {
            let mut abs: Vec<f32> = values.iter().map(|v| v.abs()).collect();
            abs.sort_by(f32::total_cmp);
            let within = values.iter().filter(|v| v.abs() <= self.rel_tol).count();
            let mean = values.iter().sum::<f32>() / values.len().max(1) as f32;
            s.push_str(&format!(
                "{label}: |rel| p50 {:.3}%  p90 {:.3}%  max {:.3}%  mean signed {:+.3}%  within {:.0}%: {within}/{}\n",
                100.0 * quantile(&abs, 0.5),
                100.0 * quantile(&abs, 0.9),
                100.0 * quantile(&abs, 1.0),
                100.0 * mean,
                100.0 * self.rel_tol,
                values.len()
            ));
        }
        s.push_str(&format!(
            "RESULT: {} (swm's plan at most {:.0}% costlier than the official one on every start)\n",
            if self.passed() { "PASS" } else { "FAIL" },
            100.0 * self.rel_tol
        ));
        s
    }
}

/// Runs decision parity on `<dir>/decision.npz` (written by `swm_tools.decision_parity`).
pub fn decision(dir: &Path, rel_tol: f64, device: &Device) -> Result<DecisionReport, ToolError> {
    let path = fixture_file(dir, "decision.npz")?;
    let arrays = read_npz(&path, device)?;
    let get = |k: &str| require(&arrays, &path, k);
    let (solver_config, mut config) = super::planner::solver_config(&arrays, &path)?;
    // swm draws its own noise (a different stream from torch's), advancing across starts.
    config.sampling = Sampling::Persistent { seed: 0x5EED };
    let model = load_lewm(&FixturePaths { dir: dir.to_path_buf(), weights: None, config: None }, device)?;
    let pixels = get("pixels")?;
    let goal = get("goal")?;
    let official = get("official_actions")?;
    let rerun = get("official_rerun_actions")?;
    let official_python = get("official_cost")?.to_vec1::<f32>()?;
    let starts = pixels.dim(0)?;
    let mut planner = Planner::new(config, 1, device)?;
    let mut session = LeWmSession::new(model, RolloutSemantics::Release011);
    let cost_of = |session: &LeWmSession, plan: &Tensor| -> crate::Result<f32> {
        let c = session.score(&plan.unsqueeze(1)?)?;
        Ok(c.flatten_all()?.to_vec1::<f32>()?[0])
    };
    let mut rows = Vec::with_capacity(starts);
    for s in 0..starts {
        session.set_observation(&pixels.narrow(0, s, 1)?)?;
        session.set_goal(&goal.narrow(0, s, 1)?)?;
        planner.reset();
        let ours = planner.plan(&mut session, &PlanOptions::default())?.actions.copy()?;
        // Plans are compared in full f32 even when the planner ran with TF32 matmuls; the process-wide setting is
        // restored whatever the scoring returns.
        let tf32 = crate::device::tf32();
        crate::device::set_tf32(false);
        let costs = [&ours, &official.narrow(0, s, 1)?, &rerun.narrow(0, s, 1)?].map(|plan| cost_of(&session, plan));
        crate::device::set_tf32(tf32);
        let [swm, off, off_rerun] = costs;
        let (swm, off, off_rerun) = (swm?, off?, off_rerun?);
        let rel = |x: f32| (x - off) / off.abs().max(f32::MIN_POSITIVE);
        rows.push(DecisionRow {
            start: s,
            official: off,
            official_python: official_python.get(s).copied().unwrap_or(f32::NAN),
            official_rerun: off_rerun,
            swm,
            rel_diff: rel(swm),
            rerun_rel_diff: rel(off_rerun),
        });
    }
    let f32_kind = match crate::ops::gemm::f32_matmul() {
        crate::ops::gemm::F32Matmul::Split3xTf32 | crate::ops::gemm::F32Matmul::Own => "f32 (split-TF32 GEMM)",
        crate::ops::gemm::F32Matmul::Cublas => "f32 (cuBLAS GEMM)",
    };
    let tf32 = if crate::device::tf32() {
        format!(", swm planner with TF32 matmuls, costs in {f32_kind}")
    } else {
        format!(", {f32_kind}")
    };
    Ok(DecisionReport {
        fixture: path,
        device: crate::device::name(device).unwrap_or_else(|| format!("{device:?}")) + &tf32,
        solver_config,
        rows,
        rel_tol: rel_tol as f32,
    })
}
