//! Bounded, verified readers for untrusted weights files.
//!
//! Two formats are supported, each with the same two-step API: opening a file validates its whole structure
//! and returns the tensor *table* (name → dtype, shape) without reading tensor data, so the caller can compare
//! it with its model's parameter table; [`TorchFile::read`]/[`SafetensorsFile::read`] (or `read_all`) then
//! materialise tensors as contiguous little-endian bytes.
//!
//! * [`TorchFile`]: the zip archive written by `torch.save` (PyTorch ≥ 1.6). The zip container is parsed by
//!   this crate ([`zip`]); `data.pkl` is interpreted by a restricted pickle machine that executes nothing:
//!   it only knows a whitelist of globals (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//!   `torch._utils._rebuild_parameter[_with_state]`, the `torch.*Storage` classes) and builds inert values.
//! * [`SafetensorsFile`]: the safetensors format; the header is validated (duplicates, offsets, coverage of
//!   the data region) before any tensor byte is read.
//!
//! [`read_npz`] reads the NumPy archives `np.savez` writes (training batches) through the same zip reader, each
//! array's header checked against the bytes it holds.
//!
//! Files are read with positioned reads of the ranges that are needed: nothing reads a file whole, and no
//! `unsafe` code is used (no memory map). Nothing here panics on malformed input: every problem is a
//! [`WeightsError`] naming what was wrong (the zip member, the pickle opcode and offset, the tensor key).
//!
//! # Limits
//!
//! Every size an attacker controls is checked with checked arithmetic and against a [`Limits`] value before
//! anything is allocated. The defaults ([`Limits::default`]):
//!
//! | field | default | bounds |
//! | --- | --- | --- |
//! | `max_pickle_bytes` | 64 MiB | size of `data.pkl` |
//! | `max_pickle_values` | 4 000 000 | values the pickle machine may create |
//! | `max_depth` | 100 | nesting depth of pickle containers, and of open MARKs |
//! | `max_memo_entries` | 1 048 576 | pickle memo entries |
//! | `max_string_bytes` | 16 MiB | one pickle string / bytes object, one global name |
//! | `max_zip_entries` | 262 144 | zip members |
//! | `max_central_directory_bytes` | 64 MiB | zip central directory |
//! | `max_name_bytes` | 4096 | a zip member name, a safetensors tensor name |
//! | `max_tensors` | 262 144 | tensors in a state dict / safetensors header |
//! | `max_ndim` | 64 | dimensions of one tensor |
//! | `max_tensor_bytes` | 4 GiB | materialised size of one tensor |
//! | `max_total_bytes` | 16 GiB | materialised size of all tensors of a file |
//! | `max_header_bytes` | 100 000 000 | safetensors JSON header (the reference implementation's cap) |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod npz;
mod pickle;
mod safetensors;
mod source;
mod torch;
mod view;
pub mod zip;

pub use error::WeightsError;
pub use npz::read_npz;
pub use safetensors::SafetensorsFile;
pub use torch::TorchFile;

use std::fmt;

/// Result type of this crate.
pub type Result<T, E = WeightsError> = std::result::Result<T, E>;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE 754 half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 16-bit integer.
    I16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean stored as one byte, 0 or 1.
    Bool,
}

impl Dtype {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// The safetensors name of the dtype (`"F32"`, `"BOOL"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U8 => "U8",
            Dtype::Bool => "BOOL",
        }
    }

    /// Whether this is a floating-point dtype.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    /// Parses a safetensors dtype name; `None` for names this crate does not support (F8 types, U16, ...).
    pub fn from_safetensors(name: &str) -> Option<Dtype> {
        Some(match name {
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            "I16" => Dtype::I16,
            "I8" => Dtype::I8,
            "U8" => Dtype::U8,
            "BOOL" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Maps a PyTorch typed storage class name (`"FloatStorage"`, ...) to its dtype; `None` if unsupported.
    pub fn from_torch_storage(class: &str) -> Option<Dtype> {
        Some(match class {
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Name, dtype and shape of one tensor: one row of a file's tensor table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorInfo {
    /// The state-dict key / safetensors tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements (the product of the shape; 1 for a scalar). Saturates instead of overflowing
    /// (tables returned by this crate were checked not to overflow).
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    /// Size of the materialised data in bytes (saturating).
    pub fn nbytes(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size())
    }
}

/// A materialised tensor: contiguous, row-major, little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    /// Name, dtype and shape.
    pub info: TensorInfo,
    /// `info.nbytes()` bytes of row-major little-endian data.
    pub data: Vec<u8>,
}

/// Resource limits applied while reading untrusted files. See the crate documentation for the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of `data.pkl` in bytes.
    pub max_pickle_bytes: u64,
    /// Maximum number of values the pickle machine may create.
    pub max_pickle_values: u64,
    /// Maximum nesting depth of pickle containers (and of open MARKs).
    pub max_depth: u32,
    /// Maximum number of pickle memo entries.
    pub max_memo_entries: usize,
    /// Maximum length of one pickle string or bytes object.
    pub max_string_bytes: u64,
    /// Maximum number of zip members.
    pub max_zip_entries: u64,
    /// Maximum size of the zip central directory.
    pub max_central_directory_bytes: u64,
    /// Maximum length of a zip member name or a safetensors tensor name.
    pub max_name_bytes: usize,
    /// Maximum number of tensors in one file.
    pub max_tensors: usize,
    /// Maximum number of dimensions of one tensor.
    pub max_ndim: usize,
    /// Maximum materialised size of one tensor in bytes.
    pub max_tensor_bytes: u64,
    /// Maximum materialised size of all the tensors of one file in bytes.
    pub max_total_bytes: u64,
    /// Maximum size of a safetensors JSON header.
    pub max_header_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        const MIB: u64 = 1 << 20;
        Limits {
            max_pickle_bytes: 64 * MIB,
            max_pickle_values: 4_000_000,
            max_depth: 100,
            max_memo_entries: 1 << 20,
            max_string_bytes: 16 * MIB,
            max_zip_entries: 1 << 18,
            max_central_directory_bytes: 64 * MIB,
            max_name_bytes: 4096,
            max_tensors: 1 << 18,
            max_ndim: 64,
            max_tensor_bytes: 4 << 30,
            max_total_bytes: 16 << 30,
            max_header_bytes: 100_000_000,
        }
    }
}

/// Checks bool data (every byte 0 or 1).
pub(crate) fn check_bool_data(name: &str, data: &[u8]) -> Result<()> {
    match data.iter().position(|&b| b > 1) {
        Some(index) => Err(WeightsError::InvalidBool { name: name.to_string(), index: index as u64 }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn readers_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::TorchFile>();
        check::<crate::SafetensorsFile>();
        check::<crate::zip::ZipArchive>();
        check::<crate::WeightsError>();
    }
}
