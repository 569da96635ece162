//! Checkpoint loading: `.safetensors` and PyTorch `.pt` state dicts into named host tensors, validated against the
//! parameter table of a model before anything is uploaded to the GPU.
//!
//! Files are read on the host once; [`StateDict::to_var_builder`] then uploads every parameter to the CUDA device
//! in the model dtype so that model construction never touches the disk or the host again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// Why a checkpoint could not be used. Every variant names the file and, where it applies, the tensor key.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read weights: {source}")]
    Io {
        /// The weights file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is truncated or not in the format its extension claims.
    #[error("{path}: not a valid {format} file: {reason}")]
    Corrupt {
        /// The weights file.
        path: PathBuf,
        /// `safetensors` or `PyTorch zip`.
        format: &'static str,
        /// What the parser reported.
        reason: String,
    },
    /// The extension is none of `.safetensors`, `.pt`, `.pth`, `.bin`, `.ckpt`.
    #[error("{path}: unknown weights format (expected .safetensors, .pt, .pth, .bin or .ckpt)")]
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
    #[error("{path}: tensor `{key}` has dtype {found:?}, expected {expected}")]
    WrongDtype {
        /// The weights file.
        path: PathBuf,
        /// The parameter name.
        key: String,
        /// The dtype in the file.
        found: DType,
        /// What the model accepts.
        expected: &'static str,
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
    #[error("{path}: tensor `{key}` holds NaN or Inf")]
    NonFinite {
        /// The weights file.
        path: PathBuf,
        /// The parameter name.
        key: String,
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
        /// The Candle error.
        source: Box<candle_core::Error>,
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
}

/// A state dict read into host memory: parameter name -> tensor, in key order.
#[derive(Debug, Clone)]
pub struct StateDict {
    tensors: BTreeMap<String, Tensor>,
    source: PathBuf,
}

impl StateDict {
    /// Reads a `.safetensors` or `.pt` state dict.
    pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let tensors = match WeightsFormat::from_path(path)? {
            WeightsFormat::Safetensors => read_safetensors(path)?,
            WeightsFormat::PyTorch => read_pytorch(path, options.state_dict_key.as_deref())?,
        };
        let mut dict = Self { tensors, source: path.to_path_buf() };
        match &options.strip_prefix {
            Some(prefix) => dict.strip_prefix(prefix),
            None => {
                if !dict.tensors.is_empty() && dict.tensors.keys().all(|k| k.starts_with("model.")) {
                    dict.strip_prefix("model.");
                }
            }
        }
        if dict.tensors.is_empty() {
            let hint = if options.state_dict_key.is_none() && path.extension().is_some_and(|e| e != "safetensors") {
                " (if the state dict is nested, pass its key, e.g. `state_dict`)".to_string()
            } else {
                String::new()
            };
            return Err(CheckpointError::Empty { path: path.to_path_buf(), hint });
        }
        Ok(dict)
    }

    /// Builds a state dict from named host tensors (tests, converters).
    pub fn from_tensors(tensors: impl IntoIterator<Item = (String, Tensor)>, source: impl Into<PathBuf>) -> Self {
        Self { tensors: tensors.into_iter().collect(), source: source.into() }
    }

    /// Removes `prefix` from every key that starts with it.
    pub fn strip_prefix(&mut self, prefix: &str) {
        let tensors = std::mem::take(&mut self.tensors);
        self.tensors = tensors
            .into_iter()
            .map(|(k, v)| match k.strip_prefix(prefix) {
                Some(rest) => (rest.to_string(), v),
                None => (k, v),
            })
            .collect();
    }

    /// Renames keys with `rename`, which returns `None` to keep a key unchanged.
    pub fn rename_keys(&mut self, rename: impl Fn(&str) -> Option<String>) {
        let tensors = std::mem::take(&mut self.tensors);
        self.tensors = tensors.into_iter().map(|(k, v)| (rename(&k).unwrap_or(k), v)).collect();
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

    /// Checks this state dict against a model's parameter table, as PyTorch's strict `load_state_dict` does:
    /// every float parameter present with the right shape and a float dtype, finite values, no unknown key.
    /// Counters may be absent.
    pub fn validate(&self, table: &[ParamSpec]) -> Result<(), CheckpointError> {
        let path = || self.source.clone();
        let mut known = HashMap::with_capacity(table.len());
        for spec in table {
            known.insert(spec.name.as_str(), spec);
            let Some(tensor) = self.tensors.get(&spec.name) else {
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
                    if !tensor.dtype().is_float() {
                        return Err(CheckpointError::WrongDtype {
                            path: path(),
                            key: spec.name.clone(),
                            found: tensor.dtype(),
                            expected: "a float dtype (F16, BF16, F32, F64)",
                        });
                    }
                    if tensor.dims() != spec.shape.as_slice() {
                        return Err(CheckpointError::ShapeMismatch {
                            path: path(),
                            key: spec.name.clone(),
                            expected: spec.shape.clone(),
                            found: tensor.dims().to_vec(),
                        });
                    }
                    if !is_finite(tensor).map_err(|source| CheckpointError::Tensor {
                        path: path(),
                        key: spec.name.clone(),
                        source: Box::new(source),
                    })? {
                        return Err(CheckpointError::NonFinite { path: path(), key: spec.name.clone() });
                    }
                }
                ParamKind::Counter => {
                    if tensor.dtype().is_float() || tensor.elem_count() != 1 {
                        return Err(CheckpointError::WrongDtype {
                            path: path(),
                            key: spec.name.clone(),
                            found: tensor.dtype(),
                            expected: "an integer scalar",
                        });
                    }
                }
            }
        }
        if let Some(key) = self.tensors.keys().find(|k| !known.contains_key(k.as_str())) {
            return Err(CheckpointError::UnexpectedTensor { path: path(), key: key.clone() });
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

    /// Writes the tensors as safetensors (float tensors as stored, counters as I64).
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let path = path.as_ref();
        let tensors: HashMap<&str, Tensor> = self.tensors.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        candle_core::safetensors::save(&tensors, path)
            .map_err(|e| CheckpointError::Write { path: path.to_path_buf(), reason: e.to_string() })
    }
}

fn is_finite(tensor: &Tensor) -> candle_core::Result<bool> {
    let values = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(values.iter().all(|v| v.is_finite()))
}

fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })?;
    let corrupt = |reason: String| CheckpointError::Corrupt { path: path.to_path_buf(), format: "safetensors", reason };
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        // `Load` copies through an aligned buffer when the mmap'd data is not aligned for its dtype.
        let tensor =
            view.load(&Device::Cpu).map_err(|e| corrupt(format!("tensor `{name}` ({:?}): {e}", view.dtype())))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

fn read_pytorch(path: &Path, key: Option<&str>) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(CheckpointError::Io { path: path.to_path_buf(), source });
    }
    let corrupt = |reason: String| CheckpointError::Corrupt { path: path.to_path_buf(), format: "PyTorch zip", reason };
    let pth = candle_core::pickle::PthTensors::new(path, key).map_err(|e| corrupt(e.to_string()))?;
    let mut names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
    names.sort();
    let mut tensors = BTreeMap::new();
    for name in names {
        let tensor = pth
            .get(&name)
            .map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?
            .ok_or_else(|| corrupt(format!("tensor `{name}` listed but not readable")))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}
