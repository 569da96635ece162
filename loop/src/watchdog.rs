//! The output thread's deadline watchdog: the action the daemon owes a controller for an observation that has no
//! answer by its due time (its step stalled on the GPU, or it is still queued behind such a step). Host data only,
//! so that it can be published while the GPU is still busy.

use std::time::{Duration, Instant};

use swm_ipc::{ActionSlot, ActionStatus};

/// An observation waiting for its answer: what the watchdog needs to answer it without the GPU.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    /// The daemon's number for it, in order of arrival (matches its step's result).
    pub id: u64,
    /// When its first message was received (its budget counts from here).
    pub received: Instant,
    /// The observation it answers.
    pub observation_sequence: u64,
    /// That observation's capture time (CLOCK_MONOTONIC ns).
    pub captured_ns: u64,
    /// When the daemon received it (CLOCK_MONOTONIC ns).
    pub received_ns: u64,
    /// When the watchdog publishes a fallback if the step has not finished.
    pub due: Instant,
}

/// When the watchdog answers a step: its deadline plus half the slack left in the period (the deadline itself
/// is the engine's budget; the rest of the slack is for publishing). With no slack, at the deadline.
pub fn due_after(deadline: Duration, period: Duration) -> Duration {
    deadline + period.saturating_sub(deadline) / 2
}

/// The answer to `observation`, from host data only: the previous published plan shifted by one step (`WarmStart`)
/// when it has a next step; otherwise the configured fixed action (`Fallback`); otherwise the last published
/// action held (`Fallback`); with nothing published yet, an empty action (`Fallback`, `action_dim` 0: the
/// controller keeps its own safe behaviour).
pub fn fallback(observation: &InFlight, last: Option<&ActionSlot>, fixed: Option<&[f32]>) -> ActionSlot {
    let mut slot = ActionSlot {
        observation_sequence: observation.observation_sequence,
        captured_ns: observation.captured_ns,
        received_ns: observation.received_ns,
        status: ActionStatus::Fallback as u32,
        cost: f32::NAN,
        ..ActionSlot::default()
    };
    let shifted = last.filter(|l| l.horizon >= 2 && l.action_dim > 0);
    if let Some(last) = shifted {
        let dim = last.action().len();
        let plan = &last.plan()[dim..];
        // Both fit: they are parts of a slot that was valid.
        let _ = slot.set_action(&plan[..dim]);
        let _ = slot.set_plan(plan.len() / dim, plan);
        slot.status = ActionStatus::WarmStart as u32;
    } else if let Some(action) = fixed.or_else(|| last.map(ActionSlot::action)) {
        if slot.set_action(action).is_ok() {
            let _ = slot.set_plan(1, action);
        }
    }
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> InFlight {
        let now = Instant::now();
        InFlight { id: 3, received: now, observation_sequence: 9, captured_ns: 1, received_ns: 2, due: now }
    }

    fn published(plan: &[f32], dim: usize) -> ActionSlot {
        let mut slot = ActionSlot::default();
        slot.set_action(&plan[..dim]).unwrap();
        slot.set_plan(plan.len() / dim, plan).unwrap();
        slot
    }

    #[test]
    fn the_previous_plan_shifted_by_one_step_comes_first() {
        let last = published(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2);
        let slot = fallback(&step(), Some(&last), Some(&[9.0, 9.0]));
        assert_eq!(slot.status(), Some(ActionStatus::WarmStart));
        assert_eq!(slot.action(), &[3.0, 4.0]);
        assert_eq!(slot.plan(), &[3.0, 4.0, 5.0, 6.0]);
        assert_eq!((slot.observation_sequence, slot.captured_ns, slot.received_ns), (9, 1, 2));
        assert!(slot.cost.is_nan() && slot.iterations == 0);
        // A second miss shifts again; the last step of a plan has nothing left to shift.
        let again = fallback(&step(), Some(&slot), None);
        assert_eq!(again.action(), &[5.0, 6.0]);
        let last_step = fallback(&step(), Some(&again), None);
        assert_eq!(last_step.status(), Some(ActionStatus::Fallback));
        assert_eq!(last_step.action(), &[5.0, 6.0], "held");
    }

    #[test]
    fn without_a_plan_the_fixed_action_then_the_held_one_then_nothing() {
        let last = published(&[1.0, 2.0], 2);
        let slot = fallback(&step(), Some(&last), Some(&[0.5, -0.5]));
        assert_eq!((slot.status(), slot.action()), (Some(ActionStatus::Fallback), &[0.5f32, -0.5][..]));
        let held = fallback(&step(), Some(&last), None);
        assert_eq!((held.status(), held.action()), (Some(ActionStatus::Fallback), &[1.0f32, 2.0][..]));
        let none = fallback(&step(), None, None);
        assert_eq!((none.status(), none.action_dim, none.horizon), (Some(ActionStatus::Fallback), 0, 0));
    }

    #[test]
    fn the_watchdog_fires_between_the_deadline_and_the_next_period() {
        let ms = Duration::from_millis;
        assert_eq!(due_after(ms(4), ms(5)), Duration::from_micros(4500));
        assert_eq!(due_after(ms(5), ms(5)), ms(5));
        assert_eq!(due_after(ms(8), ms(5)), ms(8));
    }
}
