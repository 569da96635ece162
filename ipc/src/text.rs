//! NUL-padded UTF-8 text fields and the error of the checked setters.

use std::fmt;

/// Why a checked setter refused a value; the message is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The value has `len` elements (bytes for text, floats for vectors); the field holds at most `capacity`.
    TooLong {
        /// Length of the value.
        len: usize,
        /// Largest length the field holds (for text: the array size less the terminating NUL).
        capacity: usize,
    },
    /// The text contains a NUL byte, which NUL-padded text cannot carry.
    InteriorNul,
    /// A plan of `len` values is not `horizon` steps of `action_dim` values.
    PlanShape {
        /// Number of values given.
        len: usize,
        /// Steps claimed.
        horizon: usize,
        /// The slot's `action_dim`.
        action_dim: usize,
    },
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLong { len, capacity } => {
                write!(f, "value of length {len} exceeds the field's capacity {capacity}")
            }
            Self::InteriorNul => f.write_str("text contains a NUL byte"),
            Self::PlanShape { len, horizon, action_dim } => {
                write!(f, "a plan of {len} values is not {horizon} steps of {action_dim} values")
            }
        }
    }
}

impl std::error::Error for FieldError {}

/// Stores `text` NUL-padded in `dst`, refusing text that contains a NUL or leaves no room for one.
pub(crate) fn write<const N: usize>(dst: &mut [u8; N], text: &str) -> Result<(), FieldError> {
    let bytes = text.as_bytes();
    if bytes.contains(&0) {
        return Err(FieldError::InteriorNul);
    }
    if bytes.len() >= N {
        return Err(FieldError::TooLong { len: bytes.len(), capacity: N - 1 });
    }
    *dst = [0; N];
    dst[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

/// Stores as much of `text` as fits (cut before its first NUL and at a character boundary), NUL-padded.
pub(crate) fn write_truncated<const N: usize>(dst: &mut [u8; N], text: &str) {
    let text = text.split('\0').next().unwrap_or("");
    let mut end = text.len().min(N - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    *dst = [0; N];
    dst[..end].copy_from_slice(&text.as_bytes()[..end]);
}

/// The text before the first NUL; `None` when there is no NUL or the text is not UTF-8.
pub(crate) fn read(src: &[u8]) -> Option<&str> {
    let end = src.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&src[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_refuses_what_does_not_fit() {
        let mut field = [0xffu8; 8];
        write(&mut field, "abc").unwrap();
        assert_eq!(field, *b"abc\0\0\0\0\0");
        assert_eq!(read(&field), Some("abc"));
        write(&mut field, "").unwrap();
        assert_eq!(read(&field), Some(""));
        write(&mut field, "1234567").unwrap(); // 7 bytes + NUL
        assert_eq!(read(&field), Some("1234567"));
        assert_eq!(write(&mut field, "12345678"), Err(FieldError::TooLong { len: 8, capacity: 7 }));
        assert_eq!(read(&field), Some("1234567"), "a refused value leaves the field unchanged");
        assert_eq!(write(&mut field, "a\0b"), Err(FieldError::InteriorNul));
        assert_eq!(read(b"no terminator"), None);
        assert_eq!(read(b"\xff\xfe\0"), None);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let mut field = [0u8; 6];
        write_truncated(&mut field, "abcdefgh");
        assert_eq!(read(&field), Some("abcde"));
        write_truncated(&mut field, "abcé!"); // 'é' is two bytes at 3..5, then '!' at 5
        assert_eq!(read(&field), Some("abcé"));
        write_truncated(&mut field, "abcdé"); // 'é' would end at byte 6: dropped
        assert_eq!(read(&field), Some("abcd"));
        write_truncated(&mut field, "ab\0cd");
        assert_eq!(read(&field), Some("ab"));
        assert_eq!(field, *b"ab\0\0\0\0");
    }
}
