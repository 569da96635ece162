//! The actors: ingest, inference, output and control threads connected by bounded crossbeam channels.
//!
//! ```text
//! controllers ──observations──▶ ingest ──(latest wins)──▶ inference ──(bounded, newest kept)──▶ output ──▶ actions
//!             ──goals─────────▶   │                        ▲   owns the Backend (Engine,          │  + stats
//!             ──commands──▶ control ──(bounded)────────────┘   its stream and CUDA graphs)       ▼  every period
//! ```
//! * **ingest** takes messages from shared memory, checks them against the model's inputs (a malformed one is
//!   rejected, logged at most once a second and counted) and assembles complete observations (one message per
//!   input, same sequence). The hand-over queue holds `ipc.observation_queue` observations: when it is full, the
//!   oldest waiting one is dropped and counted, so inference always takes the newest.
//! * **inference** owns the [`Backend`]: it is created on that thread and never leaves it. Each step has the
//!   configured deadline, counted from the observation's arrival; a planner that cannot finish publishes its
//!   truncated plan, warm start or fallback with the matching status (counted as a deadline miss). Overruns are
//!   logged at most once a second.
//! * **output** stamps and publishes each action (latest value; a slow or dead subscriber never stalls it) and the
//!   statistics every `stats_period_s`. When its queue is full, the oldest unpublished action is replaced. It is
//!   also the **watchdog**: a step whose result is not back half-way between its deadline and the end of the
//!   period (a stalled GPU) is answered from host data ([`watchdog::fallback`]) and its late result discarded.
//! * **control** answers commands (reset, planner parameters, pause/resume, shutdown) through the inference thread.
//!
//! Shutdown: [`Shutdown::request`] (from the signal handler or a `Shutdown` command) stops every loop within one
//! poll interval; threads finish their current message and drop their ports (releasing shared memory).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender, TryRecvError, TrySendError};
use swm_ipc::{
    ActionSlot, ActionStatus, Command, CommandKind, CommandReply, Encoding, ObservationHeader, ReplyCode, Stats,
};

use crate::backend::{Backend, Codec, PlannerUpdate, Stager};
use crate::config::LoopConfig;
use crate::message::{check, FrameSizes, InputSpec, Message, Payload};
use crate::metrics::{monotonic_ns, Metrics, Stage};
use crate::spin::Expect;
use crate::watchdog::{self, InFlight};

/// How long a loop waits for input before it checks for shutdown again.
pub const POLL: Duration = Duration::from_millis(5);

/// A transport failure (iceoryx2 service, port or sample), named by what failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct TransportError {
    /// The service or port.
    pub what: String,
    /// What the transport reported.
    pub reason: String,
}

/// Where observations and goals come from (iceoryx2 subscribers, or a test's channel). Created on, and used by,
/// the ingest thread only.
pub trait ObservationSource {
    /// Waits at most `timeout` for the next message and lends it to `take` (header, payload, from the goal
    /// service) — straight from shared memory where the transport allows, so that the payload is copied once, by
    /// the ingest thread's stage. A zero `timeout` polls without waiting. Returns whether a message came.
    fn receive(
        &mut self,
        timeout: Duration,
        take: &mut dyn FnMut(&ObservationHeader, &[u8], bool),
    ) -> Result<bool, TransportError>;
}

/// Where actions and statistics go. Created on, and used by, the output thread only.
pub trait ActionSink {
    /// Publishes one action (latest value: never waits for subscribers).
    fn publish(&mut self, slot: &ActionSlot) -> Result<(), TransportError>;
    /// Publishes the statistics of the last period.
    fn publish_stats(&mut self, stats: &Stats) -> Result<(), TransportError>;
}

/// Where commands come from, and where their replies go. Created on, and used by, the control thread only.
pub trait CommandSource {
    /// Waits at most `timeout` for a command; `respond` is called once with its reply.
    fn serve(
        &mut self,
        timeout: Duration,
        respond: &mut dyn FnMut(&Command) -> CommandReply,
    ) -> Result<(), TransportError>;
}

/// Creates each thread's transport end on that thread (iceoryx2's ports are not `Send`).
pub trait Transport: Send + Sync + 'static {
    /// The ingest thread's source.
    fn observations(&self) -> Result<Box<dyn ObservationSource>, TransportError>;
    /// The output thread's sink.
    fn actions(&self) -> Result<Box<dyn ActionSink>, TransportError>;
    /// The control thread's command source.
    fn commands(&self) -> Result<Box<dyn CommandSource>, TransportError>;
}

/// The process-wide shutdown flag.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Asks every loop to stop.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP request a shutdown. The process's one signal owner: iceoryx2's own handling is
/// disabled on every node, so this fails (with `MultipleHandlers`) only if some other component took the signals.
pub fn install_signal_handler(shutdown: &Shutdown) -> Result<(), ctrlc::Error> {
    let flag = shutdown.clone();
    ctrlc::try_set_handler(move || flag.request())
}

/// [`install_signal_handler`] for the daemon's `main`: a process started in the background by a shell inherits
/// SIGINT as *ignored*, which `try_set_handler` reports as taken; the daemon then takes the signals over (with a
/// warning), since nothing else in it owns them.
pub fn take_signals(shutdown: &Shutdown) -> Result<(), ctrlc::Error> {
    match install_signal_handler(shutdown) {
        Err(ctrlc::Error::MultipleHandlers) => {
            tracing::warn!("SIGINT/SIGTERM had a disposition already (ignored by the parent shell?); taking them over");
            let flag = shutdown.clone();
            ctrlc::set_handler(move || flag.request())
        }
        other => other,
    }
}

/// Why the daemon stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The backend could not be created (artifact, device, planner).
    #[error("inference: {0}")]
    Backend(swm::Error),
    /// A transport could not be created.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A thread could not be started or panicked.
    #[error("thread `{0}` failed")]
    Thread(&'static str),
}

/// Work for the inference thread besides observations.
enum Control {
    Goal(Vec<Message>),
    Reset,
    Planner(PlannerUpdate, Sender<CommandReply>),
    Pause(bool),
}

/// What the inference thread takes next.
enum Work {
    Control(Control),
    Observation(Ready),
}

/// An observation complete for every input, ready for a step.
struct Ready {
    messages: Vec<Message>,
    /// When its last message was received (queue wait starts here).
    ready: Instant,
    /// What the watchdog knows of it (announced to the output thread on arrival).
    watch: InFlight,
}

/// State the threads share besides the channels.
#[derive(Debug, Default)]
struct Flow {
    /// Planning paused: observations are neither planned nor answered.
    paused: AtomicBool,
    /// The newest observation (by [`InFlight::id`]) that has an answer; an older one still queued is skipped.
    answered: AtomicU64,
}

/// What the inference thread hands back once its backend is up.
struct Started {
    /// The fixed fallback in env units, for the watchdog.
    fallback: Option<Vec<f32>>,
    /// The ingest thread's half of the backend.
    stage: Box<dyn Stager>,
}

/// What the ingest and inference threads tell the output thread. `Done` carries the 4 KiB action slot by value on
/// purpose: the channel's buffer is allocated once, a box would allocate on every step.
#[allow(clippy::large_enum_variant)]
enum ToOutput {
    /// An observation arrived (from ingest): the watchdog answers it if no result is published by its due time.
    Arrived(InFlight),
    /// A step started on observation `id` (when its result can be expected).
    Started { id: u64, at: Instant },
    /// A step's result.
    Done(Done),
}

/// A step's result on its way to the output thread.
struct Done {
    /// The observation's [`InFlight::id`].
    id: u64,
    slot: ActionSlot,
    finished: Instant,
    received: Instant,
    /// The backend's step (host wall time).
    wall: Duration,
}

/// The ingest thread's channel ends.
struct IngestPorts {
    obs_tx: Sender<Ready>,
    /// Takes the oldest waiting observation out when the queue is full (newest wins).
    obs_drain: Receiver<Ready>,
    ctl_tx: Sender<Control>,
    /// Announces each complete observation to the output thread's watchdog.
    arrived_tx: Sender<ToOutput>,
}

/// The inference thread's channel ends.
struct InferPorts {
    obs_rx: Receiver<Ready>,
    ctl_rx: Receiver<Control>,
    done_tx: Sender<ToOutput>,
    /// Takes the oldest message out when the output queue is full (inference never waits).
    done_drain: Receiver<ToOutput>,
}

/// The step budget and the control period (the watchdog fires between the two), and the spin window of the
/// hand-overs.
#[derive(Debug, Clone, Copy)]
struct Timing {
    deadline: Duration,
    period: Duration,
    spin: Duration,
}

/// A running daemon: its threads and the shutdown flag.
pub struct Daemon {
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    threads: Vec<(&'static str, JoinHandle<Result<(), DaemonError>>)>,
}

impl Daemon {
    /// Starts the four actors. `backend` is called on the inference thread to create the backend; `inputs` are the
    /// model's inputs (known before the backend exists, so that ingest can check messages from the start).
    pub fn start<B, F>(
        config: &LoopConfig,
        inputs: Vec<InputSpec>,
        transport: Arc<dyn Transport>,
        backend: F,
        shutdown: Shutdown,
    ) -> Result<Self, DaemonError>
    where
        B: Backend,
        F: FnOnce() -> Result<B, swm::Error> + Send + 'static,
    {
        let metrics = Arc::new(Metrics::default());
        let flow = Arc::new(Flow::default());
        let (obs_tx, obs_rx) = bounded::<Ready>(config.ipc.observation_queue);
        // Channels are multi-consumer: ingest keeps a receiver to drop the oldest waiting observation when full.
        let obs_drain = obs_rx.clone();
        // Two messages per step (started, done).
        let (done_tx, done_rx) = bounded::<ToOutput>(3 * config.ipc.action_queue);
        let arrived_tx = done_tx.clone();
        let (ctl_tx, ctl_rx) = bounded::<Control>(16);
        let (started_tx, started_rx) = bounded::<Result<Started, swm::Error>>(1);
        let mut threads = Vec::new();
        let timing = Timing { deadline: config.deadline(), period: config.period(), spin: config.ipc.spin() };

        let realtime = config.realtime.clone();
        let spawn = |name: &'static str, f: Box<dyn FnOnce() -> Result<(), DaemonError> + Send>| {
            // The hot threads get the configured scheduling; control (a command now and then) keeps the default.
            let realtime = (name != "control" && realtime.is_set()).then(|| realtime.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    if let Some(rt) = realtime {
                        match rt.apply_to_current_thread() {
                            Ok(()) => tracing::debug!("{name} thread: priority {}, CPUs {:?}", rt.priority, rt.cpus),
                            Err(e) => tracing::warn!("{name} thread keeps the default scheduling: {e}"),
                        }
                    }
                    f()
                })
                .map(|h| (name, h))
                .map_err(|_| DaemonError::Thread(name))
        };

        // Inference first: it owns the backend, whose creation may fail (reported before the others start).
        {
            let (metrics, shutdown, done_drain, flow) =
                (metrics.clone(), shutdown.clone(), done_rx.clone(), flow.clone());
            threads.push(spawn(
                "infer",
                Box::new(move || {
                    let started = backend().and_then(|b| {
                        let started = Started { fallback: b.fallback_action(), stage: b.stage()? };
                        Ok((b, started))
                    });
                    match started {
                        Ok((backend, started)) => {
                            let _ = started_tx.send(Ok(started));
                            let ports = InferPorts { obs_rx, ctl_rx, done_tx, done_drain };
                            infer(backend, ports, &metrics, &flow, &shutdown, timing);
                        }
                        // Reported by `start` (the thread ends without an error of its own).
                        Err(e) => drop(started_tx.send(Err(e))),
                    }
                    Ok(())
                }),
            )?);
        }
        // A closed channel means the thread died before it could report: it panicked.
        let started = started_rx.recv().unwrap_or(Err(swm::Error::Internal("the inference thread panicked".into())));
        let Started { fallback: fixed_fallback, stage } = match started {
            Ok(started) => started,
            Err(e) => {
                shutdown.request();
                for (_, handle) in threads {
                    let _ = handle.join();
                }
                return Err(DaemonError::Backend(e));
            }
        };
        {
            let (metrics, shutdown, transport) = (metrics.clone(), shutdown.clone(), transport.clone());
            let limits = (config.ipc.max_observation_bytes, config.ipc.frame_sizes);
            let (ctl_tx, flow) = (ctl_tx.clone(), flow.clone());
            threads.push(spawn(
                "ingest",
                Box::new(move || {
                    let source = transport.observations()?;
                    let ports = IngestPorts { obs_tx, obs_drain, ctl_tx, arrived_tx };
                    ingest(source, stage, &inputs, limits, ports, &metrics, &flow, &shutdown, timing);
                    Ok(())
                }),
            )?);
        }
        {
            let (metrics, shutdown, transport, flow) =
                (metrics.clone(), shutdown.clone(), transport.clone(), flow.clone());
            let (period, spin) = (Duration::from_secs_f64(config.stats_period_s), config.ipc.spin());
            threads.push(spawn(
                "output",
                Box::new(move || {
                    let sink = transport.actions()?;
                    output(sink, done_rx, period, spin, fixed_fallback, &metrics, &flow, &shutdown);
                    Ok(())
                }),
            )?);
        }
        {
            let (shutdown, transport) = (shutdown.clone(), transport);
            threads.push(spawn(
                "control",
                Box::new(move || {
                    let source = transport.commands()?;
                    control(source, ctl_tx, &shutdown);
                    Ok(())
                }),
            )?);
        }
        Ok(Self { shutdown, metrics, threads })
    }

    /// The shared counters and latency windows.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The shutdown flag.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Waits for every thread (after [`Shutdown::request`], or until one fails); the first failure is returned.
    pub fn join(self) -> Result<(), DaemonError> {
        let mut first = Ok(());
        for (name, handle) in self.threads {
            let result = handle.join().map_err(|_| DaemonError::Thread(name)).and_then(|r| r);
            if let Err(e) = result {
                // One actor failing stops the others.
                self.shutdown.request();
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// Logs at most once per second per kind (ros2_control's throttled overrun reporting).
struct Throttle(Option<Instant>);

impl Throttle {
    fn ready(&mut self) -> bool {
        let now = Instant::now();
        if self.0.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

#[allow(clippy::too_many_arguments)]
fn ingest(
    mut source: Box<dyn ObservationSource>,
    mut stage: Box<dyn Stager>,
    inputs: &[InputSpec],
    (max_bytes, sizes): (usize, FrameSizes),
    ports: IngestPorts,
    metrics: &Metrics,
    flow: &Flow,
    shutdown: &Shutdown,
    timing: Timing,
) {
    let IngestPorts { obs_tx, obs_drain, ctl_tx, arrived_tx } = ports;
    let mut next_id = 0u64;
    let mut pending: Vec<Option<Message>> = inputs.iter().map(|_| None).collect();
    let mut goal: Vec<Option<Message>> = inputs.iter().map(|_| None).collect();
    let mut warn = Throttle(None);
    let mut last_received: Option<Instant> = None;
    while !shutdown.requested() {
        // Checked and staged while the payload is still in shared memory.
        let mut accepted = None;
        let mut take = |header: &ObservationHeader, payload: &[u8], is_goal: bool| {
            let received = Instant::now();
            Metrics::count(&metrics.observations_received);
            let staged = check(header, payload, inputs, max_bytes, sizes)
                .map_err(|reason| reason.to_string())
                .and_then(|input| {
                    let staged = match Encoding::from_raw(header.encoding) {
                        // A JPEG file stays on the host: nvJPEG parses it there before decoding on the GPU.
                        Some(Encoding::Jpeg) => Ok(Some(Payload::Host(payload.to_vec()))),
                        // Every access unit is decoded here, in stream order; only frames become observations.
                        Some(Encoding::H264) => stage.decode(input, Codec::H264, payload),
                        Some(Encoding::Hevc) => stage.decode(input, Codec::Hevc, payload),
                        _ => stage.stage(&inputs[input], payload).map(Some),
                    };
                    match staged {
                        Ok(Some(payload)) => Ok(Some(Message { header: *header, input, payload, received })),
                        Ok(None) => Ok(None),
                        Err(e) => Err(format!("could not be staged: {e}")),
                    }
                });
            match staged {
                Ok(Some(message)) => accepted = Some((message, is_goal)),
                // An access unit that completed no frame (e.g. skipped until the next IDR after damage).
                Ok(None) => {}
                Err(reason) => {
                    Metrics::count(&metrics.observations_rejected);
                    if warn.ready() {
                        tracing::warn!("rejected observation {}: {reason}", header.sequence);
                    }
                }
            }
        };
        // The next observation is expected one period after the last: poll for it around then (see `spin`).
        let expect = Expect { expected: last_received.map(|t| t + timing.period), window: timing.spin };
        let (source_cell, take_cell) = (RefCell::new(&mut source), RefCell::new(&mut take));
        let receive = |timeout: Duration| match source_cell.borrow_mut().receive(timeout, *take_cell.borrow_mut()) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        };
        if let Some(Err(e)) = expect.wait(Instant::now() + POLL, || receive(Duration::ZERO), receive) {
            if warn.ready() {
                tracing::warn!("observations: {e}");
            }
            continue;
        }
        let Some((message, is_goal)) = accepted else { continue };
        let received = message.received;
        if !is_goal {
            last_received = Some(received);
        }
        let slots = if is_goal { &mut goal } else { &mut pending };
        let sequence = message.header.sequence;
        let input = message.input;
        slots[input] = Some(message);
        if !slots.iter().all(|m| m.as_ref().is_some_and(|m| m.header.sequence == sequence)) {
            continue;
        }
        let messages: Vec<Message> = slots.iter_mut().filter_map(Option::take).collect();
        if is_goal {
            let _ = ctl_tx.try_send(Control::Goal(messages));
            continue;
        }
        // The observation counts from its first message's arrival.
        let first = messages.iter().map(|m| m.received).min().unwrap_or(received);
        next_id += 1;
        let watch = InFlight {
            id: next_id,
            observation_sequence: sequence,
            captured_ns: messages.iter().map(|m| m.header.capture_ns).max().unwrap_or(0),
            received_ns: monotonic_ns().saturating_sub(first.elapsed().as_nanos() as u64),
            received: first,
            due: first + watchdog::due_after(timing.deadline, timing.period),
        };
        let ready = Ready { messages, ready: Instant::now(), watch };
        metrics.record(Stage::Ingest, ready.ready.duration_since(received));
        if !flow.paused.load(Ordering::Relaxed) {
            // Never waits: with the output queue full, this observation is simply not watched.
            let _ = arrived_tx.try_send(ToOutput::Arrived(watch));
        }
        match obs_tx.try_send(ready) {
            Ok(()) => {}
            Err(TrySendError::Full(ready)) => {
                // Newest wins: take the oldest waiting observation out, then retry once.
                if obs_drain.try_recv().is_ok() {
                    Metrics::count(&metrics.observations_dropped_stale);
                }
                if obs_tx.try_send(ready).is_err() {
                    Metrics::count(&metrics.observations_dropped_stale);
                }
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn infer<B: Backend>(
    mut backend: B,
    ports: InferPorts,
    metrics: &Metrics,
    flow: &Flow,
    shutdown: &Shutdown,
    mut timing: Timing,
) {
    let InferPorts { obs_rx, ctl_rx, done_tx, done_drain } = ports;
    let mut overrun = Throttle(None);
    // Inference never waits for the output thread: when the queue is full, the oldest message is dropped.
    let send = |message: ToOutput| {
        if let Err(TrySendError::Full(message)) = done_tx.try_send(message) {
            if let Ok(ToOutput::Done(_)) = done_drain.try_recv() {
                Metrics::count(&metrics.actions_dropped);
            }
            let _ = done_tx.try_send(message);
        }
    };
    let mut last_ready: Option<Instant> = None;
    while !shutdown.requested() {
        // The next observation is expected one period after the last: poll for it around then (see `spin`).
        let expect = Expect { expected: last_ready.map(|t| t + timing.period), window: timing.spin };
        let next = expect.wait(
            Instant::now() + POLL,
            || match ctl_rx.try_recv() {
                Ok(c) => Some(Ok(Work::Control(c))),
                Err(TryRecvError::Disconnected) => Some(Err(())),
                Err(TryRecvError::Empty) => match obs_rx.try_recv() {
                    Ok(r) => Some(Ok(Work::Observation(r))),
                    Err(TryRecvError::Disconnected) => Some(Err(())),
                    Err(TryRecvError::Empty) => None,
                },
            },
            |timeout| {
                select! {
                    recv(ctl_rx) -> m => Some(m.map(Work::Control).map_err(drop)),
                    recv(obs_rx) -> m => Some(m.map(Work::Observation).map_err(drop)),
                    default(timeout) => None,
                }
            },
        );
        let work = match next {
            None => continue,
            Some(Err(())) => return,
            Some(Ok(work)) => work,
        };
        match work {
            Work::Control(control) => match control {
                Control::Goal(goal) => {
                    if let Err(e) = backend.set_goal(&goal) {
                        tracing::warn!("goal rejected: {e}");
                    }
                }
                Control::Reset => backend.reset(),
                Control::Planner(update, reply) => {
                    let answer = match update.deadline.filter(|d| d.is_zero() || *d > timing.period) {
                        Some(d) => Err(swm::Error::invalid_input(
                            "deadline",
                            format!("{d:?} is not within the control period of {:?}", timing.period),
                        )),
                        None => backend.update_planner(update),
                    };
                    let answer = match answer {
                        Ok(()) => {
                            if let Some(deadline) = update.deadline {
                                timing.deadline = deadline;
                            }
                            CommandReply::ok("planner updated")
                        }
                        Err(e) => CommandReply::rejected(&e.to_string()),
                    };
                    let _ = reply.send(answer);
                }
                Control::Pause(p) => flow.paused.store(p, Ordering::Relaxed),
            },
            Work::Observation(ready) => {
                last_ready = Some(ready.ready);
                // Paused, or answered by the watchdog while it waited behind a stalled step: not planned.
                if flow.paused.load(Ordering::Relaxed) || ready.watch.id <= flow.answered.load(Ordering::Relaxed) {
                    Metrics::count(&metrics.observations_dropped_stale);
                    continue;
                }
                let start = Instant::now();
                metrics.record(Stage::QueueWait, start.duration_since(ready.ready));
                let head = &ready.messages[0].header;
                let (in_flight, received) = (ready.watch, ready.watch.received);
                send(ToOutput::Started { id: in_flight.id, at: start });
                let mut slot = ActionSlot {
                    observation_sequence: in_flight.observation_sequence,
                    captured_ns: in_flight.captured_ns,
                    received_ns: in_flight.received_ns,
                    ..ActionSlot::default()
                };
                match backend.step(&ready.messages, received + timing.deadline, &mut slot) {
                    Ok(times) => {
                        Metrics::count(&metrics.steps);
                        metrics.record(Stage::Encode, times.encode);
                        metrics.record(Stage::Plan, times.plan);
                        // Misses are counted by the output thread (a step the watchdog answered counts once).
                        let status = slot.status();
                        // A step that finished after its deadline was (or will be) answered by the watchdog,
                        // even when every iteration ran.
                        let late = Instant::now() > received + timing.deadline;
                        if (late || status != Some(ActionStatus::Solved)) && overrun.ready() {
                            tracing::warn!(
                                "step for observation {} missed its {:?} deadline: {:?} after {} iterations{} \
                                 (queue wait {:?}, encode {:?} GPU / {:?} to issue, plan {:?} GPU, step {:?} wall)",
                                slot.observation_sequence,
                                timing.deadline,
                                status,
                                slot.iterations,
                                if late { ", late" } else { "" },
                                start.duration_since(ready.ready),
                                times.encode,
                                times.encode_issue,
                                times.plan,
                                start.elapsed()
                            );
                        }
                        let id = in_flight.id;
                        send(ToOutput::Done(Done { id, slot, finished: Instant::now(), received, wall: times.wall }));
                    }
                    Err(e) => {
                        Metrics::count(&metrics.step_errors);
                        if overrun.ready() {
                            tracing::error!("step for observation {} failed: {e}", head.sequence);
                        }
                    }
                }
            }
        }
    }
}

/// Most observations the watchdog tracks at once (older ones are forgotten: a flood, not a stall).
const MAX_WATCHED: usize = 64;

/// The output thread's state: the published sequence, the observations waiting for an answer, the last published
/// action.
struct Output<'a> {
    sink: Box<dyn ActionSink>,
    metrics: &'a Metrics,
    flow: &'a Flow,
    sequence: u64,
    /// Observations announced by ingest and not yet answered, oldest first.
    waiting: VecDeque<InFlight>,
    last: Option<ActionSlot>,
    fixed: Option<Vec<f32>>,
    late: u64,
    warn: Throttle,
}

impl Output<'_> {
    /// The newest observation answered (by a step or by the watchdog); results for older ones are discarded.
    fn answered(&self) -> u64 {
        self.flow.answered.load(Ordering::Relaxed)
    }

    /// Stamps and publishes `slot` as the answer to observation `id`; true when it reached shared memory.
    fn publish(&mut self, id: u64, mut slot: ActionSlot) -> bool {
        // The output thread is the only writer.
        let answered = self.answered().max(id);
        self.flow.answered.store(answered, Ordering::Relaxed);
        self.waiting.retain(|w| w.id > answered);
        self.sequence += 1;
        slot.sequence = self.sequence;
        slot.published_ns = monotonic_ns();
        match self.sink.publish(&slot) {
            Ok(()) => {
                Metrics::count(&self.metrics.actions_published);
                self.last = Some(slot);
                true
            }
            Err(e) => {
                if self.warn.ready() {
                    tracing::warn!("actions: {e}");
                }
                false
            }
        }
    }

    /// Publishes the watchdog's fallback for every waiting observation whose due time has come.
    fn check_watchdog(&mut self) {
        while let Some(w) = self.waiting.front().copied().filter(|w| Instant::now() >= w.due) {
            self.waiting.pop_front();
            let slot = watchdog::fallback(&w, self.last.as_ref(), self.fixed.as_deref());
            Metrics::count(&self.metrics.deadline_misses);
            Metrics::count(&self.metrics.fallbacks_published);
            if self.warn.ready() {
                tracing::warn!(
                    "observation {} not answered by its due time: the watchdog published {:?}",
                    w.observation_sequence,
                    slot.status()
                );
            }
            self.publish(w.id, slot);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn output(
    sink: Box<dyn ActionSink>,
    done_rx: Receiver<ToOutput>,
    period: Duration,
    spin: Duration,
    fixed: Option<Vec<f32>>,
    metrics: &Metrics,
    flow: &Flow,
    shutdown: &Shutdown,
) {
    let mut out = Output {
        sink,
        metrics,
        flow,
        sequence: 0,
        waiting: VecDeque::new(),
        last: None,
        fixed,
        late: 0,
        warn: Throttle(None),
    };
    let mut last_stats = Instant::now();
    // The step running (observation id, start) and the smoothed step time (started → done), to poll for the
    // result around when it is expected (see `spin`).
    let mut running: Option<(u64, Instant)> = None;
    let mut step_time: Option<Duration> = None;
    while !shutdown.requested() {
        // Wake for the next message, the oldest waiting observation's due time or the next poll, whichever is first.
        let now = Instant::now();
        let limit = out.waiting.front().map_or(now + POLL, |w| w.due.min(now + POLL));
        let expect = Expect { expected: running.zip(step_time).map(|((_, at), t)| at + t), window: spin };
        match expect.wait(limit, || done_rx.try_recv().ok(), |t| done_rx.recv_timeout(t).ok()) {
            Some(ToOutput::Arrived(w)) if w.id > out.answered() => {
                if out.waiting.len() == MAX_WATCHED {
                    out.waiting.pop_front();
                }
                out.waiting.push_back(w);
            }
            Some(ToOutput::Arrived(_)) => {}
            Some(ToOutput::Started { id, at }) => running = Some((id, at)),
            Some(ToOutput::Done(done)) => {
                if let Some((_, at)) = running.filter(|(id, _)| *id == done.id) {
                    running = None;
                    let took = done.finished.saturating_duration_since(at);
                    step_time = Some(step_time.map_or(took, |t| t.mul_f64(0.8) + took.mul_f64(0.2)));
                }
                if done.id <= out.answered() {
                    // Answered by the watchdog already: publishing it now would reorder the controller's actions.
                    out.late += 1;
                } else {
                    let status = done.slot.status();
                    if status != Some(ActionStatus::Solved) {
                        Metrics::count(&metrics.deadline_misses);
                    }
                    if matches!(status, Some(ActionStatus::WarmStart | ActionStatus::Fallback | ActionStatus::Prior)) {
                        Metrics::count(&metrics.fallbacks_published);
                    }
                    if out.publish(done.id, done.slot) {
                        let now = Instant::now();
                        metrics.record(Stage::Publish, now.duration_since(done.finished));
                        let end_to_end = now.duration_since(done.received);
                        metrics.record(Stage::EndToEnd, end_to_end);
                        metrics.record_overhead(end_to_end.saturating_sub(done.wall));
                    }
                }
            }
            None => {}
        }
        if flow.paused.load(Ordering::Relaxed) {
            out.waiting.clear();
        }
        out.check_watchdog();
        let elapsed = last_stats.elapsed();
        if elapsed >= period {
            let stats = metrics.summarise(elapsed);
            if let Err(e) = out.sink.publish_stats(&stats) {
                if out.warn.ready() {
                    tracing::warn!("stats: {e}");
                }
            }
            last_stats = Instant::now();
        }
    }
    // The counters `Stats` has no field for, and the totals, once at the end.
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    tracing::info!(
        "served {} steps: {} actions published, {} replaced before publishing, {} late results discarded after the \
         watchdog's fallback, {} failed steps, {} deadline misses, {} observations rejected, {} dropped as stale",
        load(&metrics.steps),
        load(&metrics.actions_published),
        load(&metrics.actions_dropped),
        out.late,
        load(&metrics.step_errors),
        load(&metrics.deadline_misses),
        load(&metrics.observations_rejected),
        load(&metrics.observations_dropped_stale)
    );
    tracing::info!("whole run, per stage:\n{}", metrics.run_report());
}

fn control(mut source: Box<dyn CommandSource>, ctl_tx: Sender<Control>, shutdown: &Shutdown) {
    let mut warn = Throttle(None);
    while !shutdown.requested() {
        let mut respond = |command: &Command| -> CommandReply {
            let forward = |c: Control| match ctl_tx.send_timeout(c, Duration::from_secs(1)) {
                Ok(()) => CommandReply::ok("done"),
                Err(_) => CommandReply::rejected("the inference thread is not answering"),
            };
            match CommandKind::from_raw(command.kind) {
                Some(CommandKind::ResetEpisode) => forward(Control::Reset),
                Some(CommandKind::Pause) => forward(Control::Pause(true)),
                Some(CommandKind::Resume) => forward(Control::Pause(false)),
                Some(CommandKind::Shutdown) => {
                    shutdown.request();
                    CommandReply::ok("shutting down")
                }
                Some(CommandKind::SetGoal) => CommandReply::ok("send the goal on the goal service"),
                Some(CommandKind::SetPlanner) => {
                    let (tx, rx) = bounded(1);
                    let update = PlannerUpdate {
                        samples: command.num_samples as usize,
                        iterations: command.iterations as usize,
                        horizon: command.horizon as usize,
                        deadline: (command.deadline_us > 0).then(|| Duration::from_micros(command.deadline_us.into())),
                        seed: command.seed,
                    };
                    match forward(Control::Planner(update, tx)) {
                        reply if reply.code == ReplyCode::Ok as u32 => rx
                            .recv_timeout(Duration::from_secs(5))
                            .unwrap_or_else(|_| CommandReply::rejected("no answer")),
                        reply => reply,
                    }
                }
                None => CommandReply::unknown(command.kind),
            }
        };
        if let Err(e) = source.serve(POLL, &mut respond) {
            if warn.ready() {
                tracing::warn!("control: {e}");
            }
        }
    }
}
