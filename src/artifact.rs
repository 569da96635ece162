//! Checkpoints and deployment artifacts on disk.
//!
//! A *checkpoint* is what upstream publishes: `config.json` + `weights.pt` (a raw `state_dict()`), or
//! `model.safetensors`. A *deployment artifact* is a directory swm owns:
//!
//! ```text
//! config.json        the upstream model config, unchanged
//! model.safetensors  the weights (legacy: weights.pt)
//! preprocess.json    image size, mean/std, action bounds and normalisation
//! schema.json        schema_version, family, observations (name, kind, shape), action_dim
//! ```
//! `swm convert` turns a checkpoint into an artifact; [`Artifact::open`] validates all four files together.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{LoadOptions, StateDict};
use crate::config::{parse_json, ConfigError, Family, ModelConfig};
use crate::ops::ImageNormalization;

/// The artifact schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a checkpoint or artifact directory cannot be used. Names the directory, file or field.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The path does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A required file is absent.
    #[error("{dir}: missing `{file}`")]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The file name (or the alternatives).
        file: String,
    },
    /// Several weight files could be meant.
    #[error("{dir}: several weight files ({files}); keep one, or name it explicitly")]
    AmbiguousWeights {
        /// The directory.
        dir: PathBuf,
        /// The candidates.
        files: String,
    },
    /// `schema.json` has a version this build does not read.
    #[error("{path}: unknown schema_version {found} (this build reads version {SCHEMA_VERSION})")]
    UnknownSchemaVersion {
        /// The schema file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A file parsed but its values contradict the model or each other.
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// Dotted field path.
        field: String,
        /// Why it cannot work.
        reason: String,
    },
    /// A JSON file is malformed or misses a field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Writing an artifact failed.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// `preprocess.json`: how raw observations and actions map to model inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Model input frame size `[height, width]`.
    pub image_size: [usize; 2],
    /// Per-channel normalisation after scaling to [0, 1].
    #[serde(flatten)]
    pub normalization: ImageNormalization,
    /// Action bounds and normalisation.
    pub action: ActionSpec,
}

/// Action-space description in `preprocess.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    /// Env steps per planned action block (LeWM frameskip; 1 for TD-MPC2).
    #[serde(default = "one")]
    pub block: usize,
    /// Lower bound per model action dim (normalised units); absent = unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<Vec<f32>>,
    /// Upper bound per model action dim; absent = unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<Vec<f32>>,
    /// Dataset mean per env action dim, to map planned actions back to env units (`x·std + mean`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Dataset std per env action dim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
}

fn one() -> usize {
    1
}

/// Kind of an observation stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObservationKind {
    /// A state vector.
    State,
    /// Still images (JPEG bytes or raw RGB).
    Image,
    /// A video stream (H.264/HEVC).
    Video,
}

/// One observation stream in `schema.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservationSpec {
    /// Name (`pixels`, `state`, ...).
    pub name: String,
    /// Kind.
    pub kind: ObservationKind,
    /// Shape of one observation as the model takes it (`[3, H, W]` for frames, `[d]` for state).
    pub shape: Vec<usize>,
}

/// `schema.json`: the interface of a deployed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// Artifact format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Model family.
    pub family: Family,
    /// Observation streams, in the order the model takes them.
    pub observations: Vec<ObservationSpec>,
    /// Model action dim (LeWM: block × env action dim).
    pub action_dim: usize,
}

/// A checkpoint: a model config and the file holding its weights.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Directory holding `config.json`.
    pub dir: PathBuf,
    /// Parsed model config.
    pub config: ModelConfig,
    /// The weights file.
    pub weights: PathBuf,
}

impl Checkpoint {
    /// Opens a checkpoint directory (`config.json` + `model.safetensors` | `weights.pt` | the one `*.pt`), or a
    /// weights file with `config.json` beside it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ArtifactError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(ArtifactError::NotFound { path: path.to_path_buf() });
        }
        let (dir, weights) = if path.is_dir() {
            (path.to_path_buf(), find_weights(path)?)
        } else {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
            (dir, path.to_path_buf())
        };
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(ArtifactError::MissingFile { dir, file: "config.json".into() });
        }
        let config = ModelConfig::load(&config_path)?;
        Ok(Self { dir, config, weights })
    }

    /// Reads the weights into host memory (validation against the model happens when the model is built).
    pub fn state_dict(&self, options: &LoadOptions) -> Result<StateDict, crate::Error> {
        Ok(StateDict::load(&self.weights, options)?)
    }

    /// Default preprocessing for this checkpoint's family (LeWM: ImageNet statistics at the encoder size,
    /// unbounded normalised actions, no dataset statistics).
    pub fn default_preprocess(&self) -> Result<Preprocess, ArtifactError> {
        match &self.config {
            ModelConfig::Lewm(cfg) => Ok(Preprocess::for_lewm(cfg)),
            ModelConfig::Tdmpc2(cfg) => Ok(Preprocess::for_tdmpc2(cfg)),
        }
    }

    /// Default schema for this checkpoint's family.
    pub fn default_schema(&self) -> Result<Schema, ArtifactError> {
        match &self.config {
            ModelConfig::Lewm(cfg) => Ok(Schema::for_lewm(cfg)),
            ModelConfig::Tdmpc2(cfg) => Ok(Schema::for_tdmpc2(cfg)),
        }
    }
}

impl Preprocess {
    /// LeWM defaults: ImageNet statistics at the encoder's image size, unbounded normalised actions, no dataset
    /// statistics.
    pub fn for_lewm(cfg: &crate::models::lewm::Config) -> Self {
        let side = cfg.encoder.image_size;
        Self {
            image_size: [side, side],
            normalization: ImageNormalization::IMAGENET,
            action: ActionSpec { block: 1, low: None, high: None, mean: None, std: None },
        }
    }

    /// TD-MPC2 defaults (docs/spec/tdmpc2.md §4): ImageNet statistics at `image_size` for pixels (0 × 0 without pixels),
    /// one env step per action, actions bounded to [−1, 1] (the range of TD-MPC2's tanh actor and of the
    /// normalised action spaces it is trained on), no dataset statistics (state normalisation is the caller's).
    pub fn for_tdmpc2(cfg: &crate::models::tdmpc2::Config) -> Self {
        let side = if cfg.wm.encoding.pixels().is_some() { cfg.image_size.unwrap_or(0) } else { 0 };
        let a = cfg.action_dim;
        Self {
            image_size: [side, side],
            normalization: ImageNormalization::IMAGENET,
            action: ActionSpec { block: 1, low: Some(vec![-1.0; a]), high: Some(vec![1.0; a]), mean: None, std: None },
        }
    }
}

impl Schema {
    /// TD-MPC2 interface: `pixels` first (when encoded), then each state modality in `wm.encoding` order, as the
    /// model concatenates them; actions of `action_dim`.
    pub fn for_tdmpc2(cfg: &crate::models::tdmpc2::Config) -> Self {
        let mut observations = Vec::new();
        if cfg.wm.encoding.pixels().is_some() {
            let side = cfg.image_size.unwrap_or(0);
            observations.push(ObservationSpec {
                name: "pixels".into(),
                kind: ObservationKind::Image,
                shape: vec![3, side, side],
            });
        }
        for (name, _) in cfg.wm.encoding.extras() {
            let dim = cfg.extra_dims.get(name).copied().unwrap_or(0);
            observations.push(ObservationSpec { name: name.into(), kind: ObservationKind::State, shape: vec![dim] });
        }
        Self { schema_version: SCHEMA_VERSION, family: Family::Tdmpc2, observations, action_dim: cfg.action_dim }
    }

    /// LeWM interface: one `pixels` image stream of the encoder's size, action blocks of `action_encoder.input_dim`.
    pub fn for_lewm(cfg: &crate::models::lewm::Config) -> Self {
        let side = cfg.encoder.image_size;
        Self {
            schema_version: SCHEMA_VERSION,
            family: Family::Lewm,
            observations: vec![ObservationSpec {
                name: "pixels".into(),
                kind: ObservationKind::Image,
                shape: vec![3, side, side],
            }],
            action_dim: cfg.action_encoder.input_dim,
        }
    }
}

fn find_weights(dir: &Path) -> Result<PathBuf, ArtifactError> {
    for name in ["model.safetensors", "weights.pt"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let mut pts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| ArtifactError::NotFound { path: dir.to_path_buf() })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pt" || e == "safetensors"))
        .collect();
    pts.sort();
    match pts.len() {
        1 => Ok(pts.remove(0)),
        0 => Err(ArtifactError::MissingFile { dir: dir.to_path_buf(), file: "model.safetensors or weights.pt".into() }),
        _ => Err(ArtifactError::AmbiguousWeights {
            dir: dir.to_path_buf(),
            files: pts
                .iter()
                .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A validated deployment artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Config and weights.
    pub checkpoint: Checkpoint,
    /// `preprocess.json`.
    pub preprocess: Preprocess,
    /// `schema.json`.
    pub schema: Schema,
}

impl Artifact {
    /// Opens and cross-validates an artifact directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ArtifactError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(ArtifactError::NotFound { path: dir.to_path_buf() });
        }
        for file in ["config.json", "preprocess.json", "schema.json"] {
            if !dir.join(file).is_file() {
                return Err(ArtifactError::MissingFile { dir: dir.to_path_buf(), file: file.into() });
            }
        }
        let checkpoint = Checkpoint::open(dir)?;
        let schema_path = dir.join("schema.json");
        let schema_text = read(&schema_path)?;
        // Read the version first so that a future schema reports its version, not a missing field.
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = parse_json(&schema_text, &schema_path)?;
        if version.schema_version != SCHEMA_VERSION {
            return Err(ArtifactError::UnknownSchemaVersion { path: schema_path, found: version.schema_version });
        }
        let schema: Schema = parse_json(&schema_text, &schema_path)?;
        let preprocess_path = dir.join("preprocess.json");
        let preprocess: Preprocess = parse_json(&read(&preprocess_path)?, &preprocess_path)?;
        let artifact = Self { checkpoint, preprocess, schema };
        artifact.validate()?;
        Ok(artifact)
    }

    /// Checks that schema, preprocessing and model config agree.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        let dir = &self.checkpoint.dir;
        let invalid = |file: &str, field: &str, reason: String| ArtifactError::Invalid {
            path: dir.join(file),
            field: field.into(),
            reason,
        };
        if self.schema.family != self.checkpoint.config.family() {
            return Err(invalid(
                "schema.json",
                "family",
                format!("{} but config.json describes {}", self.schema.family, self.checkpoint.config.family()),
            ));
        }
        if let ModelConfig::Lewm(cfg) = &self.checkpoint.config {
            if self.schema.action_dim != cfg.action_encoder.input_dim {
                return Err(invalid(
                    "schema.json",
                    "action_dim",
                    format!(
                        "{} != config action_encoder.input_dim {}",
                        self.schema.action_dim, cfg.action_encoder.input_dim
                    ),
                ));
            }
            let [h, w] = self.preprocess.image_size;
            let patch = cfg.encoder.patch_size;
            if h < patch || w < patch {
                return Err(invalid(
                    "preprocess.json",
                    "image_size",
                    format!("{h}x{w} is smaller than one {patch}px patch"),
                ));
            }
            for (i, obs) in self.schema.observations.iter().enumerate() {
                if matches!(obs.kind, ObservationKind::Image | ObservationKind::Video) && obs.shape != [3, h, w] {
                    return Err(invalid(
                        "schema.json",
                        &format!("observations[{i}].shape"),
                        format!("{:?} != [3, {h}, {w}] from preprocess.json image_size", obs.shape),
                    ));
                }
            }
        }
        if let ModelConfig::Tdmpc2(cfg) = &self.checkpoint.config {
            if self.schema.action_dim != cfg.action_dim {
                return Err(invalid(
                    "schema.json",
                    "action_dim",
                    format!("{} != config action_dim {}", self.schema.action_dim, cfg.action_dim),
                ));
            }
            let expected = Schema::for_tdmpc2(cfg).observations;
            if self.schema.observations != expected {
                return Err(invalid(
                    "schema.json",
                    "observations",
                    format!("{:?} != the config's encoded modalities {:?}", self.schema.observations, expected),
                ));
            }
        }
        let a = &self.preprocess.action;
        for (name, bound) in [("action.low", &a.low), ("action.high", &a.high)] {
            if let Some(v) = bound {
                if v.len() != self.schema.action_dim {
                    return Err(invalid(
                        "preprocess.json",
                        name,
                        format!("has {} values, action_dim is {}", v.len(), self.schema.action_dim),
                    ));
                }
            }
        }
        if let (Some(low), Some(high)) = (&a.low, &a.high) {
            if let Some(i) = (0..low.len()).find(|&i| low[i].partial_cmp(&high[i]) != Some(std::cmp::Ordering::Less)) {
                return Err(invalid(
                    "preprocess.json",
                    &format!("action.low[{i}]"),
                    format!("{} is not below action.high[{i}] = {}", low[i], high[i]),
                ));
            }
        }
        if a.block == 0 || self.schema.action_dim % a.block != 0 {
            return Err(invalid(
                "preprocess.json",
                "action.block",
                format!("{} does not divide action_dim {}", a.block, self.schema.action_dim),
            ));
        }
        let env_dim = self.schema.action_dim / a.block;
        for (name, stats) in [("action.mean", &a.mean), ("action.std", &a.std)] {
            if let Some(v) = stats {
                if v.len() != env_dim {
                    return Err(invalid(
                        "preprocess.json",
                        name,
                        format!("has {} values, env action dim is {env_dim}", v.len()),
                    ));
                }
            }
        }
        if let Some(std) = &a.std {
            if let Some(i) = std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(invalid(
                    "preprocess.json",
                    &format!("action.std[{i}]"),
                    format!("{} must be finite and > 0", std[i]),
                ));
            }
        }
        let n = &self.preprocess.normalization;
        if let Some(i) = n.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(invalid(
                "preprocess.json",
                &format!("std[{i}]"),
                format!("{} must be finite and > 0", n.std[i]),
            ));
        }
        Ok(())
    }

    /// Writes `preprocess.json` and `schema.json` into `dir` (config and weights are written by the caller).
    pub fn write_metadata(dir: &Path, preprocess: &Preprocess, schema: &Schema) -> Result<(), ArtifactError> {
        write_json(&dir.join("preprocess.json"), preprocess)?;
        write_json(&dir.join("schema.json"), schema)
    }
}

fn read(path: &Path) -> Result<String, ArtifactError> {
    std::fs::read_to_string(path).map_err(|source| ArtifactError::Config(ConfigError::Io { path: path.into(), source }))
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ArtifactError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ArtifactError::Write { path: path.into(), source: std::io::Error::other(e) })?;
    std::fs::write(path, text + "\n").map_err(|source| ArtifactError::Write { path: path.into(), source })
}

/// Converts a checkpoint into a deployment artifact in `out`: `config.json` copied verbatim, weights written as
/// `model.safetensors` (after validation against the model's parameter table), default `preprocess.json` and
/// `schema.json` unless given. Returns the opened artifact.
pub fn convert(
    checkpoint: &Checkpoint,
    options: &LoadOptions,
    out: &Path,
    preprocess: Option<Preprocess>,
) -> Result<Artifact, crate::Error> {
    let mut weights = checkpoint.state_dict(options)?;
    match &checkpoint.config {
        ModelConfig::Lewm(cfg) => {
            weights.rename_keys(crate::models::lewm::legacy_vit_key);
            weights.validate(&cfg.parameter_table()?)?;
        }
        ModelConfig::Tdmpc2(cfg) => weights.validate(&cfg.parameter_table())?,
    }
    std::fs::create_dir_all(out).map_err(|source| ArtifactError::Write { path: out.into(), source })?;
    let config_out = out.join("config.json");
    std::fs::copy(checkpoint.dir.join("config.json"), &config_out)
        .map_err(|source| ArtifactError::Write { path: config_out, source })?;
    weights.save_safetensors(out.join("model.safetensors"))?;
    let preprocess = match preprocess {
        Some(p) => p,
        None => checkpoint.default_preprocess()?,
    };
    Artifact::write_metadata(out, &preprocess, &checkpoint.default_schema()?)?;
    Ok(Artifact::open(out)?)
}
