//! The daemon's actors with a CPU test double behind the `Backend` trait and channels behind the `Transport`
//! trait: hand-over, latest-wins, rejection of malformed messages, deadline fallback, control commands, shutdown.
//! No GPU, no shared memory (the iceoryx2 transport has its own tests).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use swm_ipc::{
    ActionSlot, ActionStatus, Command, CommandKind, CommandReply, Encoding, Modality, ObservationHeader, Stats,
};
use swm_loop::backend::{Backend, PlannerUpdate, StepTimes};
use swm_loop::config::{FrameSizes, LoopConfig};
use swm_loop::daemon::{ActionSink, CommandSource, Daemon, ObservationSource, Shutdown, Transport, TransportError};
use swm_loop::message::{InputSpec, Message};

/// What the test double was asked to do.
#[derive(Debug, Default)]
struct Log {
    steps: Vec<u64>,
    goals: usize,
    resets: usize,
    planner: Vec<PlannerUpdate>,
}

/// A backend that "plans" by echoing the observation's sequence as its action (a three-step plan `seq`,
/// `seq + 0.25`, `seq + 0.5`), taking `delay` per step; a step slower than its deadline publishes the warm start,
/// as the engine does. `stall` makes the next step ignore its deadline (a GPU that hangs, then finishes).
struct Double {
    inputs: Vec<InputSpec>,
    delay: Arc<Mutex<Duration>>,
    stall: Arc<Mutex<Option<Duration>>>,
    log: Arc<Mutex<Log>>,
}

impl Backend for Double {
    fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }
    fn step(
        &mut self,
        observation: &[Message],
        deadline: Instant,
        slot: &mut ActionSlot,
    ) -> Result<StepTimes, swm::Error> {
        let delay = *self.delay.lock().unwrap();
        let start = Instant::now();
        let status = if let Some(stall) = self.stall.lock().unwrap().take() {
            std::thread::sleep(stall);
            ActionStatus::Solved
        } else if start + delay > deadline {
            std::thread::sleep(deadline.saturating_duration_since(start));
            ActionStatus::WarmStart
        } else {
            std::thread::sleep(delay);
            ActionStatus::Solved
        };
        let seq = observation[0].header.sequence;
        self.log.lock().unwrap().steps.push(seq);
        let s = seq as f32;
        slot.set_action(&[s]).unwrap();
        slot.set_plan(3, &[s, s + 0.25, s + 0.5]).unwrap();
        slot.status = status as u32;
        slot.iterations = if status == ActionStatus::Solved { 30 } else { 0 };
        Ok(StepTimes { plan: start.elapsed(), wall: start.elapsed(), ..StepTimes::default() })
    }
    fn set_goal(&mut self, _goal: &[Message]) -> Result<(), swm::Error> {
        self.log.lock().unwrap().goals += 1;
        Ok(())
    }
    fn reset(&mut self) {
        self.log.lock().unwrap().resets += 1;
    }
    fn update_planner(&mut self, update: PlannerUpdate) -> Result<(), swm::Error> {
        if update.samples > 100_000 {
            return Err(swm::Error::invalid_input("samples", "too many for the test double"));
        }
        self.log.lock().unwrap().planner.push(update);
        Ok(())
    }
}

/// A message of the observation or goal service, owned (the channel standing in for shared memory).
#[derive(Debug, Clone)]
struct Incoming {
    header: ObservationHeader,
    payload: Vec<u8>,
    goal: bool,
}

/// Channel ends standing in for the iceoryx2 services.
struct Channels {
    observations: Receiver<Incoming>,
    actions: Sender<ActionSlot>,
    stats: Sender<Stats>,
    commands: Receiver<(Command, Sender<CommandReply>)>,
}

impl Transport for Channels {
    fn observations(&self) -> Result<Box<dyn ObservationSource>, TransportError> {
        Ok(Box::new(ObsEnd(self.observations.clone())))
    }
    fn actions(&self) -> Result<Box<dyn ActionSink>, TransportError> {
        Ok(Box::new(SinkEnd(self.actions.clone(), self.stats.clone())))
    }
    fn commands(&self) -> Result<Box<dyn CommandSource>, TransportError> {
        Ok(Box::new(CmdEnd(self.commands.clone())))
    }
}

struct ObsEnd(Receiver<Incoming>);
struct SinkEnd(Sender<ActionSlot>, Sender<Stats>);
struct CmdEnd(Receiver<(Command, Sender<CommandReply>)>);

impl ObservationSource for ObsEnd {
    fn receive(
        &mut self,
        timeout: Duration,
        take: &mut dyn FnMut(&ObservationHeader, &[u8], bool),
    ) -> Result<bool, TransportError> {
        let Ok(m) = self.0.recv_timeout(timeout) else { return Ok(false) };
        take(&m.header, &m.payload, m.goal);
        Ok(true)
    }
}
impl ActionSink for SinkEnd {
    fn publish(&mut self, slot: &ActionSlot) -> Result<(), TransportError> {
        let _ = self.0.try_send(*slot);
        Ok(())
    }
    fn publish_stats(&mut self, stats: &Stats) -> Result<(), TransportError> {
        let _ = self.1.try_send(*stats);
        Ok(())
    }
}
impl CommandSource for CmdEnd {
    fn serve(
        &mut self,
        timeout: Duration,
        respond: &mut dyn FnMut(&Command) -> CommandReply,
    ) -> Result<(), TransportError> {
        if let Ok((command, reply)) = self.0.recv_timeout(timeout) {
            let _ = reply.send(respond(&command));
        }
        Ok(())
    }
}

/// A running daemon with the test's ends of the channels.
struct Harness {
    daemon: Option<Daemon>,
    observations: Sender<Incoming>,
    actions: Receiver<ActionSlot>,
    stats: Receiver<Stats>,
    commands: Sender<(Command, Sender<CommandReply>)>,
    delay: Arc<Mutex<Duration>>,
    stall: Arc<Mutex<Option<Duration>>>,
    log: Arc<Mutex<Log>>,
}

const DEADLINE: Duration = Duration::from_millis(20);

fn inputs() -> Vec<InputSpec> {
    vec![
        InputSpec::Frame { name: "pixels".into(), height: 4, width: 6 },
        InputSpec::State { name: "state".into(), dim: 3 },
    ]
}

fn start(observation_queue: usize) -> Harness {
    start_with(observation_queue, |_| {})
}

/// [`start`] with a config change.
fn start_with(observation_queue: usize, edit: impl FnOnce(&mut LoopConfig)) -> Harness {
    let (obs_tx, obs_rx) = bounded(1024);
    let (act_tx, act_rx) = bounded(1024);
    let (stats_tx, stats_rx) = bounded(1024);
    let (cmd_tx, cmd_rx) = bounded(16);
    let mut config = LoopConfig { artifact: Some("unused".into()), stats_period_s: 0.05, ..LoopConfig::default() };
    config.deadline_ms = Some(DEADLINE.as_secs_f64() * 1e3);
    config.ipc.observation_queue = observation_queue;
    edit(&mut config);
    let transport = Arc::new(Channels { observations: obs_rx, actions: act_tx, stats: stats_tx, commands: cmd_rx });
    let delay = Arc::new(Mutex::new(Duration::from_millis(1)));
    let stall = Arc::new(Mutex::new(None));
    let log = Arc::new(Mutex::new(Log::default()));
    let (d, st, l) = (delay.clone(), stall.clone(), log.clone());
    let backend = move || Ok(Double { inputs: inputs(), delay: d, stall: st, log: l });
    let daemon = Daemon::start(&config, inputs(), transport, backend, Shutdown::default()).expect("daemon starts");
    Harness {
        daemon: Some(daemon),
        observations: obs_tx,
        actions: act_rx,
        stats: stats_rx,
        commands: cmd_tx,
        delay,
        stall,
        log,
    }
}

fn frame(sequence: u64) -> Incoming {
    let mut header = ObservationHeader {
        sequence,
        modality: Modality::Frame as u32,
        encoding: Encoding::Rgb8 as u32,
        width: 6,
        height: 4,
        pitch: 18,
        ..ObservationHeader::default()
    };
    header.set_name("pixels").unwrap();
    Incoming { header, payload: vec![7u8; 18 * 4], goal: false }
}

fn state(sequence: u64, values: [f32; 3]) -> Incoming {
    let mut header = ObservationHeader {
        sequence,
        modality: Modality::State as u32,
        encoding: Encoding::F32 as u32,
        elements: 3,
        ..ObservationHeader::default()
    };
    header.set_name("state").unwrap();
    Incoming { header, payload: values.iter().flat_map(|v| v.to_le_bytes()).collect(), goal: false }
}

impl Harness {
    fn send(&self, sequence: u64) {
        self.observations.send(frame(sequence)).unwrap();
        self.observations.send(state(sequence, [0.1, 0.2, 0.3])).unwrap();
    }

    fn next_action(&self) -> ActionSlot {
        self.actions.recv_timeout(Duration::from_secs(5)).expect("an action within 5 s")
    }

    fn command(&self, command: Command) -> CommandReply {
        let (tx, rx) = bounded(1);
        self.commands.send((command, tx)).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).expect("a reply")
    }

    /// Waits for a stats message whose counters satisfy `ok`.
    fn stats_until(&self, ok: impl Fn(&Stats) -> bool) -> Stats {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(s) = self.stats.recv_timeout(Duration::from_millis(200)) {
                if ok(&s) {
                    return s;
                }
            }
        }
        panic!("no stats message satisfied the condition within 5 s");
    }

    fn stop(mut self) {
        let daemon = self.daemon.take().unwrap();
        daemon.shutdown().request();
        let start = Instant::now();
        daemon.join().expect("clean shutdown");
        assert!(start.elapsed() < Duration::from_secs(2), "shutdown took {:?}", start.elapsed());
    }
}

#[test]
fn complete_observations_become_actions_in_order() {
    let h = start(1);
    for seq in 1..=5 {
        h.send(seq);
        let slot = h.next_action();
        assert_eq!(slot.observation_sequence, seq);
        assert_eq!(slot.sequence, seq, "action sequence numbers count from 1");
        assert_eq!(slot.action(), &[seq as f32]);
        assert_eq!(slot.status(), Some(ActionStatus::Solved));
        assert!(slot.published_ns >= slot.received_ns && slot.received_ns > 0, "{slot:?}");
    }
    let stats = h.stats_until(|s| s.actions_published == 5);
    assert_eq!((stats.steps, stats.deadline_misses, stats.observations_rejected), (5, 0, 0));
    h.stop();
}

#[test]
fn an_observation_waits_for_every_input_of_the_same_sequence() {
    let h = start(1);
    h.observations.send(frame(1)).unwrap();
    h.observations.send(state(2, [0.0; 3])).unwrap();
    assert!(h.actions.recv_timeout(Duration::from_millis(200)).is_err(), "frame 1 + state 2 is not an observation");
    h.observations.send(frame(2)).unwrap();
    assert_eq!(h.next_action().observation_sequence, 2);
    h.stop();
}

#[test]
fn the_newest_observation_wins_and_stale_ones_are_counted() {
    let h = start(1);
    *h.delay.lock().unwrap() = Duration::from_millis(15);
    for seq in 1..=20 {
        h.send(seq);
    }
    // The last observation is always planned; the ones that arrived while a step ran were dropped.
    let end = Instant::now() + Duration::from_secs(5);
    let mut last = 0;
    while last != 20 && Instant::now() < end {
        last = h.next_action().observation_sequence;
    }
    assert_eq!(last, 20);
    let steps = h.log.lock().unwrap().steps.clone();
    assert!(steps.len() < 20, "every observation was planned: {steps:?}");
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "out of order: {steps:?}");
    let stats = h.stats_until(|s| s.observations_dropped_stale > 0 && s.steps == steps.len() as u64);
    assert_eq!(stats.observations_dropped_stale + stats.steps, 20, "{stats:?}");
    h.stop();
}

#[test]
fn malformed_messages_are_rejected_counted_and_the_daemon_keeps_serving() {
    // Frames of the model's size only, so that a frame of another size is malformed.
    let h = start_with(1, |c| c.ipc.frame_sizes = FrameSizes::Model);
    let mut bad = Vec::new();
    let mut f = frame(1);
    f.payload.pop(); // wrong length
    bad.push(f);
    let mut f = frame(1);
    f.header.modality = 9; // unknown modality
    bad.push(f);
    bad.push(state(1, [0.0, f32::NAN, 0.0])); // NaN state
    let mut f = frame(1);
    f.header.width = 8; // frame size not matching the schema
    f.header.pitch = 24;
    f.payload = vec![0; 24 * 4];
    bad.push(f);
    let mut f = frame(1);
    f.header.set_name("depth").unwrap(); // unknown input
    bad.push(f);
    let mut f = frame(1);
    f.header.encoding = Encoding::F32 as u32; // an encoding frames do not take
    bad.push(f);
    let mut f = frame(1);
    f.header.encoding = Encoding::Jpeg as u32; // JPEG bytes that are not a JPEG file
    f.header.pitch = 0;
    bad.push(f);
    let mut f = frame(1);
    f.header.encoding = 10; // reserved encoding
    bad.push(f);
    let n = bad.len() as u64;
    for m in bad {
        h.observations.send(m).unwrap();
    }
    h.send(2);
    assert_eq!(h.next_action().observation_sequence, 2);
    let stats = h.stats_until(|s| s.observations_rejected == n);
    assert_eq!(stats.steps, 1);
    h.stop();
}

#[test]
fn a_step_over_its_deadline_publishes_the_fallback_on_time_and_counts_the_miss() {
    let h = start(1);
    *h.delay.lock().unwrap() = Duration::from_millis(200);
    let sent = Instant::now();
    h.send(1);
    let slot = h.next_action();
    assert_eq!(slot.status(), Some(ActionStatus::WarmStart));
    assert!(sent.elapsed() < DEADLINE + Duration::from_millis(150), "published after {:?}", sent.elapsed());
    let stats = h.stats_until(|s| s.deadline_misses == 1);
    assert_eq!(stats.fallbacks_published, 1);
    h.stop();
}

#[test]
fn a_stalled_step_and_the_observations_behind_it_are_answered_by_the_watchdog_on_time() {
    let h = start(1);
    h.send(1);
    let first = h.next_action();
    assert_eq!((first.sequence, first.status()), (1, Some(ActionStatus::Solved)));
    // The next step hangs far past its deadline and several periods (a stalled GPU).
    *h.stall.lock().unwrap() = Some(Duration::from_millis(300));
    // Due half-way between the deadline (20 ms) and the end of the 33 ms period.
    let due = DEADLINE + (Duration::from_secs_f64(1.0 / 30.0) - DEADLINE) / 2;
    let answer = |sequence: u64| {
        let sent = Instant::now();
        h.send(sequence);
        let slot = h.next_action();
        let after = sent.elapsed();
        assert!(after >= DEADLINE && after < due + Duration::from_millis(15), "published after {after:?}, due {due:?}");
        assert_eq!((slot.observation_sequence, slot.sequence), (sequence, sequence));
        assert_eq!(slot.iterations, 0);
        slot
    };
    let slot = answer(2);
    assert_eq!(slot.status(), Some(ActionStatus::WarmStart), "{slot:?}");
    assert_eq!(slot.action(), &[1.25], "the previous plan, shifted by one step");
    assert_eq!(slot.plan(), &[1.25, 1.5]);
    // Queued behind the stalled step: answered on time too, the plan shifting on, then the last action held.
    let slot = answer(3);
    assert_eq!((slot.status(), slot.action()), (Some(ActionStatus::WarmStart), &[1.5f32][..]));
    let slot = answer(4);
    assert_eq!((slot.status(), slot.action()), (Some(ActionStatus::Fallback), &[1.5f32][..]));
    // The stalled step's (late) result never reaches the controller, and the queued observation it would have
    // planned next (already answered) is skipped; the next observation is served normally.
    assert!(h.actions.recv_timeout(Duration::from_millis(400)).is_err(), "a late result was published");
    h.send(5);
    let next = h.next_action();
    assert_eq!((next.observation_sequence, next.sequence, next.status()), (5, 5, Some(ActionStatus::Solved)));
    let stats = h.stats_until(|s| s.actions_published == 5);
    assert_eq!((stats.deadline_misses, stats.fallbacks_published), (3, 3), "{stats:?}");
    assert_eq!(stats.steps, 3, "steps for 1, 2 and 5: {stats:?}");
    assert_eq!(h.log.lock().unwrap().steps, vec![1, 2, 5]);
    h.stop();
}

#[test]
fn control_commands_reach_the_inference_thread() {
    let h = start(1);
    let reply = h.command(Command { kind: CommandKind::ResetEpisode as u32, ..Command::default() });
    assert_eq!(reply.accepted, 1, "{reply:?}");
    let reply = h.command(Command {
        kind: CommandKind::SetPlanner as u32,
        num_samples: 64,
        iterations: 3,
        ..Command::default()
    });
    assert_eq!(reply.accepted, 1, "{reply:?}");
    let reply =
        h.command(Command { kind: CommandKind::SetPlanner as u32, num_samples: 1_000_000, ..Command::default() });
    assert_eq!(reply.accepted, 0, "the backend's refusal comes back: {reply:?}");
    // A step budget longer than the control period is refused before it reaches the backend.
    let reply =
        h.command(Command { kind: CommandKind::SetPlanner as u32, deadline_us: 1_000_000, ..Command::default() });
    assert_eq!(reply.accepted, 0, "{reply:?}");
    let reply = h.command(Command { kind: 77, ..Command::default() });
    assert_eq!(reply.accepted, 0);
    // Paused: observations are dropped, not planned.
    h.command(Command { kind: CommandKind::Pause as u32, ..Command::default() });
    h.send(1);
    assert!(h.actions.recv_timeout(Duration::from_millis(200)).is_err());
    h.command(Command { kind: CommandKind::Resume as u32, ..Command::default() });
    h.send(2);
    assert_eq!(h.next_action().observation_sequence, 2);
    {
        let log = h.log.lock().unwrap();
        assert_eq!(log.resets, 1);
        assert_eq!(log.planner.len(), 1);
        assert_eq!((log.planner[0].samples, log.planner[0].iterations), (64, 3));
    }
    // A goal (on the goal service) is forwarded once complete.
    let mut g = frame(9);
    g.goal = true;
    h.observations.send(g).unwrap();
    let mut g = state(9, [0.0; 3]);
    g.goal = true;
    h.observations.send(g).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while h.log.lock().unwrap().goals == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.log.lock().unwrap().goals, 1);
    h.stop();
}

#[test]
fn a_shutdown_command_stops_every_thread() {
    let h = start(1);
    let reply = h.command(Command { kind: CommandKind::Shutdown as u32, ..Command::default() });
    assert_eq!(reply.accepted, 1);
    let mut h = h;
    let daemon = h.daemon.take().unwrap();
    assert!(daemon.shutdown().requested());
    daemon.join().expect("clean shutdown");
}

#[test]
fn a_backend_that_cannot_start_is_reported_before_anything_runs() {
    let (_obs_tx, obs_rx) = bounded(1);
    let (act_tx, _act_rx) = bounded(1);
    let (stats_tx, _stats_rx) = bounded(1);
    let (_cmd_tx, cmd_rx) = bounded(1);
    let transport = Arc::new(Channels { observations: obs_rx, actions: act_tx, stats: stats_tx, commands: cmd_rx });
    let config = LoopConfig { artifact: Some("unused".into()), ..LoopConfig::default() };
    let backend =
        || -> Result<Double, swm::Error> { Err(swm::Error::invalid_input("artifact", "no GPU in this test")) };
    let err = Daemon::start(&config, inputs(), transport, backend, Shutdown::default()).err().expect("an error");
    assert!(err.to_string().contains("no GPU in this test"), "{err}");
}

/// By default frames of any size and every frame encoding are taken (the engine resizes and converts them on the
/// GPU); what is still malformed — an NV12 frame of odd width, a payload that does not match its header — is not.
#[test]
fn frames_of_any_size_and_encoding_are_accepted_by_default() {
    let h = start(8);
    let with = |sequence: u64, encoding: Encoding, width: u32, height: u32, pitch: u32, len: usize| {
        let mut f = frame(sequence);
        f.header.encoding = encoding as u32;
        (f.header.width, f.header.height, f.header.pitch) = (width, height, pitch);
        f.payload = vec![9u8; len];
        f
    };
    let good = [
        with(1, Encoding::Rgb8, 64, 48, 192, 192 * 48),
        with(2, Encoding::Bgra8, 10, 4, 48, 48 * 4),
        with(3, Encoding::Nv12, 8, 4, 8, 8 * 6),
        with(4, Encoding::Nv12Bt709Full, 8, 4, 16, 16 * 6),
    ];
    let mut jpeg = with(5, Encoding::Jpeg, 0, 0, 0, 0);
    jpeg.payload = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
    for (i, f) in good.into_iter().chain([jpeg]).enumerate() {
        h.observations.send(f).unwrap();
        h.observations.send(state(i as u64 + 1, [0.1, 0.2, 0.3])).unwrap();
        assert_eq!(h.next_action().observation_sequence, i as u64 + 1);
    }
    h.observations.send(with(6, Encoding::Nv12, 7, 4, 8, 8 * 6)).unwrap(); // odd width
    h.observations.send(with(7, Encoding::Rgb8, 64, 48, 192, 100)).unwrap(); // short payload
    let stats = h.stats_until(|s| s.observations_rejected == 2);
    assert_eq!(stats.steps, 5);
    h.stop();
}

/// Video access units: without the GPU backend they cannot be decoded (rejected and counted, the daemon keeps
/// serving); bytes without an Annex-B start code are malformed.
#[test]
fn video_access_units_need_the_gpu_backend_and_an_annex_b_start_code() {
    let h = start(8);
    let mut au = frame(1);
    au.header.encoding = Encoding::H264 as u32;
    (au.header.width, au.header.height, au.header.pitch) = (0, 0, 0);
    au.payload = vec![0, 0, 0, 1, 0x65, 0x88, 0x84];
    h.observations.send(au).unwrap();
    let mut junk = frame(1);
    junk.header.encoding = Encoding::Hevc as u32;
    junk.payload = vec![0x65; 32];
    h.observations.send(junk).unwrap();
    h.send(2);
    assert_eq!(h.next_action().observation_sequence, 2);
    let stats = h.stats_until(|s| s.observations_rejected == 2);
    assert_eq!(stats.steps, 1);
    h.stop();
}
