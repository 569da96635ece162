//! Tooling around the runtime (feature `tools`, on by default for the `swm` binary): parity against the official
//! Python package, benchmark harness, the embedded demo artifact and random-weight models.
//!
//! Nothing in the runtime (`ops`, `graph`, `checkpoint`, `models`, `planning`, `session`, `engine`) imports this
//! module; `cargo check --lib --no-default-features` builds the runtime without it.

pub mod bench;
pub mod demo;
pub mod parity;
pub mod reference;

pub use parity::ParityError;

/// What a tool can fail with: a runtime error, or a parity fixture that cannot be read or compared.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An error of the runtime (checkpoint, artifact, model, planner, device).
    #[error(transparent)]
    Runtime(#[from] crate::Error),
    /// A parity fixture is malformed or a comparison failed.
    #[error(transparent)]
    Parity(#[from] ParityError),
}

/// Result alias for [`ToolError`].
pub type Result<T, E = ToolError> = std::result::Result<T, E>;

impl ToolError {
    /// A runtime [`crate::Error::InvalidInput`].
    pub fn invalid_input(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Runtime(crate::Error::invalid_input(name, reason))
    }
}

/// Errors of the layers below convert through [`crate::Error`].
macro_rules! runtime_error {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for ToolError {
            fn from(e: $t) -> Self {
                Self::Runtime(e.into())
            }
        }
    )*};
}
runtime_error!(
    candle_core::Error,
    crate::artifact::ArtifactError,
    crate::checkpoint::CheckpointError,
    crate::config::ConfigError,
    crate::device::DeviceError,
    crate::ops::KernelError,
    cudarc::driver::DriverError,
);
