//! Positioned reads from a file or an in-memory buffer. Nothing reads a file whole.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Result, WeightsError};

/// Where the bytes come from.
#[derive(Debug)]
pub(crate) enum Source {
    /// An open file; the mutex serialises seek + read.
    File { file: Mutex<File>, len: u64, path: PathBuf },
    /// An in-memory buffer.
    Memory(Vec<u8>),
}

impl Source {
    pub(crate) fn open(path: &Path) -> Result<Source> {
        let io = |source| WeightsError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(Source::File { file: Mutex::new(file), len, path: path.to_path_buf() })
    }

    pub(crate) fn len(&self) -> u64 {
        match self {
            Source::File { len, .. } => *len,
            Source::Memory(bytes) => bytes.len() as u64,
        }
    }

    /// Reads `len` bytes at `offset`. The caller has checked that the range lies inside `self.len()` (and is
    /// therefore backed by real bytes); this checks again and reports a short file as an error.
    pub(crate) fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|&end| end <= self.len());
        let Some(end) = end else {
            return Err(WeightsError::zip(
                None,
                format!("read of {len} bytes at {offset} is past the end of the file"),
            ));
        };
        match self {
            Source::Memory(bytes) => Ok(bytes[offset as usize..end as usize].to_vec()),
            Source::File { file, path, .. } => {
                let io = |source| WeightsError::Io { path: path.clone(), source };
                let len = usize::try_from(len).map_err(|_| {
                    WeightsError::zip(None, format!("read of {len} bytes does not fit in memory on this platform"))
                })?;
                let mut buf = vec![0u8; len];
                // A poisoned mutex only means another reader panicked: the File itself is still usable.
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                file.seek(SeekFrom::Start(offset)).map_err(io)?;
                file.read_exact(&mut buf).map_err(io)?;
                Ok(buf)
            }
        }
    }
}
