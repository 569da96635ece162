//! Device-resident sampling planners with upstream semantics (spec `docs/spec/planners.md`): CEM, MPPI and iCEM.
//!
//! A [`Planner`] owns every buffer of its solver on the GPU (allocated once), draws its noise with cuRAND's
//! Philox4x32-10 on Candle's stream, selects elites with an in-shared-memory sort and updates the distribution in
//! one kernel per iteration. Candidates are scored by any [`CandidateScorer`] (a LeWM session, a TD-MPC2 model, a
//! test double). Without a deadline an iteration is one CUDA-graph launch and the host never waits; with a
//! deadline the planner paces itself on CUDA events and stops issuing iterations that would finish late.
//!
//! ```no_run
//! # fn demo(session: &mut swm::models::lewm::LeWmSession, device: &candle_core::Device) -> swm::Result<()> {
//! use swm::planning::{CemConfig, PlanOptions, Planner, PlannerConfig, SolverConfig};
//! let config = PlannerConfig::new(SolverConfig::Cem(CemConfig::default()), 5, 2, 5);
//! let mut planner = Planner::new(config, 1, device)?;
//! let plan = planner.plan(session, &PlanOptions::default())?;
//! let first_actions = plan.executed_to_host()?; // the one copy out
//! # Ok(()) }
//! ```

mod config;
mod planner;

pub use config::{
    ActionBounds, CemConfig, IcemConfig, MppiConfig, PlannerConfig, PlannerOverrides, Sampling, SolverConfig,
    SolverKind, MAX_ICEM_HORIZON, MAX_SAMPLES,
};
pub use planner::{colouring_matrix, IterationState, NoiseReplay, Plan, PlanOptions, PlanSource, Planner};

use candle_core::Tensor;

use crate::error::Result;

/// Scores candidate action sequences: lower is better.
///
/// `score` must only enqueue stream-ordered device work on the candidates' device (no host synchronisation), so
/// that a planner can capture it into a CUDA graph together with its own kernels.
pub trait CandidateScorer {
    /// Costs (B, N) f32 of candidates (B, N, H, Da) in the normalised action space.
    fn score(&mut self, candidates: &Tensor) -> Result<Tensor>;

    /// Changes whenever the device buffers `score` reads (observations, goals) are reallocated: graphs captured
    /// at an older revision would read freed memory and are recaptured. Take new values from [`next_revision`]
    /// so that two scorers never share one (a planner also keys its graph by the scorer's address).
    fn revision(&self) -> u64;

    /// Upstream's `prepare_init_action` for models with a policy (docs/spec/tdmpc2.md §5.2, docs/spec/planners.md §2.3): fill steps
    /// `from..H` of the initial mean (B, H, Da) with the scorer's own proposal, given steps `..from` (the shifted
    /// warm start). Called once per plan, before the first iteration, with stream-ordered device work only. The
    /// default keeps the zeros upstream uses for models without a policy (LeWM).
    fn propose(&mut self, _mean: &Tensor, _from: usize) -> Result<()> {
        Ok(())
    }
}

static REVISIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A process-wide unique, increasing revision number for [`CandidateScorer::revision`].
pub fn next_revision() -> u64 {
    REVISIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
