//! The swm-ipc types and services between two processes, through iceoryx2 shared memory.
//!
//! Each test plays one side (usually the daemon) and re-executes this test binary as the other side: the child runs
//! exactly one `child_*` test, selected by `--exact` and by the `SWM_IPC_TEST_ROLE` environment variable (without
//! it a `child_*` test returns at once, so a plain `cargo test` only runs them as no-ops). Parent and child talk
//! over the child's stdin/stdout (`@swm <word>` lines) to order their steps.
//!
//! Every test works in its own iceoryx2 domain (a config whose `global.prefix` is unique to the process and the
//! test) under its own service prefix, so tests running in parallel, and other iceoryx2 users on the host, never
//! see each other's nodes or services; each test ends by checking that no shared-memory file or node file of its
//! domain is left behind.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use swm_ipc::iceoryx2::node::NodeView;
use swm_ipc::iceoryx2::port::publisher::PublisherCreateError;
use swm_ipc::iceoryx2::prelude::{CallbackProgression, Config, FileName, Node, NodeState, PortFactory, SemanticString};
use swm_ipc::transport::{self, EventKind, EventListener, Service, TransportError, UpdateConnections};
use swm_ipc::{
    monotonic_ns, ActionSlot, ActionStatus, Command, CommandReply, Encoding, Modality, ObservationHeader, ReplyCode,
    StageStats, Stats, STAGES,
};

const ROLE_ENV: &str = "SWM_IPC_TEST_ROLE";
const DOMAIN_ENV: &str = "SWM_IPC_TEST_DOMAIN";
/// How long any one wait may take before the test fails (generous: a loaded 2-core CI machine).
const TIMEOUT: Duration = Duration::from_secs(20);
/// Sleep between polls.
const POLL: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------------------------------------------------------
// Domains, children and polling.

/// One test's iceoryx2 domain (config prefix) and service prefix.
struct Domain {
    name: String,
    config: Config,
}

impl Domain {
    /// A fresh domain for `test` in this process.
    fn new(test: &str) -> Self {
        Self::named(format!("swmt{}{test}", std::process::id()))
    }

    /// The domain a parent passed to this child.
    fn inherited() -> Self {
        Self::named(std::env::var(DOMAIN_ENV).expect("a child runs with its parent's domain"))
    }

    fn named(name: String) -> Self {
        let mut config = swm_ipc::transport::global_config().clone();
        config.global.prefix = FileName::new(iox_prefix(&name).as_bytes()).expect("a valid file name prefix");
        Self { name, config }
    }

    /// The service prefix of this domain (the services' names are unique too, not only their files).
    fn prefix(&self) -> String {
        format!("test/{}", self.name)
    }

    fn node(&self, name: &str) -> Node<Service> {
        transport::node_with_config(name, &self.config).expect("node")
    }

    /// Fails if any shared-memory or node/service file of this domain is left, then removes the domain's global
    /// management segment: a 16-byte node counter that iceoryx2 keeps in `/dev/shm` for the life of the host, one
    /// per domain (the default domain has one too), which only a domain made for one test can drop.
    fn assert_nothing_left(&self) {
        let prefix = iox_prefix(&self.name);
        let mut left = Vec::new();
        for dir in ["/dev/shm".to_owned(), self.config.global.root_path().to_string()] {
            collect_files(std::path::Path::new(&dir), &prefix, &mut left);
        }
        left.retain(|f| !f.ends_with(".global_mgmt"));
        assert!(left.is_empty(), "iceoryx2 files of domain {prefix} left behind: {left:#?}");
        // SAFETY: no process uses this domain any more (every node of the test and of its children is gone).
        let removed = unsafe { swm_ipc::iceoryx2::testing::remove_global_mgmt_segment::<Service>(&self.config) };
        assert_eq!(removed, Ok(true), "the domain's management segment existed and is removed");
        collect_files(std::path::Path::new("/dev/shm"), &prefix, &mut left);
        assert!(left.is_empty(), "{left:?}");
    }
}

/// The iceoryx2 file prefix of a domain: starts with iceoryx2's default `iox2_`, so that a look at
/// `/dev/shm/iox2_*` after a test run also covers these tests.
fn iox_prefix(domain: &str) -> String {
    format!("iox2_{domain}_")
}

fn collect_files(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, prefix, out);
        } else if entry.file_name().to_string_lossy().starts_with(prefix) {
            out.push(path.display().to_string());
        }
    }
}

/// This test binary re-executed as the child `role`, with its stdin and stdout piped to us.
struct ChildProcess {
    role: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl ChildProcess {
    fn spawn(role: &'static str, domain: &Domain) -> Self {
        let mut child = Process::new(std::env::current_exe().expect("test binary"))
            .args([role, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(DOMAIN_ENV, &domain.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The test harness may print `test child_x ... ` on the same line first.
                if let Some((_, word)) = line.split_once("@swm ") {
                    if tx.send(word.to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        Self { role, child, stdin, lines }
    }

    /// Waits for the child to say `word`.
    fn expect(&mut self, word: &str) {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(said) => assert_eq!(said, word, "{} said something else", self.role),
            Err(e) => panic!("{} did not say {word:?} ({e}); exit status: {:?}", self.role, self.child.try_wait()),
        }
    }

    /// Tells the child `word`.
    fn say(&mut self, word: &str) {
        writeln!(self.stdin, "{word}").and_then(|()| self.stdin.flush()).expect("write to the child");
    }

    /// Waits for the child to exit and requires success.
    fn finish(mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                assert!(status.success(), "{} failed: {status}", self.role);
                return;
            }
            assert!(start.elapsed() < TIMEOUT, "{} did not exit", self.role);
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, then reap.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the child");
        let status = self.child.wait().expect("reap the child");
        assert!(!status.success(), "a killed child does not succeed");
    }
}

impl Drop for ChildProcess {
    /// A failed test never leaves its child running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a child: the domain when this process runs as `role`, `None` when it is the plain test run.
fn child_role(role: &str) -> Option<Domain> {
    (std::env::var(ROLE_ENV).ok()? == role).then(Domain::inherited)
}

/// In a child: tells the parent `word`.
fn say(word: &str) {
    println!("@swm {word}");
}

/// In a child: waits for the parent to say `word` on stdin.
fn expect(word: &str) {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("read from the parent");
    assert_eq!(line.trim_end(), word, "the parent said something else");
}

/// Polls `f` until it returns `Some`, sleeping between tries; panics after [`TIMEOUT`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        thread::sleep(POLL);
    }
}

/// Waits on `listener` until an event of `kind` arrives (other kinds are ignored).
fn wait_for_event(listener: &EventListener, kind: EventKind) {
    let start = Instant::now();
    let mut seen = false;
    while !seen {
        let remaining = TIMEOUT.checked_sub(start.elapsed()).unwrap_or_else(|| panic!("no {kind:?} event"));
        listener
            .timed_wait(|e| seen |= EventKind::from_id(e.id) == Some(kind), remaining.min(Duration::from_millis(100)))
            .expect("listener wait");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The messages of the round trip.

const FRAME_W: u32 = 64;
const FRAME_H: u32 = 48;
const FRAME_PITCH: u32 = 200; // 192 bytes of RGB pixels + 8 bytes of row padding
const STATE: [f32; 5] = [0.5, -1.25, 3.0, f32::MIN_POSITIVE, 1e30];
const ROUND_TRIP_SEQUENCE: u64 = 42;

fn frame_bytes(seed: u8) -> Vec<u8> {
    (0..(FRAME_PITCH * FRAME_H) as usize).map(|i| ((i * 7 + usize::from(seed)) % 251) as u8).collect()
}

fn frame_header(sequence: u64, capture_ns: u64) -> ObservationHeader {
    let mut h = ObservationHeader::frame(sequence, capture_ns, Encoding::Rgb8, FRAME_W, FRAME_H, FRAME_PITCH);
    h.set_name("pixels").unwrap();
    h.episode = 3;
    h
}

fn state_header(sequence: u64, capture_ns: u64) -> ObservationHeader {
    let mut h = ObservationHeader::state(sequence, capture_ns, STATE.len() as u32);
    h.set_name("state").unwrap();
    h.episode = 3;
    h
}

fn state_bytes() -> Vec<u8> {
    STATE.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn goal_header() -> ObservationHeader {
    let mut h = ObservationHeader::frame(1, 5, Encoding::Rgba8, 2, 2, 8);
    h.set_name("pixels").unwrap();
    h
}

fn answer(observation: &ObservationHeader, received_ns: u64) -> ActionSlot {
    let mut slot = ActionSlot {
        sequence: 1,
        observation_sequence: observation.sequence,
        captured_ns: observation.capture_ns,
        received_ns,
        published_ns: monotonic_ns(),
        status: ActionStatus::Truncated as u32,
        iterations: 17,
        cost: 0.125,
        ..ActionSlot::EMPTY
    };
    slot.set_action(&[0.25, -0.75]).unwrap();
    slot.set_plan(3, &[0.25, -0.75, 0.5, 0.5, -1.0, 1.0]).unwrap();
    slot
}

fn stats() -> Stats {
    let mut stats =
        Stats { observations_received: 2, steps: 1, actions_published: 1, window_ns: 1_000_000_000, ..Stats::EMPTY };
    for (i, stage) in stats.stages.iter_mut().enumerate() {
        *stage = StageStats { p50_us: i as f32, p99_us: 2.0 * i as f32, max_us: 3.0 * i as f32, count: 1 };
    }
    stats
}

// ---------------------------------------------------------------------------------------------------------------
// (a) Round trip: observations and a goal in, a command answered, an action and stats out.

#[test]
fn observation_goal_command_action_and_stats_round_trip_between_processes() {
    let domain = Domain::new("rt");
    {
        let prefix = domain.prefix();
        let node = domain.node("swm-test-daemon");
        let observations = transport::observation_service(&node, &prefix).unwrap();
        let goals = transport::goal_service(&node, &prefix).unwrap();
        let actions = transport::action_service(&node, &prefix).unwrap();
        let control = transport::control_service(&node, &prefix).unwrap();
        let stats_service = transport::stats_service(&node, &prefix).unwrap();
        let events = transport::events_service(&node, &prefix).unwrap();
        let observation_sub = transport::observation_subscriber(&observations).unwrap();
        let action_pub = transport::action_publisher(&actions).unwrap();
        let server = transport::control_server(&control).unwrap();
        let stats_pub = transport::stats_publisher(&stats_service).unwrap();
        let listener = transport::listener(&events).unwrap();
        let notifier = transport::notifier(&events).unwrap();

        let mut controller = ChildProcess::spawn("child_controller", &domain);
        controller.expect("ready"); // it has published a goal before we subscribed to goals
        let goal_sub = transport::goal_subscriber(&goals).unwrap();
        controller.say("go");

        // The goal arrives as history, once the controller's publisher updates its connections.
        let goal = poll("the goal", || goal_sub.receive().unwrap());
        assert_eq!(*goal.user_header(), goal_header());
        assert_eq!(goal.payload(), &[9u8; 16][..]);

        wait_for_event(&listener, EventKind::Observation);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let sample = poll("two observations", || observation_sub.receive().unwrap());
            let received_ns = monotonic_ns();
            let header = *sample.user_header();
            assert_eq!(header.expected_payload_len(), Some(sample.payload().len()));
            match header.name() {
                Some("pixels") => {
                    assert_eq!(header, frame_header(ROUND_TRIP_SEQUENCE, header.capture_ns));
                    assert_eq!(header.modality(), Some(Modality::Frame));
                    assert_eq!(sample.payload(), frame_bytes(1).as_slice(), "frame bytes arrive intact");
                }
                Some("state") => {
                    assert_eq!(header, state_header(ROUND_TRIP_SEQUENCE, header.capture_ns));
                    assert_eq!(sample.payload(), state_bytes().as_slice(), "state bytes arrive intact");
                }
                other => panic!("unexpected observation {other:?}"),
            }
            assert!(header.capture_ns > 0 && header.capture_ns <= received_ns, "CLOCK_MONOTONIC in both processes");
            seen.push((header, received_ns));
        }

        let request = poll("a command", || server.receive().unwrap());
        assert_eq!(*request.payload(), Command::set_planner(300, 30, 5, 20_000, 7));
        request.send_copy(CommandReply::ok("planner updated")).unwrap();
        drop(request);

        let (header, received_ns) = seen[0];
        assert_eq!(action_pub.send_copy(answer(&header, received_ns)).unwrap(), 1, "one action subscriber");
        notifier.notify_with_custom_event_id(EventKind::Action.id()).unwrap();
        stats_pub.send_copy(stats()).unwrap();
        notifier.notify_with_custom_event_id(EventKind::Stats.id()).unwrap();

        controller.expect("done");
        controller.finish();
    }
    domain.assert_nothing_left();
}

#[test]
fn child_controller() {
    let Some(domain) = child_role("child_controller") else { return };
    {
        let prefix = domain.prefix();
        let node = domain.node("swm-test-controller");
        let observations = transport::observation_service(&node, &prefix).unwrap();
        let goals = transport::goal_service(&node, &prefix).unwrap();
        let actions = transport::action_service(&node, &prefix).unwrap();
        let control = transport::control_service(&node, &prefix).unwrap();
        let stats_service = transport::stats_service(&node, &prefix).unwrap();
        let events = transport::events_service(&node, &prefix).unwrap();
        // A small first slice: the 9600-byte frame makes the publisher grow its memory (power of two).
        let observation_pub = transport::observation_publisher(&observations, 64).unwrap();
        let goal_pub = transport::observation_publisher(&goals, 16).unwrap();
        let action_sub = transport::action_subscriber(&actions).unwrap();
        let client = transport::control_client(&control).unwrap();
        let stats_sub = transport::stats_subscriber(&stats_service).unwrap();
        let listener = transport::listener(&events).unwrap();
        let notifier = transport::notifier(&events).unwrap();

        assert_eq!(
            transport::send_observation(&goal_pub, &goal_header(), &[9u8; 16]).unwrap(),
            0,
            "no goal subscriber yet"
        );
        say("ready");
        expect("go");
        goal_pub.update_connections().unwrap();

        let now = monotonic_ns();
        assert_eq!(
            transport::send_observation(&observation_pub, &frame_header(ROUND_TRIP_SEQUENCE, now), &frame_bytes(1))
                .unwrap(),
            1
        );
        assert_eq!(
            transport::send_observation(&observation_pub, &state_header(ROUND_TRIP_SEQUENCE, now), &state_bytes())
                .unwrap(),
            1
        );
        notifier.notify_with_custom_event_id(EventKind::Observation.id()).unwrap();
        // The helper refuses a payload the header does not describe.
        let refused = transport::send_observation(&observation_pub, &frame_header(43, now), &[0u8; 10]);
        assert!(
            matches!(refused, Err(TransportError::PayloadLength { expected: Some(9600), actual: 10 })),
            "{refused:?}"
        );

        let pending = client.send_copy(Command::set_planner(300, 30, 5, 20_000, 7)).unwrap();
        let reply = poll("the command reply", || pending.receive().unwrap());
        let reply = *reply.payload();
        assert!(reply.accepted());
        assert_eq!(reply.code(), Some(ReplyCode::Ok));
        assert_eq!(reply.message(), Some("planner updated"));

        wait_for_event(&listener, EventKind::Action);
        let action = poll("the action", || action_sub.receive().unwrap());
        let expected = answer(&frame_header(ROUND_TRIP_SEQUENCE, now), action.received_ns);
        assert_eq!(ActionSlot { published_ns: 0, ..*action.payload() }, ActionSlot { published_ns: 0, ..expected });
        assert_eq!(action.status(), Some(ActionStatus::Truncated));
        assert_eq!(action.action(), &[0.25, -0.75]);
        assert_eq!(action.plan(), &[0.25, -0.75, 0.5, 0.5, -1.0, 1.0]);
        assert!(now <= action.received_ns && action.received_ns <= action.published_ns);
        assert!(action.published_ns <= monotonic_ns());

        let stats_sample = poll("stats", || stats_sub.receive().unwrap());
        assert_eq!(*stats_sample.payload(), stats());
        assert_eq!(stats_sample.stage("plan").unwrap().count, 1);
        assert_eq!(stats_sample.stages.len(), STAGES);
    }
    say("done");
}

// ---------------------------------------------------------------------------------------------------------------
// (b) A subscriber that never reads does not stall the publisher; it then sees only the latest action.

const FLOOD: u64 = 10_000;

#[test]
fn a_subscriber_that_never_reads_does_not_stall_the_action_publisher() {
    let domain = Domain::new("stall");
    {
        let mut reader = ChildProcess::spawn("child_action_reader", &domain);
        reader.expect("ready");

        // Publish from a thread (a port stays on the thread that made it), so that a blocked publisher fails the
        // test instead of hanging it.
        let (report, reported) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let config = domain.config.clone();
        let prefix = domain.prefix();
        let publishing = thread::spawn(move || {
            let node = transport::node_with_config("swm-test-daemon", &config).unwrap();
            let actions = transport::action_service(&node, &prefix).unwrap();
            let publisher = transport::action_publisher(&actions).unwrap();
            let start = Instant::now();
            let mut slowest = Duration::ZERO;
            for sequence in 1..=FLOOD {
                let sent = Instant::now();
                let mut sample = publisher.loan_uninit().unwrap().write_payload(ActionSlot::EMPTY);
                sample.payload_mut().sequence = sequence;
                assert_eq!(sample.send().unwrap(), 1, "delivered to the one subscriber");
                slowest = slowest.max(sent.elapsed());
            }
            report.send((start.elapsed(), slowest)).unwrap();
            // Keep the publisher (and the memory of the sample the reader holds) until the reader is done.
            let _ = released.recv_timeout(TIMEOUT);
        });
        let (total, slowest) = match reported.recv_timeout(TIMEOUT) {
            Ok(r) => r,
            Err(_) if publishing.is_finished() => std::panic::resume_unwind(publishing.join().unwrap_err()),
            Err(_) => panic!("the publisher blocked: {FLOOD} sends did not finish in {TIMEOUT:?}"),
        };
        eprintln!("{FLOOD} action slots to a subscriber that never reads: {total:?}, slowest send {slowest:?}");
        assert!(slowest < Duration::from_secs(2), "a send waited for the subscriber: {slowest:?}");

        reader.say("read");
        reader.expect("done");
        reader.finish();
        release.send(()).unwrap();
        publishing.join().unwrap();
    }
    domain.assert_nothing_left();
}

#[test]
fn child_action_reader() {
    let Some(domain) = child_role("child_action_reader") else { return };
    {
        let node = domain.node("swm-test-reader");
        let actions = transport::action_service(&node, &domain.prefix()).unwrap();
        let subscriber = transport::action_subscriber(&actions).unwrap();
        assert_eq!(subscriber.buffer_size(), 1);
        say("ready");
        expect("read");
        let latest = subscriber.receive().unwrap().expect("the latest action is waiting");
        assert_eq!(latest.sequence, FLOOD, "only the newest slot survives");
        drop(latest);
        assert!(subscriber.receive().unwrap().is_none(), "and nothing older");
    }
    say("done");
}

// ---------------------------------------------------------------------------------------------------------------
// (c) A controller killed with SIGKILL is found dead, its resources are removed, and a new controller attaches.

#[test]
fn a_killed_controller_is_detected_cleaned_up_and_replaced() {
    let domain = Domain::new("kill");
    {
        let prefix = domain.prefix();
        let node = domain.node("swm-test-daemon");
        let observations = transport::observation_service(&node, &prefix).unwrap();
        let actions = transport::action_service(&node, &prefix).unwrap();
        let observation_sub = transport::observation_subscriber(&observations).unwrap();
        let action_pub = transport::action_publisher(&actions).unwrap();

        let mut controller = ChildProcess::spawn("child_killed_controller", &domain);
        controller.expect("ready");
        let first = poll("the first controller's observation", || observation_sub.receive().unwrap());
        assert_eq!(first.user_header().sequence, 1);
        drop(first);
        assert_eq!(observations.dynamic_config().number_of_publishers(), 1);
        assert_eq!(actions.dynamic_config().number_of_subscribers(), 1);

        controller.kill();
        // Publishing to the dead subscriber neither blocks nor fails.
        action_pub.send_copy(ActionSlot { sequence: 1, ..ActionSlot::EMPTY }).unwrap();

        // Detect: the dead process's node is listed as dead (its monitoring lock was released by the kernel).
        let mut dead = Vec::new();
        Node::<Service>::list(&domain.config, |state| {
            match state {
                NodeState::Dead(view) => {
                    let name = view.details().as_ref().map(|d| d.name().as_str().to_owned());
                    // Blocking, with a timeout: iceoryx2 lets one thread per process clean at a time and answers
                    // `AnotherInstanceIsCleaningUpTheNode` to the others (here: the other tests' nodes).
                    dead.push((name, view.blocking_remove_stale_resources(TIMEOUT)));
                }
                NodeState::Alive(view) => {
                    let name = view.details().as_ref().map(|d| d.name().as_str().to_owned());
                    assert_eq!(name.as_deref(), Some("swm-test-daemon"), "only we are alive");
                }
                other => panic!("unexpected node state {other:?}"),
            }
            CallbackProgression::Continue
        })
        .unwrap();
        // Clean: its stale resources were removed, and its ports left the services.
        assert_eq!(dead, vec![(Some("swm-test-controller".to_owned()), Ok(()))]);
        assert_eq!(observations.dynamic_config().number_of_publishers(), 0);
        assert_eq!(actions.dynamic_config().number_of_subscribers(), 0);
        let mut listed = 0;
        Node::<Service>::list(&domain.config, |_| {
            listed += 1;
            CallbackProgression::Continue
        })
        .unwrap();
        assert_eq!(listed, 1, "only our node is left");

        // A new controller attaches to the same services and is served.
        let mut controller = ChildProcess::spawn("child_new_controller", &domain);
        let second = poll("the new controller's observation", || observation_sub.receive().unwrap());
        assert_eq!(second.user_header().sequence, 2);
        assert_eq!(second.payload(), frame_bytes(2).as_slice());
        let header = *second.user_header();
        drop(second);
        let mut slot = answer(&header, monotonic_ns());
        slot.sequence = 2;
        action_pub.send_copy(slot).unwrap();
        controller.expect("done");
        controller.finish();
    }
    domain.assert_nothing_left();
}

/// Publishes one observation, then waits to be killed.
#[test]
fn child_killed_controller() {
    let Some(domain) = child_role("child_killed_controller") else { return };
    let prefix = domain.prefix();
    let node = domain.node("swm-test-controller");
    let observations = transport::observation_service(&node, &prefix).unwrap();
    let actions = transport::action_service(&node, &prefix).unwrap();
    let publisher = transport::observation_publisher(&observations, transport::DEFAULT_OBSERVATION_SLICE_LEN).unwrap();
    let _subscriber = transport::action_subscriber(&actions).unwrap();
    transport::send_observation(&publisher, &frame_header(1, monotonic_ns()), &frame_bytes(1)).unwrap();
    say("ready");
    expect("never said: the parent kills this process");
}

/// Publishes one observation and waits for the action that answers it.
#[test]
fn child_new_controller() {
    let Some(domain) = child_role("child_new_controller") else { return };
    {
        let prefix = domain.prefix();
        let node = domain.node("swm-test-controller");
        let observations = transport::observation_service(&node, &prefix).unwrap();
        let actions = transport::action_service(&node, &prefix).unwrap();
        let publisher =
            transport::observation_publisher(&observations, transport::DEFAULT_OBSERVATION_SLICE_LEN).unwrap();
        let subscriber = transport::action_subscriber(&actions).unwrap();
        transport::send_observation(&publisher, &frame_header(2, monotonic_ns()), &frame_bytes(2)).unwrap();
        let action = poll("the answer", || subscriber.receive().unwrap().filter(|a| a.observation_sequence == 2));
        assert_eq!(action.sequence, 2);
        assert_eq!(action.action(), &[0.25, -0.75]);
    }
    say("done");
}

// ---------------------------------------------------------------------------------------------------------------
// (d) A daemon killed with SIGKILL holds the single action-publisher slot until its node is cleaned up.

#[test]
fn a_killed_daemon_holds_the_action_publisher_slot_until_cleaned_up() {
    let domain = Domain::new("slot");
    {
        let prefix = domain.prefix();
        let node = domain.node("swm-test-observer");
        let actions = transport::action_service(&node, &prefix).unwrap();

        let mut daemon = ChildProcess::spawn("child_killed_daemon", &domain);
        daemon.expect("ready");
        let second = transport::action_publisher(&actions);
        assert!(
            matches!(second, Err(TransportError::Publisher(PublisherCreateError::ExceedsMaxSupportedPublishers))),
            "one action publisher per service: {second:?}"
        );
        daemon.kill();
        let while_dead = transport::action_publisher(&actions);
        assert!(
            matches!(while_dead, Err(TransportError::Publisher(PublisherCreateError::ExceedsMaxSupportedPublishers))),
            "the dead daemon's publisher holds the slot until its node is cleaned up: {while_dead:?}"
        );

        // Blocking, with a timeout, for the reason given in the test above.
        let cleanup = node.blocking_cleanup_dead_nodes(TIMEOUT);
        assert_eq!((cleanup.cleanups, cleanup.failed_cleanups), (1, 0));
        assert_eq!(actions.dynamic_config().number_of_publishers(), 0);
        let subscriber = transport::action_subscriber(&actions).unwrap();
        let publisher = transport::action_publisher(&actions).expect("the slot is free again");
        publisher.send_copy(ActionSlot { sequence: 8, ..ActionSlot::EMPTY }).unwrap();
        assert_eq!(subscriber.receive().unwrap().expect("the new daemon's action").sequence, 8);

        let again = node.blocking_cleanup_dead_nodes(TIMEOUT);
        assert_eq!((again.cleanups, again.failed_cleanups), (0, 0), "nothing is left to clean");
    }
    domain.assert_nothing_left();
}

/// Holds the action publisher, then waits to be killed.
#[test]
fn child_killed_daemon() {
    let Some(domain) = child_role("child_killed_daemon") else { return };
    let node = domain.node("swm-test-daemon");
    let actions = transport::action_service(&node, &domain.prefix()).unwrap();
    let publisher = transport::action_publisher(&actions).unwrap();
    publisher.send_copy(ActionSlot { sequence: 7, ..ActionSlot::EMPTY }).unwrap();
    say("ready");
    expect("never said: the parent kills this process");
}
