//! Control commands (the request of the control service) and their replies (its response).

use std::fmt;

use iceoryx2::prelude::ZeroCopySend;

use crate::text;

/// What a [`Command`] asks the daemon to do.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// Start a new episode: forget the observation history, the warm start and the goal's episode state.
    ResetEpisode = 0,
    /// Switch to the goal most recently published on the goal service (the goal itself travels there; this
    /// command only marks the switch).
    SetGoal = 1,
    /// Change the planner's parameters (the `Command` fields; 0 keeps a value).
    SetPlanner = 2,
    /// Stop planning and publishing; observations are dropped (and counted) until `Resume`.
    Pause = 3,
    /// Resume after `Pause`.
    Resume = 4,
    /// End the daemon cleanly (as SIGINT/SIGTERM do).
    Shutdown = 5,
}

impl CommandKind {
    /// Every kind, in raw-value order.
    pub const ALL: [Self; 6] =
        [Self::ResetEpisode, Self::SetGoal, Self::SetPlanner, Self::Pause, Self::Resume, Self::Shutdown];

    /// Decodes a raw `Command::kind`; `None` for a value this version does not know.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }
}

/// A request on the control service.
///
/// Layout (C `struct`, 32 bytes, 8-byte aligned, no padding): `kind` 0, `num_samples` 4, `iterations` 8,
/// `horizon` 12, `deadline_us` 16, `_reserved` 20, `seed` 24.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ZeroCopySend)]
#[type_name("swm::Command")]
pub struct Command {
    /// A [`CommandKind`] raw value.
    pub kind: u32,
    /// `SetPlanner`: candidates sampled per iteration; 0 keeps the current value.
    pub num_samples: u32,
    /// `SetPlanner`: planner iterations per step; 0 keeps the current value.
    pub iterations: u32,
    /// `SetPlanner`: planning horizon in steps; 0 keeps the current value.
    pub horizon: u32,
    /// `SetPlanner`: the planner's deadline per step in microseconds; 0 keeps the current value.
    pub deadline_us: u32,
    /// Always 0; keeps `seed` 8-byte aligned without implicit padding.
    pub _reserved: u32,
    /// `SetPlanner`: the planner's random seed; 0 keeps the current seed.
    pub seed: u64,
}

impl Command {
    /// An all-zero command (kind `ResetEpisode`, every `SetPlanner` field "keep").
    pub const EMPTY: Self =
        Self { kind: 0, num_samples: 0, iterations: 0, horizon: 0, deadline_us: 0, _reserved: 0, seed: 0 };

    /// A command of `kind` with every `SetPlanner` field "keep".
    pub fn new(kind: CommandKind) -> Self {
        Self { kind: kind as u32, ..Self::EMPTY }
    }

    /// A `SetPlanner` command; 0 in any argument keeps the current value.
    pub fn set_planner(num_samples: u32, iterations: u32, horizon: u32, deadline_us: u32, seed: u64) -> Self {
        Self { kind: CommandKind::SetPlanner as u32, num_samples, iterations, horizon, deadline_us, _reserved: 0, seed }
    }

    /// The decoded kind; `None` for a value this version does not know.
    pub fn kind(&self) -> Option<CommandKind> {
        CommandKind::from_raw(self.kind)
    }
}

impl Default for Command {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// The outcome of a [`Command`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    /// Done (or, for `Shutdown`, started).
    Ok = 0,
    /// Understood but refused (e.g. invalid planner parameters); the message says why.
    Rejected = 1,
    /// The command's kind is not one this daemon knows.
    Unknown = 2,
}

impl ReplyCode {
    /// Every code, in raw-value order.
    pub const ALL: [Self; 3] = [Self::Ok, Self::Rejected, Self::Unknown];

    /// Decodes a raw `CommandReply::code`; `None` for a value this version does not know.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }
}

/// The response to a [`Command`] on the control service.
///
/// Layout (C `struct`, 104 bytes, 4-byte aligned, no padding): `accepted` 0, `code` 4, `message` 8.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, ZeroCopySend)]
#[type_name("swm::CommandReply")]
pub struct CommandReply {
    /// 1 when the command was accepted (`code` is `Ok`), else 0.
    pub accepted: u32,
    /// A [`ReplyCode`] raw value.
    pub code: u32,
    /// Human-readable detail, NUL-padded UTF-8 of at most [`CommandReply::MAX_MESSAGE_LEN`] bytes.
    pub message: [u8; 96],
}

impl CommandReply {
    /// Longest message in bytes (the array keeps one NUL).
    pub const MAX_MESSAGE_LEN: usize = 95;

    /// An all-zero reply (not accepted, code `Ok`, empty message); use the constructors.
    pub const EMPTY: Self = Self { accepted: 0, code: 0, message: [0; 96] };

    /// A reply with `code` (accepted exactly when it is `Ok`) and `message`, cut to fit as
    /// [`CommandReply::set_message`] does.
    pub fn new(code: ReplyCode, message: &str) -> Self {
        let mut reply = Self { accepted: u32::from(code == ReplyCode::Ok), code: code as u32, ..Self::EMPTY };
        reply.set_message(message);
        reply
    }

    /// Accepted, with `message`.
    pub fn ok(message: &str) -> Self {
        Self::new(ReplyCode::Ok, message)
    }

    /// Refused, with the reason in `message`.
    pub fn rejected(message: &str) -> Self {
        Self::new(ReplyCode::Rejected, message)
    }

    /// The answer to a command whose raw kind this daemon does not know.
    pub fn unknown(kind: u32) -> Self {
        Self::new(ReplyCode::Unknown, &format!("unknown command kind {kind}"))
    }

    /// Whether the command was accepted.
    pub fn accepted(&self) -> bool {
        self.accepted != 0
    }

    /// The decoded code; `None` for a value this version does not know.
    pub fn code(&self) -> Option<ReplyCode> {
        ReplyCode::from_raw(self.code)
    }

    /// The message, `None` when the field has no NUL or is not UTF-8 (a malformed reply).
    pub fn message(&self) -> Option<&str> {
        text::read(&self.message)
    }

    /// Sets the message, cut before any NUL and to at most [`Self::MAX_MESSAGE_LEN`] bytes at a character boundary
    /// (a reply is always sent, so a long message is shortened rather than refused).
    pub fn set_message(&mut self, message: &str) {
        text::write_truncated(&mut self.message, message);
    }
}

impl Default for CommandReply {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Debug for CommandReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandReply")
            .field("accepted", &self.accepted)
            .field("code", &self.code)
            .field("message", &self.message())
            .finish()
    }
}

const _: () = assert!(std::mem::size_of::<Command>() == 32 && std::mem::align_of::<Command>() == 8);
const _: () = assert!(std::mem::size_of::<CommandReply>() == 104 && std::mem::align_of::<CommandReply>() == 4);

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn layout_is_fixed_for_c_readers() {
        assert_eq!(size_of::<Command>(), 32);
        assert_eq!(align_of::<Command>(), 8);
        assert_eq!(offset_of!(Command, kind), 0);
        assert_eq!(offset_of!(Command, num_samples), 4);
        assert_eq!(offset_of!(Command, iterations), 8);
        assert_eq!(offset_of!(Command, horizon), 12);
        assert_eq!(offset_of!(Command, deadline_us), 16);
        assert_eq!(offset_of!(Command, _reserved), 20);
        assert_eq!(offset_of!(Command, seed), 24);
        assert_eq!(6 * 4 + 8, size_of::<Command>());

        assert_eq!(size_of::<CommandReply>(), 104);
        assert_eq!(align_of::<CommandReply>(), 4);
        assert_eq!(offset_of!(CommandReply, accepted), 0);
        assert_eq!(offset_of!(CommandReply, code), 4);
        assert_eq!(offset_of!(CommandReply, message), 8);
        assert_eq!(4 + 4 + 96, size_of::<CommandReply>());

        assert_eq!(unsafe { <Command as ZeroCopySend>::type_name() }, "swm::Command");
        assert_eq!(unsafe { <CommandReply as ZeroCopySend>::type_name() }, "swm::CommandReply");
    }

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for (raw, k) in CommandKind::ALL.into_iter().enumerate() {
            assert_eq!(k as u32, raw as u32);
            assert_eq!(CommandKind::from_raw(raw as u32), Some(k));
            assert_eq!(Command::new(k).kind(), Some(k));
        }
        assert_eq!(CommandKind::from_raw(6), None);
        assert_eq!(Command { kind: u32::MAX, ..Command::default() }.kind(), None);
        for (raw, c) in ReplyCode::ALL.into_iter().enumerate() {
            assert_eq!(c as u32, raw as u32);
            assert_eq!(ReplyCode::from_raw(raw as u32), Some(c));
        }
        assert_eq!(ReplyCode::from_raw(3), None);
    }

    #[test]
    fn commands_and_replies_carry_their_fields() {
        assert_eq!(Command::default(), Command::EMPTY);
        let c = Command::set_planner(300, 30, 5, 20_000, 42);
        assert_eq!(c.kind(), Some(CommandKind::SetPlanner));
        assert_eq!(
            (c.num_samples, c.iterations, c.horizon, c.deadline_us, c._reserved, c.seed),
            (300, 30, 5, 20_000, 0, 42)
        );

        let ok = CommandReply::ok("planner updated");
        assert!(ok.accepted());
        assert_eq!(ok.code(), Some(ReplyCode::Ok));
        assert_eq!(ok.message(), Some("planner updated"));
        let no = CommandReply::rejected("horizon must be at most 16");
        assert!(!no.accepted());
        assert_eq!((no.code(), no.message()), (Some(ReplyCode::Rejected), Some("horizon must be at most 16")));
        let unknown = CommandReply::unknown(77);
        assert!(!unknown.accepted());
        assert_eq!((unknown.code(), unknown.message()), (Some(ReplyCode::Unknown), Some("unknown command kind 77")));

        let long = "é".repeat(60); // 120 bytes
        let cut = CommandReply::ok(&long);
        assert_eq!(cut.message(), Some("é".repeat(47).as_str()), "94 bytes: whole characters within 95");
        assert_eq!(CommandReply::ok("a\0b").message(), Some("a"));
        assert_eq!(CommandReply { message: [b'x'; 96], ..ok }.message(), None);
        assert_eq!(CommandReply { code: 9, ..ok }.code(), None);
        assert!(format!("{ok:?}").contains("Some(\"planner updated\")"));
        assert_eq!(CommandReply::default(), CommandReply::EMPTY);
    }
}
