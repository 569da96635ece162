//! Host tests: loading, validation and typed errors. No GPU needed; every malformed input is built here.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use swm::artifact::{Artifact, ArtifactError, Checkpoint};
use swm::checkpoint::{CheckpointError, LoadOptions, StateDict, WeightsError};
use swm::config::{ConfigError, ModelConfig};
use swm::models::lewm::legacy_vit_key;
use swm::tools::demo;

/// The repository root, read at run time.
fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test)"))
}

/// `tools/configs/lewm-tiny.json`, the upstream-format config of the tiny model.
fn tiny_config_text() -> String {
    std::fs::read_to_string(repo_root().join("tools/configs/lewm-tiny.json")).expect("lewm-tiny.json")
}

fn tiny_config_json() -> serde_json::Value {
    serde_json::from_str(&tiny_config_text()).expect("lewm-tiny.json parses")
}

/// The named presets are the configs the Python tools use (`tools/configs/*.json`).
#[test]
fn presets_match_the_tools_configs() {
    use swm::models::{lewm, tdmpc2};
    for (file, preset) in [("lewm-tiny.json", lewm::Config::tiny()), ("lewm-pusht.json", lewm::Config::pusht())] {
        let path = repo_root().join("tools/configs").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: lewm::Config = serde_json::from_str(&text).unwrap();
        let (a, b) = (serde_json::to_value(&parsed).unwrap(), serde_json::to_value(&preset).unwrap());
        assert_eq!(a, b, "{file}");
        assert_eq!(parsed.parameter_table().unwrap(), preset.parameter_table().unwrap(), "{file}");
    }
    let path = repo_root().join("tools/configs/tdmpc2-bench.json");
    let parsed = tdmpc2::Config::from_json_str(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    let preset = tdmpc2::Config::bench();
    assert_eq!(parsed.parameter_table().unwrap(), preset.parameter_table().unwrap());
    assert_eq!(format!("{parsed:?}"), format!("{preset:?}"));
}

fn demo_state() -> StateDict {
    demo::state_dict(7).expect("demo weights")
}

fn table() -> Vec<swm::checkpoint::ParamSpec> {
    demo::config().parameter_table().expect("table")
}

/// Rebuilds `state` with `edit` applied to its (key, tensor) list.
fn edited(state: &StateDict, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> StateDict {
    let mut list: Vec<(String, Tensor)> = state.iter().map(|(k, t)| (k.to_string(), t.clone())).collect();
    edit(&mut list);
    StateDict::from_tensors(list, "edited.safetensors")
}

/// `state` with the tensor under `key` replaced by `tensor`.
fn with_tensor(state: &StateDict, key: &str, tensor: Tensor) -> StateDict {
    edited(state, |l| {
        let slot = l.iter_mut().find(|(k, _)| k == key).expect("key exists");
        slot.1 = tensor;
    })
}

#[test]
fn demo_weights_match_the_demo_parameter_table() {
    demo_state().validate(&table()).expect("demo weights are complete");
}

#[test]
fn missing_tensor_is_named() {
    let key = "predictor.transformer.layers.1.attn.to_qkv.weight";
    let state = edited(&demo_state(), |l| l.retain(|(k, _)| k != key));
    match state.validate(&table()) {
        Err(CheckpointError::MissingTensor { key: k, expected, .. }) => {
            assert_eq!(k, key);
            assert_eq!(expected, vec![3 * 32, 32]);
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let key = "encoder.embeddings.position_embeddings";
    let state = with_tensor(&demo_state(), key, Tensor::zeros((1, 5, 32), DType::F32, &Device::Cpu).unwrap());
    let err = state.validate(&table()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CheckpointError::ShapeMismatch { .. }), "{text}");
    assert!(text.contains(key) && text.contains("[1, 5, 32]") && text.contains("[1, 17, 32]"), "{text}");
}

#[test]
fn integer_weights_are_a_dtype_error() {
    let key = "action_encoder.embed.0.bias";
    let state = with_tensor(&demo_state(), key, Tensor::zeros(128, DType::I64, &Device::Cpu).unwrap());
    assert!(matches!(state.validate(&table()), Err(CheckpointError::WrongDtype { key: k, .. }) if k == key));
}

#[test]
fn nan_weights_are_refused_by_name() {
    let key = "pred_proj.net.3.bias";
    let state = with_tensor(&demo_state(), key, Tensor::new(&[f32::NAN; 32], &Device::Cpu).unwrap());
    assert!(matches!(state.validate(&table()), Err(CheckpointError::NonFinite { key: k, .. }) if k == key));
}

#[test]
fn unexpected_tensor_is_refused_like_strict_load_state_dict() {
    let state = edited(&demo_state(), |l| {
        l.push(("decoder.weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()))
    });
    assert!(
        matches!(state.validate(&table()), Err(CheckpointError::UnexpectedTensor { key, .. }) if key == "decoder.weight")
    );
}

#[test]
fn batchnorm_counters_are_optional() {
    let state = edited(&demo_state(), |l| l.retain(|(k, _)| !k.ends_with("num_batches_tracked")));
    state.validate(&table()).expect("counters may be absent");
}

#[test]
fn half_precision_files_load_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.safetensors");
    let half = edited(&demo_state(), |l| {
        for (_, t) in l.iter_mut() {
            if t.dtype() == DType::F32 {
                *t = t.to_dtype(DType::BF16).unwrap();
            }
        }
    });
    half.save_safetensors(&path).unwrap();
    let loaded = StateDict::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.get("encoder.layernorm.weight").unwrap().dtype(), DType::BF16);
    loaded.validate(&table()).unwrap();
}

#[test]
fn truncated_safetensors_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    demo_state().save_safetensors(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = StateDict::load(&path, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::Weights {
                source: WeightsError::DataRegion { .. }
                    | WeightsError::SafetensorsHeader { .. }
                    | WeightsError::InvalidEntry { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"));
}

#[test]
fn garbage_pt_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.pt");
    std::fs::write(&path, b"definitely not a zip archive").unwrap();
    let err = StateDict::load(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, CheckpointError::Weights { source: WeightsError::NotZip { .. }, .. }), "{err}");
}

#[test]
fn unknown_extension_and_missing_file_are_distinct_errors() {
    let err = StateDict::load("weights.onnx", &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, CheckpointError::UnknownFormat { .. }));
    let err = StateDict::load("/nonexistent/weights.safetensors", &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, CheckpointError::Weights { source: WeightsError::Io { .. }, .. }), "{err}");
}

#[test]
fn model_prefix_is_stripped_automatically_and_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prefixed.safetensors");
    edited(&demo_state(), |l| {
        for (k, _) in l.iter_mut() {
            *k = format!("model.{k}");
        }
    })
    .save_safetensors(&path)
    .unwrap();
    let auto = StateDict::load(&path, &LoadOptions::default()).unwrap();
    auto.validate(&table()).unwrap();
    let kept =
        StateDict::load(&path, &LoadOptions { strip_prefix: Some("nothing.".into()), ..Default::default() }).unwrap();
    assert!(kept.get("model.encoder.layernorm.weight").is_some());
}

#[test]
fn transformers_5_9_vit_keys_map_to_the_public_layout() {
    assert_eq!(
        legacy_vit_key("encoder.layers.3.attention.q_proj.weight").as_deref(),
        Some("encoder.encoder.layer.3.attention.attention.query.weight")
    );
    assert_eq!(
        legacy_vit_key("encoder.layers.0.mlp.fc2.bias").as_deref(),
        Some("encoder.encoder.layer.0.output.dense.bias")
    );
    assert_eq!(
        legacy_vit_key("encoder.layers.11.layernorm_before.weight").as_deref(),
        Some("encoder.encoder.layer.11.layernorm_before.weight")
    );
    assert_eq!(legacy_vit_key("predictor.pos_embedding"), None);
    // A whole state dict written with the new spelling validates after renaming.
    let mut renamed = edited(&demo_state(), |l| {
        for (k, _) in l.iter_mut() {
            if let Some(rest) = k.strip_prefix("encoder.encoder.layer.") {
                *k = format!(
                    "encoder.layers.{}",
                    rest.replace("attention.attention.query", "attention.q_proj")
                        .replace("intermediate.dense", "mlp.fc1")
                );
            }
        }
    });
    assert!(renamed.validate(&table()).is_err());
    renamed.rename_keys(legacy_vit_key).unwrap();
    renamed.validate(&table()).unwrap();
}

fn config_error(json: &str) -> ConfigError {
    ModelConfig::from_json_str(json, Path::new("config.json")).unwrap_err()
}

#[test]
fn config_missing_field_names_the_field() {
    let mut v: serde_json::Value = tiny_config_json();
    v["predictor"].as_object_mut().unwrap().remove("depth");
    let err = config_error(&v.to_string());
    let text = err.to_string();
    assert!(matches!(err, ConfigError::Parse { .. }), "{text}");
    assert!(text.contains("predictor") && text.contains("depth"), "{text}");
}

#[test]
fn config_inconsistent_dims_name_the_field() {
    let mut v: serde_json::Value = tiny_config_json();
    v["action_encoder"]["emb_dim"] = 16.into();
    match config_error(&v.to_string()) {
        ConfigError::Invalid { field, .. } => assert_eq!(field, "action_encoder.emb_dim"),
        other => panic!("{other:?}"),
    }
    let mut v: serde_json::Value = tiny_config_json();
    v["encoder"]["num_attention_heads"] = 3.into();
    match config_error(&v.to_string()) {
        ConfigError::Invalid { field, .. } => assert_eq!(field, "encoder.num_attention_heads"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn config_of_unknown_family_is_refused() {
    assert!(matches!(config_error(r#"{"_target_": "x.Dreamer"}"#), ConfigError::UnknownFamily { .. }));
    assert!(matches!(config_error("{not json"), ConfigError::Parse { .. }));
}

#[test]
fn pusht_config_matches_the_public_parameter_count() {
    let cfg = demo::pusht_config();
    cfg.validate().unwrap();
    let table = cfg.parameter_table().unwrap();
    let floats: usize = table
        .iter()
        .filter(|p| p.kind == swm::checkpoint::ParamKind::Float && !p.name.contains("running_"))
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    // lewm.md §2: 303 keys, 18 034 478 parameters for the public PushT config.
    assert_eq!(table.len(), 303);
    assert_eq!(floats, 18_034_478);
}

#[test]
fn demo_artifact_round_trips_and_converts() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = demo::write_artifact(dir.path()).unwrap();
    assert_eq!(artifact.schema.action_dim, 4);
    // A checkpoint laid out like the public repos (config.json + weights) converts into an artifact.
    let ckpt_dir = dir.path().join("ckpt");
    std::fs::create_dir_all(&ckpt_dir).unwrap();
    std::fs::write(ckpt_dir.join("config.json"), tiny_config_text()).unwrap();
    demo_state().save_safetensors(ckpt_dir.join("model.safetensors")).unwrap();
    let ckpt = Checkpoint::open(&ckpt_dir).unwrap();
    let out = dir.path().join("artifact");
    let converted = swm::artifact::convert(&ckpt, &LoadOptions::default(), &out, None).unwrap();
    assert_eq!(converted.preprocess.image_size, [32, 32]);
    assert!(out.join("model.safetensors").is_file() && out.join("schema.json").is_file());
}

#[test]
fn artifact_errors_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    demo::write_artifact(dir.path()).unwrap();
    let schema = dir.path().join("schema.json");
    let original = std::fs::read_to_string(&schema).unwrap();

    std::fs::write(&schema, original.replace("\"schema_version\": 1", "\"schema_version\": 9")).unwrap();
    assert!(matches!(Artifact::open(dir.path()), Err(ArtifactError::UnknownSchemaVersion { found: 9, .. })));

    std::fs::write(&schema, original.replace("\"action_dim\": 4", "\"action_dim\": 6")).unwrap();
    match Artifact::open(dir.path()) {
        Err(ArtifactError::Invalid { field, path, .. }) => {
            assert_eq!(field, "action_dim");
            assert!(path.ends_with("schema.json"));
        }
        other => panic!("{other:?}"),
    }

    std::fs::write(&schema, original.replace("\"family\": \"lewm\",", "")).unwrap();
    match Artifact::open(dir.path()) {
        Err(ArtifactError::Config(ConfigError::Parse { reason, .. })) => assert!(reason.contains("family"), "{reason}"),
        other => panic!("{other:?}"),
    }

    std::fs::write(&schema, &original).unwrap();
    let pre = dir.path().join("preprocess.json");
    let text = std::fs::read_to_string(&pre).unwrap();
    std::fs::write(&pre, text.replace("0.229", "0.0")).unwrap();
    assert!(matches!(Artifact::open(dir.path()), Err(ArtifactError::Invalid { field, .. }) if field == "std[0]"));

    std::fs::remove_file(&pre).unwrap();
    assert!(
        matches!(Artifact::open(dir.path()), Err(ArtifactError::MissingFile { file, .. }) if file == "preprocess.json")
    );
}

#[test]
fn checkpoint_dir_with_two_weight_files_is_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), tiny_config_text()).unwrap();
    std::fs::write(dir.path().join("a.pt"), b"x").unwrap();
    std::fs::write(dir.path().join("b.pt"), b"x").unwrap();
    assert!(matches!(Checkpoint::open(dir.path()), Err(ArtifactError::AmbiguousWeights { .. })));
}

#[test]
fn committed_fixture_weights_pt_loads_and_validates() {
    let dir = repo_root().join("tests/fixtures/lewm-tiny");
    let ckpt = Checkpoint::open(&dir).expect("tests/fixtures/lewm-tiny exported by tools/swm_tools/export_lewm.py");
    let ModelConfig::Lewm(cfg) = &ckpt.config else { panic!("fixture is LeWM") };
    assert!(ckpt.weights.ends_with("weights.pt"));
    let mut state = ckpt.state_dict(&LoadOptions::default()).unwrap();
    assert!(state.get("projector.net.1.num_batches_tracked").is_some_and(|t| t.dtype() == DType::I64));
    state.rename_keys(legacy_vit_key).unwrap();
    state.validate(&cfg.parameter_table().unwrap()).unwrap();
}

#[test]
fn opening_a_missing_device_is_a_typed_error() {
    // On CI (no driver; the stub libcuda answers CUDA_ERROR_NO_DEVICE) this is the error path; on a GPU host the
    // device opens. Either way nothing panics and the message says what is needed.
    match swm::device::cuda(0) {
        Ok(device) => assert!(device.is_cuda()),
        Err(e) => assert!(e.to_string().contains("no CUDA device 0"), "{e}"),
    }
    let err = swm::device::cuda(4096).unwrap_err().to_string();
    assert!(err.contains("no CUDA device 4096"), "{err}");
}

#[cfg(feature = "hub")]
#[test]
fn hub_repo_resolves_offline_from_a_cache_laid_out_like_huggingface_hub() {
    let cache = tempfile::tempdir().unwrap();
    let repo_dir = cache.path().join("models--quentinll--lewm-tiny");
    let rev = "22b330c28c27ead4bfd1888615af1340e3fe9052";
    let snapshot = repo_dir.join("snapshots").join(rev);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), rev).unwrap();
    std::fs::write(snapshot.join("config.json"), tiny_config_text()).unwrap();
    // Not cached yet: a typed error naming the missing file.
    let err = swm::hub::resolve_checkpoint("quentinll/lewm-tiny", None, Some(cache.path())).unwrap_err();
    assert!(err.to_string().contains("weights.pt"), "{err}");
    let fixture = repo_root().join("tests/fixtures/lewm-tiny/weights.pt");
    std::fs::copy(fixture, snapshot.join("weights.pt")).unwrap();
    let dir = swm::hub::resolve_checkpoint("quentinll/lewm-tiny", None, Some(cache.path())).unwrap();
    assert_eq!(dir, snapshot);
    let ckpt = Checkpoint::open(&dir).unwrap();
    assert!(ckpt.weights.ends_with("weights.pt"));
    assert!(matches!(
        swm::hub::resolve_checkpoint("not-a-repo", None, Some(cache.path())),
        Err(swm::hub::HubError::BadRepoId(_))
    ));
    assert!(swm::hub::resolve_checkpoint("quentinll/lewm-tiny", Some("v2"), Some(cache.path())).is_err());
}

#[path = "host/config_bounds.rs"]
mod config_bounds;

#[path = "host/fuzz_json.rs"]
mod fuzz_json;

#[path = "host/planner_config.rs"]
mod planner_config;

#[path = "host/untrusted.rs"]
mod untrusted;

#[path = "host/tdmpc2_config.rs"]
mod tdmpc2_config;

#[path = "host/preprocess_reference.rs"]
mod preprocess_reference;

#[test]
fn tdmpc2_checkpoint_converts_into_an_artifact() {
    let config = swm::tools::demo::tdmpc2_bench_config();
    let dir = tempfile::tempdir().unwrap();
    let ckpt_dir = dir.path().join("ckpt");
    std::fs::create_dir_all(&ckpt_dir).unwrap();
    let text = r#"{"_target_": "stable_worldmodel.wm.tdmpc2.TDMPC2", "_recursive_": false, "cfg":
        {"action_dim": 6, "extra_dims": {"action": 6, "state": 24}, "image_size": 64,
         "wm": {"mlp_dim": 512, "enc_dim": 256, "simnorm_dim": 8, "num_q": 5, "tau": 0.01, "num_bins": 101,
                "vmin": -10, "vmax": 10, "discount": 0.99, "uncertainty_penalty": 0.5, "encoding": {"state": 512}}}}"#;
    std::fs::write(ckpt_dir.join("config.json"), text).unwrap();
    let mut weights = swm::tools::demo::random_tdmpc2_state_dict(&config, 1).unwrap();
    weights.save_safetensors(ckpt_dir.join("model.safetensors")).unwrap();
    let ckpt = Checkpoint::open(&ckpt_dir).unwrap();
    assert_eq!(ckpt.config.family(), swm::config::Family::Tdmpc2);
    let out = dir.path().join("artifact");
    let artifact = swm::artifact::convert(&ckpt, &LoadOptions::default(), &out, None).unwrap();
    assert_eq!(artifact.schema.action_dim, 6);
    assert_eq!(artifact.schema.observations.len(), 1);
    assert_eq!(
        (artifact.schema.observations[0].name.as_str(), artifact.schema.observations[0].shape.as_slice()),
        ("state", &[24][..])
    );
    // A state dict missing a Q head is refused, naming the tensor.
    weights.rename_keys(|k| k.starts_with("qs.4.2.").then(|| k.replace("qs.4.2.", "qs.9.2."))).unwrap();
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("config.json"), text).unwrap();
    weights.save_safetensors(bad.join("model.safetensors")).unwrap();
    let err =
        swm::artifact::convert(&Checkpoint::open(&bad).unwrap(), &LoadOptions::default(), &dir.path().join("o"), None)
            .unwrap_err()
            .to_string();
    assert!(err.contains("qs.4.2"), "{err}");
}
