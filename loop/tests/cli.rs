//! The `swm-loop` binary's command line: `--check-config` prints the resolved configuration, bad configurations
//! exit 2 naming the field, a missing artifact is a runtime failure (1) before any service is created.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("..")
}

fn swm_loop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swm-loop")).args(args).output().expect("run swm-loop")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn check_config_prints_the_resolved_configuration() {
    let config = repo_root().join("configs/loop-tdmpc2.toml");
    let out = swm_loop(&["--config", config.to_str().unwrap(), "--rate-hz", "100", "--check-config"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("rate_hz = 100.0"), "the flag overrides the file:\n{stdout}");
    assert!(stdout.contains("solver = \"mppi\"") && stdout.contains("observation_queue = 1"), "{stdout}");
}

#[test]
fn bad_configurations_exit_2_naming_the_field() {
    let config = repo_root().join("configs/loop-tdmpc2.toml");
    let cases: [(&[&str], &str); 4] = [
        (&["--check-config"], "artifact"),
        (&["--config", config.to_str().unwrap(), "--rate-hz", "0", "--check-config"], "rate_hz"),
        (&["--config", config.to_str().unwrap(), "--deadline-ms", "50", "--check-config"], "deadline_ms"),
        (&["--config", "/nonexistent/loop.toml"], "cannot read"),
    ];
    for (args, needle) in cases {
        let out = swm_loop(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_missing_artifact_fails_before_serving() {
    let out = swm_loop(&["--artifact", "/nonexistent/artifact"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/artifact"), "{stderr}");
}
