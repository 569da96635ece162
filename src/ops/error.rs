//! The error of the kernel layer (`ops`, `graph`): what a launch, a capture or an operand check can fail with.

/// Why a kernel could not be launched or a graph captured.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The CUDA driver refused a launch, an event or a graph operation.
    #[error("CUDA driver: {0}")]
    Driver(DriverFailure),
    /// A Candle op inside the kernel layer failed (allocation, copy, shape).
    /// Type-erased (a `candle_core::Error` inside), as [`crate::Error::Candle`].
    #[error("candle: {0}")]
    Candle(Box<dyn std::error::Error + Send + Sync>),
    /// An operand has the wrong shape, dtype, layout or device for the kernel.
    #[error("operand `{operand}`: {reason}")]
    Operand {
        /// The kernel argument (e.g. `x`, `bias`, `cache`).
        operand: String,
        /// What was wrong with it.
        reason: String,
    },
    /// cuBLAS refused or failed a GEMM.
    #[error("cuBLAS: {0}")]
    Cublas(String),
    /// Something swm itself should have guaranteed did not hold (a bug, reported instead of a panic).
    #[error("internal invariant violated: {0}")]
    Internal(String),
}

/// A CUDA driver error with its message, read from the driver when the error happened (so that displaying it
/// later never calls into the driver: host-only code that merely carries this error links no CUDA library).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DriverFailure {
    /// The `CUresult` code.
    pub code: cudarc::driver::sys::CUresult,
    /// The driver's name and description of the code.
    pub message: String,
}

impl From<cudarc::driver::DriverError> for KernelError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Self::Driver(DriverFailure { code: e.0, message: e.to_string() })
    }
}

impl From<candle_core::Error> for KernelError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

impl KernelError {
    /// A [`KernelError::Operand`].
    pub fn operand(operand: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Operand { operand: operand.into(), reason: reason.into() }
    }
}

/// Result alias of the kernel layer.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;
