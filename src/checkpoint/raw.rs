//! Raw host tensors: a state dict as little-endian bytes, validated and written as safetensors without Candle
//! (what the host-only commands use: they link no CUDA code).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use swm_weights::{Dtype, TensorInfo};

use super::{candle_dtype, check_table, check_values, CheckpointError, ParamKind, ParamSpec, StateDict};

/// A state dict read into host memory as raw little-endian bytes: key -> tensor, in key order. What the host-only
/// paths use (validation, conversion to safetensors) without Candle or CUDA.
#[derive(Debug, Clone)]
pub struct RawStateDict {
    pub(super) tensors: BTreeMap<String, swm_weights::Tensor>,
    pub(super) source: PathBuf,
}

impl RawStateDict {
    /// Builds a raw state dict from tensors (their `info.name` is replaced by the key).
    pub fn from_tensors(
        tensors: impl IntoIterator<Item = (String, swm_weights::Tensor)>,
        source: impl Into<PathBuf>,
    ) -> Self {
        let tensors = tensors
            .into_iter()
            .map(|(key, mut t)| {
                t.info.name = key.clone();
                (key, t)
            })
            .collect();
        Self { tensors, source: source.into() }
    }

    /// An f32 tensor from values, for generated weights; `None` when the shape does not hold `values.len()`.
    pub fn f32_tensor(shape: &[usize], values: &[f32]) -> Option<swm_weights::Tensor> {
        (shape.iter().product::<usize>() == values.len()).then(|| swm_weights::Tensor {
            info: TensorInfo { name: String::new(), dtype: Dtype::F32, shape: shape.to_vec() },
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
    }

    /// An I64 scalar (a counter such as `num_batches_tracked`).
    pub fn i64_scalar(value: i64) -> swm_weights::Tensor {
        swm_weights::Tensor {
            info: TensorInfo { name: String::new(), dtype: Dtype::I64, shape: vec![] },
            data: value.to_le_bytes().to_vec(),
        }
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when no tensor is stored.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Iterates over `(key, tensor)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &swm_weights::Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The table comparison of [`WeightsFile::check`], then the values: finite, BatchNorm running variances ≥ 0.
    pub fn validate(&self, table: &[ParamSpec]) -> Result<(), CheckpointError> {
        check_table(
            &self.source,
            table,
            |key| {
                self.tensors.get(key).map(|t| (t.info.dtype.to_string(), t.info.dtype.is_float(), t.info.shape.clone()))
            },
            || self.tensors.keys().map(String::as_str),
        )?;
        for spec in table.iter().filter(|s| s.kind == ParamKind::Float) {
            if let Some(tensor) = self.tensors.get(&spec.name) {
                check_values(&self.source, spec, float_values(tensor))?;
            }
        }
        Ok(())
    }

    /// Serialises the tensors as safetensors bytes, dtypes as stored.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, CheckpointError> {
        let views = self.tensors.iter().map(|(k, t)| (k.as_str(), RawView(t)));
        safetensors::tensor::serialize(views, None)
            .map_err(|e| CheckpointError::Write { path: self.source.clone(), reason: e.to_string() })
    }

    /// Writes the tensors as a safetensors file, atomically (a temporary file renamed into place, mode 0644).
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let path = path.as_ref();
        let bytes = self.to_safetensors()?;
        crate::files::write_atomic(path, &bytes)
            .map_err(|e| CheckpointError::Write { path: path.to_path_buf(), reason: e.to_string() })
    }

    /// Candle host tensors, converted one at a time (each raw buffer is freed once converted).
    pub fn into_state_dict(self) -> Result<StateDict, CheckpointError> {
        let mut tensors = BTreeMap::new();
        for (key, raw) in self.tensors {
            let dtype = candle_dtype(raw.info.dtype).ok_or_else(|| CheckpointError::UnsupportedDtype {
                path: self.source.clone(),
                key: key.clone(),
                dtype: raw.info.dtype,
            })?;
            let tensor =
                Tensor::from_raw_buffer(&raw.data, dtype, &raw.info.shape, &Device::Cpu).map_err(|source| {
                    CheckpointError::Tensor { path: self.source.clone(), key: key.clone(), source: Box::new(source) }
                })?;
            tensors.insert(key, tensor);
        }
        Ok(StateDict { tensors, source: self.source })
    }
}

/// A raw tensor as a safetensors view.
struct RawView<'a>(&'a swm_weights::Tensor);

impl safetensors::View for RawView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self.0.info.dtype {
            Dtype::F16 => S::F16,
            Dtype::BF16 => S::BF16,
            Dtype::F32 => S::F32,
            Dtype::F64 => S::F64,
            Dtype::I64 => S::I64,
            Dtype::I32 => S::I32,
            Dtype::I16 => S::I16,
            Dtype::I8 => S::I8,
            Dtype::U8 => S::U8,
            Dtype::Bool => S::BOOL,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.0.info.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.0.data)
    }
    fn data_len(&self) -> usize {
        self.0.data.len()
    }
}

/// The values of a float tensor as f32 (F16, BF16, F32, F64 little-endian); empty for other dtypes.
fn float_values(t: &swm_weights::Tensor) -> Box<dyn Iterator<Item = f32> + '_> {
    let d = &t.data;
    match t.info.dtype {
        Dtype::F32 => Box::new(d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        Dtype::F64 => Box::new(
            d.chunks_exact(8).map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32),
        ),
        Dtype::F16 => Box::new(d.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())),
        Dtype::BF16 => Box::new(d.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        _ => Box::new(std::iter::empty()),
    }
}
