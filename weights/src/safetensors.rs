//! Reader for the safetensors format: `u64` little-endian header length, a JSON header, then the data region.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::source::Source;
use crate::{check_bool_data, Dtype, Limits, Result, Tensor, TensorInfo, WeightsError};

/// A validated safetensors file.
///
/// Opening reads the 8-byte header length, checks it against the file size and
/// [`Limits::max_header_bytes`] before reading anything else, then reads and validates the header only:
/// no duplicate names, supported dtypes, shapes whose byte size matches `data_offsets`, offsets inside the
/// data region, and tensors that cover the data region exactly (no overlap, no gap, no trailing bytes), as the
/// format requires. Tensor data is read by [`SafetensorsFile::read`] / [`SafetensorsFile::read_all`], one
/// tensor's byte range at a time.
#[derive(Debug)]
pub struct SafetensorsFile {
    source: Source,
    data_start: u64,
    tensors: Vec<TensorInfo>,
    ranges: Vec<(u64, u64)>,
    by_name: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

/// One header entry as parsed, before validation.
struct RawEntry {
    name: String,
    dtype: String,
    shape: Vec<u64>,
    offsets: [u64; 2],
}

impl SafetensorsFile {
    /// Opens and validates the file at `path`; reads only the header.
    pub fn open(path: impl AsRef<Path>, limits: &Limits) -> Result<Self> {
        Self::from_source(Source::open(path.as_ref())?, limits)
    }

    /// Validates a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>, limits: &Limits) -> Result<Self> {
        Self::from_source(Source::Memory(bytes), limits)
    }

    /// The tensor table, in header order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The `__metadata__` string map (empty if absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Reads one tensor.
    pub fn read(&self, name: &str) -> Result<Tensor> {
        let &index = self.by_name.get(name).ok_or_else(|| WeightsError::TensorNotFound { name: name.to_string() })?;
        let (begin, end) = self.ranges[index];
        let info = &self.tensors[index];
        let data = self.source.read_at(self.data_start + begin, end - begin)?;
        if info.dtype == Dtype::Bool {
            check_bool_data(&info.name, &data)?;
        }
        Ok(Tensor { info: info.clone(), data })
    }

    /// Reads every tensor, in table order.
    pub fn read_all(&self) -> Result<Vec<Tensor>> {
        self.tensors.iter().map(|t| self.read(&t.name)).collect()
    }

    fn from_source(source: Source, limits: &Limits) -> Result<Self> {
        let header_err = |reason: String| WeightsError::SafetensorsHeader { reason };
        let len = source.len();
        if len < 8 {
            return Err(header_err(format!("the file has {len} bytes, fewer than the 8-byte header length")));
        }
        let n = source.read_at(0, 8)?;
        let n = u64::from_le_bytes([n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]]);
        if n > limits.max_header_bytes {
            return Err(WeightsError::limit(
                "safetensors header bytes",
                "max_header_bytes",
                n,
                limits.max_header_bytes,
            ));
        }
        if n > len - 8 {
            return Err(header_err(format!("header length {n} exceeds the file ({len} bytes)")));
        }
        let header = source.read_at(8, n)?;
        if header.first() != Some(&b'{') {
            return Err(header_err("the header does not start with `{`".into()));
        }

        let error = RefCell::new(None);
        let mut de = serde_json::Deserializer::from_slice(&header);
        let parsed = HeaderSeed { limits, error: &error }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
        let (raw, metadata) = match parsed {
            Ok(v) => v,
            Err(e) => return Err(error.into_inner().unwrap_or_else(|| header_err(format!("invalid JSON: {e}")))),
        };

        let data_start = 8 + n;
        let data_len = len - data_start;
        let mut tensors = Vec::with_capacity(raw.len());
        let mut ranges = Vec::with_capacity(raw.len());
        let mut total = 0u64;
        for entry in raw {
            let name = entry.name;
            let invalid = |reason: String| WeightsError::InvalidEntry { name: name.clone(), reason };
            let Some(dtype) = Dtype::from_safetensors(&entry.dtype) else {
                return Err(WeightsError::UnsupportedDtype { name, dtype: entry.dtype });
            };
            let numel = entry
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| invalid(format!("shape {:?} overflows", entry.shape)))?;
            let bytes = numel
                .checked_mul(dtype.size() as u64)
                .ok_or_else(|| invalid(format!("shape {:?} × {dtype} overflows", entry.shape)))?;
            let [begin, end] = entry.offsets;
            if begin > end || end - begin != bytes {
                return Err(invalid(format!(
                    "data_offsets [{begin}, {end}] do not hold {bytes} bytes (shape {:?}, {dtype})",
                    entry.shape
                )));
            }
            if end > data_len {
                return Err(invalid(format!(
                    "data_offsets end {end} is past the data region ({data_len} bytes): truncated file?"
                )));
            }
            if bytes > limits.max_tensor_bytes {
                return Err(WeightsError::limit(
                    format!("tensor `{name}` bytes"),
                    "max_tensor_bytes",
                    bytes,
                    limits.max_tensor_bytes,
                ));
            }
            total = total.saturating_add(bytes);
            if total > limits.max_total_bytes {
                return Err(WeightsError::limit("all tensors", "max_total_bytes", total, limits.max_total_bytes));
            }
            let shape = entry.shape.iter().map(|&d| usize::try_from(d)).collect::<std::result::Result<Vec<_>, _>>();
            let shape = shape.map_err(|_| invalid("shape does not fit this platform".into()))?;
            tensors.push(TensorInfo { name, dtype, shape });
            ranges.push((begin, end));
        }

        // The tensors must cover the data region exactly.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| ranges[i]);
        let mut covered = 0u64;
        let mut previous: Option<usize> = None;
        for &i in &order {
            let (begin, end) = ranges[i];
            let prev_name = || previous.map(|p| format!("`{}`", tensors[p].name)).unwrap_or("the start".into());
            if begin < covered {
                return Err(WeightsError::OverlappingTensors {
                    first: previous.map(|p| tensors[p].name.clone()).unwrap_or_default(),
                    second: tensors[i].name.clone(),
                });
            }
            if begin > covered {
                return Err(WeightsError::DataRegion {
                    reason: format!(
                        "gap of {} bytes between {} and `{}`",
                        begin - covered,
                        prev_name(),
                        tensors[i].name
                    ),
                });
            }
            covered = end;
            previous = Some(i);
        }
        if covered != data_len {
            return Err(WeightsError::DataRegion {
                reason: format!(
                    "the tensors cover {covered} bytes but the data region after the header has {data_len} \
                     (trailing bytes)"
                ),
            });
        }

        let by_name = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(SafetensorsFile { source, data_start, tensors, ranges, by_name, metadata })
    }
}

/// Records a typed error for after deserialization and aborts it.
fn fail<E: de::Error>(slot: &RefCell<Option<WeightsError>>, error: WeightsError) -> E {
    let message = error.to_string();
    slot.borrow_mut().get_or_insert(error);
    E::custom(message)
}

struct HeaderSeed<'a> {
    limits: &'a Limits,
    error: &'a RefCell<Option<WeightsError>>,
}

type Header = (Vec<RawEntry>, BTreeMap<String, String>);

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = Header;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Header, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensor entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Header, A::Error> {
        let mut names = HashSet::new();
        let mut entries = Vec::new();
        let mut metadata = None;
        while let Some(name) = map.next_key::<String>()? {
            if name == "__metadata__" {
                if metadata.is_some() {
                    let reason = "duplicate `__metadata__`".to_string();
                    return Err(fail(self.error, WeightsError::SafetensorsHeader { reason }));
                }
                metadata = Some(map.next_value_seed(MetadataSeed { error: self.error })?);
                continue;
            }
            if name.len() > self.limits.max_name_bytes {
                let error = WeightsError::limit(
                    "a tensor name",
                    "max_name_bytes",
                    name.len() as u64,
                    self.limits.max_name_bytes as u64,
                );
                return Err(fail(self.error, error));
            }
            if names.contains(&name) {
                return Err(fail(self.error, WeightsError::DuplicateTensor { name }));
            }
            if entries.len() >= self.limits.max_tensors {
                let max = self.limits.max_tensors as u64;
                return Err(fail(self.error, WeightsError::limit("tensors", "max_tensors", max + 1, max)));
            }
            let seed = EntrySeed { name: &name, limits: self.limits, error: self.error };
            let entry = map.next_value_seed(seed).map_err(|e| {
                let reason = format!("not a valid entry: {e}");
                fail(self.error, WeightsError::InvalidEntry { name: name.clone(), reason })
            })?;
            names.insert(name);
            entries.push(entry);
        }
        Ok((entries, metadata.unwrap_or_default()))
    }
}

struct MetadataSeed<'a> {
    error: &'a RefCell<Option<WeightsError>>,
}

impl<'de> DeserializeSeed<'de> for MetadataSeed<'_> {
    type Value = BTreeMap<String, String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed<'_> {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings to strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<String>().map_err(|e| {
                let reason = format!("`__metadata__` value of `{key}` is not a string: {e}");
                fail(self.error, WeightsError::SafetensorsHeader { reason })
            })?;
            if out.insert(key.clone(), value).is_some() {
                let reason = format!("duplicate `__metadata__` key `{key}`");
                return Err(fail(self.error, WeightsError::SafetensorsHeader { reason }));
            }
        }
        Ok(out)
    }
}

struct EntrySeed<'a> {
    name: &'a str,
    limits: &'a Limits,
    error: &'a RefCell<Option<WeightsError>>,
}

impl EntrySeed<'_> {
    fn invalid<E: de::Error>(&self, reason: String) -> E {
        fail(self.error, WeightsError::InvalidEntry { name: self.name.to_string(), reason })
    }
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = RawEntry;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<RawEntry, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = RawEntry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with dtype, shape and data_offsets")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawEntry, A::Error> {
        let (mut dtype, mut shape, mut offsets) = (None, None, None);
        while let Some(field) = map.next_key::<String>()? {
            let duplicate = match field.as_str() {
                "dtype" => {
                    let v = map.next_value::<String>().map_err(|e| self.invalid(format!("dtype: {e}")))?;
                    dtype.replace(v).is_some()
                }
                "shape" => {
                    let seed = DimsSeed { what: "shape", max: self.limits.max_ndim, entry: &self };
                    let v = map.next_value_seed(seed).map_err(|e| self.invalid(format!("shape: {e}")))?;
                    shape.replace(v).is_some()
                }
                "data_offsets" => {
                    let seed = DimsSeed { what: "data_offsets", max: 2, entry: &self };
                    let v = map.next_value_seed(seed).map_err(|e| self.invalid(format!("data_offsets: {e}")))?;
                    let Ok(v) = <[u64; 2]>::try_from(v) else {
                        return Err(self.invalid("data_offsets must have two entries".into()));
                    };
                    offsets.replace(v).is_some()
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    false
                }
            };
            if duplicate {
                return Err(self.invalid(format!("duplicate field `{field}`")));
            }
        }
        let missing = |field: &str| self.invalid::<A::Error>(format!("missing `{field}`"));
        Ok(RawEntry {
            name: self.name.to_string(),
            dtype: dtype.ok_or_else(|| missing("dtype"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
            offsets: offsets.ok_or_else(|| missing("data_offsets"))?,
        })
    }
}

/// An array of at most `max` non-negative integers.
struct DimsSeed<'a, 'b> {
    what: &'static str,
    max: usize,
    entry: &'a EntrySeed<'b>,
}

impl<'de> DeserializeSeed<'de> for DimsSeed<'_, '_> {
    type Value = Vec<u64>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Vec<u64>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DimsSeed<'_, '_> {
    type Value = Vec<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of non-negative integers for `{}`", self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<u64>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<serde_json::Number>()? {
            let Some(v) = v.as_u64() else {
                return Err(self.entry.invalid(format!("{} entry {v} is not a non-negative integer", self.what)));
            };
            if out.len() >= self.max {
                return Err(self.entry.invalid(format!("{} has more than {} entries", self.what, self.max)));
            }
            out.push(v);
        }
        Ok(out)
    }
}
