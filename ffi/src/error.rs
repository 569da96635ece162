//! Status codes, the thread-local last error, and the panic boundary of every entry point.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::swm_status as SwmStatus;

/// A failure: the status and its message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: SwmStatus,
    pub message: String,
}

impl Failure {
    pub fn new(status: SwmStatus, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl From<runtime::Error> for Failure {
    fn from(e: runtime::Error) -> Self {
        let status = match &e {
            runtime::Error::InvalidInput { .. } => SwmStatus::BadInput,
            runtime::Error::Artifact(_) | runtime::Error::Checkpoint(_) | runtime::Error::Config(_) => {
                SwmStatus::Artifact
            }
            runtime::Error::Device(_) => SwmStatus::NoDevice,
            runtime::Error::Media(m) if m.is_bad_input() => SwmStatus::BadInput,
            _ => SwmStatus::Runtime,
        };
        Self::new(status, e.to_string())
    }
}

impl From<candle_core::Error> for Failure {
    fn from(e: candle_core::Error) -> Self {
        Self::new(SwmStatus::Runtime, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as the calling thread's last error.
pub(crate) fn set_last_error(message: &str) {
    LAST_ERROR.with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        // A C string ends at the first NUL: keep the message readable.
        e.extend(message.chars().map(|c| if c == '\0' { ' ' } else { c }));
    });
}

/// The calling thread's last error message.
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// Runs an entry point's body: a failure becomes its status with the message recorded, a panic becomes
/// `SWM_STATUS_PANIC` (never an unwind across the C boundary).
pub(crate) fn boundary(name: &str, body: impl FnOnce() -> Result<(), Failure>) -> SwmStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SwmStatus::Ok,
        Ok(Err(f)) => {
            set_last_error(&format!("{name}: {}", f.message));
            f.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("{name}: internal panic: {what}"));
            SwmStatus::Panic
        }
    }
}
