//! The crate-wide error type.
//!
//! Each layer has its own typed error (kernels, checkpoint, artifact, model config, device, media); [`Error`]
//! aggregates them at the top of the runtime so that binaries, the daemon and the C ABI can report any of them with
//! the file, key or field that was wrong. Errors point downward: no layer below returns this type's tooling cousins
//! (`tools::ToolError` wraps this one, never the reverse).

use std::path::PathBuf;

/// Everything swm can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A weights file could not be read or did not hold what the model needs.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A deployment artifact directory is incomplete or malformed.
    #[error(transparent)]
    Artifact(#[from] crate::artifact::ArtifactError),
    /// A model configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// No usable CUDA device.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    /// An input handed to the runtime has the wrong shape or holds NaN/Inf.
    #[error("invalid input `{name}`: {reason}")]
    InvalidInput {
        /// Which input (e.g. `pixels`, `candidates`).
        name: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A kernel launch, CUDA graph capture or driver call failed, or a kernel operand was malformed.
    #[error(transparent)]
    Kernel(#[from] crate::ops::KernelError),
    /// A codec library is missing, or an image could not be decoded.
    #[error(transparent)]
    Media(#[from] crate::media::MediaError),
    /// Something swm itself should have guaranteed did not hold (a bug, reported instead of a panic).
    #[error("internal invariant violated: {0}")]
    Internal(String),
    /// A Hugging Face repo is not in the local cache.
    #[cfg(feature = "hub")]
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error from Candle (kernel launch, allocation, shape error inside a model). Type-erased (a
    /// `candle_core::Error` inside) so that code which only carries this error links none of Candle's CUDA code.
    #[error("candle: {0}")]
    Candle(Box<dyn std::error::Error + Send + Sync>),
}

/// Result alias for [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Self::Kernel(e.into())
    }
}

impl Error {
    /// Builds an [`Error::InvalidInput`].
    pub fn invalid_input(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidInput { name: name.into(), reason: reason.into() }
    }
}
