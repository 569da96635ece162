//! Model configurations as upstream checkpoints store them (`config.json`), and the model family they describe.
//!
//! A config may come from the internet: every `validate` bounds each count and width by the [`limits`] below and
//! computes shapes with checked arithmetic, so that no config can make swm allocate without bound, wrap a shape
//! silently or panic. Each violation is a [`ConfigError::Invalid`] naming the dotted field and the limit.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::checkpoint::ParamSpec;
use crate::models::{lewm, tdmpc2};

/// Upper bounds on config values, enforced by [`lewm::Config::validate`], [`tdmpc2::Config::validate`] and
/// [`crate::planning::PlannerConfig::validate`] (docs/artifacts.md states them).
///
/// They are far above any stable-worldmodel model (the largest ViT preset, `huge`, is 1280 wide with 32 layers and
/// 16 heads; public LeWM checkpoints are 18 M parameters) and low enough that no product of them overflows a
/// `usize` shape or asks for more memory than one GPU has.
pub mod limits {
    /// Widest feature dimension: ViT `hidden_size` / `intermediate_size`, predictor and MLP widths, `dim_head`
    /// and `heads × dim_head`, TD-MPC2 `mlp_dim`, `enc_dim`, each encoding width and their sum (the latent),
    /// state input widths, `num_bins`, `simnorm_dim` (2^16 = 65 536; ViT-huge is 1280 wide, its FFN 5120).
    pub const MAX_WIDTH: usize = 1 << 16;
    /// Most transformer layers: ViT `num_hidden_layers`, predictor `depth` (ViT-huge has 32).
    pub const MAX_LAYERS: usize = 1024;
    /// Most attention heads: ViT `num_attention_heads`, predictor `heads` (ViT-huge has 16).
    pub const MAX_HEADS: usize = 1024;
    /// Largest square image side in pixels: LeWM `encoder.image_size`, TD-MPC2 `image_size` (public models: 224
    /// and 64).
    pub const MAX_IMAGE_SIDE: usize = 8192;
    /// Longest predictor history: LeWM `predictor.num_frames` (public models: 3).
    pub const MAX_FRAMES: usize = 4096;
    /// Largest action dimension: LeWM `action_encoder.input_dim` (frameskip × env action dim, PushT: 10), TD-MPC2
    /// `action_dim`, and a planner's `action_dim`, `action_block` and their product.
    pub const MAX_ACTION_DIM: usize = 4096;
    /// Largest TD-MPC2 Q ensemble `wm.num_q` (upstream: 5).
    pub const MAX_Q_HEADS: usize = 64;
    /// Most TD-MPC2 observation modalities in `wm.encoding`.
    pub const MAX_MODALITIES: usize = 64;
    /// Most TD-MPC2 actor trajectories `num_pi_trajs` averaged per proposal (each is a GPU noise buffer).
    pub const MAX_PI_TRAJS: usize = 4096;
    /// Largest `|wm.vmin|`, `|wm.vmax|` of the TD-MPC2 two-hot bins, in symlog space: symexp(80) ≈ 5.5e34 is still
    /// a finite f32, symexp(89) is not (upstream: ±10).
    pub const MAX_SYMLOG: f64 = 80.0;
    /// Most parameter elements a model may declare, counted over its whole parameter table with checked arithmetic
    /// (2^34 ≈ 1.7e10: 64 GiB in f32, what one 141 GB H200 can still hold with room for activations; ~27× ViT-huge).
    pub const MAX_PARAMETERS: u64 = 1 << 34;
    /// Longest planning horizon in macro steps ([`crate::planning::PlannerConfig`] `horizon`; upstream plans 5 LeWM
    /// or 3 TD-MPC2 steps; iCEM is further limited to [`crate::planning::MAX_ICEM_HORIZON`]).
    pub const MAX_HORIZON: usize = 1024;
    /// Most candidate values `num_samples × horizon × action_dim × action_block` of a planner per environment:
    /// each candidate buffer holds this many f32 (2^28: 1 GiB; CEM 300 × 5 × 10 on PushT holds 15 000).
    pub const MAX_CANDIDATE_VALUES: usize = 1 << 28;
    /// Largest config file [`super::ModelConfig::load`] reads (16 MiB; real configs are a few KiB), and largest
    /// `preprocess.json` / `schema.json`.
    pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
    /// Smallest standard deviation `preprocess.json` may divide by (image and action statistics).
    pub const MIN_STD: f32 = 1e-6;
    /// Largest magnitude of a mean, a standard deviation or an action bound in `preprocess.json`.
    pub const MAX_STAT: f32 = 1e6;
}

/// A configuration that cannot describe a working model. Names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The JSON is malformed, a required field is missing or a field has the wrong type.
    #[error("{path}: field `{field}`: {reason}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// Dotted path of the offending field (`.` for the document root).
        field: String,
        /// What the parser reported.
        reason: String,
    },
    /// The fields parse but contradict each other or are out of range.
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        /// The config file (or `<memory>`).
        path: PathBuf,
        /// Dotted path of the offending field.
        field: String,
        /// Why the value cannot work.
        reason: String,
    },
    /// The path exists but is not a regular file (a directory, a FIFO, a device, a socket).
    #[error("{path}: is {kind}, not a JSON config file")]
    NotAFile {
        /// The config path.
        path: PathBuf,
        /// What the path is instead (`a directory`, `a FIFO`, ...).
        kind: &'static str,
    },
    /// The file is larger than [`limits::MAX_CONFIG_BYTES`].
    #[error("{path}: {size} bytes, larger than the {limit} bytes a config may have")]
    TooLarge {
        /// The config file.
        path: PathBuf,
        /// Its size in bytes (at least; a growing file is cut at `limit + 1`).
        size: u64,
        /// [`limits::MAX_CONFIG_BYTES`].
        limit: u64,
    },
    /// The config describes no model family swm knows.
    #[error("{path}: unknown model family (`_target_` = {target:?}); swm runs LeWM and TD-MPC2 checkpoints")]
    UnknownFamily {
        /// The config file.
        path: PathBuf,
        /// The `_target_` found, if any.
        target: Option<String>,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for a field of an in-memory config.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { path: PathBuf::from("<memory>"), field: field.into(), reason: reason.into() }
    }

    /// An [`ConfigError::Invalid`] for `field` when `value` is outside `min..=max`; `limit` names the bound in the
    /// message (the constant's path, e.g. `limits::MAX_WIDTH`).
    pub fn check_range(field: &str, value: usize, min: usize, max: usize, limit: &str) -> Result<usize, Self> {
        if value < min {
            let reason = if min == 1 { "must be positive".to_string() } else { format!("{value} is below {min}") };
            return Err(Self::invalid(field, reason));
        }
        if value > max {
            return Err(Self::invalid(field, format!("{value} exceeds the limit of {max} ({limit})")));
        }
        Ok(value)
    }

    /// `a × b` for shape arithmetic on config values; an overflow is an [`ConfigError::Invalid`] naming `field`.
    pub fn checked_mul(field: &str, a: usize, b: usize) -> Result<usize, Self> {
        a.checked_mul(b).ok_or_else(|| Self::invalid(field, format!("{a} × {b} overflows")))
    }

    /// `a + b` for shape arithmetic on config values; an overflow is an [`ConfigError::Invalid`] naming `field`.
    pub fn checked_add(field: &str, a: usize, b: usize) -> Result<usize, Self> {
        a.checked_add(b).ok_or_else(|| Self::invalid(field, format!("{a} + {b} overflows")))
    }

    /// Attaches the file the config came from.
    pub fn in_file(self, file: &Path) -> Self {
        match self {
            Self::Invalid { field, reason, .. } => Self::Invalid { path: file.to_path_buf(), field, reason },
            other => other,
        }
    }
}

/// Model families swm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// LeWorldModel (ViT encoder + AdaLN predictor).
    Lewm,
    /// TD-MPC2.
    Tdmpc2,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Lewm => "lewm",
            Self::Tdmpc2 => "tdmpc2",
        })
    }
}

/// A parsed model configuration of one of the supported families.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    /// LeWM.
    Lewm(Box<lewm::Config>),
    /// TD-MPC2.
    Tdmpc2(Box<tdmpc2::Config>),
}

impl ModelConfig {
    /// Reads `config.json` (see [`read_text`]) and detects the family: `_target_` ending in `LeWM`, `_target_`
    /// ending in `TDMPC2` (with the model cfg under `cfg`), or a bare TD-MPC2 cfg dict (`action_dim` + `wm`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        Self::from_json_str(&text, path)
    }

    /// Parses a config from JSON text; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let value: serde_json::Value = parse_json(text, path)?;
        let target = value.get("_target_").and_then(|t| t.as_str()).map(str::to_string);
        match target.as_deref() {
            Some(t) if t.rsplit('.').next() == Some("LeWM") => {
                let config: lewm::Config = from_value(value, path)?;
                config.validate().map_err(|e| e.in_file(path))?;
                Ok(Self::Lewm(Box::new(config)))
            }
            Some(t) if t.rsplit('.').next() == Some("TDMPC2") => {
                Ok(Self::Tdmpc2(Box::new(tdmpc2::Config::from_json_str(text, path)?)))
            }
            None if value.get("action_dim").is_some() && value.get("wm").is_some() => {
                Ok(Self::Tdmpc2(Box::new(tdmpc2::Config::from_json_str(text, path)?)))
            }
            _ => Err(ConfigError::UnknownFamily { path: path.into(), target }),
        }
    }

    /// The model family.
    pub fn family(&self) -> Family {
        match self {
            Self::Lewm(_) => Family::Lewm,
            Self::Tdmpc2(_) => Family::Tdmpc2,
        }
    }
}

/// [`ConfigError::check_range`] against a [`limits`] constant, named in the message after the constant:
/// `within!("encoder.hidden_size", value, 1, MAX_WIDTH)`.
macro_rules! within {
    ($field:expr, $value:expr, $min:expr, $max:ident) => {
        $crate::config::ConfigError::check_range(
            $field,
            $value,
            $min,
            $crate::config::limits::$max,
            concat!("limits::", stringify!($max)),
        )
    };
}
pub(crate) use within;

/// Reads a JSON config file as text: a regular file (symlinks followed) of at most [`limits::MAX_CONFIG_BYTES`],
/// in UTF-8. A directory, FIFO or device is a [`ConfigError::NotAFile`] (nothing is read from it); a missing file,
/// a symlink loop (`ELOOP`) or a permission error is a [`ConfigError::Io`] carrying the OS error; non-UTF-8 bytes
/// are a [`ConfigError::Parse`] at the document root. A UTF-8 byte-order mark is kept here and skipped by
/// [`parse_json`].
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io { path: path.into(), source };
    // The path is checked before it is opened: opening a FIFO for reading would block.
    let file_kind = |meta: &std::fs::Metadata| -> Result<(), ConfigError> {
        if meta.is_file() {
            return Ok(());
        }
        Err(ConfigError::NotAFile { path: path.into(), kind: describe(&meta.file_type()) })
    };
    file_kind(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    file_kind(&meta)?;
    let limit = limits::MAX_CONFIG_BYTES;
    let too_large = |size| ConfigError::TooLarge { path: path.into(), size, limit };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    // A file that grows while it is read is cut one byte past the limit.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let reason = if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
            "UTF-16 text (byte-order mark FF FE / FE FF); save the config as UTF-8".to_string()
        } else {
            format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to())
        };
        ConfigError::Parse { path: path.into(), field: ".".into(), reason }
    })
}

/// What a non-regular file is, for [`ConfigError::NotAFile`].
pub(crate) fn describe(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
    }
    "not a regular file"
}

/// Total number of parameter elements of `table`, with checked arithmetic; more than
/// [`limits::MAX_PARAMETERS`] (or an overflow on the way) is an [`ConfigError::Invalid`] naming the state-dict
/// key at which the count crossed the limit.
pub fn parameter_count(table: &[ParamSpec]) -> Result<u64, ConfigError> {
    let limit = limits::MAX_PARAMETERS;
    let mut total: u64 = 0;
    for spec in table {
        let elements = spec.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?));
        match elements.and_then(|n| total.checked_add(n)) {
            Some(sum) if sum <= limit => total = sum,
            _ => {
                return Err(ConfigError::invalid(
                    spec.name.clone(),
                    format!(
                        "tensor of shape {:?} brings the model past {limit} parameters (limits::MAX_PARAMETERS)",
                        spec.shape
                    ),
                ))
            }
        }
    }
    Ok(total)
}

/// Parses JSON text into `T`, reporting the dotted path of the field that failed. A leading UTF-8 byte-order mark
/// (as some Windows editors write) is skipped.
pub fn parse_json<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
        path: path.into(),
        field: e.path().to_string(),
        reason: e.into_inner().to_string(),
    })
}

/// Converts a JSON value into `T`, reporting the dotted path of the field that failed.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value, path: &Path) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Parse {
        path: path.into(),
        field: e.path().to_string(),
        reason: e.into_inner().to_string(),
    })
}
