//! The error type.

use std::path::PathBuf;

/// Everything that can be wrong with a weights file. Each variant names what was wrong: the zip member,
/// the pickle opcode and its offset in `data.pkl`, the tensor key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file could not be opened or read.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a zip archive at all (e.g. the legacy pre-1.6 torch format, or a JPEG).
    #[error("not a PyTorch zip archive: {reason}")]
    NotZip {
        /// Why.
        reason: String,
    },
    /// The zip structure is malformed (end of central directory, central directory, local header).
    #[error("malformed zip archive{}: {reason}", member_suffix(.member))]
    Zip {
        /// The member concerned, when there is one.
        member: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A member is compressed (PyTorch only writes stored members) or encrypted.
    #[error("zip member `{member}` uses compression method {method}; only stored (0) members are supported")]
    UnsupportedCompression {
        /// The member.
        member: String,
        /// Its compression method.
        method: u16,
    },
    /// Two central directory entries have the same name.
    #[error("duplicate zip member `{member}`")]
    DuplicateMember {
        /// The name.
        member: String,
    },
    /// Two members' byte ranges overlap.
    #[error("zip members `{first}` and `{second}` overlap")]
    OverlappingMembers {
        /// The member that starts first.
        first: String,
        /// The member that starts inside it.
        second: String,
    },
    /// A member's CRC-32 does not match its data.
    #[error("CRC-32 mismatch in zip member `{member}`: directory says {expected:#010x}, data has {actual:#010x}")]
    CrcMismatch {
        /// The member.
        member: String,
        /// CRC-32 recorded in the central directory.
        expected: u32,
        /// CRC-32 of the data.
        actual: u32,
    },
    /// The archive has no `<prefix>/data.pkl`.
    #[error("not a PyTorch zip archive: no `<prefix>/data.pkl` member")]
    MissingDataPkl,
    /// The archive has more than one `data.pkl`, or one not at `<prefix>/data.pkl`.
    #[error("zip member `{member}`: {reason}")]
    BadDataPkl {
        /// The offending member.
        member: String,
        /// What is wrong.
        reason: String,
    },
    /// A member does not live under the archive prefix (PyTorch would not read it).
    #[error("zip member `{member}` is outside the archive prefix `{prefix}`")]
    MemberOutsidePrefix {
        /// The member.
        member: String,
        /// The prefix (the directory of `data.pkl`, with its trailing `/`).
        prefix: String,
    },
    /// `<prefix>/byteorder` says the tensor data is big-endian.
    #[error("`{member}` says the tensor data is big-endian; only little-endian archives are supported")]
    BigEndian {
        /// The byteorder member.
        member: String,
    },
    /// `<prefix>/byteorder` holds something other than `little` or `big`.
    #[error("`{member}` holds {value:?}, expected \"little\"")]
    BadByteorder {
        /// The byteorder member.
        member: String,
        /// Its content (truncated).
        value: String,
    },
    /// A member the archive needs is absent.
    #[error("tensor `{key}`: zip member `{member}` is missing")]
    MissingMember {
        /// The tensor key that needs it.
        key: String,
        /// The member name.
        member: String,
    },
    /// An opcode the pickle machine does not implement.
    #[error("pickle: unsupported opcode {opcode:#04x} ({}) at offset {offset}", opcode_char(*.opcode))]
    UnknownOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Its offset in `data.pkl`.
        offset: u64,
    },
    /// A malformed pickle (stack underflow, wrong argument types, truncation, ...).
    #[error("pickle: {reason} (opcode {opcode:#04x} at offset {offset})")]
    Pickle {
        /// The opcode being executed.
        opcode: u8,
        /// Its offset in `data.pkl`.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A GLOBAL / STACK_GLOBAL outside the whitelist. Nothing is ever executed: the file is rejected.
    #[error("pickle: global `{module}.{name}` at offset {offset} is not allowed{}", key_suffix(.key))]
    DisallowedGlobal {
        /// Module part.
        module: String,
        /// Name part.
        name: String,
        /// Offset of the opcode in `data.pkl`.
        offset: u64,
        /// The state-dict key being built, when known.
        key: Option<String>,
    },
    /// A limit of [`crate::Limits`] was exceeded.
    #[error("limit exceeded: {what} needs {value}, limit `{limit}` is {max}")]
    LimitExceeded {
        /// What was being measured (e.g. "pickle memo entries", "tensor `w`").
        what: String,
        /// The `Limits` field.
        limit: &'static str,
        /// The value required (saturated at `u64::MAX` on overflow).
        value: u64,
        /// The limit.
        max: u64,
    },
    /// The pickled object is not a state dict (or the requested nested key is missing or not a dict).
    #[error("not a state dict: {reason}")]
    NotAStateDict {
        /// What was found instead.
        reason: String,
    },
    /// The same key appears twice in a state dict.
    #[error("duplicate state-dict key `{key}`")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A tensor's storage class has a dtype this crate does not support.
    #[error("tensor `{key}`: unsupported storage type `torch.{class}`")]
    UnsupportedStorage {
        /// The tensor key.
        key: String,
        /// The storage class name.
        class: String,
    },
    /// A safetensors dtype this crate does not support (F8 types, U16, ...).
    #[error("tensor `{name}`: unsupported dtype `{dtype}`")]
    UnsupportedDtype {
        /// The tensor name.
        name: String,
        /// The dtype string.
        dtype: String,
    },
    /// Malformed tensor arguments (negative or non-integer sizes, strides or offset, wrong argument count).
    #[error("tensor `{key}`: {reason}")]
    InvalidTensor {
        /// The tensor key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A storage's byte size (numel × dtype size) does not match its zip member.
    #[error("tensor `{key}`: storage `{member}` declares {declared} bytes, the member has {actual}")]
    StorageSizeMismatch {
        /// The tensor key.
        key: String,
        /// The storage member.
        member: String,
        /// numel × dtype size, saturated on overflow.
        declared: u64,
        /// Size of the member.
        actual: u64,
    },
    /// Two tensors use the same storage with different storage classes or sizes.
    #[error("tensor `{key}`: storage `{storage}` is declared with different types or sizes")]
    StorageConflict {
        /// The tensor key.
        key: String,
        /// The storage key.
        storage: String,
    },
    /// A tensor view reaches outside its storage.
    #[error("tensor `{key}`: view (offset {offset}, shape {shape:?}, stride {stride:?}) exceeds its storage of {numel} elements")]
    ViewOutOfBounds {
        /// The tensor key.
        key: String,
        /// Storage offset.
        offset: u64,
        /// Sizes.
        shape: Vec<u64>,
        /// Strides.
        stride: Vec<u64>,
        /// Elements in the storage.
        numel: u64,
    },
    /// A bool tensor holds a byte other than 0 or 1.
    #[error("tensor `{name}`: bool element {index} is neither 0 nor 1")]
    InvalidBool {
        /// The tensor name.
        name: String,
        /// Index of the first bad element.
        index: u64,
    },
    /// The requested tensor is not in the table.
    #[error("no tensor named `{name}`")]
    TensorNotFound {
        /// The name asked for.
        name: String,
    },
    /// The safetensors header is malformed (bad length, bad JSON, wrong structure).
    #[error("safetensors header: {reason}")]
    SafetensorsHeader {
        /// What is wrong.
        reason: String,
    },
    /// Two safetensors entries have the same name.
    #[error("safetensors header: duplicate tensor `{name}`")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A safetensors entry is invalid (shape, offsets, size).
    #[error("safetensors tensor `{name}`: {reason}")]
    InvalidEntry {
        /// The tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Two safetensors tensors' byte ranges overlap.
    #[error("safetensors tensors `{first}` and `{second}` overlap")]
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
    },
    /// The safetensors data region is not covered exactly by the tensors (a gap, or trailing bytes).
    #[error("safetensors data region: {reason}")]
    DataRegion {
        /// What is wrong.
        reason: String,
    },
}

fn member_suffix(member: &Option<String>) -> String {
    member.as_ref().map(|m| format!(" (member `{m}`)")).unwrap_or_default()
}

fn key_suffix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!(" (while building state-dict key `{k}`)")).unwrap_or_default()
}

fn opcode_char(opcode: u8) -> String {
    if opcode.is_ascii_graphic() {
        format!("'{}'", opcode as char)
    } else {
        "non-ASCII".to_string()
    }
}

impl WeightsError {
    pub(crate) fn zip(member: Option<&str>, reason: impl Into<String>) -> Self {
        WeightsError::Zip { member: member.map(str::to_string), reason: reason.into() }
    }

    pub(crate) fn limit(what: impl Into<String>, limit: &'static str, value: u64, max: u64) -> Self {
        WeightsError::LimitExceeded { what: what.into(), limit, value, max }
    }
}
