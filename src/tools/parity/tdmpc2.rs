//! TD-MPC2 parity (docs/spec/fixtures.md): the model's stages and the planning cost against the official package's outputs.

use crate::tools::ToolError;
use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device};

use super::{compare, fixture_file, ranking, read_meta, read_npz, require, FixturePaths, ParityError, ParityReport};
use crate::checkpoint::{LoadOptions, StateDict};
use crate::config::{Family, ModelConfig};
use crate::models::tdmpc2::{TdMpc2, TdMpc2Session};
use crate::planning::CandidateScorer;

/// Default TD-MPC2 tolerance (absolute, every output; docs/spec/fixtures.md).
pub fn tdmpc2_tolerances() -> BTreeMap<String, f64> {
    ["encode", "dynamics", "reward", "pi_mean", "q_values", "cost"].into_iter().map(|k| (k.to_string(), 1e-4)).collect()
}

/// Loads the fixture's TD-MPC2 on `device` (its config.json and weights.pt / model.safetensors, or the overrides).
pub fn load_tdmpc2(paths: &FixturePaths, device: &Device) -> Result<Arc<TdMpc2>, ToolError> {
    let config_path = match &paths.config {
        Some(p) => p.clone(),
        None => fixture_file(&paths.dir, "config.json")?,
    };
    let ModelConfig::Tdmpc2(config) = ModelConfig::load(&config_path)? else {
        return Err(
            ParityError::Meta { path: config_path, reason: "config.json is not a TD-MPC2 config".into() }.into()
        );
    };
    let weights = match &paths.weights {
        Some(p) => p.clone(),
        None => fixture_file(&paths.dir, "weights.pt").or_else(|_| fixture_file(&paths.dir, "model.safetensors"))?,
    };
    let state = StateDict::load(&weights, &LoadOptions::default())?;
    Ok(Arc::new(TdMpc2::from_state_dict(&config, &state, device)?))
}

/// Runs the TD-MPC2 parity check of a fixture on `device`: `encode`, one `dynamics`/`reward` step, the actor mean,
/// the Q ensemble (each from the reference inputs of its stage) and `get_cost` end to end through a session.
pub fn tdmpc2(
    paths: &FixturePaths,
    tolerances: &BTreeMap<String, f64>,
    device: &Device,
) -> Result<ParityReport, ToolError> {
    let dir = &paths.dir;
    read_meta(dir, Family::Tdmpc2)?;
    let model = load_tdmpc2(paths, device)?;
    let npz_path = fixture_file(dir, "fixture.npz")?;
    let arrays = read_npz(&npz_path, device)?;
    let get = |key: &str| require(&arrays, &npz_path, key);
    let tol = |key: &str| tolerances.get(key).copied().unwrap_or(1e-4);
    let mut rows = Vec::new();

    let names: Vec<String> = model.config().wm.encoding.0.iter().map(|(k, _)| k.clone()).collect();
    let obs =
        names.iter().map(|k| Ok((k.as_str(), get(&format!("obs_{k}"))?))).collect::<Result<Vec<_>, ToolError>>()?;
    let z = model.encode(&obs)?;
    rows.push(compare("encode", &z, get("encode")?, tol("encode"))?);

    let z_ref = get("encode")?;
    let candidates = get("candidates")?;
    let (b, n, _, a) = candidates.dims4()?;
    let z_rows = z_ref.unsqueeze(1)?.broadcast_as((b, n, z_ref.dim(1)?))?.contiguous()?.reshape((b * n, ()))?;
    let first = candidates.narrow(2, 0, 1)?.contiguous()?.reshape((b * n, a))?;
    let (next, reward) = model.next(&z_rows, &first)?;
    rows.push(compare("dynamics", &next.reshape((b, n, ()))?, get("dynamics")?, tol("dynamics"))?);
    rows.push(compare("reward", &reward.reshape((b, n, 1))?, get("reward")?, tol("reward"))?);
    let pi_mean = model.pi_mean(z_ref)?;
    rows.push(compare("pi_mean", &pi_mean, get("pi_mean")?, tol("pi_mean"))?);
    let q = model.q_values(z_ref, get("pi_mean")?)?;
    rows.push(compare("q_values", &q, get("q_values")?, tol("q_values"))?);

    let mut session = TdMpc2Session::new(model.clone());
    session.set_observation(&obs)?;
    let cost = session.score(candidates)?;
    let cost_ref = get("cost")?;
    rows.push(compare("cost", &cost, cost_ref, tol("cost"))?);
    let ours = cost.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let theirs = cost_ref.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let argmin_agree = ours.iter().zip(&theirs).all(|(x, y)| ranking(x).first() == ranking(y).first());
    Ok(ParityReport {
        fixture: dir.clone(),
        device: crate::device::name(device).unwrap_or_else(|| format!("{device:?}")),
        rows,
        decisions: vec![("cost argmin".into(), argmin_agree)],
    })
}
