//! The daemon configuration: the shipped configs load and validate, defaults fill every field, and every bad value
//! is refused naming its field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use swm_loop::config::{ConfigError, Fallback, LoopConfig};

fn repo_root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_shipped_configs_load_and_resolve_paths_next_to_them() {
    for name in ["loop-lewm-pusht.toml", "loop-tdmpc2.toml"] {
        let path = repo_root().join("configs").join(name);
        let config = LoopConfig::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let artifact = config.artifact.clone().expect("artifact");
        assert!(artifact.starts_with(repo_root().join("configs")), "{name}: {}", artifact.display());
        assert!(config.deadline() <= config.period(), "{name}");
    }
    let tdmpc2 = LoopConfig::load(&repo_root().join("configs/loop-tdmpc2.toml")).unwrap();
    assert_eq!(tdmpc2.rate_hz, 200.0);
    assert_eq!(tdmpc2.planner.solver.as_deref(), Some("mppi"));
    assert_eq!(tdmpc2.ipc.prefix, "swm-tdmpc2");
    assert_eq!(tdmpc2.ipc.observation_queue, 1, "unstated fields keep their defaults");
}

#[test]
fn a_minimal_config_gets_every_default() {
    let config = LoopConfig::from_toml("artifact = \"a\"", Path::new("x.toml")).unwrap();
    config.validate(Path::new("x.toml")).unwrap();
    assert_eq!(config.rate_hz, 30.0);
    let expected = Duration::from_secs_f64(0.8 / 30.0);
    assert!(config.deadline().abs_diff(expected) < Duration::from_micros(1), "{:?}", config.deadline());
    assert_eq!(config.fallback, Fallback::WarmStart);
    assert_eq!(config.ipc.prefix, "swm");
    assert_eq!(config.matmul, None, "the artifact's precision");
    // The resolved config round-trips through TOML (what --check-config prints).
    let text = toml::to_string_pretty(&config).unwrap();
    assert_eq!(LoopConfig::from_toml(&text, Path::new("y.toml")).unwrap(), config);
}

fn invalid_field(text: &str) -> String {
    let config = match LoopConfig::from_toml(text, Path::new("x.toml")) {
        Ok(c) => c,
        Err(e) => return format!("parse: {e}"),
    };
    match config.validate(Path::new("x.toml")) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("{text}: expected an invalid field, got {other:?}"),
    }
}

#[test]
fn the_matmul_precision_is_f32_or_tf32() {
    use swm::artifact::MatmulPrecision;
    let tf32 = LoopConfig::from_toml("artifact = \"a\"\nmatmul = \"tf32\"", Path::new("x.toml")).unwrap();
    assert_eq!(tf32.matmul, Some(MatmulPrecision::Tf32));
    let text = toml::to_string_pretty(&tf32).unwrap();
    assert_eq!(LoopConfig::from_toml(&text, Path::new("y.toml")).unwrap(), tf32);
    let err = LoopConfig::from_toml("artifact = \"a\"\nmatmul = \"bf16\"", Path::new("x.toml")).unwrap_err();
    assert!(err.to_string().contains("matmul") || err.to_string().contains("bf16"), "{err}");
}

#[test]
fn bad_values_name_their_field() {
    assert_eq!(invalid_field("rate_hz = 30.0"), "artifact");
    let cases = [
        ("rate_hz = 0.0", "rate_hz"),
        ("rate_hz = -5.0", "rate_hz"),
        ("rate_hz = 1e9", "rate_hz"),
        ("rate_hz = nan", "rate_hz"),
        ("deadline_ms = 0.0", "deadline_ms"),
        ("rate_hz = 100.0\ndeadline_ms = 11.0", "deadline_ms"),
        ("history = 0", "history"),
        ("stats_period_s = 0.0", "stats_period_s"),
        ("[fallback]\nkind = \"fixed\"\naction = []", "fallback.action"),
        ("[fallback]\nkind = \"fixed\"\naction = [nan]", "fallback.action"),
        ("[planner]\nsolver = \"sgd\"", "planner.solver"),
        ("[planner]\nsamples = 0", "planner.samples"),
        ("[planner]\nhorizon = 0", "planner.horizon"),
        ("[ipc]\nprefix = \"\"", "ipc.prefix"),
        ("[ipc]\nobservation_queue = 0", "ipc.observation_queue"),
        ("[ipc]\nmax_observation_bytes = 0", "ipc.max_observation_bytes"),
        ("[realtime]\npriority = 100", "realtime.priority"),
        ("[realtime]\ncpus = [100000]", "realtime.cpus"),
    ];
    for (text, field) in cases {
        assert_eq!(invalid_field(&format!("artifact = \"a\"\n{text}")), field, "{text}");
    }
}

#[test]
fn unknown_fields_and_wrong_types_are_parse_errors_naming_them() {
    for (text, needle) in [
        ("artifact = \"a\"\nrate = 30", "rate"),
        ("artifact = \"a\"\ngpu = \"zero\"", "gpu"),
        ("[ipc]\nprefx = \"a\"", "prefx"),
    ] {
        let err = LoopConfig::from_toml(text, Path::new("x.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {err}");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn fault_injection_is_off_by_default_and_bounded() {
    let config = LoopConfig::default();
    assert!((1..1000).all(|step| config.fault.delay_before(step).is_none()));
    let text = "artifact = \"a\"\n[fault]\ngpu_delay_ms = 40.0\nevery = 100\n";
    let config = LoopConfig::from_toml(text, Path::new("f.toml")).unwrap();
    config.validate(Path::new("f.toml")).unwrap();
    assert_eq!(config.fault.delay_before(100), Some(Duration::from_millis(40)));
    assert_eq!(config.fault.delay_before(200), Some(Duration::from_millis(40)));
    assert_eq!(config.fault.delay_before(150), None);
    let text = "artifact = \"a\"\n[fault]\ngpu_delay_ms = -1.0\nevery = 1\n";
    let err = LoopConfig::from_toml(text, Path::new("f.toml")).unwrap().validate(Path::new("f.toml")).unwrap_err();
    assert!(err.to_string().contains("fault.gpu_delay_ms"), "{err}");
}
