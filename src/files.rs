//! Filesystem helpers for untrusted inputs (bounded reads) and for outputs that must never be left half-written
//! (atomic replacement).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Largest JSON file (config, preprocess, schema) swm reads: far above any real config, far below memory.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// Reads at most `max` bytes of `path`; a longer file is an `InvalidData` error, never a huge allocation.
pub fn read_bytes(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Reads a UTF-8 text file of at most `max` bytes; a leading byte-order mark (as some editors write) is dropped.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    let bytes = read_bytes(path, max)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")))?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Writes `bytes` to `path` atomically: a temporary file beside it (mode 0644), flushed to disk, then renamed over
/// `path`. A reader sees the old file or the new one, never a truncated one; a symlink at `path` is replaced, not
/// followed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        // The mode passed to open is masked by the umask; artifacts are meant to be shared like their JSON files.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `a` and `b` name the same existing file or directory (same device and inode, through any links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
