//! Safetensors reader: valid files and malformed headers. Every case asserts the error variant.

mod common;

use std::time::{Duration, Instant};

use common::*;
use swm_weights::{Dtype, Limits, SafetensorsFile, WeightsError};

fn open(bytes: Vec<u8>) -> Result<SafetensorsFile, WeightsError> {
    SafetensorsFile::from_bytes(bytes, &Limits::default())
}

fn entry(name: &str, dtype: &str, shape: &str, begin: u64, end: u64) -> String {
    format!("\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}")
}

#[test]
fn valid_file() {
    let file = open(valid_safetensors()).unwrap();
    assert_eq!(file.metadata().get("format").map(String::as_str), Some("pt"));
    let table: Vec<_> = file.tensors().iter().map(|t| (t.name.as_str(), t.dtype, t.shape.clone())).collect();
    assert_eq!(
        table,
        vec![
            ("w", Dtype::F32, vec![2, 2]),
            ("n", Dtype::I64, vec![]),
            ("mask", Dtype::Bool, vec![3]),
            ("h", Dtype::F16, vec![2]),
            ("empty", Dtype::F32, vec![0, 4]),
        ]
    );
    let all = file.read_all().unwrap();
    assert_eq!(f32_values(&all[0].data), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(all[1].data, 5i64.to_le_bytes().to_vec());
    assert_eq!(all[2].data, vec![1, 0, 1]);
    assert_eq!(all[3].data, vec![0x00, 0x3c, 0x00, 0x40]);
    assert!(all[4].data.is_empty());
    assert!(matches!(file.read("x"), Err(WeightsError::TensorNotFound { .. })));
    // Header order and file order may differ; unknown fields in an entry are ignored.
    let header = format!(
        "{{{},{}}}",
        entry("b", "U8", "[2]", 2, 4).replace("}", ",\"extra\":[1,{\"a\":null}]}"),
        entry("a", "U8", "[2]", 0, 2)
    );
    let file = open(safetensors_raw(&header, &[1, 2, 3, 4])).unwrap();
    assert_eq!(file.read("b").unwrap().data, vec![3, 4]);
    assert_eq!(file.read("a").unwrap().data, vec![1, 2]);
}

#[test]
fn header_length_checks() {
    let mut bytes = valid_safetensors();
    let len = bytes.len() as u64;
    bytes[..8].copy_from_slice(&(len - 8 + 1).to_le_bytes());
    let err = open(bytes.clone()).unwrap_err();
    assert!(matches!(&err, WeightsError::SafetensorsHeader { reason } if reason.contains("exceeds the file")), "{err}");
    bytes[..8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let err = open(bytes.clone()).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_header_bytes", .. }), "{err}");
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(open(bytes).unwrap_err(), WeightsError::LimitExceeded { .. }));
    assert!(matches!(open(vec![1, 2, 3]).unwrap_err(), WeightsError::SafetensorsHeader { .. }));
    // Not starting with `{`, not JSON, not an object.
    for header in [" {}", "[1,2]", "{\"a\":", "{} x", "{\"a\":1}"] {
        let err = open(safetensors_raw(header, &[])).unwrap_err();
        assert!(
            matches!(err, WeightsError::SafetensorsHeader { .. } | WeightsError::InvalidEntry { .. }),
            "{header}: {err}"
        );
    }
    // An empty header object with no data is a valid (empty) file.
    assert!(open(safetensors_raw("{}", &[])).unwrap().tensors().is_empty());
}

#[test]
fn duplicate_names() {
    let header = format!("{{{},{}}}", entry("x", "U8", "[1]", 0, 1), entry("x", "U8", "[1]", 1, 2));
    let err = open(safetensors_raw(&header, &[0, 0])).unwrap_err();
    assert!(matches!(&err, WeightsError::DuplicateTensor { name } if name == "x"), "{err}");
    assert_eq!(err.to_string(), "safetensors header: duplicate tensor `x`");
    // Duplicate metadata, duplicate field inside an entry.
    let err = open(safetensors_raw("{\"__metadata__\":{},\"__metadata__\":{}}", &[])).unwrap_err();
    assert!(matches!(err, WeightsError::SafetensorsHeader { .. }), "{err}");
    let err = open(safetensors_raw("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", &[])).unwrap_err();
    assert!(matches!(err, WeightsError::SafetensorsHeader { .. }), "{err}");
    let err = open(safetensors_raw("{\"__metadata__\":{\"a\":1}}", &[])).unwrap_err();
    assert!(matches!(err, WeightsError::SafetensorsHeader { .. }), "{err}");
    let header = "{\"x\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    let err = open(safetensors_raw(header, &[0])).unwrap_err();
    assert!(matches!(&err, WeightsError::InvalidEntry { name, .. } if name == "x"), "{err}");
}

#[test]
fn overlapping_offsets() {
    let header = format!("{{{},{}}}", entry("a", "U8", "[4]", 0, 4), entry("b", "U8", "[2]", 2, 4));
    let err = open(safetensors_raw(&header, &[0; 4])).unwrap_err();
    assert!(
        matches!(&err, WeightsError::OverlappingTensors { first, second } if first == "a" && second == "b"),
        "{err}"
    );
    // Two tensors on the same bytes.
    let header = format!("{{{},{}}}", entry("a", "U8", "[4]", 0, 4), entry("b", "I32", "[1]", 0, 4));
    assert!(matches!(open(safetensors_raw(&header, &[0; 4])).unwrap_err(), WeightsError::OverlappingTensors { .. }));
}

#[test]
fn gap_and_trailing_bytes() {
    let header = format!("{{{},{}}}", entry("a", "U8", "[2]", 0, 2), entry("b", "U8", "[2]", 4, 6));
    let err = open(safetensors_raw(&header, &[0; 6])).unwrap_err();
    assert!(matches!(&err, WeightsError::DataRegion { reason } if reason.contains("gap of 2 bytes")), "{err}");
    let header = format!("{{{}}}", entry("a", "U8", "[2]", 0, 2));
    let err = open(safetensors_raw(&header, &[0; 3])).unwrap_err();
    assert!(matches!(&err, WeightsError::DataRegion { reason } if reason.contains("trailing")), "{err}");
}

#[test]
fn shape_and_offset_errors_name_the_tensor() {
    let cases: Vec<(String, &str)> = vec![
        (entry("big", "F32", "[4294967296,4294967296,4294967296]", 0, 4), "overflows"),
        (entry("neg", "F32", "[-1]", 0, 4), "non-negative"),
        (entry("float", "F32", "[1.5]", 0, 4), "non-negative"),
        (entry("str", "F32", "\"1\"", 0, 4), "shape"),
        (entry("mismatch", "F32", "[2]", 0, 4), "do not hold 8 bytes"),
        (entry("reversed", "U8", "[0]", 4, 0), "do not hold"),
        (entry("past", "U8", "[8]", 0, 8), "past the data region"),
        ("\"three\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,4]}".into(), "data_offsets"),
        ("\"missing\":{\"dtype\":\"U8\",\"shape\":[4]}".into(), "missing `data_offsets`"),
        ("\"notobj\":[1,2]".into(), "not a valid entry"),
        (entry("dims", "U8", &format!("{:?}", vec![1; 65]), 0, 1), "more than 64"),
        (entry("huge", "U8", "[1e30]", 0, 4), "non-negative"),
    ];
    for (e, needle) in cases {
        let name = e[1..e[1..].find('"').unwrap() + 1].to_string();
        let err = open(safetensors_raw(&format!("{{{e}}}"), &[0; 4])).unwrap_err();
        assert!(
            matches!(&err, WeightsError::InvalidEntry { name: n, reason } if *n == name && reason.contains(needle)),
            "{name}: {err}"
        );
    }
}

#[test]
fn unsupported_dtypes() {
    for dtype in ["F8_E4M3", "F8_E5M2", "U16", "C64", "whatever"] {
        let header = format!("{{{}}}", entry("q", dtype, "[4]", 0, 4));
        let err = open(safetensors_raw(&header, &[0; 4])).unwrap_err();
        assert!(
            matches!(&err, WeightsError::UnsupportedDtype { name, dtype: d } if name == "q" && d == dtype),
            "{err}"
        );
    }
}

#[test]
fn truncated_data() {
    let bytes = valid_safetensors();
    for cut in 0..bytes.len() {
        assert!(open(bytes[..cut].to_vec()).is_err(), "cut at {cut} opened");
    }
    let err = open(bytes[..bytes.len() - 1].to_vec()).unwrap_err();
    assert!(
        matches!(&err, WeightsError::InvalidEntry { name, reason } if name == "h" && reason.contains("truncated")),
        "{err}"
    );
}

#[test]
fn invalid_bool_is_rejected_on_read() {
    let bytes = safetensors(&[("m", "BOOL", &[2], vec![0, 7])]);
    let file = open(bytes).unwrap();
    assert!(matches!(file.read("m"), Err(WeightsError::InvalidBool { index: 1, .. })));
}

#[test]
fn limits() {
    let limits = Limits { max_tensor_bytes: 15, ..Limits::default() };
    let err = SafetensorsFile::from_bytes(valid_safetensors(), &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_tensor_bytes", .. }), "{err}");
    let limits = Limits { max_total_bytes: 20, ..Limits::default() };
    let err = SafetensorsFile::from_bytes(valid_safetensors(), &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_total_bytes", .. }), "{err}");
    let limits = Limits { max_tensors: 2, ..Limits::default() };
    let err = SafetensorsFile::from_bytes(valid_safetensors(), &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_tensors", .. }), "{err}");
    let limits = Limits { max_header_bytes: 16, ..Limits::default() };
    let err = SafetensorsFile::from_bytes(valid_safetensors(), &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_header_bytes", .. }), "{err}");
    // JSON nested 100 000 deep inside an ignored field: no stack overflow (serde_json skips it iteratively or
    // stops at its recursion limit; either outcome is fine).
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let header = format!("{{\"x\":{{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],\"junk\":{deep}}}}}");
    let _ = open(safetensors_raw(&header, &[]));
}

#[test]
fn sparse_tail_is_rejected_without_reading_it() {
    // A valid header and data, then a 3 GiB hole. The spec requires the tensors to cover the data region
    // exactly, so this is an error, and it must be produced from the header alone.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("swm-weights-sparse-tail.safetensors");
    let bytes = valid_safetensors();
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(bytes.len() as u64 + (3 << 30)).unwrap();
    drop(file);
    let start = Instant::now();
    let err = SafetensorsFile::open(&path, &Limits::default()).unwrap_err();
    let elapsed = start.elapsed();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(&err, WeightsError::DataRegion { reason } if reason.contains("trailing")), "{err}");
    // Reading 3 GiB of zeros would take far longer than this.
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");

    // The same file without the tail opens from disk and reads.
    std::fs::write(&path, &bytes).unwrap();
    let file = SafetensorsFile::open(&path, &Limits::default()).unwrap();
    assert_eq!(file.read_all().unwrap().len(), 5);
    std::fs::remove_file(&path).unwrap();
}
