//! Host tests of the `swm` binary: argument validation, exit codes and stdout handling. None of them needs a GPU
//! (CI has none): every failure here must be answered before a CUDA device is opened.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The repository root, read at run time.
fn repo_root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (set by cargo test)"))
}

/// Runs `swm args…` to completion.
fn swm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swm")).args(args).output().expect("run swm")
}

/// Runs `swm args…` and checks its exit code; returns (stdout, stderr).
fn expect(args: &[&str], code: i32) -> (String, String) {
    let out = swm(args);
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert_eq!(out.status.code(), Some(code), "swm {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "swm {args:?} panicked:\n{stderr}");
    (stdout, stderr)
}

#[test]
fn help_lists_the_commands() {
    let (stdout, _) = expect(&["--help"], 0);
    for verb in ["inspect", "convert", "demo", "score", "plan", "parity", "bench"] {
        assert!(stdout.contains(verb), "{verb} missing from --help:\n{stdout}");
    }
    expect(&["plan", "--help"], 0);
    expect(&["bench", "plan", "--help"], 0);
}

#[test]
fn unknown_solver_is_a_usage_error_naming_the_choices() {
    let (_, stderr) = expect(&["plan", "--solver", "foo"], 2);
    for name in ["cem", "mppi", "icem"] {
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[test]
fn zero_counts_are_usage_errors_naming_the_flag() {
    for flag in ["--action-block", "--samples", "--iterations", "--horizon", "--repeat"] {
        let (_, stderr) = expect(&["plan", flag, "0"], 2);
        assert!(stderr.contains(flag), "{flag}: {stderr}");
    }
    let (_, stderr) = expect(&["score", "--samples", "0"], 2);
    assert!(stderr.contains("--samples"), "{stderr}");
}

#[test]
fn bad_deadlines_are_usage_errors() {
    for value in ["0", "-5", "NaN", "inf", "soon"] {
        let (_, stderr) = expect(&["plan", &format!("--deadline-ms={value}")], 2);
        assert!(stderr.contains("--deadline-ms"), "{value}: {stderr}");
    }
}

#[test]
fn an_action_block_that_does_not_divide_the_action_dim_is_a_usage_error() {
    // The demo LeWM takes 4-d action blocks.
    let (_, stderr) = expect(&["plan", "--action-block", "3"], 2);
    assert!(stderr.contains("--action-block 3"), "{stderr}");
}

#[test]
fn a_missing_planner_file_is_a_usage_error_naming_it() {
    let (_, stderr) = expect(&["plan", "--planner", "/nonexistent.json"], 2);
    assert!(stderr.contains("/nonexistent.json"), "{stderr}");
}

#[test]
fn a_malformed_planner_file_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("planner.json");
    let text = r#"{"solver": {"kind": "cem"}, "horizon": "five", "action_dim": 2, "action_block": 2}"#;
    std::fs::write(&path, text).unwrap();
    let (_, stderr) = expect(&["plan", "--planner", path.to_str().unwrap()], 2);
    assert!(stderr.contains("planner.json") && stderr.contains("horizon"), "{stderr}");
    // Parses, but plans 2 x 3 env actions for a model that takes 4.
    let text = r#"{"solver": {"kind": "cem"}, "horizon": 5, "action_dim": 3, "action_block": 2}"#;
    std::fs::write(&path, text).unwrap();
    let (_, stderr) = expect(&["plan", "--planner", path.to_str().unwrap()], 2);
    assert!(stderr.contains("planner.json"), "{stderr}");
}

#[test]
fn missing_paths_are_usage_errors_naming_them() {
    for args in [
        &["plan", "/nonexistent"][..],
        &["score", "/nonexistent"],
        &["inspect", "/nonexistent"],
        &["convert", "/nonexistent", "--out", "/tmp/swm-never-written"],
        &["bench", "lewm", "/nonexistent"],
        &["bench", "plan", "/nonexistent"],
        &["parity", "lewm", "--fixture", "/nonexistent"],
        &["parity", "planner", "--fixture", "/nonexistent"],
        &["parity", "decision", "--dir", "/nonexistent"],
    ] {
        let (_, stderr) = expect(args, 2);
        assert!(stderr.contains("/nonexistent"), "{args:?}: {stderr}");
    }
    let (_, stderr) = expect(&["bench", "gemm", "--json", "/nonexistent/dir/rows.json"], 2);
    assert!(stderr.contains("/nonexistent/dir"), "{stderr}");
    let (_, stderr) = expect(&["parity", "lewm", "--fixture", "/tmp", "--tol", "cost"], 2);
    assert!(stderr.contains("--tol"), "{stderr}");
}

#[test]
fn inspect_of_the_embedded_demo_succeeds() {
    let (stdout, _) = expect(&["inspect"], 0);
    assert!(stdout.contains("family:      lewm"), "{stdout}");
    assert!(stdout.contains("validation:  ok"), "{stdout}");
}

/// `swm inspect | head -1`: the reader goes away after the first line.
#[test]
fn inspect_into_a_closed_pipe_exits_quietly() {
    for lines in [1, 0] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_swm"))
            .args(["inspect", "--all"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn swm");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        for _ in 0..lines {
            let mut line = String::new();
            reader.read_line(&mut line).expect("first line");
            assert!(!line.is_empty());
        }
        drop(reader);
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "after {lines} line(s): {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn inspect_fails_when_the_weights_miss_a_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("artifact");
    swm::tools::demo::write_artifact(&artifact).unwrap();
    let state = swm::tools::demo::state_dict(0x5EED).unwrap();
    let (dropped, _) = state.iter().next().unwrap();
    let dropped = dropped.to_string();
    let kept: Vec<_> = state.iter().skip(1).map(|(name, t)| (name.to_string(), t.clone())).collect();
    swm::checkpoint::StateDict::from_tensors(kept, "<test>")
        .save_safetensors(artifact.join("model.safetensors"))
        .unwrap();
    let (stdout, stderr) = expect(&["inspect", artifact.to_str().unwrap()], 1);
    assert!(stdout.contains("validation:  FAILED"), "{stdout}");
    assert!(stdout.contains("parameters:"), "the report is printed before the error:\n{stdout}");
    assert!(stderr.contains("error:") && stderr.contains(&dropped), "{stderr}");
}

#[test]
fn convert_then_inspect_a_tdmpc2_checkpoint() {
    let fixture = repo_root().join("tests/fixtures/tdmpc2-tiny");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tdmpc2");
    let (stdout, _) = expect(&["convert", fixture.to_str().unwrap(), "--out", out.to_str().unwrap()], 0);
    assert!(stdout.contains("tdmpc2 model"), "{stdout}");
    assert!(out.join("schema.json").is_file());
    let (stdout, _) = expect(&["inspect", out.to_str().unwrap()], 0);
    assert!(stdout.contains("family:      tdmpc2"), "{stdout}");
    assert!(stdout.contains("kind:        deployment artifact"), "{stdout}");
    assert!(stdout.contains("validation:  ok"), "{stdout}");
    // TD-MPC2 has no scoring graph to profile: refused before the device is opened.
    let (_, stderr) = expect(&["score", out.to_str().unwrap(), "--profile"], 2);
    assert!(stderr.contains("--profile"), "{stderr}");
    let schema = std::fs::read_to_string(out.join("schema.json")).unwrap();
    assert!(!schema.contains("matmul"), "f32 artifacts leave the field out: {schema}");
    // `--matmul tf32` marks the artifact for the fastest mode; other values are usage errors.
    let fast = dir.path().join("tdmpc2-tf32");
    let args = ["convert", fixture.to_str().unwrap(), "--out", fast.to_str().unwrap(), "--matmul", "tf32"];
    let (stdout, _) = expect(&args, 0);
    assert!(stdout.contains("TF32 matmuls"), "{stdout}");
    let schema = std::fs::read_to_string(fast.join("schema.json")).unwrap();
    assert!(schema.contains("\"matmul\": \"tf32\""), "{schema}");
    let bad = dir.path().join("bad");
    expect(&["convert", fixture.to_str().unwrap(), "--out", bad.to_str().unwrap(), "--matmul", "bf16"], 2);
}

/// `LD_LIBRARY_PATH` without the directories that hold a `libcuda.so.1` (on a build machine: the setup script's
/// driver stub), i.e. the environment of a machine without an NVIDIA driver.
fn without_driver() -> String {
    let path = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty() && !PathBuf::from(d).join("libcuda.so.1").exists())
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether the system itself has an NVIDIA driver (then the "no driver" message cannot be observed here).
fn system_driver() -> bool {
    let cache = Command::new("ldconfig").arg("-p").output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&cache).contains("libcuda.so.1")
        || ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64"]
            .iter()
            .any(|d| PathBuf::from(d).join("libcuda.so.1").exists())
}

/// Issue 10, finding 11: `swm --help`, `demo`, `inspect` and `convert` start and work without an NVIDIA driver
/// (`swm` links no driver library; the GPU commands run in `swm-gpu`), and a GPU command says which library is
/// missing instead of failing to start.
#[test]
fn host_commands_start_without_an_nvidia_driver() {
    let env = without_driver();
    let run = |args: &[&str], code: i32| -> (String, String) {
        let out =
            Command::new(env!("CARGO_BIN_EXE_swm")).args(args).env("LD_LIBRARY_PATH", &env).output().expect("run swm");
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert_eq!(
            out.status.code(),
            Some(code),
            "swm {args:?} without a driver\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        (stdout, stderr)
    };
    run(&["--help"], 0);
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    run(&["demo", "--out", demo.to_str().unwrap()], 0);
    let (stdout, _) = run(&["inspect", demo.to_str().unwrap()], 0);
    assert!(stdout.contains("validation:  ok"), "{stdout}");
    let fixture = repo_root().join("tests/fixtures/tdmpc2-tiny");
    let out = dir.path().join("tdmpc2");
    run(&["convert", fixture.to_str().unwrap(), "--out", out.to_str().unwrap()], 0);
    run(&["inspect", out.to_str().unwrap()], 0);
    if system_driver() {
        eprintln!("this machine has an NVIDIA driver: the missing-driver message is not observable here");
        return;
    }
    let (_, stderr) = run(&["plan", demo.to_str().unwrap()], 1);
    assert!(stderr.contains("no NVIDIA driver found: libcuda.so.1"), "{stderr}");
    assert!(stderr.contains("`swm plan` needs an NVIDIA GPU"), "{stderr}");
}
