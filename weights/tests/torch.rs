//! PyTorch zip reader: valid files and attacks. Every attack asserts the error variant, so a broken
//! protection fails the test.

mod common;

use std::time::{Duration, Instant};

use common::*;
use swm_weights::{Dtype, Limits, TorchFile, WeightsError};

fn open(bytes: Vec<u8>) -> Result<TorchFile, WeightsError> {
    TorchFile::from_bytes(bytes, None, &Limits::default())
}

fn torch_zip(pickle: Vec<u8>, storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    zip(&torch_members("archive/", pickle, storages), TORCH_STYLE)
}

fn single(t: T, storage: Vec<u8>) -> Vec<u8> {
    torch_zip(state_dict_pickle(std::slice::from_ref(&t)), &[(t.storage, storage)])
}

#[test]
fn valid_state_dict_table_and_data() {
    let file = open(valid_torch_file()).unwrap();
    assert_eq!(file.prefix(), "archive/");
    let table: Vec<(&str, Dtype, Vec<usize>)> =
        file.tensors().iter().map(|t| (t.name.as_str(), t.dtype, t.shape.clone())).collect();
    assert_eq!(
        table,
        vec![
            ("w", Dtype::F32, vec![2, 3]),
            ("wt", Dtype::F32, vec![3, 2]),
            ("h", Dtype::F16, vec![4]),
            ("b", Dtype::BF16, vec![3]),
            ("bn.num_batches_tracked", Dtype::I64, vec![]),
            ("off", Dtype::F32, vec![2, 2]),
            ("mask", Dtype::Bool, vec![3]),
        ]
    );
    let all = file.read_all().unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(f32_values(&all[0].data), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // Transposed view of the shared storage, copied into row-major order.
    assert_eq!(f32_values(&all[1].data), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(all[2].data, vec![0x00, 0x3c, 0x00, 0x40, 0x00, 0xc0, 0x00, 0x00]);
    assert_eq!(all[3].data, vec![0x80, 0x3f, 0x40, 0x40, 0x80, 0xbf]);
    assert_eq!(all[4].data, 7i64.to_le_bytes().to_vec());
    // Storage offset 4.
    assert_eq!(f32_values(&all[5].data), vec![4.0, 5.0, 6.0, 7.0]);
    assert_eq!(all[6].data, vec![1, 0, 1]);
    // Single reads agree with read_all.
    for t in &all {
        assert_eq!(&file.read(&t.info.name).unwrap(), t);
    }
    assert!(matches!(file.read("nope"), Err(WeightsError::TensorNotFound { .. })));
}

#[test]
fn plain_zip_layout_and_plain_dict() {
    // No data descriptors, no ZIP64 records, no alignment; top-level plain dict built with SETITEM.
    let mut p = Pickle::new();
    p.empty_dict();
    p.put();
    p.str("x").tensor(&T::contiguous("x", "DoubleStorage", "k", &[2])).setitem();
    let bytes = zip(&torch_members("weights/", p.finish(), &[("k", vec![0u8; 16])]), PLAIN_STYLE);
    let file = open(bytes).unwrap();
    assert_eq!(file.tensors()[0].dtype, Dtype::F64);
    assert_eq!(file.read("x").unwrap().data, vec![0u8; 16]);
}

#[test]
fn protocol4_forms_and_parameters() {
    // FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL, EMPTY_DICT + DICT-free SETITEMS, _rebuild_parameter.
    let mut p = Pickle::with_protocol(4);
    p.op(0x95).raw(&0u64.to_le_bytes());
    p.empty_dict().op(0x94).mark();
    p.raw(&[0x8c, 1, b'p']).op(0x94);
    p.raw(&[0x8c, 12]).raw(b"torch._utils").raw(&[0x8c, 18]).raw(b"_rebuild_parameter").op(0x93);
    p.tensor(&T::contiguous("p", "FloatStorage", "0", &[2]));
    p.bool(true).global("collections", "OrderedDict").empty_tuple().reduce().op(0x87).reduce();
    p.setitems();
    let bytes = torch_zip(p.finish(), &[("0", f32_bytes(&[1.5, -2.0]))]);
    let file = open(bytes).unwrap();
    assert_eq!(f32_values(&file.read("p").unwrap().data), vec![1.5, -2.0]);
}

#[test]
fn integer_storages_keep_their_dtype() {
    // An int / bool storage where a model would expect floats: read with its real dtype, never skipped.
    let tensors =
        vec![T::contiguous("weight", "IntStorage", "0", &[2]), T::contiguous("bias", "BoolStorage", "1", &[1])];
    let bytes = torch_zip(state_dict_pickle(&tensors), &[("0", vec![1, 0, 0, 0, 2, 0, 0, 0]), ("1", vec![1])]);
    let file = open(bytes).unwrap();
    assert_eq!(file.tensors().len(), 2);
    assert_eq!(file.tensors()[0].dtype, Dtype::I32);
    assert_eq!(file.tensors()[1].dtype, Dtype::Bool);
    assert_eq!(file.read("weight").unwrap().data, vec![1, 0, 0, 0, 2, 0, 0, 0]);
}

#[test]
fn invalid_bool_bytes_are_rejected_on_read() {
    let bytes = single(T::contiguous("m", "BoolStorage", "0", &[2]), vec![1, 2]);
    let file = open(bytes).unwrap();
    assert!(matches!(file.read("m"), Err(WeightsError::InvalidBool { ref name, index: 1 }) if name == "m"));
}

#[test]
fn unsupported_storage_names_the_key() {
    let bytes = single(T::contiguous("c", "ComplexFloatStorage", "0", &[1]), vec![0; 8]);
    let err = open(bytes).unwrap_err();
    assert!(
        matches!(&err, WeightsError::UnsupportedStorage { key, class } if key == "c" && class == "ComplexFloatStorage")
    );
}

#[test]
fn nested_state_dict() {
    let t = T::contiguous("layer.weight", "FloatStorage", "0", &[2]);
    let mut p = Pickle::new();
    p.empty_dict().mark();
    p.str("epoch").int(3);
    p.str("state_dict").global("collections", "OrderedDict").empty_tuple().reduce();
    p.mark().str(t.key).tensor(&t).setitems();
    p.setitems();
    let bytes = torch_zip(p.finish(), &[("0", f32_bytes(&[1.0, 2.0]))]);
    let file = TorchFile::from_bytes(bytes.clone(), Some("state_dict"), &Limits::default()).unwrap();
    assert_eq!(file.tensors().len(), 1);
    assert_eq!(f32_values(&file.read("layer.weight").unwrap().data), vec![1.0, 2.0]);
    // Without the key, the top level has no tensors (epoch is an int, state_dict a dict: both ignored).
    assert!(open(bytes.clone()).unwrap().tensors().is_empty());
    let err = TorchFile::from_bytes(bytes, Some("model"), &Limits::default()).unwrap_err();
    assert!(matches!(err, WeightsError::NotAStateDict { .. }), "{err}");
}

#[test]
fn huge_declared_shape_fails_fast() {
    // [2^20, 2^20, 2^20] with zero strides fits a 1-element storage but would be 2^62 bytes materialised.
    let t = T {
        key: "huge",
        class: "FloatStorage",
        storage: "0",
        numel: 1,
        offset: 0,
        size: vec![1 << 20, 1 << 20, 1 << 20],
        stride: vec![0, 0, 0],
    };
    let start = Instant::now();
    let err = open(single(t.clone(), vec![0; 4])).unwrap_err();
    assert!(
        matches!(&err, WeightsError::LimitExceeded { limit: "max_tensor_bytes", what, .. } if what.contains("huge")),
        "{err}"
    );
    // Same with contiguous strides and an i64-overflowing shape.
    let t2 = T { size: vec![1 << 40, 1 << 40], stride: vec![1 << 40, 1], ..t };
    let err = open(single(t2, vec![0; 4])).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_tensor_bytes", .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn total_bytes_cap() {
    let limits = Limits { max_total_bytes: 40, ..Limits::default() };
    let err = TorchFile::from_bytes(valid_torch_file(), None, &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_total_bytes", .. }), "{err}");
}

#[test]
fn storage_size_must_match_member() {
    let t = T { numel: 10, ..T::contiguous("w", "FloatStorage", "0", &[2]) };
    let err = open(single(t, vec![0; 36])).unwrap_err();
    assert!(
        matches!(&err, WeightsError::StorageSizeMismatch { key, member, declared: 40, actual: 36 }
            if key == "w" && member == "archive/data/0"),
        "{err}"
    );
    // numel × size overflowing u64.
    let t = T { numel: i64::MAX, ..T::contiguous("w", "DoubleStorage", "0", &[1]) };
    let err = open(single(t, vec![0; 8])).unwrap_err();
    assert!(matches!(err, WeightsError::StorageSizeMismatch { declared: u64::MAX, .. }), "{err}");
}

#[test]
fn missing_storage_member() {
    let t = T::contiguous("w", "FloatStorage", "7", &[1]);
    let bytes = torch_zip(state_dict_pickle(&[t]), &[("0", vec![0; 4])]);
    let err = open(bytes).unwrap_err();
    assert!(matches!(&err, WeightsError::MissingMember { key, member } if key == "w" && member == "archive/data/7"));
}

#[test]
fn conflicting_storage_declarations() {
    let a = T::contiguous("a", "FloatStorage", "0", &[2]);
    let b = T { key: "b", class: "IntStorage", ..a.clone() };
    let bytes = torch_zip(state_dict_pickle(&[a, b]), &[("0", vec![0; 8])]);
    assert!(matches!(open(bytes).unwrap_err(), WeightsError::StorageConflict { ref key, .. } if key == "b"));
}

#[test]
fn view_outside_storage() {
    let cases = [
        T { offset: 1, ..T::contiguous("v", "FloatStorage", "0", &[2, 3]) },
        T { size: vec![3, 2], stride: vec![2, 3], ..T::contiguous("v", "FloatStorage", "0", &[2, 3]) },
        T { offset: 0, size: vec![2], stride: vec![i64::MAX], ..T::contiguous("v", "FloatStorage", "0", &[6]) },
    ];
    for t in cases {
        let err = open(single(t.clone(), vec![0; 24])).unwrap_err();
        assert!(matches!(&err, WeightsError::ViewOutOfBounds { key, numel: 6, .. } if key == "v"), "{t:?}: {err}");
    }
    // An empty view needs no storage.
    let t = T { size: vec![0, 3], ..T::contiguous("v", "FloatStorage", "0", &[2, 3]) };
    assert_eq!(open(single(t, vec![0; 24])).unwrap().read("v").unwrap().data, Vec::<u8>::new());
}

#[test]
fn negative_or_non_integer_dims() {
    let t = T { size: vec![-1, 3], ..T::contiguous("neg", "FloatStorage", "0", &[2, 3]) };
    let err = open(single(t, vec![0; 24])).unwrap_err();
    assert!(
        matches!(&err, WeightsError::InvalidTensor { key, reason } if key == "neg" && reason.contains("negative")),
        "{err}"
    );
    let t = T { stride: vec![3, -1], ..T::contiguous("negs", "FloatStorage", "0", &[2, 3]) };
    assert!(
        matches!(open(single(t, vec![0; 24])).unwrap_err(), WeightsError::InvalidTensor { ref key, .. } if key == "negs")
    );
    let t = T { offset: -2, ..T::contiguous("nego", "FloatStorage", "0", &[2, 3]) };
    assert!(
        matches!(open(single(t, vec![0; 24])).unwrap_err(), WeightsError::InvalidTensor { ref key, .. } if key == "nego")
    );
    // A float in the size tuple: hand-written pickle.
    let mut p = Pickle::new();
    p.empty_dict().str("f").global("torch._utils", "_rebuild_tensor_v2").mark();
    p.mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(1).tuple().persid();
    p.int(0).op(b'G').raw(&1.0f64.to_be_bytes()).op(0x85).int(1).op(0x85).bool(false).none().tuple().reduce();
    p.setitem();
    let err = open(torch_zip(p.finish(), &[("0", vec![0; 4])])).unwrap_err();
    assert!(
        matches!(&err, WeightsError::InvalidTensor { key, reason } if key == "f" && reason.contains("not an integer")),
        "{err}"
    );
}

#[test]
fn too_many_dims() {
    let size = vec![1i64; 65];
    let t = T { key: "d", class: "FloatStorage", storage: "0", numel: 1, offset: 0, size: size.clone(), stride: size };
    let err = open(single(t, vec![0; 4])).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_ndim", .. }), "{err}");
}

fn with_timeout_and_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    // A 256 KiB stack: any recursion over the input's depth would overflow it.
    let start = Instant::now();
    let r = std::thread::Builder::new().stack_size(256 << 10).spawn(f).unwrap().join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    r
}

#[test]
fn memo_bomb_is_cheap() {
    // ~300 bytes: each step makes a tuple of two references to the previous one. Deep-copied this would
    // be 2^43 leaves; with shared references it is 43 small tuples.
    let mut p = Pickle::new();
    p.empty_dict().str("bomb").empty_list_put().op(b'0');
    for _ in 0..43 {
        p.get(0).get(0).op(0x86).raw(&[b'q', 0]).op(b'0');
    }
    p.get(0).setitem();
    let bytes = p.finish();
    assert!(bytes.len() < 400);
    let file = with_timeout_and_small_stack(move || open(torch_zip(bytes, &[])).map(|f| f.tensors().len()));
    // The bomb is a non-tensor value: ignored.
    assert_eq!(file.unwrap(), 0);

    // Deeper than max_depth: rejected by the budget.
    let mut p = Pickle::new();
    p.empty_list_put().op(b'0');
    for _ in 0..200 {
        p.get(0).get(0).op(0x86).raw(&[b'q', 0]).op(b'0');
    }
    p.get(0);
    let bytes = p.finish();
    let err = with_timeout_and_small_stack(move || open(torch_zip(bytes, &[])).unwrap_err());
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_depth", .. }), "{err}");
}

trait EmptyListPut {
    fn empty_list_put(&mut self) -> &mut Self;
}
impl EmptyListPut for Pickle {
    fn empty_list_put(&mut self) -> &mut Self {
        self.op(b']');
        self.put();
        self
    }
}

#[test]
fn deep_nesting_is_rejected_without_recursion() {
    // 10^6 nested tuples: EMPTY_TUPLE then TUPLE1 × 10^6.
    let mut p = Pickle::new();
    p.empty_tuple();
    p.raw(&vec![0x85; 1_000_000]);
    let bytes = p.finish();
    let err = with_timeout_and_small_stack(move || open(torch_zip(bytes, &[])).unwrap_err());
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_depth", .. }), "{err}");

    // 10^6 MARKs.
    let mut p = Pickle::new();
    p.raw(&vec![b'('; 1_000_000]);
    let bytes = p.finish();
    let err = with_timeout_and_small_stack(move || open(torch_zip(bytes, &[])).unwrap_err());
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_depth", .. }), "{err}");

    // A chain of lists built by appending after the fact: the later append into a stored list is refused.
    let mut p = Pickle::new();
    p.op(b']').put();
    p.op(b']').put();
    p.get(0).get(1).op(b'a').get(1).get(0).op(b'a');
    let err = open(torch_zip(p.finish(), &[])).unwrap_err();
    assert!(matches!(err, WeightsError::Pickle { .. }), "{err}");

    // Self-reference.
    let mut p = Pickle::new();
    p.op(b']').put();
    p.get(0).op(b'a');
    let err = open(torch_zip(p.finish(), &[])).unwrap_err();
    assert!(matches!(&err, WeightsError::Pickle { reason, .. } if reason.contains("self-referential")), "{err}");
}

#[test]
fn pickle_budgets() {
    let limits = Limits { max_pickle_values: 50, ..Limits::default() };
    let err = TorchFile::from_bytes(valid_torch_file(), None, &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_pickle_values", .. }), "{err}");
    let limits = Limits { max_memo_entries: 0, ..Limits::default() };
    let err = TorchFile::from_bytes(valid_torch_file(), None, &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_memo_entries", .. }), "{err}");
    let limits = Limits { max_pickle_bytes: 100, ..Limits::default() };
    let err = TorchFile::from_bytes(valid_torch_file(), None, &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_pickle_bytes", .. }), "{err}");
    // A string longer than the limit.
    let mut p = Pickle::new();
    p.str(&"x".repeat(100));
    let limits = Limits { max_string_bytes: 99, ..Limits::default() };
    let err = TorchFile::from_bytes(torch_zip(p.finish(), &[]), None, &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_string_bytes", .. }), "{err}");
    // A string length past the end of the pickle.
    let mut p = Pickle::new();
    p.op(b'X').raw(&u32::MAX.to_le_bytes());
    let err = open(torch_zip(p.finish(), &[])).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { .. } | WeightsError::Pickle { .. }), "{err}");
}

#[test]
fn disallowed_globals() {
    let mut p = Pickle::new();
    p.global("os", "system").str("echo pwned").op(0x85).reduce();
    let err = open(torch_zip(p.finish(), &[])).unwrap_err();
    assert!(
        matches!(&err, WeightsError::DisallowedGlobal { module, name, offset: 2, key: None } if module == "os" && name == "system"),
        "{err}"
    );
    // Inside a state dict: the key being built is named.
    let mut p = Pickle::new();
    p.global("collections", "OrderedDict").empty_tuple().reduce().mark();
    p.str("ok").tensor(&T::contiguous("ok", "FloatStorage", "0", &[1]));
    p.str("evil").global("builtins", "eval");
    let err = open(torch_zip(p.finish(), &[("0", vec![0; 4])])).unwrap_err();
    assert!(matches!(&err, WeightsError::DisallowedGlobal { key: Some(k), .. } if k == "evil"), "{err}");
    assert!(err.to_string().contains("builtins.eval") && err.to_string().contains("evil"), "{err}");
    // STACK_GLOBAL goes through the same whitelist.
    let mut p = Pickle::new();
    p.str("subprocess").str("Popen").op(0x93);
    let err = open(torch_zip(p.finish(), &[])).unwrap_err();
    assert!(matches!(&err, WeightsError::DisallowedGlobal { module, .. } if module == "subprocess"), "{err}");
    // Whitelisted module, other name.
    let mut p = Pickle::new();
    p.global("torch._utils", "_rebuild_device_tensor_from_numpy");
    assert!(matches!(open(torch_zip(p.finish(), &[])).unwrap_err(), WeightsError::DisallowedGlobal { .. }));
    let mut p = Pickle::new();
    p.global("torch", "load");
    assert!(matches!(open(torch_zip(p.finish(), &[])).unwrap_err(), WeightsError::DisallowedGlobal { .. }));
}

#[test]
fn unknown_opcodes() {
    for (op, offset) in [(b'i', 3u64), (b'o', 3), (0xff, 3), (b'I', 3), (b'T', 3)] {
        let mut p = Pickle::new();
        p.empty_dict().op(op).raw(b"abc\n");
        let err = open(torch_zip(p.finish(), &[])).unwrap_err();
        assert!(
            matches!(err, WeightsError::UnknownOpcode { opcode, offset: o } if opcode == op && o == offset),
            "{err}"
        );
    }
}

#[test]
fn second_data_pkl_and_members_outside_prefix() {
    let mut members = torch_members("archive/", state_dict_pickle(&valid_tensors()), &valid_storages());
    members.push(("other/data.pkl".into(), Pickle::new().empty_dict().finish()));
    let err = open(zip(&members, TORCH_STYLE)).unwrap_err();
    assert!(matches!(&err, WeightsError::BadDataPkl { member, .. } if member == "other/data.pkl"), "{err}");

    let mut members = torch_members("archive/", state_dict_pickle(&valid_tensors()), &valid_storages());
    members.push(("extra.bin".into(), vec![1, 2, 3]));
    let err = open(zip(&members, TORCH_STYLE)).unwrap_err();
    assert!(
        matches!(&err, WeightsError::MemberOutsidePrefix { member, prefix } if member == "extra.bin" && prefix == "archive/")
    );

    let mut members = torch_members("archive/", state_dict_pickle(&valid_tensors()), &valid_storages());
    members.push(("archive2/data/0".into(), vec![0; 24]));
    assert!(matches!(open(zip(&members, TORCH_STYLE)).unwrap_err(), WeightsError::MemberOutsidePrefix { .. }));

    // data.pkl nested deeper than one directory, or at the root.
    for prefix in ["a/b/", ""] {
        let members = torch_members(prefix, state_dict_pickle(&[]), &[]);
        let err = open(zip(&members, TORCH_STYLE)).unwrap_err();
        assert!(matches!(err, WeightsError::BadDataPkl { .. }), "{prefix}: {err}");
    }
    // No data.pkl.
    let err = open(zip(&[("archive/version".into(), b"3".to_vec())], TORCH_STYLE)).unwrap_err();
    assert!(matches!(err, WeightsError::MissingDataPkl));
}

#[test]
fn crc_is_verified_for_every_member_read() {
    let members = torch_members("archive/", state_dict_pickle(&valid_tensors()), &valid_storages());
    // Flip a bit in tensor member `archive/data/4` after the CRC was computed.
    let mut bytes = zip(&members, TORCH_STYLE);
    let archive = swm_weights::zip::ZipArchive::from_bytes(bytes.clone(), &Limits::default()).unwrap();
    let at = archive.entry("archive/data/4").unwrap().data_offset as usize + 5;
    bytes[at] ^= 0x10;
    // The table pass reads no tensor data, so it succeeds; reading the tensor fails naming the member.
    let file = open(bytes).unwrap();
    file.read("w").unwrap();
    let err = file.read("off").unwrap_err();
    assert!(matches!(&err, WeightsError::CrcMismatch { member, .. } if member == "archive/data/4"), "{err}");
    assert!(matches!(file.read_all().unwrap_err(), WeightsError::CrcMismatch { .. }));

    // A flipped bit in data.pkl fails the open.
    let bytes = zip_with(&members, TORCH_STYLE, |out, _| out[70] ^= 1);
    let err = open(bytes).unwrap_err();
    assert!(matches!(&err, WeightsError::CrcMismatch { member, .. } if member == "archive/data.pkl"), "{err}");
}

#[test]
fn byteorder() {
    let mut members = torch_members("archive/", state_dict_pickle(&valid_tensors()), &valid_storages());
    members[1].1 = b"big".to_vec();
    let err = open(zip(&members, TORCH_STYLE)).unwrap_err();
    assert!(matches!(&err, WeightsError::BigEndian { member } if member == "archive/byteorder"), "{err}");
    members[1].1 = b"middle".to_vec();
    assert!(matches!(open(zip(&members, TORCH_STYLE)).unwrap_err(), WeightsError::BadByteorder { .. }));
    // Absent: little-endian (older archives).
    members.remove(1);
    open(zip(&members, TORCH_STYLE)).unwrap();
}

#[test]
fn not_a_zip() {
    let legacy = Pickle::new().str(&"x".repeat(100)).finish(); // a bare pickle, as torch < 1.6 wrote
    let err = open(legacy).unwrap_err();
    assert!(matches!(&err, WeightsError::NotZip { reason } if reason.contains("legacy")), "{err}");
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    jpeg.resize(1000, 0);
    let err = open(jpeg).unwrap_err();
    assert!(err.to_string().contains("not a PyTorch zip archive"), "{err}");
    assert!(matches!(open(vec![]).unwrap_err(), WeightsError::NotZip { .. }));
    // A zip header but no end record.
    let mut bytes = valid_torch_file();
    let n = bytes.len();
    bytes.truncate(n - 10);
    assert!(matches!(open(bytes).unwrap_err(), WeightsError::NotZip { .. }));
}

#[test]
fn truncated_files_never_open() {
    let bytes = valid_torch_file();
    let cuts: Vec<usize> = (0..bytes.len()).step_by(7).chain(bytes.len() - 64..bytes.len()).collect();
    for cut in cuts {
        assert!(open(bytes[..cut].to_vec()).is_err(), "cut at {cut} opened");
    }
    // Truncated pickles inside a well-formed zip.
    let pickle = state_dict_pickle(&valid_tensors());
    for cut in 0..pickle.len() {
        let bytes = torch_zip(pickle[..cut].to_vec(), &valid_storages());
        assert!(open(bytes).is_err(), "pickle cut at {cut} opened");
    }
}

#[test]
fn zip_structure_attacks() {
    let members = torch_members("archive/", state_dict_pickle(&valid_tensors()), &valid_storages());
    // Compressed member.
    let bytes = zip_with(&members, PLAIN_STYLE, |out, centrals| {
        let c = &mut centrals[2];
        c.method = 8;
        out[c.offset as usize + 8] = 8;
    });
    let err = open(bytes).unwrap_err();
    assert!(matches!(&err, WeightsError::UnsupportedCompression { member, method: 8 } if member == "archive/data/0"));

    // Duplicate names.
    let mut dup = members.clone();
    dup.push(("archive/data/0".into(), vec![0; 24]));
    let err = open(zip(&dup, TORCH_STYLE)).unwrap_err();
    assert!(matches!(&err, WeightsError::DuplicateMember { member } if member == "archive/data/0"));

    // A member hidden inside another's data (overlap).
    let mut inner = Vec::new();
    let hidden = b"archive/hidden";
    inner.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    inner.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    inner.extend_from_slice(&crc32fast::hash(b"").to_le_bytes());
    inner.extend_from_slice(&[0; 8]);
    inner.extend_from_slice(&(hidden.len() as u16).to_le_bytes());
    inner.extend_from_slice(&[0, 0]);
    inner.extend_from_slice(hidden);
    let mut host = members.clone();
    host.push(("archive/host".into(), inner));
    let bytes = zip_with(&host, PLAIN_STYLE, |_, centrals| {
        let h = centrals.last().unwrap().clone();
        centrals.push(Central {
            name: hidden.to_vec(),
            flags: 0,
            method: 0,
            crc: 0,
            size: 0,
            offset: h.offset + 30 + h.name.len() as u64,
        });
    });
    let err = open(bytes).unwrap_err();
    assert!(
        matches!(&err, WeightsError::OverlappingMembers { first, second } if first == "archive/host" && second == "archive/hidden"),
        "{err}"
    );

    // Central size that disagrees with the local header / data descriptor.
    let bytes = zip_with(&members, PLAIN_STYLE, |_, centrals| centrals[3].size += 4);
    assert!(matches!(open(bytes).unwrap_err(), WeightsError::Zip { .. }));
    let bytes = zip_with(&members, TORCH_STYLE, |_, centrals| centrals[3].crc ^= 1);
    assert!(matches!(open(bytes).unwrap_err(), WeightsError::Zip { .. }));
    // Offset past the central directory.
    let bytes = zip_with(&members, PLAIN_STYLE, |out, centrals| centrals[2].offset = out.len() as u64 + 100);
    assert!(matches!(open(bytes).unwrap_err(), WeightsError::Zip { .. }));
    // Name mismatch between local and central headers.
    let bytes = zip_with(&members, PLAIN_STYLE, |_, centrals| centrals[2].name = b"archive/vers1on".to_vec());
    assert!(matches!(open(bytes).unwrap_err(), WeightsError::Zip { .. }));
    // Entry count cap and name length cap.
    let limits = Limits { max_zip_entries: 3, ..Limits::default() };
    let err = TorchFile::from_bytes(valid_torch_file(), None, &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_zip_entries", .. }));
    let limits = Limits { max_name_bytes: 10, ..Limits::default() };
    let err = TorchFile::from_bytes(valid_torch_file(), None, &limits).unwrap_err();
    assert!(matches!(err, WeightsError::LimitExceeded { limit: "max_name_bytes", .. }));
}

#[test]
fn zip64_records_must_agree() {
    let mut bytes = valid_torch_file();
    // The 32-bit entry count in the end record (offset 10 within it) differs from the ZIP64 one.
    let eocd = bytes.len() - 22;
    bytes[eocd + 10] ^= 1;
    bytes[eocd + 8] ^= 1;
    let err = open(bytes).unwrap_err();
    assert!(matches!(&err, WeightsError::Zip { reason, .. } if reason.contains("ZIP64")), "{err}");
}

#[test]
fn reads_from_a_file_path() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("swm-weights-valid.pt");
    std::fs::write(&path, valid_torch_file()).unwrap();
    let file = TorchFile::open(&path, None, &Limits::default()).unwrap();
    assert_eq!(file.read_all().unwrap().len(), 7);
    let err = TorchFile::open(dir.join("does-not-exist.pt"), None, &Limits::default()).unwrap_err();
    assert!(matches!(err, WeightsError::Io { .. }));
}
