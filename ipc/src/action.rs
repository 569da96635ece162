//! The action slot: what the daemon publishes for each observation it answers.

use std::fmt;

use iceoryx2::prelude::ZeroCopySend;

use crate::FieldError;

/// Largest action vector a slot carries (model action dims are far smaller; PushT LeWM uses 10).
pub const MAX_ACTION_DIM: usize = 64;

/// Largest planned sequence a slot carries, in values (`horizon × action_dim`).
pub const MAX_PLAN_VALUES: usize = 1024;

/// Where a slot's action came from; the values mirror swm's `PlanSource`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// Decodes the raw value stored in a slot; `None` for a value this version does not know.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }
}

/// One published action: the payload of the action service, what a controller reads.
///
/// Layout (C `struct`, 4416 bytes, 8-byte aligned, no padding): `sequence` 0, `observation_sequence` 8,
/// `captured_ns` 16, `received_ns` 24, `published_ns` 32, `status` 40, `action_dim` 44, `iterations` 48,
/// `horizon` 52, `cost` 56, `_reserved` 60, `action` 64, `plan` 320.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, ZeroCopySend)]
#[type_name("swm::ActionSlot")]
pub struct ActionSlot {
    /// The daemon's action number (starts at 1 and increases by one per published action; 0 = never written).
    pub sequence: u64,
    /// `ObservationHeader::sequence` of the observation this action answers.
    pub observation_sequence: u64,
    /// `ObservationHeader::capture_ns` of that observation (CLOCK_MONOTONIC ns), copied through.
    pub captured_ns: u64,
    /// CLOCK_MONOTONIC time the daemon received that observation, in nanoseconds.
    pub received_ns: u64,
    /// CLOCK_MONOTONIC time the daemon published this action, in nanoseconds.
    pub published_ns: u64,
    /// An [`ActionStatus`] raw value.
    pub status: u32,
    /// Number of valid entries in `action` (at most [`MAX_ACTION_DIM`]).
    pub action_dim: u32,
    /// Planner iterations that ran for this action (0 for a warm start, fallback or prior).
    pub iterations: u32,
    /// Number of planned steps stored in `plan` (0 when the plan is not published).
    pub horizon: u32,
    /// The planner's cost of the chosen plan (lower is better; NaN when no plan was scored).
    pub cost: f32,
    /// Always 0; keeps `action` 8-byte aligned without implicit padding.
    pub _reserved: u32,
    /// The action to apply now, in env units; entries past `action_dim` are zero.
    pub action: [f32; MAX_ACTION_DIM],
    /// The planned sequence, `horizon` steps of `action_dim` values, step-major, in env units (its first step is
    /// `action`); entries past `horizon × action_dim` are zero.
    pub plan: [f32; MAX_PLAN_VALUES],
}

impl ActionSlot {
    /// An empty slot (sequence 0, status `Solved`, no action).
    pub const EMPTY: Self = Self {
        sequence: 0,
        observation_sequence: 0,
        captured_ns: 0,
        received_ns: 0,
        published_ns: 0,
        status: 0,
        action_dim: 0,
        iterations: 0,
        horizon: 0,
        cost: 0.0,
        _reserved: 0,
        action: [0.0; MAX_ACTION_DIM],
        plan: [0.0; MAX_PLAN_VALUES],
    };

    /// The valid part of the action (`action_dim` values, clamped to [`MAX_ACTION_DIM`]).
    pub fn action(&self) -> &[f32] {
        &self.action[..(self.action_dim as usize).min(MAX_ACTION_DIM)]
    }

    /// The valid part of the plan (`horizon × action_dim` values, clamped to [`MAX_PLAN_VALUES`]).
    pub fn plan(&self) -> &[f32] {
        let dim = (self.action_dim as usize).min(MAX_ACTION_DIM);
        let len = (self.horizon as usize).saturating_mul(dim).min(MAX_PLAN_VALUES);
        &self.plan[..len]
    }

    /// The decoded status; `None` for a value this version does not know.
    pub fn status(&self) -> Option<ActionStatus> {
        ActionStatus::from_raw(self.status)
    }

    /// Stores `action` and sets `action_dim`, zeroing the entries past it; refuses more than [`MAX_ACTION_DIM`]
    /// values (leaving the slot unchanged).
    pub fn set_action(&mut self, action: &[f32]) -> Result<(), FieldError> {
        if action.len() > MAX_ACTION_DIM {
            return Err(FieldError::TooLong { len: action.len(), capacity: MAX_ACTION_DIM });
        }
        self.action = [0.0; MAX_ACTION_DIM];
        self.action[..action.len()].copy_from_slice(action);
        self.action_dim = action.len() as u32;
        Ok(())
    }

    /// Stores a plan of `horizon` steps of `action_dim` values (set the action first) and sets `horizon`,
    /// zeroing the entries past it; refuses a plan of another shape or longer than [`MAX_PLAN_VALUES`] (leaving
    /// the slot unchanged). An empty plan with `horizon` 0 clears it.
    pub fn set_plan(&mut self, horizon: usize, plan: &[f32]) -> Result<(), FieldError> {
        let action_dim = (self.action_dim as usize).min(MAX_ACTION_DIM);
        if horizon.checked_mul(action_dim) != Some(plan.len()) {
            return Err(FieldError::PlanShape { len: plan.len(), horizon, action_dim });
        }
        if plan.len() > MAX_PLAN_VALUES {
            return Err(FieldError::TooLong { len: plan.len(), capacity: MAX_PLAN_VALUES });
        }
        self.plan = [0.0; MAX_PLAN_VALUES];
        self.plan[..plan.len()].copy_from_slice(plan);
        self.horizon = horizon as u32;
        Ok(())
    }
}

impl Default for ActionSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// Shows the valid parts of `action` and `plan` only.
impl fmt::Debug for ActionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionSlot")
            .field("sequence", &self.sequence)
            .field("observation_sequence", &self.observation_sequence)
            .field("captured_ns", &self.captured_ns)
            .field("received_ns", &self.received_ns)
            .field("published_ns", &self.published_ns)
            .field("status", &self.status)
            .field("action_dim", &self.action_dim)
            .field("iterations", &self.iterations)
            .field("horizon", &self.horizon)
            .field("cost", &self.cost)
            .field("action", &self.action())
            .field("plan", &self.plan())
            .finish()
    }
}

const _: () = assert!(std::mem::size_of::<ActionSlot>() == 4416 && std::mem::align_of::<ActionSlot>() == 8);

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn layout_is_fixed_for_c_readers() {
        assert_eq!(size_of::<ActionSlot>(), 4416);
        assert_eq!(align_of::<ActionSlot>(), 8);
        let offsets = [
            (offset_of!(ActionSlot, sequence), 0),
            (offset_of!(ActionSlot, observation_sequence), 8),
            (offset_of!(ActionSlot, captured_ns), 16),
            (offset_of!(ActionSlot, received_ns), 24),
            (offset_of!(ActionSlot, published_ns), 32),
            (offset_of!(ActionSlot, status), 40),
            (offset_of!(ActionSlot, action_dim), 44),
            (offset_of!(ActionSlot, iterations), 48),
            (offset_of!(ActionSlot, horizon), 52),
            (offset_of!(ActionSlot, cost), 56),
            (offset_of!(ActionSlot, _reserved), 60),
            (offset_of!(ActionSlot, action), 64),
            (offset_of!(ActionSlot, plan), 64 + 4 * MAX_ACTION_DIM),
        ];
        for (actual, expected) in offsets {
            assert_eq!(actual, expected);
        }
        // No implicit padding: the fields add up to the size.
        assert_eq!(5 * 8 + 4 * 4 + 4 + 4 + 4 * (MAX_ACTION_DIM + MAX_PLAN_VALUES), size_of::<ActionSlot>());
        assert_eq!(unsafe { <ActionSlot as ZeroCopySend>::type_name() }, "swm::ActionSlot");
    }

    #[test]
    fn status_round_trips_and_rejects_unknown_values() {
        for (raw, s) in ActionStatus::ALL.into_iter().enumerate() {
            assert_eq!(s as u32, raw as u32);
            assert_eq!(ActionStatus::from_raw(raw as u32), Some(s));
        }
        assert_eq!(ActionStatus::from_raw(5), None);
        assert_eq!(ActionStatus::from_raw(u32::MAX), None);
        let slot = ActionSlot { status: ActionStatus::Fallback as u32, ..ActionSlot::default() };
        assert_eq!(slot.status(), Some(ActionStatus::Fallback));
        assert_eq!(ActionSlot { status: 9, ..slot }.status(), None);
    }

    #[test]
    fn action_and_plan_views_are_clamped_and_setters_checked() {
        assert_eq!(ActionSlot::default(), ActionSlot::EMPTY);
        let slot = ActionSlot { action_dim: 2, action: [1.0; MAX_ACTION_DIM], ..ActionSlot::EMPTY };
        assert_eq!(slot.action(), &[1.0, 1.0]);
        assert!(slot.plan().is_empty(), "horizon 0: no plan");
        let wild = ActionSlot { action_dim: u32::MAX, horizon: u32::MAX, ..ActionSlot::EMPTY };
        assert_eq!(wild.action().len(), MAX_ACTION_DIM);
        assert_eq!(wild.plan().len(), MAX_PLAN_VALUES);

        let mut slot = ActionSlot::EMPTY;
        slot.set_action(&[0.5, -0.5]).unwrap();
        assert_eq!(slot.action(), &[0.5, -0.5]);
        slot.set_plan(3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(slot.horizon, 3);
        assert_eq!(slot.plan(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(slot.set_plan(2, &[1.0; 3]), Err(FieldError::PlanShape { len: 3, horizon: 2, action_dim: 2 }));
        assert_eq!(slot.set_plan(513, &[0.0; 1026]), Err(FieldError::TooLong { len: 1026, capacity: MAX_PLAN_VALUES }));
        assert_eq!(slot.plan().len(), 6, "refused plans leave the slot unchanged");
        slot.set_plan(0, &[]).unwrap();
        assert!(slot.plan().is_empty());
        assert!(slot.plan.iter().all(|&v| v == 0.0));
        assert_eq!(slot.set_action(&[0.0; MAX_ACTION_DIM + 1]), Err(FieldError::TooLong { len: 65, capacity: 64 }));
        slot.set_action(&[3.0]).unwrap();
        assert_eq!(slot.action, {
            let mut a = [0.0; MAX_ACTION_DIM];
            a[0] = 3.0;
            a
        });
        let shown = format!("{slot:?}");
        assert!(shown.contains("action: [3.0]") && shown.contains("plan: []"), "{shown}");
    }
}
