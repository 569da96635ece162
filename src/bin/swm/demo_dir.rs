//! The embedded demo artifact in a temporary directory, for commands run without a PATH.

use std::path::{Path, PathBuf};

use swm::tools::demo;

use crate::error::CliError;

/// The demo artifact written to a fresh temporary directory, removed on drop.
pub struct DemoDir(PathBuf);

impl DemoDir {
    /// Writes the demo artifact to `$TMPDIR/swm-demo-<pid>-<n>`.
    pub fn create() -> Result<Self, CliError> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = Self(std::env::temp_dir().join(format!("swm-demo-{}-{n}", std::process::id())));
        demo::write_artifact(&dir.0)?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
