//! The daemon's ends of the iceoryx2 services of [`swm_ipc::transport`]: the services are opened once by
//! [`Iceoryx::new`]; each actor thread then creates its own ports (iceoryx2's `ipc::Service` ports never leave the
//! thread that created them) and one node per thread, all with iceoryx2's signal handling disabled.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use swm_ipc::iceoryx2::prelude::Node;
use swm_ipc::transport::{
    self as ipc, ActionService, ControlService, EventKind, EventService, GoalService, ObservationService, Service,
    StatsService,
};
use swm_ipc::{ActionSlot, Command, CommandReply, ObservationHeader, Stats};

use crate::config::IpcSection;
use crate::daemon::{ActionSink, CommandSource, ObservationSource, Transport, TransportError};

fn error(what: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError { what: what.into(), reason: e.to_string() }
}

/// The iceoryx2 services of one daemon (one service-name prefix).
pub struct Iceoryx {
    prefix: String,
    node_name: String,
    // The node that opened the services, kept alive with them (nodes are `Send`, not `Sync`).
    _node: Mutex<Node<Service>>,
    observations: ObservationService,
    goals: GoalService,
    actions: ActionService,
    stats: StatsService,
    control: ControlService,
    events: EventService,
}

impl Iceoryx {
    /// Opens (or creates) every service under `ipc.prefix`. Stale resources of dead nodes are cleaned first
    /// (a controller or a daemon killed with SIGKILL).
    pub fn new(ipc: &IpcSection) -> Result<Self, TransportError> {
        let node = ipc::node(&ipc.node_name).map_err(|e| error("node", e))?;
        // The blocking variant: another thread cleaning up at the same moment makes the `try_` one fail spuriously.
        let cleanup = node.blocking_cleanup_dead_nodes(Duration::from_secs(1));
        if cleanup.cleanups > 0 || cleanup.failed_cleanups > 0 {
            tracing::info!(
                "removed the resources of {} dead node(s) ({} could not be removed)",
                cleanup.cleanups,
                cleanup.failed_cleanups
            );
        }
        let p = ipc.prefix.as_str();
        Ok(Self {
            prefix: ipc.prefix.clone(),
            node_name: ipc.node_name.clone(),
            observations: ipc::observation_service(&node, p).map_err(|e| error("observations", e))?,
            goals: ipc::goal_service(&node, p).map_err(|e| error("goals", e))?,
            actions: ipc::action_service(&node, p).map_err(|e| error("actions", e))?,
            stats: ipc::stats_service(&node, p).map_err(|e| error("stats", e))?,
            control: ipc::control_service(&node, p).map_err(|e| error("control", e))?,
            events: ipc::events_service(&node, p).map_err(|e| error("events", e))?,
            _node: Mutex::new(node),
        })
    }

    /// The service-name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn thread_node(&self, role: &str) -> Result<Node<Service>, TransportError> {
        ipc::node(&format!("{}-{role}", self.node_name)).map_err(|e| error("node", e))
    }
}

/// The ingest thread's end: observation and goal subscribers, woken by the event service.
struct Ingest {
    _node: Node<Service>,
    observations: ipc::ObservationSubscriber,
    goals: ipc::ObservationSubscriber,
    listener: ipc::EventListener,
}

impl ObservationSource for Ingest {
    fn receive(
        &mut self,
        timeout: Duration,
        take: &mut dyn FnMut(&ObservationHeader, &[u8], bool),
    ) -> Result<bool, TransportError> {
        for _ in 0..2 {
            // Goals first (rare, and a step may need the new one); payloads are lent from shared memory.
            if let Some(sample) = self.goals.receive().map_err(|e| error("goals", e))? {
                take(sample.user_header(), sample.payload(), true);
                return Ok(true);
            }
            if let Some(sample) = self.observations.receive().map_err(|e| error("observations", e))? {
                take(sample.user_header(), sample.payload(), false);
                return Ok(true);
            }
            // Nothing waiting: sleep until a controller notifies (or the poll interval passes), then look again; a
            // zero timeout (polling) only drains the notifications.
            if timeout.is_zero() {
                self.listener.try_wait(|_| {}).map_err(|e| error("events", e))?;
                return Ok(false);
            }
            self.listener.timed_wait(|_| {}, timeout).map_err(|e| error("events", e))?;
        }
        Ok(false)
    }
}

/// The output thread's end: action and stats publishers, and a notifier to wake controllers.
struct Output {
    _node: Node<Service>,
    actions: ipc::ActionPublisher,
    stats: ipc::StatsPublisher,
    notifier: ipc::EventNotifier,
}

impl ActionSink for Output {
    fn publish(&mut self, slot: &ActionSlot) -> Result<(), TransportError> {
        self.actions.send_copy(*slot).map_err(|e| error("actions", e))?;
        self.notifier.notify_with_custom_event_id(EventKind::Action.id()).map_err(|e| error("events", e))?;
        Ok(())
    }

    fn publish_stats(&mut self, stats: &Stats) -> Result<(), TransportError> {
        self.stats.send_copy(*stats).map_err(|e| error("stats", e))?;
        self.notifier.notify_with_custom_event_id(EventKind::Stats.id()).map_err(|e| error("events", e))?;
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Tell controllers the daemon is going away cleanly.
        let _ = self.notifier.notify_with_custom_event_id(EventKind::Shutdown.id());
    }
}

/// How often the control thread looks for dead nodes (controllers killed with SIGKILL) while the daemon runs.
pub const CLEANUP_PERIOD: Duration = Duration::from_secs(2);

/// The control thread's end: the one server of the control service; also removes the resources of dead nodes
/// every [`CLEANUP_PERIOD`].
struct Control {
    node: Node<Service>,
    server: ipc::ControlServer,
    last_cleanup: Instant,
}

impl Control {
    fn cleanup(&mut self) {
        if self.last_cleanup.elapsed() < CLEANUP_PERIOD {
            return;
        }
        self.last_cleanup = Instant::now();
        let cleanup = self.node.try_cleanup_dead_nodes();
        if cleanup.cleanups > 0 || cleanup.failed_cleanups > 0 {
            tracing::info!(
                "removed the resources of {} dead node(s) ({} could not be removed)",
                cleanup.cleanups,
                cleanup.failed_cleanups
            );
        }
    }
}

impl CommandSource for Control {
    fn serve(
        &mut self,
        timeout: Duration,
        respond: &mut dyn FnMut(&Command) -> CommandReply,
    ) -> Result<(), TransportError> {
        match self.server.receive().map_err(|e| error("control", e))? {
            Some(request) => {
                let reply = respond(request.payload());
                request.send_copy(reply).map_err(|e| error("control", e))?;
            }
            None => {
                self.cleanup();
                std::thread::sleep(timeout);
            }
        }
        Ok(())
    }
}

impl Transport for Iceoryx {
    fn observations(&self) -> Result<Box<dyn ObservationSource>, TransportError> {
        let node = self.thread_node("ingest")?;
        Ok(Box::new(Ingest {
            observations: ipc::observation_subscriber(&self.observations).map_err(|e| error("observations", e))?,
            goals: ipc::goal_subscriber(&self.goals).map_err(|e| error("goals", e))?,
            listener: ipc::listener(&self.events).map_err(|e| error("events", e))?,
            _node: node,
        }))
    }

    fn actions(&self) -> Result<Box<dyn ActionSink>, TransportError> {
        let node = self.thread_node("output")?;
        Ok(Box::new(Output {
            actions: ipc::action_publisher(&self.actions).map_err(|e| error("actions", e))?,
            stats: ipc::stats_publisher(&self.stats).map_err(|e| error("stats", e))?,
            notifier: ipc::notifier(&self.events).map_err(|e| error("events", e))?,
            _node: node,
        }))
    }

    fn commands(&self) -> Result<Box<dyn CommandSource>, TransportError> {
        let node = self.thread_node("control")?;
        Ok(Box::new(Control {
            server: ipc::control_server(&self.control).map_err(|e| error("control", e))?,
            node,
            last_cleanup: Instant::now(),
        }))
    }
}
