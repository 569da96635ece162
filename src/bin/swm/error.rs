//! What a command can fail with, and the exit code of each failure (see the table in `main.rs`).

use swm::tools::ToolError;

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line asks for something that cannot work (a bad flag value, a missing file or directory given
    /// as an argument, a planner file that does not parse): exit 2, before any device is opened.
    #[error("{0}")]
    Usage(String),
    /// The runtime or a tool failed (device, checkpoint, artifact, model, planner, parity fixture), or `inspect`
    /// found weights that do not match the model (after printing its report): exit 1.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// Writing to stdout failed for another reason than a closed pipe: exit 1.
    #[error("stdout: {0}")]
    Stdout(std::io::Error),
    /// stdout was closed by its reader (`| head`): the command stops quietly, exit 0.
    #[error("stdout closed")]
    BrokenPipe,
    /// A GPU command on a machine without the NVIDIA driver or the CUDA libraries: exit 1.
    #[error("{0}; `swm {1}` needs an NVIDIA GPU (inspect, convert and demo run without one)")]
    NoDriver(swm::device::MissingLibrary, &'static str),
    /// `swm-gpu`, the GPU half of swm, could not be started: exit 1.
    #[error("cannot run {path}: {source} (swm-gpu is installed beside swm)")]
    Exec {
        /// Where it was looked for.
        path: std::path::PathBuf,
        /// Why it did not start.
        source: std::io::Error,
    },
}

impl CliError {
    /// A [`CliError::Usage`].
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// The process exit code of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Tool(_) | Self::Stdout(_) | Self::NoDriver(..) | Self::Exec { .. } => 1,
            Self::BrokenPipe => 0,
        }
    }
}

/// The exit code of a command's outcome, after printing its error (if any) on stderr.
pub fn exit(outcome: Result<std::process::ExitCode, CliError>) -> std::process::ExitCode {
    match outcome {
        Ok(code) => code,
        Err(CliError::BrokenPipe) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // stderr may be closed too; there is nobody left to tell then.
            let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("error: {e}\n"));
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// The runtime's errors become [`CliError::Tool`] through [`ToolError`].
macro_rules! tool_error {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                Self::Tool(e.into())
            }
        }
    )*};
}
tool_error!(
    swm::Error,
    swm::tools::ParityError,
    swm::artifact::ArtifactError,
    swm::checkpoint::CheckpointError,
    swm::config::ConfigError,
    swm::device::DeviceError,
    candle_core::Error,
);
