//! NumPy `.npz` archives as `np.savez` writes them: stored zip members (read with the strict [`ZipArchive`]), one
//! `.npy` array each (format versions 1–3, little-endian or byte-sized, C order). Every member's data must be
//! exactly what its header's shape and dtype say, so nothing is allocated beyond the bytes the file holds — a
//! header claiming a huge shape is an error, not an allocation. (`np.savez_compressed` archives use deflate and are
//! refused as [`WeightsError::UnsupportedCompression`].)

use std::path::Path;

use crate::zip::ZipArchive;
use crate::{Dtype, Limits, Result, Tensor, TensorInfo, WeightsError};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads every array of the archive at `path`, in member order, named after their members without `.npy`.
pub fn read_npz(path: impl AsRef<Path>, limits: &Limits) -> Result<Vec<Tensor>> {
    let zip = ZipArchive::open(path, limits)?;
    let mut tensors = Vec::with_capacity(zip.entries().len());
    let mut total = 0u64;
    for entry in zip.entries() {
        let name = entry.name.strip_suffix(".npy").unwrap_or(&entry.name).to_string();
        let tensor = parse_npy(&name, zip.read(&entry.name)?, limits)?;
        total = total.saturating_add(tensor.data.len() as u64);
        if total > limits.max_total_bytes {
            return Err(WeightsError::LimitExceeded {
                what: "the arrays of the archive".into(),
                limit: "max_total_bytes",
                value: total,
                max: limits.max_total_bytes,
            });
        }
        tensors.push(tensor);
    }
    Ok(tensors)
}

/// The value text after `'key':` in a `.npy` header (a Python dict literal).
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = header[at + key.len() + 2..].trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

/// One `.npy` member: magic, version, header length, header dict, then the data.
fn parse_npy(name: &str, mut bytes: Vec<u8>, limits: &Limits) -> Result<Tensor> {
    let bad = |reason: String| WeightsError::InvalidTensor { key: name.to_string(), reason };
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(bad("not a .npy member (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(format!(".npy format version {v} (1, 2 or 3 are read)"))),
    };
    let end = start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or_else(|| {
        bad(format!("the header claims {header_len} bytes, the member holds {}", bytes.len() - start))
    })?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("the header is not text".into()))?;
    let descr = field(header, "descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or_else(|| bad(format!("no 'descr' in the header {header:?}")))?;
    let dtype = match descr {
        "|u1" | "<u1" => Dtype::U8,
        "|i1" | "<i1" => Dtype::I8,
        "|b1" => Dtype::Bool,
        "<f2" => Dtype::F16,
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        "<i2" => Dtype::I16,
        "<i4" => Dtype::I32,
        "<i8" => Dtype::I64,
        other => return Err(WeightsError::UnsupportedDtype { name: name.to_string(), dtype: other.to_string() }),
    };
    if field(header, "fortran_order").is_none_or(|v| !v.starts_with("False")) {
        return Err(bad("only C-order arrays are read (fortran_order must be False)".into()));
    }
    let dims = field(header, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| bad(format!("no 'shape' in the header {header:?}")))?;
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| bad(format!("shape entry `{d}` is not a size"))))
        .collect::<Result<Vec<_>>>()?;
    if shape.len() > limits.max_ndim {
        return Err(WeightsError::LimitExceeded {
            what: format!("array `{name}`"),
            limit: "max_ndim",
            value: shape.len() as u64,
            max: limits.max_ndim as u64,
        });
    }
    let nbytes = shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
    let held = bytes.len() - end;
    match nbytes {
        Some(n) if n == held => {}
        _ => return Err(bad(format!("the header's shape {shape:?} of {dtype} is not the {held} data bytes it holds"))),
    }
    if held as u64 > limits.max_tensor_bytes {
        return Err(WeightsError::LimitExceeded {
            what: format!("array `{name}`"),
            limit: "max_tensor_bytes",
            value: held as u64,
            max: limits.max_tensor_bytes,
        });
    }
    let data = bytes.split_off(end);
    Ok(Tensor { info: TensorInfo { name: name.to_string(), dtype, shape }, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        npy_order(descr, "False", shape, data)
    }

    fn npy_order(descr: &str, fortran: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn arrays_parse_and_a_header_claiming_more_than_the_data_is_refused() {
        let limits = Limits::default();
        let t = parse_npy("a", npy("<f4", "(2, 1)", &[0; 8]), &limits).unwrap();
        assert_eq!((t.info.dtype, t.info.shape.clone(), t.data.len()), (Dtype::F32, vec![2, 1], 8));
        let t = parse_npy("s", npy("|u1", "()", &[7]), &limits).unwrap();
        assert_eq!((t.info.shape.len(), t.data), (0, vec![7]));
        // A tiny member claiming 10^12 elements: an error, nothing allocated for it.
        let err = parse_npy("big", npy("<f4", "(1000000, 1000000)", &[0; 8]), &limits).unwrap_err();
        assert!(err.to_string().contains("is not the 8 data bytes"), "{err}");
        let err = parse_npy("ovf", npy("<f8", "(18446744073709551615, 2)", &[]), &limits).unwrap_err();
        assert!(err.to_string().contains("not the 0 data bytes"), "{err}");
        assert!(matches!(
            parse_npy("be", npy(">f4", "(1,)", &[0; 4]), &limits),
            Err(WeightsError::UnsupportedDtype { .. })
        ));
        let err = parse_npy("f", npy_order("<f4", "True", "(1,)", &[0; 4]), &limits).unwrap_err();
        assert!(err.to_string().contains("C-order"), "{err}");
        assert!(parse_npy("x", b"PK\x03\x04 not npy".to_vec(), &limits).is_err());
    }
}
