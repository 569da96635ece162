//! Reader for the zip archives written by `torch.save` (PyTorch ≥ 1.6).

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use crate::pickle::{self, TensorProblem, TensorSpec, Value};
use crate::source::Source;
use crate::zip::ZipArchive;
use crate::{check_bool_data, Dtype, Limits, Result, Tensor, TensorInfo, WeightsError};

/// Where one tensor's data lives.
#[derive(Debug, Clone)]
struct Location {
    member: String,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

/// A validated `torch.save` state dict.
///
/// Opening checks the zip structure, verifies `data.pkl`'s CRC, runs it on the restricted pickle machine
/// (see the crate docs), and checks every tensor against its storage member — all without reading tensor
/// data. [`TorchFile::tensors`] is then the table; [`TorchFile::read`] and [`TorchFile::read_all`] read
/// storages (verifying their CRC-32) and copy views into contiguous row-major bytes.
///
/// The state dict is the top-level dict / OrderedDict, or with `state_dict_key` the dict stored under that
/// key of the top-level dict (Lightning's `{"state_dict": {...}}`). Its keys must be strings. Values that are
/// not tensors (e.g. `_extra_state` objects built from whitelisted values) are ignored, and so is the state
/// that BUILD attaches to the dict (e.g. the `_metadata` attribute `Module.state_dict()` sets). Tensors
/// anywhere else in the pickle (optimizer state, ...) are ignored too.
#[derive(Debug)]
pub struct TorchFile {
    zip: ZipArchive,
    prefix: String,
    tensors: Vec<TensorInfo>,
    locations: Vec<Location>,
    by_name: HashMap<String, usize>,
}

impl TorchFile {
    /// Opens and validates the archive at `path`; reads no tensor data.
    pub fn open(path: impl AsRef<Path>, state_dict_key: Option<&str>, limits: &Limits) -> Result<Self> {
        Self::from_source(Source::open(path.as_ref())?, state_dict_key, limits)
    }

    /// Validates an archive held in memory.
    pub fn from_bytes(bytes: Vec<u8>, state_dict_key: Option<&str>, limits: &Limits) -> Result<Self> {
        Self::from_source(Source::Memory(bytes), state_dict_key, limits)
    }

    /// The tensor table, in state-dict order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The archive prefix: the directory of `data.pkl`, with its trailing `/` (e.g. `archive/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The underlying zip archive.
    pub fn zip(&self) -> &ZipArchive {
        &self.zip
    }

    /// Reads one tensor (its whole storage member is read and CRC-checked).
    pub fn read(&self, name: &str) -> Result<Tensor> {
        let &index = self.by_name.get(name).ok_or_else(|| WeightsError::TensorNotFound { name: name.to_string() })?;
        let storage = self.zip.read(&self.locations[index].member)?;
        self.materialize(index, &storage)
    }

    /// Reads every tensor, in table order; each storage member is read and CRC-checked once.
    pub fn read_all(&self) -> Result<Vec<Tensor>> {
        let mut order: Vec<usize> = (0..self.tensors.len()).collect();
        order.sort_by(|&a, &b| self.locations[a].member.cmp(&self.locations[b].member));
        let mut out: Vec<Option<Tensor>> = vec![None; self.tensors.len()];
        let mut cached: Option<(&str, Vec<u8>)> = None;
        for index in order {
            let member = self.locations[index].member.as_str();
            if cached.as_ref().is_none_or(|(m, _)| *m != member) {
                cached = Some((member, self.zip.read(member)?));
            }
            if let Some((_, storage)) = &cached {
                out[index] = Some(self.materialize(index, storage)?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn materialize(&self, index: usize, storage: &[u8]) -> Result<Tensor> {
        let info = &self.tensors[index];
        let loc = &self.locations[index];
        let data =
            crate::view::gather(storage, info.dtype.size(), loc.offset, &loc.size, &loc.stride).ok_or_else(|| {
                WeightsError::InvalidTensor { key: info.name.clone(), reason: "view exceeds its storage".into() }
            })?;
        if info.dtype == Dtype::Bool {
            check_bool_data(&info.name, &data)?;
        }
        Ok(Tensor { info: info.clone(), data })
    }

    fn from_source(source: Source, state_dict_key: Option<&str>, limits: &Limits) -> Result<Self> {
        let zip = ZipArchive::from_source(source, limits)?;

        // Exactly one `<prefix>/data.pkl`, and every member under that prefix: PyTorch reads only its own
        // prefix, so anything else could make this reader see different weights than Python.
        let mut pickles = zip.entries().iter().filter(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"));
        let pkl = pickles.next().ok_or(WeightsError::MissingDataPkl)?;
        if let Some(second) = pickles.next() {
            return Err(WeightsError::BadDataPkl {
                member: second.name.clone(),
                reason: format!("a second data.pkl besides `{}`", pkl.name),
            });
        }
        let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
        if prefix.len() < 2 || prefix[..prefix.len() - 1].contains('/') {
            return Err(WeightsError::BadDataPkl {
                member: pkl.name.clone(),
                reason: "data.pkl must be at `<prefix>/data.pkl` with a one-component prefix".into(),
            });
        }
        let prefix = prefix.to_string();
        if let Some(e) = zip.entries().iter().find(|e| !e.name.starts_with(&prefix)) {
            return Err(WeightsError::MemberOutsidePrefix { member: e.name.clone(), prefix });
        }

        let byteorder = format!("{prefix}byteorder");
        if zip.entry(&byteorder).is_some() {
            if zip.entry(&byteorder).is_some_and(|e| e.size > 16) {
                return Err(WeightsError::BadByteorder { member: byteorder, value: "(more than 16 bytes)".into() });
            }
            let value = zip.read(&byteorder)?;
            match value.as_slice() {
                b"little" => {}
                b"big" => return Err(WeightsError::BigEndian { member: byteorder }),
                other => {
                    let value = String::from_utf8_lossy(other).into_owned();
                    return Err(WeightsError::BadByteorder { member: byteorder, value });
                }
            }
        }

        let pkl_name = pkl.name.clone();
        if pkl.size > limits.max_pickle_bytes {
            return Err(WeightsError::limit("data.pkl bytes", "max_pickle_bytes", pkl.size, limits.max_pickle_bytes));
        }
        let data = zip.read(&pkl_name)?;
        let root = pickle::unpickle(&data, limits)?;
        let (tensors, locations) = extract(&zip, &prefix, &root, state_dict_key, limits)?;
        let by_name = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(TorchFile { zip, prefix, tensors, locations, by_name })
    }
}

fn dict_items(value: &Value) -> Option<std::cell::Ref<'_, Vec<(Value, Value)>>> {
    match value {
        Value::Dict(d) => Some(d.items()),
        _ => None,
    }
}

/// Finds the state dict and checks each of its tensors against its storage member.
fn extract(
    zip: &ZipArchive,
    prefix: &str,
    root: &Value,
    state_dict_key: Option<&str>,
    limits: &Limits,
) -> Result<(Vec<TensorInfo>, Vec<Location>)> {
    let nested;
    let state_dict = match state_dict_key {
        None => root,
        Some(wanted) => {
            let items = dict_items(root)
                .ok_or_else(|| WeightsError::NotAStateDict { reason: format!("the top level is a {}", root.kind()) })?;
            let mut found = items.iter().filter(|(k, _)| matches!(k, Value::Str(s) if &**s == wanted));
            let (_, value) = found
                .next()
                .ok_or_else(|| WeightsError::NotAStateDict { reason: format!("no key `{wanted}` at the top level") })?;
            if found.next().is_some() {
                return Err(WeightsError::DuplicateKey { key: wanted.to_string() });
            }
            nested = value.clone();
            &nested
        }
    };
    let what = state_dict_key.map(|k| format!("`{k}`")).unwrap_or_else(|| "the top level".into());
    let items = dict_items(state_dict)
        .ok_or_else(|| WeightsError::NotAStateDict { reason: format!("{what} is a {}", state_dict.kind()) })?;

    let mut tensors = Vec::new();
    let mut locations = Vec::new();
    let mut seen: HashMap<Rc<str>, ()> = HashMap::new();
    let mut storages: HashMap<Rc<str>, (Rc<str>, u64)> = HashMap::new();
    let mut total: u64 = 0;
    for (key, value) in items.iter() {
        let Value::Str(key) = key else {
            return Err(WeightsError::NotAStateDict { reason: format!("{what} has a {} key", key.kind()) });
        };
        if seen.insert(key.clone(), ()).is_some() {
            return Err(WeightsError::DuplicateKey { key: key.to_string() });
        }
        let Value::Tensor(spec) = value else { continue };
        if tensors.len() >= limits.max_tensors {
            return Err(WeightsError::limit(
                "tensors",
                "max_tensors",
                tensors.len() as u64 + 1,
                limits.max_tensors as u64,
            ));
        }
        let (info, location, bytes) = check_tensor(zip, prefix, key, spec, &mut storages, limits)?;
        total = total.saturating_add(bytes);
        if total > limits.max_total_bytes {
            return Err(WeightsError::limit(
                format!("all tensors up to `{key}`"),
                "max_total_bytes",
                total,
                limits.max_total_bytes,
            ));
        }
        tensors.push(info);
        locations.push(location);
    }
    Ok((tensors, locations))
}

fn check_tensor(
    zip: &ZipArchive,
    prefix: &str,
    key: &str,
    spec: &std::result::Result<TensorSpec, TensorProblem>,
    storages: &mut HashMap<Rc<str>, (Rc<str>, u64)>,
    limits: &Limits,
) -> Result<(TensorInfo, Location, u64)> {
    let spec = match spec {
        Ok(spec) => spec,
        Err(TensorProblem::Invalid(reason)) => {
            return Err(WeightsError::InvalidTensor { key: key.to_string(), reason: reason.clone() })
        }
        Err(TensorProblem::TooManyDims(n)) => {
            return Err(WeightsError::limit(format!("dimensions of `{key}`"), "max_ndim", *n, limits.max_ndim as u64))
        }
    };
    let storage = &spec.storage;
    let dtype = Dtype::from_torch_storage(&storage.class)
        .ok_or_else(|| WeightsError::UnsupportedStorage { key: key.to_string(), class: storage.class.to_string() })?;
    let esize = dtype.size() as u64;

    // Size of the view first: a huge declared shape fails here, before anything else is looked at.
    let too_large = |value| {
        WeightsError::limit(format!("tensor `{key}` bytes"), "max_tensor_bytes", value, limits.max_tensor_bytes)
    };
    let numel = spec.size.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(|| too_large(u64::MAX))?;
    let bytes = numel.checked_mul(esize).ok_or_else(|| too_large(u64::MAX))?;
    if bytes > limits.max_tensor_bytes {
        return Err(too_large(bytes));
    }
    let shape = spec
        .size
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| too_large(bytes))?;

    // One storage key, one storage: every reference must agree on class and size.
    let known = storages.entry(storage.key.clone()).or_insert_with(|| (storage.class.clone(), storage.numel));
    if known.0 != storage.class || known.1 != storage.numel {
        return Err(WeightsError::StorageConflict { key: key.to_string(), storage: storage.key.to_string() });
    }

    let member = format!("{prefix}data/{}", storage.key);
    let entry = zip
        .entry(&member)
        .ok_or_else(|| WeightsError::MissingMember { key: key.to_string(), member: member.clone() })?;
    let declared = storage.numel.checked_mul(esize);
    if declared != Some(entry.size) {
        return Err(WeightsError::StorageSizeMismatch {
            key: key.to_string(),
            member,
            declared: declared.unwrap_or(u64::MAX),
            actual: entry.size,
        });
    }

    // The view must lie inside the storage: offset + Σ (size_i − 1)·stride_i < numel.
    if numel > 0 {
        let last = spec.size.iter().zip(&spec.stride).try_fold(spec.offset, |acc, (&size, &stride)| {
            (size - 1).checked_mul(stride).and_then(|step| acc.checked_add(step))
        });
        if last.is_none_or(|last| last >= storage.numel) {
            return Err(WeightsError::ViewOutOfBounds {
                key: key.to_string(),
                offset: spec.offset,
                shape: spec.size.clone(),
                stride: spec.stride.clone(),
                numel: storage.numel,
            });
        }
    }

    let info = TensorInfo { name: key.to_string(), dtype, shape };
    let location = Location { member, offset: spec.offset, size: spec.size.clone(), stride: spec.stride.clone() };
    Ok((info, location, bytes))
}
