//! The daemon's statistics, published about once a second.

use iceoryx2::prelude::ZeroCopySend;

/// Number of pipeline stages with a latency summary.
pub const STAGES: usize = 6;

/// The stages of [`Stats::stages`], in order: ingest (observation received → its input ready for inference),
/// queue wait (ready → picked up by inference), encode, plan, publish (plan done → action sent) and end to end
/// (observation captured → action published).
pub const STAGE_NAMES: [&str; STAGES] = ["ingest", "queue_wait", "encode", "plan", "publish", "end_to_end"];

/// Latency summary of one stage over a stats window.
///
/// Layout (C `struct`, 16 bytes, 4-byte aligned): `p50_us` 0, `p99_us` 4, `max_us` 8, `count` 12.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default, ZeroCopySend)]
#[type_name("swm::StageStats")]
pub struct StageStats {
    /// Median, in microseconds.
    pub p50_us: f32,
    /// 99th percentile, in microseconds.
    pub p99_us: f32,
    /// Maximum, in microseconds.
    pub max_us: f32,
    /// Number of samples in the window (0: the other fields are 0 and mean nothing).
    pub count: u32,
}

impl StageStats {
    /// No samples.
    pub const EMPTY: Self = Self { p50_us: 0.0, p99_us: 0.0, max_us: 0.0, count: 0 };
}

/// The payload of the stats service.
///
/// Counters are cumulative since the daemon started (a reader diffs two samples for rates); stage summaries cover
/// the last `window_ns` only.
///
/// Layout (C `struct`, 160 bytes, 8-byte aligned, no padding): the seven counters at 0, 8, …, 48, `stages` 56
/// (`STAGES` × 16 bytes), `window_ns` 152.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default, ZeroCopySend)]
#[type_name("swm::Stats")]
pub struct Stats {
    /// Observation messages received (valid or not).
    pub observations_received: u64,
    /// Valid observations never planned on because a newer one arrived first (latest wins) or the daemon was
    /// paused.
    pub observations_dropped_stale: u64,
    /// Observation messages rejected as malformed (wrong length, unknown modality or name, NaN state, …).
    pub observations_rejected: u64,
    /// Control steps run (one per planned observation).
    pub steps: u64,
    /// Steps whose plan did not finish every iteration within the deadline.
    pub deadline_misses: u64,
    /// Actions published from a warm start, the fallback action or the prior instead of a plan.
    pub fallbacks_published: u64,
    /// Actions published.
    pub actions_published: u64,
    /// Per-stage latency over the window, in the order of [`STAGE_NAMES`].
    pub stages: [StageStats; STAGES],
    /// Length of the window the stage summaries cover, in nanoseconds.
    pub window_ns: u64,
}

impl Stats {
    /// All counters 0, no samples.
    pub const EMPTY: Self = Self {
        observations_received: 0,
        observations_dropped_stale: 0,
        observations_rejected: 0,
        steps: 0,
        deadline_misses: 0,
        fallbacks_published: 0,
        actions_published: 0,
        stages: [StageStats::EMPTY; STAGES],
        window_ns: 0,
    };

    /// The summary of the stage named `name` (one of [`STAGE_NAMES`]).
    pub fn stage(&self, name: &str) -> Option<&StageStats> {
        STAGE_NAMES.iter().position(|&n| n == name).map(|i| &self.stages[i])
    }
}

const _: () = assert!(std::mem::size_of::<StageStats>() == 16 && std::mem::align_of::<StageStats>() == 4);
const _: () = assert!(std::mem::size_of::<Stats>() == 160 && std::mem::align_of::<Stats>() == 8);

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn layout_is_fixed_for_c_readers() {
        assert_eq!(size_of::<StageStats>(), 16);
        assert_eq!(align_of::<StageStats>(), 4);
        assert_eq!(offset_of!(StageStats, p50_us), 0);
        assert_eq!(offset_of!(StageStats, p99_us), 4);
        assert_eq!(offset_of!(StageStats, max_us), 8);
        assert_eq!(offset_of!(StageStats, count), 12);

        assert_eq!(size_of::<Stats>(), 160);
        assert_eq!(align_of::<Stats>(), 8);
        let counters = [
            offset_of!(Stats, observations_received),
            offset_of!(Stats, observations_dropped_stale),
            offset_of!(Stats, observations_rejected),
            offset_of!(Stats, steps),
            offset_of!(Stats, deadline_misses),
            offset_of!(Stats, fallbacks_published),
            offset_of!(Stats, actions_published),
        ];
        assert_eq!(counters, [0, 8, 16, 24, 32, 40, 48]);
        assert_eq!(offset_of!(Stats, stages), 56);
        assert_eq!(offset_of!(Stats, window_ns), 56 + 16 * STAGES);
        assert_eq!(7 * 8 + 16 * STAGES + 8, size_of::<Stats>());

        assert_eq!(unsafe { <StageStats as ZeroCopySend>::type_name() }, "swm::StageStats");
        assert_eq!(unsafe { <Stats as ZeroCopySend>::type_name() }, "swm::Stats");
    }

    #[test]
    fn stages_are_found_by_name() {
        assert_eq!(Stats::default(), Stats::EMPTY);
        assert_eq!(StageStats::default(), StageStats::EMPTY);
        let mut stats = Stats::EMPTY;
        stats.stages[3] = StageStats { p50_us: 1.0, p99_us: 2.0, max_us: 3.0, count: 4 };
        assert_eq!(stats.stage("plan"), Some(&stats.stages[3]));
        assert_eq!(stats.stage("end_to_end"), Some(&StageStats::EMPTY));
        assert_eq!(stats.stage("nope"), None);
        let mut seen = std::collections::HashSet::new();
        assert!(STAGE_NAMES.iter().all(|n| seen.insert(n)), "names are unique");
    }
}
