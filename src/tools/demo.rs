//! The embedded default: a tiny, deterministic LeWM artifact generated in code, so that `swm` runs out of the box
//! without downloading anything (README, CI, smoke tests). Its weights are random: it plans, it does not act well.

use crate::tools::ToolError;
use std::path::Path;

use crate::artifact::{ActionSpec, Artifact, ArtifactError, Preprocess, Schema};
use crate::checkpoint::{ParamKind, RawStateDict, StateDict};
use crate::models::lewm::Config;

/// SplitMix64: a tiny deterministic generator for reproducible demo weights.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The demo model's config ([`Config::tiny`]).
pub fn config() -> Config {
    Config::tiny()
}

/// The PushT-sized config ([`Config::pusht`]), used with random weights for benchmarks.
pub fn pusht_config() -> Config {
    Config::pusht()
}

/// Deterministic demo weights (host tensors) following the demo config's parameter table.
pub fn state_dict(seed: u64) -> Result<StateDict, ToolError> {
    random_state_dict(&config(), seed)
}

/// The demo weights as raw bytes (no Candle): what [`write_artifact`] saves.
pub fn raw_state_dict(seed: u64) -> Result<RawStateDict, ToolError> {
    random_weights(config().parameter_table()?, seed)
}

/// Deterministic random weights for any LeWM config: Linear/conv weights uniform in ±1/√fan_in, norm gains near 1,
/// BatchNorm running variances in [0.5, 1.5].
pub fn random_state_dict(config: &Config, seed: u64) -> Result<StateDict, ToolError> {
    Ok(random_weights(config.parameter_table()?, seed)?.into_state_dict().map_err(crate::Error::from)?)
}

/// The TD-MPC2 config of the official baseline's planning row ([`crate::models::tdmpc2::Config::bench`]).
pub fn tdmpc2_bench_config() -> crate::models::tdmpc2::Config {
    crate::models::tdmpc2::Config::bench()
}

/// Deterministic random TD-MPC2 weights for `config` (gains near 1, fan-in scaled weights and biases).
pub fn random_tdmpc2_state_dict(config: &crate::models::tdmpc2::Config, seed: u64) -> Result<StateDict, ToolError> {
    Ok(random_weights(config.parameter_table()?, seed)?.into_state_dict().map_err(crate::Error::from)?)
}

/// Random tensors for every entry of a parameter table.
fn random_weights(table: Vec<crate::checkpoint::ParamSpec>, seed: u64) -> Result<RawStateDict, ToolError> {
    let mut rng = SplitMix64(seed);
    let mut tensors = Vec::with_capacity(table.len());
    for spec in table {
        let n: usize = spec.shape.iter().product();
        let tensor = match spec.kind {
            ParamKind::Counter => RawStateDict::i64_scalar(0),
            ParamKind::Float => {
                let name = spec.name.as_str();
                let values: Vec<f32> = if name.ends_with("running_var") {
                    (0..n).map(|_| 1.0 + 0.5 * rng.symmetric()).collect()
                } else if name.ends_with("weight") && spec.shape.len() == 1 {
                    // Every 1-d `weight` is a LayerNorm/BatchNorm gain.
                    (0..n).map(|_| 1.0 + 0.1 * rng.symmetric()).collect()
                } else {
                    let fan_in = if spec.shape.len() >= 2 { spec.shape[1..].iter().product::<usize>() } else { 16 };
                    let scale = 1.0 / (fan_in as f32).sqrt();
                    (0..n).map(|_| scale * rng.symmetric()).collect()
                };
                RawStateDict::f32_tensor(&spec.shape, &values).ok_or_else(|| {
                    crate::Error::Internal(format!("demo weights: {} values for shape {:?}", values.len(), spec.shape))
                })?
            }
        };
        tensors.push((spec.name, tensor));
    }
    Ok(RawStateDict::from_tensors(tensors, "<demo>"))
}

/// Writes the demo artifact (config, safetensors weights, preprocess, schema) into `dir` and opens it.
pub fn write_artifact(dir: &Path) -> Result<Artifact, ToolError> {
    std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Write { path: dir.into(), source })?;
    crate::artifact::write_json(&dir.join("config.json"), &config())?;
    raw_state_dict(0x5EED)?.save_safetensors(dir.join("model.safetensors"))?;
    let cfg = config();
    let a = cfg.action_encoder.input_dim;
    let mut preprocess = Preprocess::for_lewm(&cfg);
    preprocess.action =
        ActionSpec { block: 2, low: Some(vec![-1.0; a]), high: Some(vec![1.0; a]), mean: None, std: None };
    let schema = Schema::for_lewm(&cfg);
    Artifact::write_metadata(dir, &preprocess, &schema)?;
    Ok(Artifact::open(dir)?)
}
