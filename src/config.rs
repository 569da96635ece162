//! Model configurations as upstream checkpoints store them (`config.json`), and the model family they describe.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::models::{lewm, tdmpc2};

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
    /// Reads `config.json` and detects the family: `_target_` ending in `LeWM`, `_target_` ending in `TDMPC2`
    /// (with the model cfg under `cfg`), or a bare TD-MPC2 cfg dict (`action_dim` + `wm`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
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

/// Parses JSON text into `T`, reporting the dotted path of the field that failed.
pub fn parse_json<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
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
