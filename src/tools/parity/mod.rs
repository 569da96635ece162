//! Parity against the official Python package: reads a fixture directory (`docs/spec/fixtures.md`, contract 1),
//! runs the same inputs through swm on the GPU and compares every output.

use crate::tools::ToolError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::artifact::Checkpoint;
use crate::checkpoint::LoadOptions;
use crate::config::{parse_json, Family, ModelConfig};
use crate::models::lewm::{LeWm, LeWmSession, RolloutSemantics};

mod decision;
mod media;
mod planner;
mod tdmpc2;
mod train;
pub use decision::{decision, DecisionReport, DecisionRow};
pub use media::{media, media_tolerances};
pub use planner::{planner, planner_config, PlannerCosts, PlannerFixture, RecordedScorer};
pub use tdmpc2::{load_tdmpc2, tdmpc2, tdmpc2_tolerances};
pub use train::{train, train_tolerances};

/// A fixture that cannot be read or a comparison that failed.
#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    /// A required file of the fixture directory is absent.
    #[error("{dir}: fixture is missing `{file}`")]
    MissingFile {
        /// Fixture directory.
        dir: PathBuf,
        /// File name.
        file: String,
    },
    /// `fixture.npz` lacks a required key.
    #[error("{path}: missing array `{key}`")]
    MissingKey {
        /// The npz file.
        path: PathBuf,
        /// Array name.
        key: String,
    },
    /// `fixture.npz` cannot be read.
    #[error("{path}: cannot read npz: {reason}")]
    Npz {
        /// The npz file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// `meta.json` names another family or an unknown contract.
    #[error("{path}: {reason}")]
    Meta {
        /// meta.json.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `--tol` override is malformed.
    #[error("bad tolerance `{0}` (expected key=value, e.g. cost=1e-2)")]
    Tolerance(String),
}

/// `meta.json` of a fixture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixtureMeta {
    /// `lewm` or `tdmpc2`.
    pub family: Family,
    /// Contract version (1).
    pub contract: u32,
    /// Upstream package the fixture came from.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Rollout semantics (`0.1.1` or `head`).
    #[serde(default)]
    pub semantics: RolloutSemantics,
    /// Torch version.
    #[serde(default)]
    pub torch: Option<String>,
    /// Device the reference ran on.
    #[serde(default)]
    pub device: Option<String>,
    /// Seed of the random weights/inputs.
    #[serde(default)]
    pub seed: Option<i64>,
}

/// One compared output.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Output name (npz key).
    pub key: String,
    /// Shape compared.
    pub shape: Vec<usize>,
    /// max |swm − reference|.
    pub max_abs: f64,
    /// max |swm − reference| / max |reference|.
    pub max_rel: f64,
    /// Allowed max_abs.
    pub tolerance: f64,
    /// Whether swm produced NaN/Inf.
    pub non_finite: bool,
    /// Within tolerance and finite.
    pub ok: bool,
}

/// The result of a parity run.
#[derive(Debug, Clone, Serialize)]
pub struct ParityReport {
    /// Fixture directory.
    pub fixture: PathBuf,
    /// GPU name.
    pub device: String,
    /// Per-output comparisons.
    pub rows: Vec<Comparison>,
    /// Decision checks (e.g. `cost argmin`, `top-5 set`, `elite indices`) and whether swm agrees.
    pub decisions: Vec<(String, bool)>,
}

impl ParityReport {
    /// Every output within tolerance and the decisions agree.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.ok) && self.decisions.iter().all(|(_, agree)| *agree)
    }

    /// The report as a text table.
    pub fn table(&self) -> String {
        let mut s = format!("parity {} on {}\n", self.fixture.display(), self.device);
        s.push_str(&format!(
            "{:<10} {:>22} {:>12} {:>12} {:>10}  {}\n",
            "output", "shape", "max_abs", "max_rel", "tol", "ok"
        ));
        for r in &self.rows {
            s.push_str(&format!(
                "{:<10} {:>22} {:>12.3e} {:>12.3e} {:>10.1e}  {}\n",
                r.key,
                format!("{:?}", r.shape),
                r.max_abs,
                r.max_rel,
                r.tolerance,
                if r.ok {
                    "ok"
                } else if r.non_finite {
                    "NON-FINITE"
                } else {
                    "FAIL"
                }
            ));
        }
        for (name, agree) in &self.decisions {
            s.push_str(&format!("{name} agrees: {agree}\n"));
        }
        s.push_str(&format!("RESULT: {}\n", if self.passed() { "PASS" } else { "FAIL" }));
        s
    }
}

/// Default LeWM tolerances (absolute), docs/spec/fixtures.md.
pub fn lewm_tolerances() -> BTreeMap<String, f64> {
    [("act_emb", 1e-5), ("emb", 1e-3), ("pred", 1e-3), ("goal_emb", 1e-3), ("rollout", 2e-3), ("cost", 1e-2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Applies `key=value` overrides to a tolerance table.
pub fn apply_overrides(table: &mut BTreeMap<String, f64>, overrides: &[String]) -> Result<(), ParityError> {
    for o in overrides {
        let (k, v) = o.split_once('=').ok_or_else(|| ParityError::Tolerance(o.clone()))?;
        let v: f64 = v.parse().map_err(|_| ParityError::Tolerance(o.clone()))?;
        table.insert(k.trim().to_string(), v);
    }
    Ok(())
}

/// Reads `fixture.npz` into named tensors on `device`.
pub fn read_npz(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>, ToolError> {
    let arrays = Tensor::read_npz(path).map_err(|e| ParityError::Npz { path: path.into(), reason: e.to_string() })?;
    let mut out = HashMap::with_capacity(arrays.len());
    for (k, t) in arrays {
        out.insert(k, t.to_device(device)?);
    }
    Ok(out)
}

pub(crate) fn require<'a>(
    arrays: &'a HashMap<String, Tensor>,
    path: &Path,
    key: &str,
) -> Result<&'a Tensor, ParityError> {
    arrays.get(key).ok_or_else(|| ParityError::MissingKey { path: path.into(), key: key.into() })
}

/// Compares `ours` with `reference` on the host (a parity tool, not the control loop).
pub fn compare(key: &str, ours: &Tensor, reference: &Tensor, tolerance: f64) -> Result<Comparison, ToolError> {
    if ours.dims() != reference.dims() {
        return Err(ToolError::invalid_input(
            key,
            format!("swm produced shape {:?}, the fixture holds {:?}", ours.dims(), reference.dims()),
        ));
    }
    let a = ours.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let b = reference.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let non_finite = a.iter().any(|v| !v.is_finite());
    let max_abs = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let scale = b.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-12);
    let max_abs = if non_finite { f64::INFINITY } else { max_abs };
    Ok(Comparison {
        key: key.into(),
        shape: ours.dims().to_vec(),
        max_abs,
        max_rel: max_abs / scale,
        tolerance,
        non_finite,
        ok: !non_finite && max_abs <= tolerance,
    })
}

fn ranking(cost: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..cost.len()).collect();
    idx.sort_by(|&i, &j| cost[i].total_cmp(&cost[j]));
    idx
}

/// Where the fixture's files are; `weights`/`config` override the fixture's own.
#[derive(Debug, Clone)]
pub struct FixturePaths {
    /// Fixture directory.
    pub dir: PathBuf,
    /// Weights file (default: the fixture's `weights.pt`, else `model.safetensors`).
    pub weights: Option<PathBuf>,
    /// Config file (default: the fixture's `config.json`).
    pub config: Option<PathBuf>,
}

/// A file of the fixture directory that must exist.
pub(crate) fn fixture_file(dir: &Path, name: &str) -> Result<PathBuf, ParityError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(ParityError::MissingFile { dir: dir.to_path_buf(), file: name.into() })
    }
}

/// Loads the fixture's LeWM on `device` (its config.json and weights.pt / model.safetensors, or the overrides).
pub(crate) fn load_lewm(paths: &FixturePaths, device: &Device) -> Result<Arc<LeWm>, ToolError> {
    let config_path = match &paths.config {
        Some(p) => p.clone(),
        None => fixture_file(&paths.dir, "config.json")?,
    };
    let ModelConfig::Lewm(config) = ModelConfig::load(&config_path)? else {
        return Err(ParityError::Meta { path: config_path, reason: "config.json is not a LeWM config".into() }.into());
    };
    let weights = match &paths.weights {
        Some(p) => p.clone(),
        None => fixture_file(&paths.dir, "weights.pt").or_else(|_| fixture_file(&paths.dir, "model.safetensors"))?,
    };
    let checkpoint = Checkpoint { dir: paths.dir.clone(), config: ModelConfig::Lewm(config.clone()), weights };
    let state = checkpoint.state_dict(&LoadOptions::default())?;
    Ok(Arc::new(LeWm::from_state_dict(&config, &state, device)?))
}

/// Reads and checks the fixture's `meta.json`: contract 1 and the expected family.
pub(crate) fn read_meta(dir: &Path, family: Family) -> Result<FixtureMeta, ToolError> {
    let meta_path = fixture_file(dir, "meta.json")?;
    let text =
        std::fs::read_to_string(&meta_path).map_err(|source| crate::Error::Io { path: meta_path.clone(), source })?;
    let meta: FixtureMeta = parse_json(&text, &meta_path)?;
    if meta.family != family {
        return Err(ParityError::Meta {
            path: meta_path,
            reason: format!("family is {}, expected {family}", meta.family),
        }
        .into());
    }
    if meta.contract != 1 {
        return Err(ParityError::Meta {
            path: meta_path,
            reason: format!("contract {} (this build reads 1)", meta.contract),
        }
        .into());
    }
    Ok(meta)
}

/// Runs the LeWM parity check of a fixture on `device`.
pub fn lewm(
    paths: &FixturePaths,
    tolerances: &BTreeMap<String, f64>,
    device: &Device,
) -> Result<ParityReport, ToolError> {
    let dir = &paths.dir;
    let file = |name: &str| fixture_file(dir, name);
    let meta = read_meta(dir, Family::Lewm)?;
    let model = load_lewm(paths, device)?;

    let npz_path = file("fixture.npz")?;
    let arrays = read_npz(&npz_path, device)?;
    let get = |key: &str| require(&arrays, &npz_path, key);
    let tol = |key: &str| tolerances.get(key).copied().unwrap_or(1e-3);
    let mut rows = Vec::new();

    let pixels = get("pixels")?;
    let emb = model.encode(pixels)?;
    rows.push(compare("emb", &emb, get("emb")?, tol("emb"))?);
    let act_emb = model.embed_actions(get("actions")?)?;
    rows.push(compare("act_emb", &act_emb, get("act_emb")?, tol("act_emb"))?);
    // Stage-isolated: predict from the reference embeddings.
    let pred = model.predict(get("emb")?, get("act_emb")?)?;
    rows.push(compare("pred", &pred, get("pred")?, tol("pred"))?);

    let history_size = match arrays.get("history_size") {
        Some(t) => t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?.first().copied().unwrap_or(0) as usize,
        None => model.history_size(),
    };
    let mut session = LeWmSession::new(model.clone(), meta.semantics).with_history_size(history_size);
    // End to end: the session encodes the context and the goal itself.
    session.set_observation(pixels)?;
    let goal_emb = session.set_goal(get("goal")?)?;
    rows.push(compare("goal_emb", &goal_emb, get("goal_emb")?, tol("goal_emb"))?);
    if meta.semantics == RolloutSemantics::Head {
        if let Some(hist) = arrays.get("action_history") {
            // (B, S, H-1, A): identical across samples.
            session.set_action_history(&hist.narrow(1, 0, 1)?.squeeze(1)?)?;
        }
    }
    let candidates = get("candidates")?;
    let rollout = session.rollout(candidates, true)?;
    rows.push(compare("rollout", &rollout, get("rollout")?, tol("rollout"))?);
    let cost = session.score(candidates)?;
    let cost_ref = get("cost")?;
    rows.push(compare("cost", &cost, cost_ref, tol("cost"))?);

    let ours = cost.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let theirs = cost_ref.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut argmin_agree = true;
    let mut top5_agree = true;
    for (a, b) in ours.iter().zip(&theirs) {
        let (ra, rb) = (ranking(a), ranking(b));
        argmin_agree &= ra.first() == rb.first();
        let k = 5.min(ra.len());
        let mut sa = ra[..k].to_vec();
        let mut sb = rb[..k].to_vec();
        sa.sort_unstable();
        sb.sort_unstable();
        top5_agree &= sa == sb;
    }
    Ok(ParityReport {
        fixture: dir.clone(),
        device: crate::device::name(device).unwrap_or_else(|| format!("{device:?}")),
        rows,
        decisions: vec![("cost argmin".into(), argmin_agree), ("top-5 set".into(), top5_agree)],
    })
}
