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

use crate::checkpoint::{CheckpointError, LoadOptions, ParamSpec, RawStateDict, StateDict, WeightsFile, WeightsFormat};
use crate::config::{parse_json, ConfigError, Family, ModelConfig};
use crate::files;

mod validate;
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
    /// A path exists but cannot be examined (permissions, a symlink loop, ...).
    #[error("{path}: {source}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The I/O error (e.g. "Too many levels of symbolic links").
        source: std::io::Error,
    },
    /// A path that must be a regular file is a directory, a FIFO, a device or a socket (nothing is read from it).
    #[error("{path}: is {kind}, expected a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO", ...).
        kind: &'static str,
    },
    /// The output of `convert` would overwrite its input.
    #[error("{out}: refusing to write over the input checkpoint (`{input}`); choose another --out directory")]
    OutputIsInput {
        /// The output path that resolves to an input.
        out: PathBuf,
        /// The input file or directory it resolves to.
        input: PathBuf,
    },
    /// The weights file is unusable (malformed, over a limit, or not matching the model).
    #[error(transparent)]
    Weights(#[from] CheckpointError),
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

/// The matmul precision a deployed model plans with (`schema.json`'s optional `matmul`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// f32 matmuls (swm's split-TF32 GEMM, f32-class accuracy): the default.
    #[default]
    F32,
    /// TF32 tensor cores (10-bit mantissas, ~1e-3 relative; upstream's `allow_tf32`), the fastest mode: check it
    /// with `swm parity decision --tf32` before deploying.
    Tf32,
}

impl MatmulPrecision {
    fn is_f32(&self) -> bool {
        *self == Self::F32
    }
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
    /// Matmul precision to plan with (absent: f32). TF32 is process-wide: see [`crate::session::Session::open`].
    #[serde(default, skip_serializing_if = "MatmulPrecision::is_f32")]
    pub matmul: MatmulPrecision,
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
    /// weights file with `config.json` beside it. Reads the config, not the weights.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ArtifactError> {
        let path = path.as_ref();
        let meta = examine(path)?;
        let (dir, weights) = if meta.is_dir() {
            (path.to_path_buf(), find_weights(path)?)
        } else {
            // A file given directly must be a weights file: say so before looking for a config beside it, and
            // never open a FIFO or a device (reading one would block or never end).
            WeightsFormat::from_path(path)?;
            if !meta.is_file() {
                return Err(ArtifactError::NotAFile {
                    path: path.to_path_buf(),
                    kind: crate::config::describe(&meta.file_type()),
                });
            }
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (dir, path.to_path_buf())
        };
        let config_path = require_file(&dir, "config.json")?;
        let config = ModelConfig::load(&config_path)?;
        Ok(Self { dir, config, weights })
    }

    /// The model's parameter table: every tensor the weights must hold, with its shape.
    pub fn parameter_table(&self) -> Result<Vec<ParamSpec>, ConfigError> {
        match &self.config {
            ModelConfig::Lewm(cfg) => cfg.parameter_table(),
            ModelConfig::Tdmpc2(cfg) => cfg.parameter_table(),
        }
    }

    /// Opens the weights file and validates its structure; its keys are in the model's naming (legacy LeWM ViT
    /// keys renamed). No tensor data is read.
    pub fn weights_file(&self, options: &LoadOptions) -> Result<WeightsFile, CheckpointError> {
        let mut file = WeightsFile::open(&self.weights, options)?;
        if let ModelConfig::Lewm(_) = &self.config {
            file.rename_keys(crate::models::lewm::legacy_vit_key)?;
        }
        Ok(file)
    }

    /// Reads the weights into host memory as raw bytes, verified against the model: the file's tensor table is
    /// compared with the parameter table before any data is read, then the values are checked (finite,
    /// variances ≥ 0). No Candle, no CUDA: what the host-only commands use.
    pub fn raw_state_dict(&self, options: &LoadOptions) -> Result<RawStateDict, crate::Error> {
        let table = self.parameter_table()?;
        Ok(self.weights_file(options)?.read_raw_checked(&table)?)
    }

    /// [`raw_state_dict`](Self::raw_state_dict) as Candle host tensors, ready to upload.
    pub fn state_dict(&self, options: &LoadOptions) -> Result<StateDict, crate::Error> {
        Ok(self.raw_state_dict(options)?.into_state_dict()?)
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
        let action_dim = cfg.action_dim;
        Self {
            schema_version: SCHEMA_VERSION,
            family: Family::Tdmpc2,
            observations,
            action_dim,
            matmul: MatmulPrecision::F32,
        }
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
            matmul: MatmulPrecision::F32,
        }
    }
}

/// Metadata of `path`, following symlinks: `NotFound` when nothing is there, `Unreadable` for a symlink loop or a
/// permission problem.
fn examine(path: &Path) -> Result<std::fs::Metadata, ArtifactError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(path).is_err() => {
            Err(ArtifactError::NotFound { path: path.to_path_buf() })
        }
        Err(source) => Err(ArtifactError::Unreadable { path: path.to_path_buf(), source }),
    }
}

/// `dir/name`, which must be a regular file (or a symlink to one): `MissingFile` when absent, `NotAFile` for a
/// directory, `Unreadable` for a dangling link, a loop or a permission problem.
fn require_file(dir: &Path, name: &str) -> Result<PathBuf, ArtifactError> {
    let path = dir.join(name);
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(ArtifactError::MissingFile { dir: dir.to_path_buf(), file: name.into() });
    }
    let meta = std::fs::metadata(&path).map_err(|source| ArtifactError::Unreadable { path: path.clone(), source })?;
    if !meta.is_file() {
        return Err(ArtifactError::NotAFile { path, kind: crate::config::describe(&meta.file_type()) });
    }
    Ok(path)
}

fn find_weights(dir: &Path) -> Result<PathBuf, ArtifactError> {
    for name in ["model.safetensors", "weights.pt"] {
        if std::fs::symlink_metadata(dir.join(name)).is_ok() {
            return require_file(dir, name);
        }
    }
    let mut pts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ArtifactError::Unreadable { path: dir.to_path_buf(), source })?
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
        if !examine(dir)?.is_dir() {
            return Err(ArtifactError::Invalid {
                path: dir.to_path_buf(),
                field: ".".into(),
                reason: "an artifact is a directory (config.json, model.safetensors, preprocess.json, schema.json)"
                    .into(),
            });
        }
        for file in ["config.json", "preprocess.json", "schema.json"] {
            require_file(dir, file)?;
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

    /// Writes this artifact with other `weights` (e.g. trained ones) into `out`: its `config.json` verbatim, the
    /// weights as `model.safetensors` (checked against the model's parameter table first), its `preprocess.json`
    /// and `schema.json`; every file written atomically, never over this artifact's own files. Returns the new
    /// artifact, opened and validated.
    pub fn write_with_weights(&self, weights: &StateDict, out: &Path) -> Result<Self, crate::Error> {
        check_output(&self.checkpoint, out)?;
        weights.validate(&self.checkpoint.parameter_table()?)?;
        let config =
            crate::config::read_text(&self.checkpoint.dir.join("config.json")).map_err(ArtifactError::Config)?;
        std::fs::create_dir_all(out).map_err(|source| ArtifactError::Write { path: out.into(), source })?;
        check_output(&self.checkpoint, out)?;
        // The weights first: a failure there leaves a directory's earlier artifact as it was.
        weights.save_safetensors(out.join("model.safetensors"))?;
        let path = out.join("config.json");
        files::write_atomic(&path, config.as_bytes()).map_err(|source| ArtifactError::Write { path, source })?;
        Self::write_metadata(out, &self.preprocess, &self.schema)?;
        Ok(Self::open(out)?)
    }

    /// Writes `preprocess.json` and `schema.json` into `dir` (config and weights are written by the caller).
    pub fn write_metadata(dir: &Path, preprocess: &Preprocess, schema: &Schema) -> Result<(), ArtifactError> {
        write_json(&dir.join("preprocess.json"), preprocess)?;
        write_json(&dir.join("schema.json"), schema)
    }
}

fn read(path: &Path) -> Result<String, ArtifactError> {
    Ok(crate::config::read_text(path)?)
}

/// Writes `value` as pretty JSON, atomically (a temporary file renamed over `path`, mode 0644).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ArtifactError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ArtifactError::Write { path: path.into(), source: std::io::Error::other(e) })?;
    files::write_atomic(path, (text + "\n").as_bytes())
        .map_err(|source| ArtifactError::Write { path: path.into(), source })
}

/// The files an artifact consists of, as `convert` writes them.
const ARTIFACT_FILES: [&str; 4] = ["config.json", "model.safetensors", "preprocess.json", "schema.json"];

/// Refuses an output directory that is the checkpoint's directory, or whose artifact files would replace one of the
/// checkpoint's files (through a symlink or a hard link).
fn check_output(checkpoint: &Checkpoint, out: &Path) -> Result<(), ArtifactError> {
    let inputs = [checkpoint.dir.clone(), checkpoint.dir.join("config.json"), checkpoint.weights.clone()];
    if files::same_file(out, &checkpoint.dir) {
        return Err(ArtifactError::OutputIsInput { out: out.to_path_buf(), input: checkpoint.dir.clone() });
    }
    for name in ARTIFACT_FILES {
        let target = out.join(name);
        if let Some(input) = inputs.iter().find(|input| files::same_file(&target, input)) {
            return Err(ArtifactError::OutputIsInput { out: target, input: input.clone() });
        }
    }
    Ok(())
}

/// Converts a checkpoint into a deployment artifact in `out`: `config.json` copied verbatim, weights written as
/// `model.safetensors` (after verification against the model's parameter table), default `preprocess.json` and
/// `schema.json` unless given. Host only (no Candle, no CUDA). Never writes over the checkpoint; every file is written to a temporary name and
/// renamed into place (mode 0644), so an interrupted convert leaves no truncated file. Returns the opened artifact.
pub fn convert(
    checkpoint: &Checkpoint,
    options: &LoadOptions,
    out: &Path,
    preprocess: Option<Preprocess>,
) -> Result<Artifact, crate::Error> {
    check_output(checkpoint, out)?;
    let weights = checkpoint.raw_state_dict(options)?;
    let preprocess = match preprocess {
        Some(p) => p,
        None => checkpoint.default_preprocess()?,
    };
    let schema = checkpoint.default_schema()?;
    let config_in = checkpoint.dir.join("config.json");
    let config = crate::config::read_text(&config_in).map_err(ArtifactError::Config)?;
    std::fs::create_dir_all(out).map_err(|source| ArtifactError::Write { path: out.into(), source })?;
    // Created just now, the directory may be the input only through a race; check again before writing.
    check_output(checkpoint, out)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        files::write_atomic(&path, bytes).map_err(|source| ArtifactError::Write { path, source })
    };
    write("config.json", config.as_bytes())?;
    weights.save_safetensors(out.join("model.safetensors"))?;
    Artifact::write_metadata(out, &preprocess, &schema)?;
    Ok(Artifact::open(out)?)
}
