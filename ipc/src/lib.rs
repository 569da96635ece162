//! Shared-memory messages exchanged between `swm-loop` and robot controllers, and the iceoryx2 services that carry
//! them.
//!
//! This crate is CUDA-free and has no swm dependency, so a controller (Rust, or C through the same `#[repr(C)]`
//! layout) links it without the GPU stack. It depends on exactly one crate, `iceoryx2 = "=0.10.0"`, re-exported as
//! [`iceoryx2`] so a controller uses the same version without naming it.
//!
//! - Messages, all `#[repr(C)]`, plain old data with no implicit padding, a stable iceoryx2 type name
//!   (`swm::<Name>`, so two binaries agree on the type) and layout tests: [`ObservationHeader`] (the user header of
//!   an observation or goal sample whose payload is the frame or state bytes), [`ActionSlot`], [`Command`] /
//!   [`CommandReply`] and [`Stats`] / [`StageStats`].
//! - [`services`]: every service name in one place, and [`services::prefixed`] for running several daemons side by
//!   side.
//! - [`transport`]: opens each service and creates each port with the QoS both sides must agree on, and builds
//!   nodes with iceoryx2's signal handling disabled.
//!
//! Text fields (`ObservationHeader::name`, `CommandReply::message`) are NUL-padded UTF-8 and always hold at least
//! one NUL, so a C reader can use them as C strings.

#![deny(missing_docs)]

pub use iceoryx2;

mod action;
mod control;
mod observation;
pub mod services;
mod stats;
mod text;
pub mod transport;

pub use action::{ActionSlot, ActionStatus, MAX_ACTION_DIM, MAX_PLAN_VALUES};
pub use control::{Command, CommandKind, CommandReply, ReplyCode};
pub use observation::{Encoding, GoalHeader, Modality, ObservationHeader};
pub use stats::{StageStats, Stats, STAGES, STAGE_NAMES};
pub use text::FieldError;

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of every `*_ns` timestamp here
/// (`ObservationHeader::capture_ns`, the `ActionSlot` times), one clock for every process on the host.
#[cfg(target_os = "linux")]
pub fn monotonic_ns() -> u64 {
    use std::ffi::{c_int, c_long};

    #[repr(C)]
    struct Timespec {
        tv_sec: c_long,
        tv_nsec: c_long,
    }
    extern "C" {
        fn clock_gettime(clock: c_int, ts: *mut Timespec) -> c_int;
    }
    const CLOCK_MONOTONIC: c_int = 1;

    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one `struct timespec` (two C longs on Linux) through a valid pointer; it cannot
    // fail for CLOCK_MONOTONIC.
    let rc = unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_ns_advances_with_time() {
        let start = std::time::Instant::now();
        let a = super::monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = super::monotonic_ns();
        let elapsed = start.elapsed().as_nanos() as u64;
        assert!(a > 0 && b - a >= 20_000_000, "{a} {b}");
        assert!(b - a <= elapsed, "no faster than std's monotonic clock");
    }
}
