//! Every iceoryx2 service name of swm, in one place.
//!
//! A daemon and its controllers agree on a prefix (from the daemon's config; empty by default) and open
//! `prefixed(prefix, NAME)`, so several daemons (one per robot or per GPU) run side by side on one host.

/// Observations in (controller → daemon): publish-subscribe, `[u8]` payload with an
/// [`ObservationHeader`](crate::ObservationHeader) user header.
pub const OBSERVATIONS: &str = "swm/observations";
/// Goals in (controller → daemon): as observations; the latest goal is kept (history 1).
pub const GOALS: &str = "swm/goals";
/// Actions out (daemon → controllers): publish-subscribe, [`ActionSlot`](crate::ActionSlot) payload, latest value.
pub const ACTIONS: &str = "swm/actions";
/// Control (controller → daemon): request-response, [`Command`](crate::Command) →
/// [`CommandReply`](crate::CommandReply).
pub const CONTROL: &str = "swm/control";
/// Statistics (daemon → anyone): publish-subscribe, [`Stats`](crate::Stats) payload, latest value, about 1 Hz.
pub const STATS: &str = "swm/stats";
/// Wake-ups in both directions: an event service (see [`EventKind`](crate::transport::EventKind)).
pub const EVENTS: &str = "swm/events";

/// Every service name.
pub const ALL: [&str; 6] = [OBSERVATIONS, GOALS, ACTIONS, CONTROL, STATS, EVENTS];

/// `name` under `prefix`: `prefix/name`, or `name` alone for an empty prefix; slashes at either end of the prefix
/// are ignored (`"robot1/"` and `"robot1"` give `robot1/swm/actions`).
pub fn prefixed(prefix: &str, name: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        assert!(ALL.iter().all(|n| seen.insert(n) && n.starts_with("swm/")));
        assert_eq!(prefixed("", ACTIONS), "swm/actions");
        assert_eq!(prefixed("/", ACTIONS), "swm/actions");
        assert_eq!(prefixed("robot1", ACTIONS), "robot1/swm/actions");
        assert_eq!(prefixed("/lab/robot1/", OBSERVATIONS), "lab/robot1/swm/observations");
    }
}
