//! The daemon as a process, over real iceoryx2 shared memory, with the CPU test double as its backend: a controller
//! process gets actions for its observations; SIGTERM and SIGINT end the daemon cleanly (exit 0, no shared memory
//! left behind, nobody but the daemon's handler owns the signals); a daemon killed with SIGKILL is replaced by a new
//! one on the same services, which cleans up after it; a controller killed with SIGKILL while the daemon runs is
//! cleaned up by the daemon.
//!
//! The test re-executes this test binary as the daemon (`child_daemon`, selected by `--exact` and an environment
//! variable; without it the child test returns at once).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swm_ipc::iceoryx2::prelude::PortFactory;
use swm_ipc::transport as ipc;
use swm_ipc::{ActionSlot, ActionStatus, Encoding, Modality, ObservationHeader};
use swm_loop::backend::{Backend, PlannerUpdate, StepTimes};
use swm_loop::config::LoopConfig;
use swm_loop::daemon::{install_signal_handler, take_signals, Daemon, Shutdown};
use swm_loop::message::{InputSpec, Message};
use swm_loop::transport::Iceoryx;

const ROLE: &str = "SWM_LOOP_TEST_DAEMON";
/// Selects the controller child (a node with an observation publisher that waits to be killed).
const CONTROLLER: &str = "SWM_LOOP_TEST_CONTROLLER";
/// Set when the child was started with SIGINT ignored (as a shell's background job is): it must take the signals
/// over, as `swm-loop`'s main does.
const IGNORED: &str = "SWM_LOOP_TEST_SIGINT_IGNORED";
const TIMEOUT: Duration = Duration::from_secs(20);

fn inputs() -> Vec<InputSpec> {
    vec![InputSpec::Frame { name: "pixels".into(), height: 4, width: 6 }]
}

/// Answers each observation with its sequence number as the action.
struct Echo(Vec<InputSpec>);

impl Backend for Echo {
    fn inputs(&self) -> &[InputSpec] {
        &self.0
    }
    fn step(&mut self, observation: &[Message], _: Instant, slot: &mut ActionSlot) -> Result<StepTimes, swm::Error> {
        slot.action[0] = observation[0].header.sequence as f32;
        slot.action_dim = 1;
        slot.status = ActionStatus::Solved as u32;
        Ok(StepTimes::default())
    }
    fn set_goal(&mut self, _: &[Message]) -> Result<(), swm::Error> {
        Ok(())
    }
    fn reset(&mut self) {}
    fn update_planner(&mut self, _: PlannerUpdate) -> Result<(), swm::Error> {
        Ok(())
    }
}

/// The daemon side: runs until a signal, then exits 0 (or fails the child test, exiting non-zero).
#[test]
fn child_daemon() {
    let Ok(prefix) = std::env::var(ROLE) else { return };
    let mut config = LoopConfig { artifact: Some("unused".into()), ..LoopConfig::default() };
    config.ipc.prefix = prefix;
    config.ipc.node_name = format!("swm-loop-test-{}", std::process::id());
    let shutdown = Shutdown::default();
    let transport = Arc::new(Iceoryx::new(&config.ipc).expect("services"));
    let daemon =
        Daemon::start(&config, inputs(), transport, || Ok(Echo(inputs())), shutdown.clone()).expect("daemon starts");
    if std::env::var(IGNORED).is_ok() {
        assert!(install_signal_handler(&shutdown).is_err(), "SIGINT was started ignored");
        take_signals(&shutdown).expect("the daemon takes ignored signals over");
    } else {
        // Installed after iceoryx2 set everything up: it would fail if iceoryx2 (or anyone) had taken the signals.
        install_signal_handler(&shutdown).expect("swm-loop is the only owner of SIGINT/SIGTERM");
    }
    println!("@ready");
    while !shutdown.requested() {
        std::thread::sleep(Duration::from_millis(5));
    }
    daemon.join().expect("clean shutdown");
    println!("@stopped");
}

/// The controller side for the SIGKILL test: attaches a publisher to the observation service, then waits.
#[test]
fn child_controller() {
    let Ok(prefix) = std::env::var(CONTROLLER) else { return };
    let node = ipc::node("swm-loop-test-killed-controller").expect("node");
    let observations = ipc::observation_service(&node, &prefix).expect("observations");
    let _publisher = ipc::observation_publisher(&observations, 6 * 3 * 4).expect("publisher");
    println!("@ready");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A controller killed with SIGKILL while the daemon runs: the daemon's control thread finds its node dead and
/// removes its resources (its publisher leaves the service) within its cleanup period, and keeps serving.
fn a_controller_killed_while_the_daemon_runs_is_cleaned_up(prefix: &str) {
    let (mut daemon, _out) = spawn_daemon(prefix);
    // Opened before the kill: creating nodes or opening services later would clean the dead node up on our side.
    let node = ipc::node(&format!("observer-{}", std::process::id())).expect("node");
    let observations = ipc::observation_service(&node, prefix).expect("observations");
    let exe = std::env::current_exe().expect("test binary");
    let mut controller = Process::new(exe)
        .args(["--exact", "child_controller", "--nocapture", "--test-threads", "1"])
        .env(CONTROLLER, prefix)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the controller");
    let mut out = BufReader::new(controller.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("@ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap_or(0) > 0, "the controller did not start");
    }
    assert_eq!(observations.dynamic_config().number_of_publishers(), 1);
    signal(&controller, "KILL");
    let _ = controller.wait();
    let end = Instant::now() + swm_loop::transport::CLEANUP_PERIOD + Duration::from_secs(5);
    while observations.dynamic_config().number_of_publishers() > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let cleaned = observations.dynamic_config().number_of_publishers() == 0;
    if !cleaned {
        let _ = daemon.kill(); // an orphaned daemon would keep the test's output open
    }
    assert!(cleaned, "the daemon did not clean the dead controller's node up");
    drop((observations, node));
    round_trip(prefix, 1);
    signal(&daemon, "TERM");
    assert!(wait(&mut daemon).success());
}

/// iceoryx2's files (shared memory, node and service files), without the per-host node counter it keeps forever.
fn iceoryx_files() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["/dev/shm", "/tmp/iceoryx2"] {
        collect(Path::new(dir), &mut files);
    }
    files.retain(|f| f.contains("iox2") && !f.ends_with(".global_mgmt"));
    files.sort();
    files
}

fn collect(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p.display().to_string());
        }
    }
}

/// Starts the daemon child on `prefix` and waits until it serves.
fn spawn_daemon(prefix: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    spawn(prefix, false)
}

/// Starts the daemon child, with SIGINT ignored (through `sh -c "trap '' INT; exec ..."`) when `ignored`.
fn spawn(prefix: &str, ignored: bool) -> (Child, BufReader<std::process::ChildStdout>) {
    let exe = std::env::current_exe().expect("test binary");
    let args = ["--exact", "child_daemon", "--nocapture", "--test-threads", "1"];
    let mut command = if ignored {
        let mut c = Process::new("sh");
        c.arg("-c").arg("trap '' INT; exec \"$0\" \"$@\"").arg(&exe).args(args).env(IGNORED, "1");
        c
    } else {
        let mut c = Process::new(&exe);
        c.args(args);
        // A test run started in the background by a script (`cmd &`, `nohup`) inherits SIGINT / SIGHUP ignored,
        // which ctrlc (with its termination signals) reports as taken; the daemon child starts with the default
        // dispositions, as from a terminal (the ignored case is the branch above).
        // SAFETY: `signal` is async-signal-safe; the closure runs in the forked child before exec and touches
        // nothing else.
        unsafe {
            c.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            })
        };
        c
    };
    let mut child =
        command.env(ROLE, prefix).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn the daemon");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let end = Instant::now() + TIMEOUT;
    while !line.contains("@ready") {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > end {
            let _ = child.kill();
            panic!("the daemon did not start");
        }
    }
    (child, out)
}

/// Publishes observations until an action for one of them comes back; returns it.
fn round_trip(prefix: &str, first_sequence: u64) -> ActionSlot {
    let node = ipc::node(&format!("controller-{}", std::process::id())).expect("node");
    let observations = ipc::observation_service(&node, prefix).expect("observations");
    let actions = ipc::action_service(&node, prefix).expect("actions");
    let publisher = ipc::observation_publisher(&observations, 6 * 3 * 4).expect("publisher");
    let subscriber = ipc::action_subscriber(&actions).expect("subscriber");
    let mut header = ObservationHeader {
        modality: Modality::Frame as u32,
        encoding: Encoding::Rgb8 as u32,
        width: 6,
        height: 4,
        pitch: 18,
        ..ObservationHeader::default()
    };
    header.set_name("pixels").expect("name");
    let end = Instant::now() + TIMEOUT;
    let mut sequence = first_sequence;
    while Instant::now() < end {
        header.sequence = sequence;
        ipc::send_observation(&publisher, &header, &[9u8; 18 * 4]).expect("send");
        std::thread::sleep(Duration::from_millis(10));
        if let Some(sample) = subscriber.receive().expect("receive") {
            if sample.payload().observation_sequence >= first_sequence {
                return *sample.payload();
            }
        }
        sequence += 1;
    }
    panic!("no action came back within {TIMEOUT:?}");
}

fn signal(child: &Child, name: &str) {
    let status = Process::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let end = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the daemon did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn signals_end_the_daemon_cleanly_and_killed_peers_are_cleaned_up() {
    if std::env::var(ROLE).is_ok() || std::env::var(CONTROLLER).is_ok() {
        return;
    }
    let before = iceoryx_files();
    let prefix = format!("swm-loop-test-{}", std::process::id());
    a_controller_killed_while_the_daemon_runs_is_cleaned_up(&prefix);
    for sig in ["TERM", "INT"] {
        let (mut child, mut out) = spawn_daemon(&prefix);
        let slot = round_trip(&prefix, 1);
        assert_eq!(slot.action(), &[slot.observation_sequence as f32]);
        assert_eq!(slot.status(), Some(ActionStatus::Solved));
        signal(&child, sig);
        let status = wait(&mut child);
        assert!(status.success(), "SIG{sig}: {status:?}");
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        assert!(rest.contains("@stopped"), "SIG{sig}: the daemon did not stop through its shutdown path");
    }
    // Started with SIGINT ignored (a shell's background job): the daemon takes the signals over, SIGTERM ends it.
    let (mut child, mut out) = spawn(&prefix, true);
    round_trip(&prefix, 50);
    signal(&child, "TERM");
    assert!(wait(&mut child).success(), "SIGTERM after a takeover");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(rest.contains("@stopped"));
    // SIGKILL leaves the daemon's single action-publisher slot taken; the next daemon cleans the dead node up and
    // serves on the same services.
    let (mut child, _out) = spawn_daemon(&prefix);
    round_trip(&prefix, 100);
    signal(&child, "KILL");
    assert!(!wait(&mut child).success());
    let (mut child, mut out) = spawn_daemon(&prefix);
    let slot = round_trip(&prefix, 200);
    assert!(slot.observation_sequence >= 200);
    signal(&child, "TERM");
    assert!(wait(&mut child).success());
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    // Everything the runs created is gone (the killed daemon's files were removed by its successor).
    let end = Instant::now() + Duration::from_secs(5);
    let mut after = iceoryx_files();
    while after != before && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        after = iceoryx_files();
    }
    let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
    assert!(new.is_empty(), "iceoryx2 files left behind: {new:#?}");
}
