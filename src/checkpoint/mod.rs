//! Checkpoint loading: `.safetensors` and PyTorch `.pt` state dicts into named host tensors, validated against the
//! parameter table of a model before anything is uploaded to the GPU.
//!
//! Weights files are untrusted input (docs/artifacts.md, "Trust model"). They are read by `swm-weights`, our bounded
//! reader: [`WeightsFile::open`] validates the file's structure and returns its tensor *table* (key, dtype, shape)
//! without reading tensor data; [`WeightsFile::check`] compares that table with the model's parameter table; only
//! then does [`WeightsFile::read`] read the data, one tensor at a time, and [`StateDict::validate`] checks the values
//! (finite, BatchNorm variances non-negative). [`StateDict::to_var_builder`] finally uploads every parameter to the
//! CUDA device in the model dtype, so that model construction never touches the disk or the host again.
//!
//! Everything up to the values check also exists without Candle ([`RawStateDict`]: little-endian bytes), so that
//! the host-only commands (`swm inspect`, `convert`, `demo`) never touch CUDA and start without an NVIDIA driver.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
pub use swm_weights::{Dtype, Limits, TensorInfo, WeightsError};
use swm_weights::{SafetensorsFile, TorchFile};

mod raw;
pub use raw::RawStateDict;

/// Why a checkpoint could not be used. Every variant names the file and, where it applies, the tensor key.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file is malformed, truncated, exceeds a limit or is not in the format its extension claims; the
    /// reader's error names the zip member, pickle opcode or tensor key.
    #[error("{path}: {source}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What the bounded reader found.
        source: WeightsError,
    },
    /// The extension is none of `.safetensors`, `.pt`, `.pth`, `.bin`, `.ckpt`.
    #[error("{path}: not a weights file (expected .safetensors, .pt, .pth, .bin or .ckpt)")]
    UnknownFormat {
        /// The weights file.
        path: PathBuf,
    },
    /// The file holds no tensor at all (after prefix stripping).
    #[error("{path}: holds no tensors{hint}")]
    Empty {
        /// The weights file.
        path: PathBuf,
        /// Extra advice (e.g. the state-dict key to use).
        hint: String,
    },
    /// Two tensors end up under the same key after prefix stripping or renaming.
    #[error("{path}: tensors `{first}` and `{second}` both map to key `{key}`")]
    KeyCollision {
        /// The weights file.
        path: PathBuf,
        /// The key both map to.
        key: String,
        /// The first tensor's name in the file.
        first: String,
        /// The second tensor's name in the file.
        second: String,
    },
    /// A parameter the model needs is absent.
    #[error("{path}: missing tensor `{key}` (expected shape {expected:?})")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The parameter name.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// A parameter has the wrong shape.
    #[error("{path}: tensor `{key}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// The parameter name.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A parameter has a dtype the model cannot use (e.g. an integer tensor where weights are expected).
    #[error("{path}: tensor `{key}` has dtype {found}, expected {expected}")]
    WrongDtype {
        /// The weights file.
        path: PathBuf,
        /// The parameter name.
        key: String,
        /// The dtype in the file.
        found: String,
        /// What the model accepts.
        expected: &'static str,
    },
    /// A tensor has a dtype swm cannot hold in memory (I8, BOOL).
    #[error("{path}: tensor `{key}` has dtype {dtype}, which swm does not load")]
    UnsupportedDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor key.
        key: String,
        /// The dtype in the file.
        dtype: Dtype,
    },
    /// The file holds a tensor that is no parameter of the configured model (strict loading, as PyTorch's).
    #[error("{path}: unexpected tensor `{key}` (no parameter of this model has that name; wrong config?)")]
    UnexpectedTensor {
        /// The weights file.
        path: PathBuf,
        /// The unexpected name.
        key: String,
    },
    /// A parameter holds NaN or Inf.
    #[error("{path}: tensor `{key}` holds NaN or Inf (element {index})")]
    NonFinite {
        /// The weights file.
        path: PathBuf,
        /// The parameter name.
        key: String,
        /// Flat index of the first such element.
        index: usize,
    },
    /// A BatchNorm running variance is negative (its square root would be NaN).
    #[error("{path}: tensor `{key}` is a variance but element {index} is {value} < 0")]
    NegativeVariance {
        /// The weights file.
        path: PathBuf,
        /// The parameter name.
        key: String,
        /// Flat index of the first negative element.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// Writing a converted checkpoint failed.
    #[error("{path}: cannot write safetensors: {reason}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A Candle error while converting or uploading tensors.
    #[error("{path}: tensor `{key}`: {source}")]
    Tensor {
        /// The weights file.
        path: PathBuf,
        /// The parameter name.
        key: String,
        /// The Candle error (type-erased, as [`crate::Error::Candle`]).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// On-disk format of a state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// Hugging Face safetensors.
    Safetensors,
    /// `torch.save(state_dict)` zip archive with a pickle.
    PyTorch,
}

impl WeightsFormat {
    /// Picks the format from the file extension.
    pub fn from_path(path: &Path) -> Result<Self, CheckpointError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(Self::Safetensors),
            Some("pt" | "pth" | "bin" | "ckpt") => Ok(Self::PyTorch),
            _ => Err(CheckpointError::UnknownFormat { path: path.to_path_buf() }),
        }
    }
}

/// How to read a state dict.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Strip this prefix from every key that has it (e.g. `model.` for Lightning checkpoints). When `None`, a
    /// `model.` prefix shared by *all* keys is stripped automatically.
    pub strip_prefix: Option<String>,
    /// For `.pt` files that wrap the state dict in a dict (e.g. Lightning's `{"state_dict": ...}`), the key to read.
    pub state_dict_key: Option<String>,
    /// Resource limits of the reader (sizes, counts, pickle budgets); the defaults are in docs/artifacts.md.
    pub limits: Limits,
}

/// What kind of tensor a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Floating-point weights (stored as F16/BF16/F32/F64, used in the model dtype).
    Float,
    /// An integer bookkeeping buffer such as BatchNorm's `num_batches_tracked`: optional, ignored at inference.
    Counter,
}

/// One entry of a model's parameter table: what a checkpoint must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Full state-dict key.
    pub name: String,
    /// Expected shape.
    pub shape: Vec<usize>,
    /// Weights or counter.
    pub kind: ParamKind,
}

impl ParamSpec {
    /// A floating-point parameter.
    pub fn float(name: impl Into<String>, shape: &[usize]) -> Self {
        Self { name: name.into(), shape: shape.to_vec(), kind: ParamKind::Float }
    }
    /// An optional integer counter (e.g. `num_batches_tracked`).
    pub fn counter(name: impl Into<String>) -> Self {
        Self { name: name.into(), shape: vec![], kind: ParamKind::Counter }
    }
    /// Whether the values are a variance (BatchNorm `running_var`), which must not be negative.
    fn is_variance(&self) -> bool {
        self.kind == ParamKind::Float && self.name.ends_with("running_var")
    }
}

/// The dtype classes the model accepts for a float parameter, for error messages.
const FLOAT_DTYPES: &str = "a float dtype (F16, BF16, F32, F64)";

enum Reader {
    Torch(Box<TorchFile>),
    Safetensors(SafetensorsFile),
}

impl Reader {
    fn table(&self) -> &[TensorInfo] {
        match self {
            Reader::Torch(f) => f.tensors(),
            Reader::Safetensors(f) => f.tensors(),
        }
    }

    fn read(&self, name: &str) -> Result<swm_weights::Tensor, WeightsError> {
        match self {
            Reader::Torch(f) => f.read(name),
            Reader::Safetensors(f) => f.read(name),
        }
    }
}

/// A weights file whose structure has been validated and whose tensor table is known; no tensor data read yet.
///
/// Keys are the state-dict keys after prefix stripping ([`LoadOptions::strip_prefix`]) and renaming
/// ([`WeightsFile::rename_keys`]); the file's own names are kept to read the data.
pub struct WeightsFile {
    path: PathBuf,
    reader: Reader,
    /// Key -> row of the file's table (whose `name` is the name in the file).
    entries: BTreeMap<String, TensorInfo>,
}

impl std::fmt::Debug for WeightsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightsFile").field("path", &self.path).field("tensors", &self.entries.len()).finish()
    }
}

impl WeightsFile {
    /// Opens a `.safetensors` or `.pt` file and validates its structure within `options.limits`; applies
    /// `options.strip_prefix` (or strips a `model.` prefix shared by every key).
    pub fn open(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let weights = |source| CheckpointError::Weights { path: path.to_path_buf(), source };
        let reader = match WeightsFormat::from_path(path)? {
            WeightsFormat::Safetensors => {
                Reader::Safetensors(SafetensorsFile::open(path, &options.limits).map_err(weights)?)
            }
            WeightsFormat::PyTorch => Reader::Torch(Box::new(
                TorchFile::open(path, options.state_dict_key.as_deref(), &options.limits).map_err(weights)?,
            )),
        };
        let mut entries = BTreeMap::new();
        for info in reader.table() {
            // Both readers reject duplicate names.
            entries.insert(info.name.clone(), info.clone());
        }
        let mut file = Self { path: path.to_path_buf(), reader, entries };
        let prefix = match &options.strip_prefix {
            Some(prefix) => Some(prefix.clone()),
            None => (!file.entries.is_empty() && file.entries.keys().all(|k| k.starts_with("model.")))
                .then(|| "model.".to_string()),
        };
        if let Some(prefix) = prefix {
            file.rename_keys(|k| k.strip_prefix(prefix.as_str()).map(str::to_string))?;
        }
        if file.entries.is_empty() {
            let hint = if options.state_dict_key.is_none() && path.extension().is_some_and(|e| e != "safetensors") {
                " (if the state dict is nested, pass its key, e.g. `state_dict`)".to_string()
            } else {
                String::new()
            };
            return Err(CheckpointError::Empty { path: path.to_path_buf(), hint });
        }
        Ok(file)
    }

    /// Renames keys with `rename`, which returns `None` to keep a key unchanged. Two tensors mapping to one key
    /// are an error (nothing is silently dropped).
    pub fn rename_keys(&mut self, rename: impl Fn(&str) -> Option<String>) -> Result<(), CheckpointError> {
        let entries = std::mem::take(&mut self.entries);
        for (key, info) in entries {
            let key = rename(&key).unwrap_or(key);
            if let Some(first) = self.entries.get(&key) {
                return Err(CheckpointError::KeyCollision {
                    path: self.path.clone(),
                    first: first.name.clone(),
                    second: info.name,
                    key,
                });
            }
            self.entries.insert(key, info);
        }
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor table in key order: `(key, row)`, where `row.name` is the tensor's name in the file.
    pub fn table(&self) -> impl Iterator<Item = (&str, &TensorInfo)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table is empty (never after a successful [`WeightsFile::open`]).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of floating-point parameters (integer counters excluded).
    pub fn parameter_count(&self) -> usize {
        self.entries.values().filter(|t| t.dtype.is_float()).map(TensorInfo::numel).sum()
    }

    /// Compares the tensor table with a model's parameter table, as PyTorch's strict `load_state_dict` does, before
    /// any tensor data is read: every float parameter present with the right shape and a float dtype, counters
    /// (optional) integer scalars, no unknown key.
    pub fn check(&self, table: &[ParamSpec]) -> Result<(), CheckpointError> {
        check_table(
            &self.path,
            table,
            |key| self.entries.get(key).map(|t| (t.dtype.to_string(), t.dtype.is_float(), t.shape.clone())),
            || self.entries.keys().map(String::as_str),
        )
    }

    /// Reads every tensor into host memory as little-endian bytes, one at a time (each read is bounded and
    /// checksummed by the reader). Candle is not involved.
    pub fn read_raw(&self) -> Result<RawStateDict, CheckpointError> {
        let mut tensors = BTreeMap::new();
        for (key, info) in &self.entries {
            let mut raw = self
                .reader
                .read(&info.name)
                .map_err(|source| CheckpointError::Weights { path: self.path.clone(), source })?;
            raw.info.name = key.clone();
            tensors.insert(key.clone(), raw);
        }
        Ok(RawStateDict { tensors, source: self.path.clone() })
    }

    /// [`check`](Self::check)s the table, [`read_raw`](Self::read_raw)s the data and
    /// [`validate`](RawStateDict::validate)s the values against `table`, without Candle.
    pub fn read_raw_checked(&self, table: &[ParamSpec]) -> Result<RawStateDict, CheckpointError> {
        self.check(table)?;
        let state = self.read_raw()?;
        state.validate(table)?;
        Ok(state)
    }

    /// Reads every tensor into Candle host tensors.
    pub fn read(&self) -> Result<StateDict, CheckpointError> {
        self.read_raw()?.into_state_dict()
    }

    /// [`read_raw_checked`](Self::read_raw_checked), then Candle host tensors.
    pub fn read_checked(&self, table: &[ParamSpec]) -> Result<StateDict, CheckpointError> {
        self.read_raw_checked(table)?.into_state_dict()
    }
}

/// The value checks of a float parameter: every value finite (in f32, the dtype the model runs in), and a
/// variance's values non-negative.
pub(crate) fn check_values(
    path: &Path,
    spec: &ParamSpec,
    values: impl Iterator<Item = f32>,
) -> Result<(), CheckpointError> {
    let variance = spec.is_variance();
    for (index, value) in values.enumerate() {
        if !value.is_finite() {
            return Err(CheckpointError::NonFinite { path: path.to_path_buf(), key: spec.name.clone(), index });
        }
        if variance && value < 0.0 {
            return Err(CheckpointError::NegativeVariance {
                path: path.to_path_buf(),
                key: spec.name.clone(),
                index,
                value,
            });
        }
    }
    Ok(())
}

/// The Candle dtype that holds `dtype`, if any.
pub(crate) fn candle_dtype(dtype: Dtype) -> Option<DType> {
    Some(match dtype {
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::U8 => DType::U8,
        _ => return None,
    })
}

/// The table comparison shared by [`WeightsFile::check`] and [`StateDict::validate`]: `lookup(key)` gives the
/// dtype name, whether it is a float dtype and the shape of the tensor stored under `key`.
pub(crate) fn check_table<'a, K: Iterator<Item = &'a str>>(
    path: &Path,
    table: &[ParamSpec],
    lookup: impl Fn(&str) -> Option<(String, bool, Vec<usize>)>,
    keys: impl FnOnce() -> K,
) -> Result<(), CheckpointError> {
    let path = || path.to_path_buf();
    let mut known = HashMap::with_capacity(table.len());
    for spec in table {
        known.insert(spec.name.as_str(), spec);
        let Some((dtype, is_float, shape)) = lookup(&spec.name) else {
            if spec.kind == ParamKind::Counter {
                continue;
            }
            return Err(CheckpointError::MissingTensor {
                path: path(),
                key: spec.name.clone(),
                expected: spec.shape.clone(),
            });
        };
        match spec.kind {
            ParamKind::Float => {
                if !is_float {
                    return Err(CheckpointError::WrongDtype {
                        path: path(),
                        key: spec.name.clone(),
                        found: dtype,
                        expected: FLOAT_DTYPES,
                    });
                }
                if shape != spec.shape {
                    return Err(CheckpointError::ShapeMismatch {
                        path: path(),
                        key: spec.name.clone(),
                        expected: spec.shape.clone(),
                        found: shape,
                    });
                }
            }
            ParamKind::Counter => {
                if is_float || shape.iter().product::<usize>() != 1 {
                    return Err(CheckpointError::WrongDtype {
                        path: path(),
                        key: spec.name.clone(),
                        found: format!("{dtype} {shape:?}"),
                        expected: "an integer scalar",
                    });
                }
            }
        }
    }
    if let Some(key) = keys().find(|k| !known.contains_key(k)) {
        return Err(CheckpointError::UnexpectedTensor { path: path(), key: key.to_string() });
    }
    Ok(())
}

/// A state dict read into host memory: parameter name -> tensor, in key order.
#[derive(Debug, Clone)]
pub struct StateDict {
    tensors: BTreeMap<String, Tensor>,
    source: PathBuf,
}

impl StateDict {
    /// Opens and reads a `.safetensors` or `.pt` state dict whole, without a model to check it against
    /// (prefer [`WeightsFile::read_checked`] when the model is known).
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self, CheckpointError> {
        WeightsFile::open(path, options)?.read()
    }

    /// Builds a state dict from named host tensors (tests, converters).
    pub fn from_tensors(tensors: impl IntoIterator<Item = (String, Tensor)>, source: impl Into<PathBuf>) -> Self {
        Self { tensors: tensors.into_iter().collect(), source: source.into() }
    }

    /// Removes `prefix` from every key that starts with it; two tensors mapping to one key are an error.
    pub fn strip_prefix(&mut self, prefix: &str) -> Result<(), CheckpointError> {
        self.rename_keys(|k| k.strip_prefix(prefix).map(str::to_string))
    }

    /// Renames keys with `rename`, which returns `None` to keep a key unchanged; two tensors mapping to one key
    /// are an error (nothing is silently dropped).
    pub fn rename_keys(&mut self, rename: impl Fn(&str) -> Option<String>) -> Result<(), CheckpointError> {
        let tensors = std::mem::take(&mut self.tensors);
        for (name, tensor) in tensors {
            let key = rename(&name).unwrap_or_else(|| name.clone());
            if self.tensors.contains_key(&key) {
                return Err(CheckpointError::KeyCollision {
                    path: self.source.clone(),
                    first: key.clone(),
                    second: name,
                    key,
                });
            }
            self.tensors.insert(key, tensor);
        }
        Ok(())
    }

    /// The file this state dict came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The tensor stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// Iterates over `(key, tensor)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when no tensor is stored.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of floating-point parameters (integer counters excluded).
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().filter(|t| t.dtype().is_float()).map(|t| t.elem_count()).sum()
    }

    /// Checks this state dict against a model's parameter table: the table comparison of [`WeightsFile::check`],
    /// then the values: finite, and BatchNorm running variances non-negative.
    pub fn validate(&self, table: &[ParamSpec]) -> Result<(), CheckpointError> {
        check_table(
            &self.source,
            table,
            |key| {
                self.tensors
                    .get(key)
                    .map(|t| (format!("{:?}", t.dtype()).to_uppercase(), t.dtype().is_float(), t.dims().to_vec()))
            },
            || self.tensors.keys().map(String::as_str),
        )?;
        for spec in table.iter().filter(|s| s.kind == ParamKind::Float) {
            let Some(tensor) = self.tensors.get(&spec.name) else { continue };
            let values =
                tensor.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(
                    |source| CheckpointError::Tensor {
                        path: self.source.clone(),
                        key: spec.name.clone(),
                        source: Box::new(source),
                    },
                )?;
            check_values(&self.source, spec, values.into_iter())?;
        }
        Ok(())
    }

    /// Uploads every float tensor to `device` as `dtype` and returns a `VarBuilder` over them. Integer counters
    /// are skipped. Call [`StateDict::validate`] first: the builder itself only reports Candle errors.
    pub fn to_var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>, CheckpointError> {
        let mut on_device = HashMap::with_capacity(self.tensors.len());
        for (key, tensor) in &self.tensors {
            if !tensor.dtype().is_float() {
                continue;
            }
            let uploaded = tensor.to_dtype(dtype).and_then(|t| t.to_device(device)).map_err(|source| {
                CheckpointError::Tensor { path: self.source.clone(), key: key.clone(), source: Box::new(source) }
            })?;
            on_device.insert(key.clone(), uploaded);
        }
        Ok(VarBuilder::from_tensors(on_device, dtype, device))
    }

    /// Writes the tensors as a safetensors file, atomically (a temporary file renamed into place, mode 0644).
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let path = path.as_ref();
        let bytes = self.to_safetensors()?;
        crate::files::write_atomic(path, &bytes)
            .map_err(|e| CheckpointError::Write { path: path.to_path_buf(), reason: e.to_string() })
    }

    /// Serialises the tensors as safetensors bytes (float tensors as stored, counters as I64).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, CheckpointError> {
        safetensors::tensor::serialize(self.tensors.iter().map(|(k, v)| (k.as_str(), v)), None)
            .map_err(|e| CheckpointError::Write { path: self.source.clone(), reason: e.to_string() })
    }
}
