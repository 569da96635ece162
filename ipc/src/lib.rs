//! Shared-memory message types exchanged between `swm-loop` and robot controllers.
//!
//! This crate is CUDA-free and has no dependencies, so controllers (Rust, or C through the same `#[repr(C)]`
//! layout) can link it without the GPU stack. Every type is plain old data with a fixed layout.

#![deny(missing_docs)]

/// Largest action vector a slot carries (model action dims are far smaller; PushT LeWM uses 10).
pub const MAX_ACTION_DIM: usize = 64;

/// Where a slot's action came from; the values mirror swm's `PlanSource`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    /// Every configured planner iteration ran.
    Solved = 0,
    /// The deadline stopped the planner early; the state its completed iterations reached was used.
    Truncated = 1,
    /// No iteration fitted the deadline; the previous plan, shifted by the executed steps, was used.
    WarmStart = 2,
    /// No iteration fitted the deadline and there was no warm start; the configured fallback action was used.
    Fallback = 3,
    /// No iteration fitted the deadline, with neither warm start nor fallback: the prior mean (zeros).
    Prior = 4,
}

impl ActionStatus {
    /// Every status, in raw-value order.
    pub const ALL: [Self; 5] = [Self::Solved, Self::Truncated, Self::WarmStart, Self::Fallback, Self::Prior];

    /// Decodes the raw value stored in a slot.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }
}

/// One published action: what a controller reads from shared memory.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionSlot {
    /// Monotonic sequence number of the plan (starts at 1; 0 = never written).
    pub sequence: u64,
    /// Sequence number of the observation the plan answered.
    pub observation_sequence: u64,
    /// CLOCK_MONOTONIC time the action was published, in nanoseconds.
    pub published_ns: u64,
    /// An [`ActionStatus`] as `u32`.
    pub status: u32,
    /// Number of valid entries in `action`.
    pub action_dim: u32,
    /// The action, in env units; entries past `action_dim` are zero.
    pub action: [f32; MAX_ACTION_DIM],
}

impl ActionSlot {
    /// An empty slot (sequence 0).
    pub const EMPTY: Self = Self {
        sequence: 0,
        observation_sequence: 0,
        published_ns: 0,
        status: 0,
        action_dim: 0,
        action: [0.0; MAX_ACTION_DIM],
    };

    /// The valid part of the action.
    pub fn action(&self) -> &[f32] {
        &self.action[..(self.action_dim as usize).min(MAX_ACTION_DIM)]
    }

    /// The decoded status, `None` for a value this version does not know.
    pub fn status(&self) -> Option<ActionStatus> {
        ActionStatus::from_raw(self.status)
    }
}

impl Default for ActionSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_fixed_for_c_readers() {
        assert_eq!(std::mem::size_of::<ActionSlot>(), 8 * 3 + 4 * 2 + 4 * MAX_ACTION_DIM);
        assert_eq!(std::mem::align_of::<ActionSlot>(), 8);
        assert_eq!(std::mem::offset_of!(ActionSlot, status), 24);
        assert_eq!(std::mem::offset_of!(ActionSlot, action), 32);
    }

    #[test]
    fn status_round_trips_and_rejects_unknown_values() {
        for (raw, s) in ActionStatus::ALL.into_iter().enumerate() {
            assert_eq!(s as u32, raw as u32);
            assert_eq!(ActionStatus::from_raw(raw as u32), Some(s));
        }
        assert_eq!(ActionStatus::from_raw(5), None);
        assert_eq!(ActionStatus::from_raw(7), None);
        let slot = ActionSlot { action_dim: 2, action: [1.0; MAX_ACTION_DIM], ..ActionSlot::EMPTY };
        assert_eq!(slot.action(), &[1.0, 1.0]);
    }
}
