//! Untrusted configs (issue 10): every count and width is bounded, shapes use checked arithmetic, and
//! `ModelConfig::load` reports what a path is. Each oversized value here used to allocate gigabytes and abort, or
//! wrap a shape silently; now each is a typed error naming the field and the limit, returned at once.

use std::path::Path;

use serde_json::Value;
use swm::config::{limits, ConfigError, ModelConfig};
use swm::models::{lewm, tdmpc2};
use swm::planning::{CemConfig, PlannerConfig, SolverConfig};

/// `tests/fixtures/tdmpc2-tiny/config.json` (pixels + two state modalities).
fn tdmpc2_config_json() -> Value {
    let path = super::repo_root().join("tests/fixtures/tdmpc2-tiny/config.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("tdmpc2-tiny config")).expect("parses")
}

/// Sets the field at the `/`-separated `pointer` (created if absent) to `value`.
fn set(mut doc: Value, pointer: &str, value: impl Into<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let slot = doc.pointer_mut(parent).and_then(Value::as_object_mut).expect("parent object exists");
    slot.insert(key.to_string(), value.into());
    doc
}

/// The `(field, reason)` of the `ConfigError::Invalid` that `doc` must produce.
fn invalid(doc: &Value) -> (String, String) {
    match ModelConfig::from_json_str(&doc.to_string(), Path::new("config.json")) {
        Err(ConfigError::Invalid { field, reason, path }) => {
            assert_eq!(path, Path::new("config.json"), "the error names the file");
            (field, reason)
        }
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

/// Asserts that `doc` is refused with an `Invalid` for `field` whose reason names `needle`.
fn refused(doc: &Value, field: &str, needle: &str) {
    let (f, reason) = invalid(doc);
    assert_eq!(f, field, "{reason}");
    assert!(reason.contains(needle), "{field}: {reason:?} should mention {needle:?}");
}

const BILLION: u64 = 1_000_000_000;

#[test]
fn lewm_billion_layers_depth_and_heads_are_refused_without_allocating() {
    let tiny = super::tiny_config_json();
    for (pointer, field, limit) in [
        ("/encoder/num_hidden_layers", "encoder.num_hidden_layers", "limits::MAX_LAYERS"),
        ("/predictor/depth", "predictor.depth", "limits::MAX_LAYERS"),
        ("/encoder/num_attention_heads", "encoder.num_attention_heads", "limits::MAX_HEADS"),
        ("/predictor/heads", "predictor.heads", "limits::MAX_HEADS"),
        ("/predictor/num_frames", "predictor.num_frames", "limits::MAX_FRAMES"),
    ] {
        refused(&set(tiny.clone(), pointer, BILLION), field, limit);
    }
}

#[test]
fn lewm_image_size_2_pow_40_is_refused_instead_of_wrapping() {
    // (2^40 / 8)^2 + 1 wrapped to 1: the table used to expect position_embeddings [1, 1, 32].
    let doc = set(super::tiny_config_json(), "/encoder/image_size", 1u64 << 40);
    refused(&doc, "encoder.image_size", "limits::MAX_IMAGE_SIDE");
    let cfg: lewm::Config = serde_json::from_value(doc).unwrap();
    let err = cfg.parameter_table().unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { field, .. } if field == "encoder.image_size"), "{err}");
}

#[test]
fn lewm_every_oversized_field_is_named_with_its_limit() {
    let tiny = super::tiny_config_json();
    let width = limits::MAX_WIDTH as u64 + 1;
    let cases: &[(&str, &str, u64, &str)] = &[
        ("/encoder/hidden_size", "encoder.hidden_size", width, "MAX_WIDTH"),
        ("/encoder/intermediate_size", "encoder.intermediate_size", width, "MAX_WIDTH"),
        ("/encoder/num_hidden_layers", "encoder.num_hidden_layers", limits::MAX_LAYERS as u64 + 1, "MAX_LAYERS"),
        ("/encoder/num_attention_heads", "encoder.num_attention_heads", limits::MAX_HEADS as u64 + 1, "MAX_HEADS"),
        ("/encoder/patch_size", "encoder.patch_size", limits::MAX_IMAGE_SIDE as u64 + 1, "MAX_IMAGE_SIDE"),
        ("/encoder/image_size", "encoder.image_size", limits::MAX_IMAGE_SIDE as u64 + 1, "MAX_IMAGE_SIDE"),
        ("/predictor/num_frames", "predictor.num_frames", limits::MAX_FRAMES as u64 + 1, "MAX_FRAMES"),
        ("/predictor/input_dim", "predictor.input_dim", width, "MAX_WIDTH"),
        ("/predictor/hidden_dim", "predictor.hidden_dim", width, "MAX_WIDTH"),
        ("/predictor/output_dim", "predictor.output_dim", width, "MAX_WIDTH"),
        ("/predictor/depth", "predictor.depth", limits::MAX_LAYERS as u64 + 1, "MAX_LAYERS"),
        ("/predictor/heads", "predictor.heads", limits::MAX_HEADS as u64 + 1, "MAX_HEADS"),
        ("/predictor/mlp_dim", "predictor.mlp_dim", width, "MAX_WIDTH"),
        ("/predictor/dim_head", "predictor.dim_head", width, "MAX_WIDTH"),
        ("/action_encoder/input_dim", "action_encoder.input_dim", limits::MAX_ACTION_DIM as u64 + 1, "MAX_ACTION_DIM"),
        ("/action_encoder/smoothed_dim", "action_encoder.smoothed_dim", width, "MAX_WIDTH"),
        ("/action_encoder/emb_dim", "action_encoder.emb_dim", width, "MAX_WIDTH"),
        ("/action_encoder/mlp_scale", "action_encoder.mlp_scale", width, "MAX_WIDTH"),
        ("/projector/input_dim", "projector.input_dim", width, "MAX_WIDTH"),
        ("/projector/hidden_dim", "projector.hidden_dim", width, "MAX_WIDTH"),
        ("/projector/output_dim", "projector.output_dim", width, "MAX_WIDTH"),
        ("/pred_proj/input_dim", "pred_proj.input_dim", width, "MAX_WIDTH"),
        ("/pred_proj/hidden_dim", "pred_proj.hidden_dim", width, "MAX_WIDTH"),
        ("/pred_proj/output_dim", "pred_proj.output_dim", width, "MAX_WIDTH"),
    ];
    for &(pointer, field, value, limit) in cases {
        for v in [value, BILLION, u64::MAX] {
            refused(&set(tiny.clone(), pointer, v), field, limit);
        }
    }
}

#[test]
fn lewm_products_of_fields_use_checked_arithmetic() {
    let tiny = super::tiny_config_json();
    // Each factor within its limit, the product not.
    let doc = set(set(tiny.clone(), "/predictor/heads", 1024), "/predictor/dim_head", 1024);
    refused(&doc, "predictor.dim_head", "predictor.heads × predictor.dim_head");
    let doc = set(set(tiny.clone(), "/action_encoder/mlp_scale", 65536), "/action_encoder/emb_dim", 32);
    refused(&doc, "action_encoder.mlp_scale", "MAX_WIDTH");
    // The default intermediate size is 4 × hidden: 2^62 × 4 overflows before any bound applies.
    let mut doc = set(tiny, "/encoder/hidden_size", 1u64 << 62);
    doc["encoder"].as_object_mut().unwrap().remove("intermediate_size");
    refused(&doc, "encoder.hidden_size", "overflows");
}

#[test]
fn lewm_parameter_count_is_bounded() {
    // Every field within its limit and the dims consistent, but 1024 layers of width 16384: ~3e12 parameters.
    let mut doc = super::tiny_config_json();
    for (pointer, v) in [
        ("/encoder/hidden_size", 16384u64),
        ("/encoder/intermediate_size", 65536),
        ("/encoder/num_hidden_layers", 1024),
        ("/projector/input_dim", 16384),
    ] {
        doc = set(doc, pointer, v);
    }
    let (field, reason) = invalid(&doc);
    assert!(field.starts_with("encoder.encoder.layer."), "{field}: {reason}");
    assert!(reason.contains("MAX_PARAMETERS"), "{reason}");
    // The public PushT config is far below.
    let table = lewm::Config::pusht().parameter_table().unwrap();
    assert!(swm::config::parameter_count(&table).unwrap() < limits::MAX_PARAMETERS / 100);
}

#[test]
fn lewm_layer_norm_eps_must_be_a_small_non_negative_number() {
    refused(&set(super::tiny_config_json(), "/encoder/layer_norm_eps", -1.0), "encoder.layer_norm_eps", "[0, 1]");
    refused(&set(super::tiny_config_json(), "/encoder/layer_norm_eps", 1e300), "encoder.layer_norm_eps", "[0, 1]");
}

#[test]
fn unvalidated_lewm_config_with_billion_layers_gets_no_table() {
    // `parameter_table` bounds the dims itself: a config built without `validate` cannot make it allocate.
    for pointer in ["/encoder/num_hidden_layers", "/predictor/depth"] {
        let cfg: lewm::Config = serde_json::from_value(set(super::tiny_config_json(), pointer, BILLION)).unwrap();
        assert!(matches!(cfg.parameter_table(), Err(ConfigError::Invalid { .. })));
    }
}

#[test]
fn tdmpc2_billion_num_q_and_every_oversized_field_are_refused() {
    let base = tdmpc2_config_json();
    ModelConfig::from_json_str(&base.to_string(), Path::new("config.json")).expect("fixture config is valid");
    let width = limits::MAX_WIDTH as u64 + 1;
    let cases: &[(&str, &str, u64, &str)] = &[
        ("/wm/num_q", "wm.num_q", limits::MAX_Q_HEADS as u64 + 1, "MAX_Q_HEADS"),
        ("/wm/mlp_dim", "wm.mlp_dim", width, "MAX_WIDTH"),
        ("/wm/enc_dim", "wm.enc_dim", width, "MAX_WIDTH"),
        ("/wm/simnorm_dim", "wm.simnorm_dim", width, "MAX_WIDTH"),
        ("/wm/num_bins", "wm.num_bins", width, "MAX_WIDTH"),
        ("/wm/encoding/state", "wm.encoding.state", width, "MAX_WIDTH"),
        ("/wm/encoding/pixels", "wm.encoding.pixels", width, "MAX_WIDTH"),
        ("/action_dim", "action_dim", limits::MAX_ACTION_DIM as u64 + 1, "MAX_ACTION_DIM"),
        ("/extra_dims/state", "extra_dims.state", width, "MAX_WIDTH"),
        ("/image_size", "image_size", limits::MAX_IMAGE_SIDE as u64 + 1, "MAX_IMAGE_SIDE"),
        ("/num_pi_trajs", "num_pi_trajs", limits::MAX_PI_TRAJS as u64 + 1, "MAX_PI_TRAJS"),
    ];
    for &(pointer, field, value, limit) in cases {
        for v in [value, BILLION, u64::MAX] {
            refused(&set(base.clone(), pointer, v), field, limit);
        }
    }
    refused(&set(base.clone(), "/image_size", 1u64 << 40), "image_size", "MAX_IMAGE_SIDE");
    // The wrapped form (`_target_` + `cfg`) is checked the same way.
    let wrapped = serde_json::json!({
        "_target_": "stable_worldmodel.wm.tdmpc2.TDMPC2",
        "cfg": set(base, "/wm/num_q", BILLION),
    });
    refused(&wrapped, "wm.num_q", "MAX_Q_HEADS");
}

#[test]
fn tdmpc2_latent_sum_bins_range_and_modalities_are_bounded() {
    let base = tdmpc2_config_json();
    // Each width within the limit, their sum (the latent) not.
    let doc = set(set(base.clone(), "/wm/encoding/state", 40000), "/wm/encoding/pixels", 40000);
    refused(&doc, "wm.encoding", "latent width");
    refused(&set(base.clone(), "/wm/vmin", -1e6), "wm.vmin", "MAX_SYMLOG");
    refused(&set(base.clone(), "/wm/vmax", 1e308), "wm.vmax", "MAX_SYMLOG");
    // A modality listed twice would give two tensors of one name.
    let text = base.to_string().replace(r#""goal":8"#, r#""goal":8,"state":16"#);
    assert_ne!(text, base.to_string(), "the fixture lists goal last");
    match ModelConfig::from_json_str(&text, Path::new("config.json")) {
        Err(ConfigError::Invalid { field, reason, .. }) => {
            assert_eq!(field, "wm.encoding.state");
            assert!(reason.contains("twice"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // 65 modalities.
    let mut many = base.clone();
    for i in 0..65 {
        many = set(many, &format!("/wm/encoding/s{i}"), 8);
        many = set(many, &format!("/extra_dims/s{i}"), 8);
    }
    refused(&many, "wm.encoding", "MAX_MODALITIES");
}

#[test]
fn tdmpc2_parameter_count_is_bounded() {
    // Within every field limit: 64 Q heads (and 64 target Qs) of width 65536 hold ~1e12 parameters.
    let doc = set(set(tdmpc2_config_json(), "/wm/mlp_dim", 65536), "/wm/num_q", 64);
    let (_, reason) = invalid(&doc);
    assert!(reason.contains("MAX_PARAMETERS"), "{reason}");
    // A wide pixel encoder on a large image: 32 × 1020² inputs × 65536 outputs.
    let doc = set(set(tdmpc2_config_json(), "/image_size", 8192), "/wm/encoding/pixels", 65536 - 32);
    let (field, reason) = invalid(&doc);
    assert_eq!(field, "pixel_encoder.weight", "{reason}");
    // The benchmark model is far below.
    let table = tdmpc2::Config::bench().parameter_table().unwrap();
    assert!(swm::config::parameter_count(&table).unwrap() < limits::MAX_PARAMETERS / 100);
}

#[test]
fn planner_horizon_and_action_dims_are_bounded() {
    let cem = |horizon, action_dim, block| {
        PlannerConfig::new(SolverConfig::Cem(CemConfig::default()), horizon, action_dim, block).validate()
    };
    let field = |r: Result<(), ConfigError>| match r {
        Err(ConfigError::Invalid { field, reason, .. }) => (field, reason),
        other => panic!("{other:?}"),
    };
    let (f, r) = field(cem(1_000_000_000, 2, 5));
    assert_eq!(f, "horizon");
    assert!(r.contains("MAX_HORIZON"), "{r}");
    let (f, r) = field(cem(5, 1 << 40, 1 << 40));
    assert_eq!(f, "action_dim");
    assert!(r.contains("MAX_ACTION_DIM"), "{r}");
    let (f, r) = field(cem(5, 4096, 4096));
    assert_eq!(f, "action_block");
    assert!(r.contains("action_dim × action_block"), "{r}");
    // 300 samples × 1024 steps × 4096 dims.
    let (f, r) = field(cem(1024, 4096, 1));
    assert_eq!(f, "horizon");
    assert!(r.contains("MAX_CANDIDATE_VALUES"), "{r}");
    cem(5, 2, 5).unwrap();
}

#[test]
fn config_with_utf8_bom_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, format!("\u{feff}{}", super::tiny_config_text())).unwrap();
    let cfg = ModelConfig::load(&path).expect("a BOM before the JSON is skipped");
    assert_eq!(cfg.family(), swm::config::Family::Lewm);
    let tdmpc2 = format!("\u{feff}{}", tdmpc2_config_json());
    let cfg = ModelConfig::from_json_str(&tdmpc2, Path::new("config.json")).expect("TD-MPC2 with a BOM");
    assert_eq!(cfg.family(), swm::config::Family::Tdmpc2);
    tdmpc2::Config::from_json_str(&tdmpc2, Path::new("config.json")).expect("TD-MPC2 reader skips the BOM too");
}

#[test]
fn config_path_that_is_a_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::create_dir(&path).unwrap();
    let err = ModelConfig::load(&path).unwrap_err();
    assert!(matches!(&err, ConfigError::NotAFile { kind: "a directory", .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("config.json") && text.contains("is a directory"), "{text}");
}

#[cfg(unix)]
#[test]
fn config_symlink_loop_and_devices_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("config.json"), dir.path().join("other.json"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    match ModelConfig::load(&a) {
        Err(ConfigError::Io { source, .. }) => {
            #[cfg(target_os = "linux")]
            assert_eq!(source.raw_os_error(), Some(40), "ELOOP: {source}");
            assert!(source.kind() != std::io::ErrorKind::NotFound, "{source}");
        }
        other => panic!("expected an I/O error carrying ELOOP, got {other:?}"),
    }
    assert!(ModelConfig::load(&a).unwrap_err().to_string().contains("symbolic links"));
    // A device is never read (`/dev/zero` would grow a string without end).
    if Path::new("/dev/zero").exists() {
        let err = ModelConfig::load("/dev/zero").unwrap_err();
        assert!(matches!(err, ConfigError::NotAFile { kind: "a character device", .. }), "{err:?}");
    }
    // A FIFO is never opened (reading it would block).
    let fifo = dir.path().join("fifo.json");
    if std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        let err = ModelConfig::load(&fifo).unwrap_err();
        assert!(matches!(err, ConfigError::NotAFile { kind: "a FIFO", .. }), "{err:?}");
    }
    let err = ModelConfig::load(dir.path().join("missing.json")).unwrap_err();
    assert!(matches!(&err, ConfigError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound));
}

#[test]
fn oversized_and_non_utf8_config_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    // Sparse: costs no disk, and is refused from its size before a byte is read.
    std::fs::File::create(&path).unwrap().set_len(limits::MAX_CONFIG_BYTES + 1).unwrap();
    let err = ModelConfig::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::TooLarge { size, .. } if size == limits::MAX_CONFIG_BYTES + 1), "{err:?}");
    let utf16: Vec<u8> = [0xff, 0xfe].into_iter().chain("{}".encode_utf16().flat_map(u16::to_le_bytes)).collect();
    std::fs::write(&path, utf16).unwrap();
    match ModelConfig::load(&path) {
        Err(ConfigError::Parse { reason, .. }) => assert!(reason.contains("UTF-16"), "{reason}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, b"{\"_target_\": \"\xff\"}").unwrap();
    match ModelConfig::load(&path) {
        Err(ConfigError::Parse { reason, .. }) => assert!(reason.contains("offset 14"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
