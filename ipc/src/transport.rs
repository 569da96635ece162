//! The iceoryx2 services of swm, opened the same way by the daemon and by every controller.
//!
//! iceoryx2 checks, when a process opens an existing service, that the payload and header types match (type name,
//! size, alignment) and that the QoS it asks for is offered. Both sides call the functions here, so they ask for
//! the same things:
//!
//! | service | pattern | payload (user header) | QoS |
//! |---|---|---|---|
//! | [`OBSERVATIONS`](crate::services::OBSERVATIONS) | pub/sub | `[u8]` ([`ObservationHeader`]) | safe overflow, history 0, subscriber buffer [`OBSERVATION_BUFFER`], ≤ [`OBSERVATION_MAX_PUBLISHERS`] publishers, ≤ [`OBSERVATION_MAX_SUBSCRIBERS`] subscribers |
//! | [`GOALS`](crate::services::GOALS) | pub/sub | `[u8]` ([`GoalHeader`]) | latest value: safe overflow, history 1, buffer 1 |
//! | [`ACTIONS`](crate::services::ACTIONS) | pub/sub | [`ActionSlot`] | latest value: safe overflow, history 1, buffer 1; one publisher |
//! | [`STATS`](crate::services::STATS) | pub/sub | [`Stats`] | latest value: safe overflow, history 1, buffer 1; one publisher |
//! | [`CONTROL`](crate::services::CONTROL) | request-response | [`Command`] → [`CommandReply`] | one server |
//! | [`EVENTS`](crate::services::EVENTS) | event | [`EventKind`] ids | notifier dropped / dead events |
//!
//! With safe overflow a full subscriber buffer drops its oldest sample: a publisher never waits for a slow, stopped
//! or dead subscriber. The single publisher of actions and stats and the single control server make a second
//! daemon on the same prefix fail at start-up (`ExceedsMaxSupportedPublishers`) instead of interleaving with the
//! first; a daemon that was killed holds its slots until its node is cleaned up, which iceoryx2 does when a node is
//! created or a service opened (`cleanup_dead_nodes_on_creation` / `_on_open`, on by default), and which
//! [`Node::try_cleanup_dead_nodes`] does on demand.
//!
//! # History
//!
//! A publisher delivers its history (the last goal, action or stats) to a new subscriber itself, on its next send
//! or [`UpdateConnections::update_connections`] call. The daemon publishes actions every step, so a late
//! controller is served at once; a controller that set a goal and then publishes nothing on the goal service
//! should call `update_connections()` on its goal publisher in its loop, so that a daemon started (or restarted)
//! after the goal still receives it.
//!
//! # Threads
//!
//! Everything here is of iceoryx2's `ipc::Service` variant: ports and samples are neither `Send` nor `Sync`, so a
//! port lives and dies on the thread that created it. A [`Node`] is `Send` and the service port factories
//! returned here are `Send + Sync`: open the services on one thread, hand the factories to the actor threads, and
//! create each port on the thread that uses it. `ipc_threadsafe::Service` would put a mutex around every port
//! operation for nothing, since no port is shared.
//!
//! # Signals
//!
//! [`node`] disables iceoryx2's signal handling ([`SignalHandlingMode::Disabled`]), so that iceoryx2 never
//! installs SIGINT/SIGTERM handlers; the application owns its signals. Build every `WaitSet` the same way:
//! `WaitSetBuilder::new().signal_handling_mode(SignalHandlingMode::Disabled)`.

use std::fmt;

use iceoryx2::node::NodeCreationFailure;
use iceoryx2::port::client::Client;
use iceoryx2::port::listener::{Listener, ListenerCreateError};
use iceoryx2::port::notifier::{Notifier, NotifierCreateError};
use iceoryx2::port::publisher::{Publisher, PublisherCreateError};
use iceoryx2::port::server::Server;
use iceoryx2::port::subscriber::{Subscriber, SubscriberCreateError};
use iceoryx2::port::{LoanError, SendError};
use iceoryx2::prelude::{
    AllocationStrategy, Config, EventId, LogLevel, Node, NodeBuilder, NodeName, SemanticStringError, ServiceName,
    SignalHandlingMode,
};
use iceoryx2::service::builder::event::EventOpenOrCreateError;
use iceoryx2::service::builder::publish_subscribe::PublishSubscribeOpenOrCreateError;
use iceoryx2::service::builder::request_response::RequestResponseOpenOrCreateError;
use iceoryx2::service::port_factory::client::ClientCreateError;
use iceoryx2::service::port_factory::server::ServerCreateError;
use iceoryx2::service::port_factory::{event, publish_subscribe, request_response};
use iceoryx2::service::service_name::ServiceNameError;

use crate::services;
use crate::{ActionSlot, Command, CommandReply, GoalHeader, ObservationHeader, Stats};

/// `publisher.update_connections()`: connects a publisher to subscribers that appeared since its last send and
/// delivers their history (see the module docs).
pub use iceoryx2::port::update_connections::UpdateConnections;

/// The iceoryx2 service variant of every swm node and port: inter-process, ports owned by one thread.
pub type Service = iceoryx2::service::ipc::Service;

/// The observation service (also the type of the goal service).
pub type ObservationService = publish_subscribe::PortFactory<Service, [u8], ObservationHeader>;
/// The goal service.
pub type GoalService = publish_subscribe::PortFactory<Service, [u8], GoalHeader>;
/// The action service.
pub type ActionService = publish_subscribe::PortFactory<Service, ActionSlot, ()>;
/// The stats service.
pub type StatsService = publish_subscribe::PortFactory<Service, Stats, ()>;
/// The control service.
pub type ControlService = request_response::PortFactory<Service, Command, (), CommandReply, ()>;
/// The event service.
pub type EventService = event::PortFactory<Service>;

/// Publishes observations (or goals).
pub type ObservationPublisher = Publisher<Service, [u8], ObservationHeader>;
/// Receives observations (or goals).
pub type ObservationSubscriber = Subscriber<Service, [u8], ObservationHeader>;
/// Publishes actions.
pub type ActionPublisher = Publisher<Service, ActionSlot, ()>;
/// Receives actions.
pub type ActionSubscriber = Subscriber<Service, ActionSlot, ()>;
/// Publishes stats.
pub type StatsPublisher = Publisher<Service, Stats, ()>;
/// Receives stats.
pub type StatsSubscriber = Subscriber<Service, Stats, ()>;
/// Answers commands (the daemon).
pub type ControlServer = Server<Service, Command, (), CommandReply, ()>;
/// Sends commands (a controller).
pub type ControlClient = Client<Service, Command, (), CommandReply, ()>;
/// Sends wake-ups.
pub type EventNotifier = Notifier<Service>;
/// Waits for wake-ups.
pub type EventListener = Listener<Service>;

/// Samples an observation subscriber buffers (the daemon takes the newest and counts the rest as stale).
pub const OBSERVATION_BUFFER: usize = 4;
/// Observation publishers per service (a controller may publish each input from its own process).
pub const OBSERVATION_MAX_PUBLISHERS: usize = 8;
/// Observation subscribers per service (the daemon, and a recorder or monitor).
pub const OBSERVATION_MAX_SUBSCRIBERS: usize = 4;
/// Goal publishers and subscribers per service.
pub const GOAL_MAX_PORTS: usize = 4;
/// Action and stats subscribers per service (controllers, loggers, monitors).
pub const LATEST_MAX_SUBSCRIBERS: usize = 16;
/// Control clients per service.
pub const CONTROL_MAX_CLIENTS: usize = 16;
/// Notifiers and listeners (each) per event service.
pub const EVENT_MAX_PORTS: usize = 16;
/// A sensible first slice length for an observation publisher, in bytes: a 256×256 RGB frame (192 KiB) fits;
/// a larger sample grows the publisher's memory to the next power of two.
pub const DEFAULT_OBSERVATION_SLICE_LEN: usize = 256 * 1024;

/// What a wake-up on the event service announces; its raw value is the iceoryx2 event id (0 is unused).
///
/// All parties share one event service, so a listener may be woken by notifications it does not care about:
/// match on the kind and ignore the rest.
#[repr(usize)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A controller published an observation.
    Observation = 1,
    /// A controller published a goal.
    Goal = 2,
    /// A controller sent a command.
    Command = 3,
    /// The daemon published an action.
    Action = 4,
    /// The daemon published stats.
    Stats = 5,
    /// The daemon is shutting down cleanly.
    Shutdown = 6,
    /// Emitted by iceoryx2 when a notifier is dropped (its process ended cleanly).
    NotifierDropped = 7,
    /// Emitted by iceoryx2 when a notifier's process was found dead (e.g. SIGKILL) and cleaned up.
    NotifierDead = 8,
}

impl EventKind {
    /// Every kind, in raw-value order.
    pub const ALL: [Self; 8] = [
        Self::Observation,
        Self::Goal,
        Self::Command,
        Self::Action,
        Self::Stats,
        Self::Shutdown,
        Self::NotifierDropped,
        Self::NotifierDead,
    ];

    /// The iceoryx2 event id.
    pub fn id(self) -> EventId {
        EventId::new(self as usize)
    }

    /// Decodes an event id; `None` for an id this version does not know.
    pub fn from_id(id: EventId) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as usize == id.as_value())
    }
}

/// A failure to set up or use a transport port.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// The node name is not a valid iceoryx2 node name (e.g. longer than 128 bytes).
    NodeName {
        /// The name given.
        name: String,
        /// iceoryx2's reason.
        error: SemanticStringError,
    },
    /// The (prefixed) service name is not a valid iceoryx2 service name (empty, or longer than 255 bytes).
    ServiceName {
        /// The name given.
        name: String,
        /// iceoryx2's reason.
        error: ServiceNameError,
    },
    /// The node could not be created.
    Node(NodeCreationFailure),
    /// A publish-subscribe service could not be opened or created (e.g. it exists with other types or QoS).
    PublishSubscribe {
        /// The service name.
        service: String,
        /// iceoryx2's reason.
        error: PublishSubscribeOpenOrCreateError,
    },
    /// A request-response service could not be opened or created.
    RequestResponse {
        /// The service name.
        service: String,
        /// iceoryx2's reason.
        error: RequestResponseOpenOrCreateError,
    },
    /// An event service could not be opened or created.
    Event {
        /// The service name.
        service: String,
        /// iceoryx2's reason.
        error: EventOpenOrCreateError,
    },
    /// A publisher could not be created (e.g. `ExceedsMaxSupportedPublishers`: another daemon holds the slot).
    Publisher(PublisherCreateError),
    /// A subscriber could not be created.
    Subscriber(SubscriberCreateError),
    /// A control server could not be created (e.g. another daemon serves this prefix).
    Server(ServerCreateError),
    /// A control client could not be created.
    Client(ClientCreateError),
    /// A notifier could not be created.
    Notifier(NotifierCreateError),
    /// A listener could not be created.
    Listener(ListenerCreateError),
    /// Shared memory for a sample could not be loaned.
    Loan(LoanError),
    /// A sample could not be sent.
    Send(SendError),
    /// The payload length does not match the header (`expected` is `None` when the header describes no valid
    /// payload).
    PayloadLength {
        /// `ObservationHeader::expected_payload_len` of the header.
        expected: Option<usize>,
        /// The payload's length.
        actual: usize,
    },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NodeName { name, error } => write!(f, "invalid iceoryx2 node name {name:?}: {error}"),
            Self::ServiceName { name, error } => write!(f, "invalid iceoryx2 service name {name:?}: {error}"),
            Self::Node(e) => write!(f, "cannot create the iceoryx2 node: {e}"),
            Self::PublishSubscribe { service, error } => write!(f, "cannot open service {service:?}: {error}"),
            Self::RequestResponse { service, error } => write!(f, "cannot open service {service:?}: {error}"),
            Self::Event { service, error } => write!(f, "cannot open service {service:?}: {error}"),
            Self::Publisher(e) => write!(f, "cannot create a publisher: {e}"),
            Self::Subscriber(e) => write!(f, "cannot create a subscriber: {e}"),
            Self::Server(e) => write!(f, "cannot create the control server: {e}"),
            Self::Client(e) => write!(f, "cannot create a control client: {e}"),
            Self::Notifier(e) => write!(f, "cannot create a notifier: {e}"),
            Self::Listener(e) => write!(f, "cannot create a listener: {e}"),
            Self::Loan(e) => write!(f, "cannot loan shared memory for a sample: {e}"),
            Self::Send(e) => write!(f, "cannot send a sample: {e}"),
            Self::PayloadLength { expected: Some(expected), actual } => {
                write!(f, "payload of {actual} bytes, but the header describes {expected}")
            }
            Self::PayloadLength { expected: None, actual } => {
                write!(f, "payload of {actual} bytes under a header that describes no valid payload")
            }
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NodeName { error, .. } => Some(error),
            Self::ServiceName { error, .. } => Some(error),
            Self::Node(e) => Some(e),
            Self::PublishSubscribe { error, .. } => Some(error),
            Self::RequestResponse { error, .. } => Some(error),
            Self::Event { error, .. } => Some(error),
            Self::Publisher(e) => Some(e),
            Self::Subscriber(e) => Some(e),
            Self::Server(e) => Some(e),
            Self::Client(e) => Some(e),
            Self::Notifier(e) => Some(e),
            Self::Listener(e) => Some(e),
            Self::Loan(e) => Some(e),
            Self::Send(e) => Some(e),
            Self::PayloadLength { .. } => None,
        }
    }
}

/// A node named `name` on iceoryx2's global config, with iceoryx2's signal handling disabled.
pub fn node(name: &str) -> Result<Node<Service>, TransportError> {
    node_with_config(name, global_config())
}

/// iceoryx2's global config: the first of its config files (`config/iceoryx2.toml`, the user's, the system's)
/// or the defaults. Without a file, iceoryx2 warns on stderr that it uses the defaults, which is how swm runs
/// normally: that one notice is silenced unless `IOX2_LOG_LEVEL` asks for iceoryx2's own logging.
pub fn global_config() -> &'static Config {
    if std::env::var_os("IOX2_LOG_LEVEL").is_some() {
        return Config::global_config();
    }
    let level = iceoryx2_log::get_log_level();
    iceoryx2::prelude::set_log_level(LogLevel::Error);
    let config = Config::global_config();
    let restored = [LogLevel::Trace, LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error, LogLevel::Fatal]
        .into_iter()
        .find(|l| *l as u8 == level)
        .unwrap_or(LogLevel::Info);
    iceoryx2::prelude::set_log_level(restored);
    config
}

/// A node named `name` on `config` (e.g. another `global.prefix`, which isolates a group of processes from every
/// other iceoryx2 user on the host), with iceoryx2's signal handling disabled.
pub fn node_with_config(name: &str, config: &Config) -> Result<Node<Service>, TransportError> {
    let node_name = NodeName::new(name).map_err(|error| TransportError::NodeName { name: name.to_owned(), error })?;
    NodeBuilder::new()
        .name(&node_name)
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .config(config)
        .create::<Service>()
        .map_err(TransportError::Node)
}

fn service_name(prefix: &str, name: &str) -> Result<(ServiceName, String), TransportError> {
    let full = services::prefixed(prefix, name);
    match ServiceName::new(&full) {
        Ok(service) => Ok((service, full)),
        Err(error) => Err(TransportError::ServiceName { name: full, error }),
    }
}

/// Opens (or creates) the observation service under `prefix`.
pub fn observation_service(node: &Node<Service>, prefix: &str) -> Result<ObservationService, TransportError> {
    let (name, service) = service_name(prefix, services::OBSERVATIONS)?;
    node.service_builder(&name)
        .publish_subscribe::<[u8]>()
        .user_header::<ObservationHeader>()
        .enable_safe_overflow(true)
        .history_size(0)
        .subscriber_max_buffer_size(OBSERVATION_BUFFER)
        .max_publishers(OBSERVATION_MAX_PUBLISHERS)
        .max_subscribers(OBSERVATION_MAX_SUBSCRIBERS)
        .open_or_create()
        .map_err(|error| TransportError::PublishSubscribe { service, error })
}

/// Opens (or creates) the goal service under `prefix`: the latest goal is kept for late subscribers.
pub fn goal_service(node: &Node<Service>, prefix: &str) -> Result<GoalService, TransportError> {
    let (name, service) = service_name(prefix, services::GOALS)?;
    node.service_builder(&name)
        .publish_subscribe::<[u8]>()
        .user_header::<GoalHeader>()
        .enable_safe_overflow(true)
        .history_size(1)
        .subscriber_max_buffer_size(1)
        .max_publishers(GOAL_MAX_PORTS)
        .max_subscribers(GOAL_MAX_PORTS)
        .open_or_create()
        .map_err(|error| TransportError::PublishSubscribe { service, error })
}

/// Opens (or creates) the action service under `prefix`: latest value (history 1, buffer 1, safe overflow), so a
/// slow or dead subscriber never stalls the daemon and a late one gets the last action at once.
pub fn action_service(node: &Node<Service>, prefix: &str) -> Result<ActionService, TransportError> {
    let (name, service) = service_name(prefix, services::ACTIONS)?;
    node.service_builder(&name)
        .publish_subscribe::<ActionSlot>()
        .enable_safe_overflow(true)
        .history_size(1)
        .subscriber_max_buffer_size(1)
        .max_publishers(1)
        .max_subscribers(LATEST_MAX_SUBSCRIBERS)
        .open_or_create()
        .map_err(|error| TransportError::PublishSubscribe { service, error })
}

/// Opens (or creates) the stats service under `prefix`: latest value, as actions.
pub fn stats_service(node: &Node<Service>, prefix: &str) -> Result<StatsService, TransportError> {
    let (name, service) = service_name(prefix, services::STATS)?;
    node.service_builder(&name)
        .publish_subscribe::<Stats>()
        .enable_safe_overflow(true)
        .history_size(1)
        .subscriber_max_buffer_size(1)
        .max_publishers(1)
        .max_subscribers(LATEST_MAX_SUBSCRIBERS)
        .open_or_create()
        .map_err(|error| TransportError::PublishSubscribe { service, error })
}

/// Opens (or creates) the control service under `prefix` (one server: the daemon).
pub fn control_service(node: &Node<Service>, prefix: &str) -> Result<ControlService, TransportError> {
    let (name, service) = service_name(prefix, services::CONTROL)?;
    node.service_builder(&name)
        .request_response::<Command, CommandReply>()
        .max_servers(1)
        .max_clients(CONTROL_MAX_CLIENTS)
        .open_or_create()
        .map_err(|error| TransportError::RequestResponse { service, error })
}

/// Opens (or creates) the event service under `prefix`; iceoryx2 itself emits
/// [`EventKind::NotifierDropped`] and [`EventKind::NotifierDead`] on it.
pub fn events_service(node: &Node<Service>, prefix: &str) -> Result<EventService, TransportError> {
    let (name, service) = service_name(prefix, services::EVENTS)?;
    node.service_builder(&name)
        .event()
        .max_notifiers(EVENT_MAX_PORTS)
        .max_listeners(EVENT_MAX_PORTS)
        .notifier_dropped_event(EventKind::NotifierDropped.id())
        .notifier_dead_event(EventKind::NotifierDead.id())
        .open_or_create()
        .map_err(|error| TransportError::Event { service, error })
}

/// An observation (or goal) publisher whose memory starts at `initial_max_slice_len` bytes per sample and grows to
/// the next power of two when a larger sample is loaned (pass the frame size when it is known, else
/// [`DEFAULT_OBSERVATION_SLICE_LEN`]).
pub fn observation_publisher(
    service: &ObservationService,
    initial_max_slice_len: usize,
) -> Result<ObservationPublisher, TransportError> {
    service
        .publisher_builder()
        .initial_max_slice_len(initial_max_slice_len.max(1))
        .allocation_strategy(AllocationStrategy::PowerOfTwo)
        .create()
        .map_err(TransportError::Publisher)
}

/// An observation subscriber buffering [`OBSERVATION_BUFFER`] samples (the oldest is dropped when full).
pub fn observation_subscriber(service: &ObservationService) -> Result<ObservationSubscriber, TransportError> {
    service.subscriber_builder().buffer_size(OBSERVATION_BUFFER).create().map_err(TransportError::Subscriber)
}

/// A goal subscriber: holds the latest goal only, and receives the last published one when it connects.
pub fn goal_subscriber(service: &GoalService) -> Result<ObservationSubscriber, TransportError> {
    service.subscriber_builder().buffer_size(1).create().map_err(TransportError::Subscriber)
}

/// The action publisher (one per service).
pub fn action_publisher(service: &ActionService) -> Result<ActionPublisher, TransportError> {
    service.publisher_builder().create().map_err(TransportError::Publisher)
}

/// An action subscriber: holds the latest action only, and receives the last published one when it connects.
pub fn action_subscriber(service: &ActionService) -> Result<ActionSubscriber, TransportError> {
    service.subscriber_builder().buffer_size(1).create().map_err(TransportError::Subscriber)
}

/// The stats publisher (one per service).
pub fn stats_publisher(service: &StatsService) -> Result<StatsPublisher, TransportError> {
    service.publisher_builder().create().map_err(TransportError::Publisher)
}

/// A stats subscriber: holds the latest stats only.
pub fn stats_subscriber(service: &StatsService) -> Result<StatsSubscriber, TransportError> {
    service.subscriber_builder().buffer_size(1).create().map_err(TransportError::Subscriber)
}

/// The control server (one per service: the daemon).
pub fn control_server(service: &ControlService) -> Result<ControlServer, TransportError> {
    service.server_builder().create().map_err(TransportError::Server)
}

/// A control client.
pub fn control_client(service: &ControlService) -> Result<ControlClient, TransportError> {
    service.client_builder().create().map_err(TransportError::Client)
}

/// A notifier on the event service.
pub fn notifier(service: &EventService) -> Result<EventNotifier, TransportError> {
    service.notifier_builder().create().map_err(TransportError::Notifier)
}

/// Whether `payload` is one `header` describes: exactly `header.expected_payload_len()` bytes, or, for a
/// compressed frame (JPEG, an H.264/HEVC access unit: the length is the file's), any non-empty payload.
pub fn check_payload(header: &ObservationHeader, payload: &[u8]) -> Result<(), TransportError> {
    let compressed = header.modality() == Some(crate::Modality::Frame)
        && header.encoding().is_some_and(crate::Encoding::is_compressed);
    let expected = header.expected_payload_len();
    let ok = if compressed { !payload.is_empty() } else { expected == Some(payload.len()) };
    if ok {
        Ok(())
    } else {
        Err(TransportError::PayloadLength { expected, actual: payload.len() })
    }
}

/// A listener on the event service.
pub fn listener(service: &EventService) -> Result<EventListener, TransportError> {
    service.listener_builder().create().map_err(TransportError::Listener)
}

/// Publishes one observation (or goal): `header` and a copy of `payload` in one loaned sample. Refuses a payload
/// the header does not describe ([`check_payload`]; use the publisher directly to send a malformed sample on
/// purpose, e.g. in a test). Returns the number of subscribers it reached.
pub fn send_observation(
    publisher: &ObservationPublisher,
    header: &ObservationHeader,
    payload: &[u8],
) -> Result<usize, TransportError> {
    check_payload(header, payload)?;
    let mut sample = publisher.loan_slice_uninit(payload.len()).map_err(TransportError::Loan)?;
    *sample.user_header_mut() = *header;
    sample.write_from_slice(payload).send().map_err(TransportError::Send)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_round_trip_and_reject_unknown_ids() {
        for (i, kind) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i + 1);
            assert_eq!(EventKind::from_id(kind.id()), Some(kind));
        }
        assert_eq!(EventKind::from_id(EventId::new(0)), None);
        assert_eq!(EventKind::from_id(EventId::new(9)), None);
    }

    #[test]
    fn compressed_frames_take_any_non_empty_payload_and_packed_ones_their_length() {
        use crate::Encoding;
        let jpeg = ObservationHeader::frame(1, 0, Encoding::Jpeg, 0, 0, 0);
        assert!(check_payload(&jpeg, &[0xFF; 47890]).is_ok(), "a JPEG file of any length");
        let h264 = ObservationHeader::frame(1, 0, Encoding::H264, 1920, 1080, 0);
        assert!(check_payload(&h264, &[0, 0, 0, 1, 0x65]).is_ok());
        assert!(matches!(check_payload(&jpeg, &[]), Err(TransportError::PayloadLength { expected: None, actual: 0 })));
        let rgb = ObservationHeader::frame(1, 0, Encoding::Rgb8, 4, 2, 12);
        assert!(check_payload(&rgb, &[0; 24]).is_ok());
        assert!(matches!(
            check_payload(&rgb, &[0; 23]),
            Err(TransportError::PayloadLength { expected: Some(24), actual: 23 })
        ));
        let state = ObservationHeader::state(1, 0, 3);
        assert!(check_payload(&state, &[0; 12]).is_ok() && check_payload(&state, &[0; 16]).is_err());
    }

    #[test]
    fn bad_names_are_reported_with_the_name() {
        let long = "n".repeat(300);
        match node(&long) {
            Err(TransportError::NodeName { name, .. }) => assert_eq!(name, long),
            other => panic!("expected a node name error, got {other:?}"),
        }
        let err = service_name(&long, services::ACTIONS).unwrap_err();
        assert!(matches!(err, TransportError::ServiceName { error: ServiceNameError::ExceedsMaximumLength, .. }));
        assert!(err.to_string().contains("swm/actions"), "{err}");
    }
}
