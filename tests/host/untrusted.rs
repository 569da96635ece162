//! Issue 10's findings at the level of swm (the reader's own attacks are in `weights/tests/`): each test builds the
//! malformed input and checks the typed error that names it, or that nothing was damaged.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use swm::artifact::{self, Artifact, ArtifactError, Checkpoint};
use swm::checkpoint::{CheckpointError, LoadOptions, StateDict, WeightsError};
use swm::tools::demo;

use super::{demo_state, tiny_config_text, with_tensor};

/// A LeWM checkpoint directory (tiny config + the demo weights as safetensors) under `root/name`.
fn checkpoint_dir(root: &Path, name: &str, state: &StateDict) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), tiny_config_text()).unwrap();
    state.save_safetensors(dir.join("model.safetensors")).unwrap();
    dir
}

/// The SHA-free fingerprint of every file in `dir`: names, sizes and contents.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// Finding 5: `convert CKPT --out CKPT` (or a symlink to it) is refused and leaves every input byte as it was.
#[test]
fn convert_never_writes_over_its_input() {
    let root = tempfile::tempdir().unwrap();
    let dir = checkpoint_dir(root.path(), "ckpt", &demo_state());
    let before = snapshot(&dir);
    let ckpt = Checkpoint::open(&dir).unwrap();
    let err = artifact::convert(&ckpt, &LoadOptions::default(), &dir, None).unwrap_err();
    assert!(err.to_string().contains("refusing to write over the input"), "{err}");
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let err = artifact::convert(&ckpt, &LoadOptions::default(), &link, None).unwrap_err();
    assert!(err.to_string().contains("refusing to write over the input"), "{err}");
    // An output directory whose config.json is a symlink to the input's is refused too.
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(dir.join("config.json"), out.join("config.json")).unwrap();
    let err = artifact::convert(&ckpt, &LoadOptions::default(), &out, None).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    assert_eq!(snapshot(&dir), before, "the checkpoint was modified");
}

/// Finding 10 (permissions) and atomic writes: every artifact file is 0644 whatever the umask, and no temporary
/// file is left behind.
#[test]
fn converted_artifact_files_are_0644_and_complete() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = checkpoint_dir(root.path(), "ckpt", &demo_state());
    let out = root.path().join("artifact");
    artifact::convert(&Checkpoint::open(&dir).unwrap(), &LoadOptions::default(), &out, None).unwrap();
    let names: Vec<String> = snapshot(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["config.json", "model.safetensors", "preprocess.json", "schema.json"]);
    for name in names {
        let mode = std::fs::metadata(out.join(&name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{name} has mode {mode:o}");
    }
    // config.json is copied byte for byte.
    assert_eq!(std::fs::read(out.join("config.json")).unwrap(), tiny_config_text().into_bytes());
}

/// Finding 9: a negative BatchNorm running variance is refused, naming the key and the element.
#[test]
fn negative_batchnorm_variance_is_refused() {
    let table = demo::config().parameter_table().unwrap();
    let key = table.iter().find(|p| p.name.ends_with("running_var")).map(|p| p.name.clone());
    let Some(key) = key else {
        panic!("the demo config has no BatchNorm layer; pick a config with one for this test");
    };
    let state = demo_state();
    let n = state.get(&key).unwrap().elem_count();
    let mut values = vec![1.0f32; n];
    values[n - 1] = -0.5;
    let bad = with_tensor(&state, &key, Tensor::from_vec(values, n, &Device::Cpu).unwrap());
    match bad.validate(&table) {
        Err(CheckpointError::NegativeVariance { key: k, index, .. }) => assert_eq!((k, index), (key, n - 1)),
        other => panic!("expected NegativeVariance, got {other:?}"),
    }
}

/// Finding 9: F8 weights are refused (only F16, BF16, F32, F64 are documented).
#[test]
fn f8_safetensors_weights_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("model.safetensors");
    let header = br#"{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0x38, 0x40]);
    std::fs::write(&path, bytes).unwrap();
    let err = StateDict::load(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, CheckpointError::Weights { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("F8_E4M3") && text.contains('w'), "{text}");
}

/// Finding 8: an integer tensor where weights are expected is a dtype error naming the key and the dtype, found
/// in the table before any data is read (it used to be dropped and then reported as missing).
#[test]
fn integer_weights_are_named_not_reported_missing() {
    let root = tempfile::tempdir().unwrap();
    let state = demo_state();
    let key = "encoder.embeddings.cls_token";
    let dims = state.get(key).unwrap().dims().to_vec();
    let ints = Tensor::zeros(dims, candle_core::DType::I64, &Device::Cpu).unwrap();
    let dir = checkpoint_dir(root.path(), "ckpt", &with_tensor(&state, key, ints));
    let ckpt = Checkpoint::open(&dir).unwrap();
    let file = ckpt.weights_file(&LoadOptions::default()).unwrap();
    match file.check(&ckpt.parameter_table().unwrap()) {
        Err(CheckpointError::WrongDtype { key: k, found, .. }) => {
            assert_eq!((k.as_str(), found.as_str()), (key, "I64"))
        }
        other => panic!("expected WrongDtype, got {other:?}"),
    }
}

/// Two tensors that map to one key after prefix stripping are an error, not a silent overwrite.
#[test]
fn key_collisions_after_prefix_stripping_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let t = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    let state = StateDict::from_tensors([("model.w".to_string(), t.clone()), ("w".to_string(), t)], "x");
    let path = root.path().join("model.safetensors");
    state.save_safetensors(&path).unwrap();
    let options = LoadOptions { strip_prefix: Some("model.".into()), ..LoadOptions::default() };
    let err = StateDict::load(&path, &options).unwrap_err();
    assert!(matches!(err, CheckpointError::KeyCollision { ref key, .. } if key == "w"), "{err}");
}

/// An artifact with one file replaced by `edit` applied to its JSON.
fn artifact_with(root: &Path, file: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let dir = root.join("artifact");
    demo::write_artifact(&dir).unwrap();
    let path = dir.join(file);
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    dir
}

/// `Artifact::open` of `dir` fails with an `Invalid` error on `field`.
fn assert_invalid(dir: &Path, file: &str, field: &str) {
    match Artifact::open(dir) {
        Err(ArtifactError::Invalid { path, field: f, reason }) => {
            assert!(path.ends_with(file) && f == field, "{}: `{f}`: {reason}", path.display())
        }
        other => panic!("expected Invalid {file} `{field}`, got {other:?}"),
    }
}

/// Finding 9: out-of-range preprocessing statistics and sizes are refused with the field named.
#[test]
fn preprocess_numbers_are_bounded() {
    let cases: [(&str, serde_json::Value, &str, &str); 6] = [
        ("mean", serde_json::json!([1e300, 0.4, 0.4]), "preprocess.json", "mean[0]"),
        ("std", serde_json::json!([0.2, 1e-45, 0.2]), "preprocess.json", "std[1]"),
        ("std", serde_json::json!([0.2, 0.2, 1e30]), "preprocess.json", "std[2]"),
        ("image_size", serde_json::json!([1_000_000_000u64, 32]), "preprocess.json", "image_size"),
        // A size the schema's frames do not have.
        ("image_size", serde_json::json!([16, 16]), "schema.json", "observations[0].shape"),
        ("mean", serde_json::json!([0.4, -1e7, 0.4]), "preprocess.json", "mean[1]"),
    ];
    for (key, value, file, field) in cases {
        let root = tempfile::tempdir().unwrap();
        let dir = artifact_with(root.path(), "preprocess.json", |v| v[key] = value);
        assert_invalid(&dir, file, field);
    }
    let root = tempfile::tempdir().unwrap();
    let dir = artifact_with(root.path(), "preprocess.json", |v| {
        // The demo plans 4 model action dims; one env action per block of `block`.
        let env = 4 / v["action"]["block"].as_u64().unwrap_or(1) as usize;
        v["action"]["mean"] = serde_json::json!(vec![0.0; env]);
        let mut std = vec![1.0; env];
        std[env - 1] = 1e-45;
        v["action"]["std"] = serde_json::json!(std);
    });
    let env = {
        let p: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("preprocess.json")).unwrap()).unwrap();
        p["action"]["std"].as_array().unwrap().len()
    };
    assert_invalid(&dir, "preprocess.json", &format!("action.std[{}]", env - 1));
}

/// Finding 9: a LeWM schema without a pixel observation, or with a state stream, is refused.
#[test]
fn lewm_schema_needs_pixels() {
    let root = tempfile::tempdir().unwrap();
    let dir = artifact_with(root.path(), "schema.json", |v| v["observations"][0]["name"] = "camera".into());
    assert_invalid(&dir, "schema.json", "observations");
    let root = tempfile::tempdir().unwrap();
    let dir = artifact_with(root.path(), "schema.json", |v| {
        v["observations"] = serde_json::json!([{"name": "pixels", "kind": "state", "shape": [4]}]);
    });
    assert_invalid(&dir, "schema.json", "observations[0].kind");
    let root = tempfile::tempdir().unwrap();
    let dir = artifact_with(root.path(), "schema.json", |v| v["observations"] = serde_json::json!([]));
    assert_invalid(&dir, "schema.json", "observations");
}

/// `schema.json`'s optional `matmul`: absent is f32 (and is not written for f32), "tf32" selects the fastest mode,
/// anything else is refused naming the file.
#[test]
fn the_schema_s_matmul_precision_is_f32_or_tf32() {
    use swm::artifact::MatmulPrecision;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("artifact");
    demo::write_artifact(&dir).unwrap();
    let plain = Artifact::open(&dir).unwrap();
    assert_eq!(plain.schema.matmul, MatmulPrecision::F32);
    assert!(!serde_json::to_string(&plain.schema).unwrap().contains("matmul"), "f32 is left out of the file");
    let root = tempfile::tempdir().unwrap();
    let dir = artifact_with(root.path(), "schema.json", |v| v["matmul"] = "tf32".into());
    let fast = Artifact::open(&dir).unwrap();
    assert_eq!(fast.schema.matmul, MatmulPrecision::Tf32);
    assert!(serde_json::to_string(&fast.schema).unwrap().contains("\"matmul\":\"tf32\""));
    let root = tempfile::tempdir().unwrap();
    let dir = artifact_with(root.path(), "schema.json", |v| v["matmul"] = "bf16".into());
    let err = Artifact::open(&dir).unwrap_err();
    assert!(err.to_string().contains("schema.json"), "{err}");
}

/// Finding 9/10: a `schema.json` or `config.json` that is a directory is named as such, not as missing; a
/// symlink loop is reported as the loop.
#[test]
fn directories_and_loops_are_named() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("artifact");
    demo::write_artifact(&dir).unwrap();
    std::fs::remove_file(dir.join("schema.json")).unwrap();
    std::fs::create_dir(dir.join("schema.json")).unwrap();
    let err = Artifact::open(&dir).unwrap_err();
    assert!(matches!(err, ArtifactError::NotAFile { .. }), "{err}");
    assert!(err.to_string().contains("schema.json: is a directory"), "{err}");

    let ckpt = checkpoint_dir(root.path(), "ckpt", &demo_state());
    std::fs::remove_file(ckpt.join("config.json")).unwrap();
    std::fs::create_dir(ckpt.join("config.json")).unwrap();
    let err = Checkpoint::open(&ckpt).unwrap_err();
    assert!(err.to_string().contains("config.json: is a directory"), "{err}");

    std::fs::remove_dir(ckpt.join("config.json")).unwrap();
    std::os::unix::fs::symlink(ckpt.join("loop-b"), ckpt.join("config.json")).unwrap();
    std::os::unix::fs::symlink(ckpt.join("config.json"), ckpt.join("loop-b")).unwrap();
    let err = Checkpoint::open(&ckpt).unwrap_err();
    assert!(err.to_string().contains("symbolic links"), "{err}");
}

/// Finding 10: a file that is not a weights file is named as such (not "missing config.json").
#[test]
fn a_photo_is_not_a_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let photo = root.path().join("photo.jpg");
    std::fs::write(&photo, [0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F']).unwrap();
    let err = Checkpoint::open(&photo).unwrap_err();
    assert!(err.to_string().contains("photo.jpg: not a weights file"), "{err}");
    // A JPEG renamed to .pt is caught by the reader, before any config is consulted for data.
    let pt = root.path().join("weights.pt");
    std::fs::rename(&photo, &pt).unwrap();
    let err = StateDict::load(&pt, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, CheckpointError::Weights { source: WeightsError::NotZip { .. }, .. }), "{err}");
}
