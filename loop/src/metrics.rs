//! Counters and per-stage latency windows, summarised into [`swm_ipc::Stats`] once per stats period, and
//! whole-run histograms (HdrHistogram, 3 significant digits) reported when the daemon stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use swm_ipc::{StageStats, Stats, STAGES, STAGE_NAMES};

/// A pipeline stage whose latency is tracked (the order of [`swm_ipc::STAGE_NAMES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// From the observation's arrival to its hand-over to inference.
    Ingest = 0,
    /// Waiting for the inference thread.
    QueueWait = 1,
    /// Upload, preprocessing, encoding (GPU time).
    Encode = 2,
    /// Planning (GPU time).
    Plan = 3,
    /// From the step's end to the action in shared memory.
    Publish = 4,
    /// From the observation's arrival to the action in shared memory.
    EndToEnd = 5,
}

/// Most samples kept per stage between two summaries (older ones are overwritten: a summary covers at most the
/// newest `WINDOW` steps of its period).
pub const WINDOW: usize = 8192;

/// Largest latency the whole-run histograms resolve (a minute); longer ones count as a minute.
const MAX_NS: u64 = 60_000_000_000;

/// Counters (lock-free) and latency windows (one short lock per record) shared by the actors.
#[derive(Debug)]
pub struct Metrics {
    /// Observations taken from shared memory (accepted or not).
    pub observations_received: AtomicU64,
    /// Accepted observations replaced by a newer one before inference took them.
    pub observations_dropped_stale: AtomicU64,
    /// Malformed observations (see [`crate::message::Rejection`]).
    pub observations_rejected: AtomicU64,
    /// Control steps run.
    pub steps: AtomicU64,
    /// Steps whose planner did not complete every iteration within the deadline.
    pub deadline_misses: AtomicU64,
    /// Steps that published the fallback (warm start, fixed action or prior) because no iteration fitted.
    pub fallbacks_published: AtomicU64,
    /// Actions written to shared memory.
    pub actions_published: AtomicU64,
    /// Finished steps replaced in the output queue before they were published.
    pub actions_dropped: AtomicU64,
    /// Steps that failed (the error is logged; nothing is published for them).
    pub step_errors: AtomicU64,
    windows: Mutex<Vec<Window>>,
    /// Whole-run histograms in nanoseconds: one per stage, then the loop overhead.
    run: Mutex<Vec<Histogram<u64>>>,
}

#[derive(Debug, Clone)]
struct Window {
    samples: Vec<f32>,
    next: usize,
    count: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            observations_received: AtomicU64::new(0),
            observations_dropped_stale: AtomicU64::new(0),
            observations_rejected: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            deadline_misses: AtomicU64::new(0),
            fallbacks_published: AtomicU64::new(0),
            actions_published: AtomicU64::new(0),
            actions_dropped: AtomicU64::new(0),
            step_errors: AtomicU64::new(0),
            windows: Mutex::new(vec![Window { samples: Vec::with_capacity(WINDOW), next: 0, count: 0 }; STAGES]),
            run: Mutex::new((0..=STAGES).filter_map(|_| Histogram::new_with_bounds(1, MAX_NS, 3).ok()).collect()),
        }
    }
}

impl Metrics {
    /// Adds one to a counter.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a latency of `stage`.
    pub fn record(&self, stage: Stage, latency: Duration) {
        self.record_run(stage as usize, latency);
        let us = latency.as_secs_f32() * 1e6;
        let Ok(mut windows) = self.windows.lock() else { return };
        let w = &mut windows[stage as usize];
        if w.samples.len() < WINDOW {
            w.samples.push(us);
        } else {
            w.samples[w.next] = us;
        }
        w.next = (w.next + 1) % WINDOW;
        w.count += 1;
    }

    /// Records the loop's overhead for one step: its end-to-end latency minus the backend's step (wall time).
    pub fn record_overhead(&self, overhead: Duration) {
        self.record_run(STAGES, overhead);
    }

    fn record_run(&self, index: usize, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(MAX_NS).clamp(1, MAX_NS);
        if let Some(h) = self.run.lock().ok().as_mut().and_then(|r| r.get_mut(index)) {
            h.saturating_record(ns);
        }
    }

    /// p50 / p99 / p99.9 / max in microseconds and the count of every stage over the whole run, then the loop
    /// overhead (`overhead`), one line each.
    pub fn run_report(&self) -> String {
        let Ok(run) = self.run.lock() else { return String::new() };
        let names = STAGE_NAMES.iter().copied().chain(["overhead"]);
        names
            .zip(run.iter())
            .map(|(name, h)| {
                let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
                format!(
                    "{name:<10}  p50 {:9.1} us  p99 {:9.1} us  p99.9 {:9.1} us  max {:9.1} us  (n={})",
                    us(0.5),
                    us(0.99),
                    us(0.999),
                    h.max() as f64 / 1e3,
                    h.len()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The counters and the percentiles of the samples recorded since the last summary (which are cleared).
    pub fn summarise(&self, window: Duration) -> Stats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut stats = Stats {
            observations_received: load(&self.observations_received),
            observations_dropped_stale: load(&self.observations_dropped_stale),
            observations_rejected: load(&self.observations_rejected),
            steps: load(&self.steps),
            deadline_misses: load(&self.deadline_misses),
            fallbacks_published: load(&self.fallbacks_published),
            actions_published: load(&self.actions_published),
            window_ns: window.as_nanos().min(u64::MAX as u128) as u64,
            ..Stats::default()
        };
        if let Ok(mut windows) = self.windows.lock() {
            for (out, w) in stats.stages.iter_mut().zip(windows.iter_mut()) {
                *out = summary(&mut w.samples);
                w.samples.clear();
                w.next = 0;
            }
        }
        stats
    }
}

/// p50, p99 and max of `samples` (sorted in place).
fn summary(samples: &mut [f32]) -> StageStats {
    if samples.is_empty() {
        return StageStats::default();
    }
    samples.sort_by(f32::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    StageStats { p50_us: at(0.5), p99_us: at(0.99), max_us: samples[samples.len() - 1], count: samples.len() as u32 }
}

pub use swm_ipc::monotonic_ns;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_report_covers_every_sample_of_the_run() {
        let m = Metrics::default();
        for us in 1..=1000u64 {
            m.record(Stage::EndToEnd, Duration::from_micros(us));
        }
        m.record_overhead(Duration::from_micros(42));
        // A periodic summary empties the windows, not the run histograms.
        let window = m.summarise(Duration::from_secs(1));
        assert_eq!(window.stages[Stage::EndToEnd as usize].count, 1000);
        let report = m.run_report();
        let line = report.lines().find(|l| l.starts_with("end_to_end")).unwrap();
        assert!(line.contains("p50     500.") && line.contains("max    1000.") && line.contains("(n=1000)"), "{line}");
        let overhead = report.lines().find(|l| l.starts_with("overhead")).unwrap();
        assert!(overhead.contains("p50      42.0") && overhead.contains("(n=1)"), "{overhead}");
        assert_eq!(report.lines().count(), STAGES + 1);
    }
}
