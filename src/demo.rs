//! The embedded default: a tiny, deterministic LeWM artifact generated in code, so that `swm` runs out of the box
//! without downloading anything (README, CI, smoke tests). Its weights are random: it plans, it does not act well.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::artifact::{ActionSpec, Artifact, ArtifactError, Preprocess, Schema};
use crate::checkpoint::{ParamKind, StateDict};
use crate::models::lewm::Config;

/// Upstream-format `config.json` of the demo model: ViT (32 px, patch 8, width 32, 2 layers), predictor
/// (3 frames, depth 2), 4-d action blocks, BatchNorm projector heads.
pub const CONFIG_JSON: &str = include_str!("../tools/configs/lewm-tiny.json");

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

/// The demo config, parsed.
pub fn config() -> Config {
    // The constant is valid by construction (a host test parses it).
    serde_json::from_str(CONFIG_JSON).expect("demo config parses")
}

/// Upstream `config.json` of the public PushT LeWM checkpoint (`quentinll/lewm-pusht`, lewm.md §1.2): ViT-Tiny
/// patch 14 at 224², history 3, 10-d action blocks. Used with random weights for benchmarks.
pub const PUSHT_CONFIG_JSON: &str = include_str!("../tools/configs/lewm-pusht.json");

/// The PushT-sized config, parsed.
pub fn pusht_config() -> Config {
    // The constant is valid by construction (a host test parses it).
    serde_json::from_str(PUSHT_CONFIG_JSON).expect("PushT config parses")
}

/// Deterministic demo weights (host tensors) following the demo config's parameter table.
pub fn state_dict(seed: u64) -> Result<StateDict, crate::Error> {
    random_state_dict(&config(), seed)
}

/// Deterministic random weights for any LeWM config: Linear/conv weights uniform in ±1/√fan_in, norm gains near 1,
/// BatchNorm running variances in [0.5, 1.5].
pub fn random_state_dict(config: &Config, seed: u64) -> Result<StateDict, crate::Error> {
    random_weights(config.parameter_table()?, seed)
}

/// The TD-MPC2 config of the official baseline's planning row (tdmpc2.md §1; `shared/gpu/official_baseline.py`):
/// a 24-d state encoded to 512, MLPs of 512, 6-d actions, 5 Q heads, 101 bins over [−10, 10].
pub fn tdmpc2_bench_config() -> crate::models::tdmpc2::Config {
    let text = r#"{"action_dim": 6, "extra_dims": {"action": 6, "state": 24}, "image_size": 64,
        "wm": {"mlp_dim": 512, "enc_dim": 256, "simnorm_dim": 8, "num_q": 5, "tau": 0.01, "num_bins": 101,
               "vmin": -10, "vmax": 10, "discount": 0.99, "uncertainty_penalty": 0.5, "encoding": {"state": 512}}}"#;
    crate::models::tdmpc2::Config::from_json_str(text, Path::new("<tdmpc2 bench config>"))
        .expect("the embedded TD-MPC2 bench config is valid")
}

/// Deterministic random TD-MPC2 weights for `config` (gains near 1, fan-in scaled weights and biases).
pub fn random_tdmpc2_state_dict(config: &crate::models::tdmpc2::Config, seed: u64) -> Result<StateDict, crate::Error> {
    random_weights(config.parameter_table(), seed)
}

/// Random tensors for every entry of a parameter table.
fn random_weights(table: Vec<crate::checkpoint::ParamSpec>, seed: u64) -> Result<StateDict, crate::Error> {
    let mut rng = SplitMix64(seed);
    let mut tensors = Vec::with_capacity(table.len());
    for spec in table {
        let n: usize = spec.shape.iter().product();
        let tensor = match spec.kind {
            ParamKind::Counter => Tensor::new(0i64, &Device::Cpu)?,
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
                Tensor::from_vec(values, spec.shape.as_slice(), &Device::Cpu)?
            }
        };
        tensors.push((spec.name, tensor));
    }
    Ok(StateDict::from_tensors(tensors, "<demo>"))
}

/// Writes the demo artifact (config, safetensors weights, preprocess, schema) into `dir` and opens it.
pub fn write_artifact(dir: &Path) -> Result<Artifact, crate::Error> {
    std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Write { path: dir.into(), source })?;
    std::fs::write(dir.join("config.json"), CONFIG_JSON)
        .map_err(|source| ArtifactError::Write { path: dir.join("config.json"), source })?;
    state_dict(0x5EED)?.save_safetensors(dir.join("model.safetensors"))?;
    let cfg = config();
    let a = cfg.action_encoder.input_dim;
    let mut preprocess = Preprocess::for_lewm(&cfg);
    preprocess.action =
        ActionSpec { block: 2, low: Some(vec![-1.0; a]), high: Some(vec![1.0; a]), mean: None, std: None };
    let schema = Schema::for_lewm(&cfg);
    Artifact::write_metadata(dir, &preprocess, &schema)?;
    Ok(Artifact::open(dir)?)
}
