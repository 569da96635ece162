//! The device-resident planner: CEM, MPPI and iCEM iterations on Candle's CUDA stream, optionally replayed from
//! a CUDA graph, with seeded noise, warm starts and deadlines that bound GPU time.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaEvent;

use super::config::{PlannerConfig, Sampling, SolverConfig};
use super::CandidateScorer;
use crate::error::{Error, Result};
use crate::graph::CapturedGraph;
use crate::ops::launch::cuda;
use crate::ops::planner::{self as kernels, Compose, EliteUpdate, InitDistribution, Update};

/// Where the returned action sequence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum PlanSource {
    /// Every configured iteration ran.
    Solved,
    /// The deadline stopped the solver after `iterations` iterations; the result is the state they reached.
    Truncated {
        /// Iterations that completed.
        iterations: usize,
    },
    /// The deadline left no iteration; the shifted previous plan is returned.
    WarmStart,
    /// The deadline left no iteration and there is no warm start; the configured fallback action is returned.
    Fallback,
    /// The deadline left no iteration, with neither warm start nor fallback: the prior mean (zeros).
    Prior,
}

/// Options of one [`Planner::plan`] call.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Stop issuing iterations that would finish (on the GPU) after this instant.
    pub deadline: Option<Instant>,
    /// Run the iterations eagerly instead of replaying a captured CUDA graph.
    pub eager: bool,
}

/// Noise injected instead of the planner's own draws (parity with a recorded upstream run).
#[derive(Debug, Clone)]
pub struct NoiseReplay {
    /// One draw per iteration: (n_steps, B, N, H, Da) for CEM/MPPI, (n_steps, B, N, Da, H) white noise for iCEM
    /// (upstream draws its time axis last).
    pub noise: Tensor,
}

/// The solver state after one iteration, handed to an observer.
#[derive(Debug)]
pub struct IterationState<'a> {
    /// Iteration index (0-based).
    pub iteration: usize,
    /// Candidates scored this iteration (B, N, H, Da).
    pub candidates: &'a Tensor,
    /// Their costs (B, N).
    pub costs: &'a Tensor,
    /// Elite indices, best first (B, K), u32.
    pub elite_index: &'a Tensor,
    /// Elite costs, ascending (B, K).
    pub elite_cost: &'a Tensor,
    /// Updated mean (B, H, Da).
    pub mean: &'a Tensor,
    /// Updated std (B, H, Da).
    pub std: &'a Tensor,
}

/// The result of [`Planner::plan`]; borrows the planner's output buffers until the next plan.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Planned macro actions (B, H, Da) in the normalised action space, on the device.
    pub actions: &'a Tensor,
    /// Reported cost per env (B,): the mean elite cost of the last iteration (iCEM with `return_mean = false`: its
    /// best elite's); NaN when no iteration ran.
    pub cost: &'a Tensor,
    /// Where `actions` came from.
    pub source: PlanSource,
    /// Iterations that ran.
    pub iterations: usize,
    receding: usize,
    action_block: usize,
}

impl Plan<'_> {
    /// The env actions to execute before replanning, (B, receding·action_block, A_env), on the device: each macro
    /// action of `action_block · A_env` values splits into consecutive env actions, first env step first.
    pub fn executed(&self) -> Result<Tensor> {
        let (b, _, da) = self.actions.dims3()?;
        let a = da / self.action_block;
        Ok(self.actions.narrow(1, 0, self.receding)?.reshape((b, self.receding * self.action_block, a))?)
    }

    /// [`Plan::executed`] copied to the host (the one copy out of the control loop), env-major.
    pub fn executed_to_host(&self) -> Result<Vec<f32>> {
        Ok(self.executed()?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// A callback run after each eager iteration.
type Observer<'o> = &'o mut dyn FnMut(&IterationState<'_>) -> Result<()>;

struct IterationGraph {
    /// The scorer (address, revision) the graph was captured for.
    scorer: (usize, u64),
    graph: CapturedGraph,
}

/// Per-iteration GPU time, learned from CUDA events (used by deadlines).
#[derive(Debug, Default, Clone, Copy)]
struct IterationClock {
    estimate: Option<Duration>,
}

impl IterationClock {
    fn observe(&mut self, sample: Duration) {
        // Weighted towards the slower of the estimate and the sample: under-estimating breaks deadlines.
        self.estimate = Some(match self.estimate {
            None => sample,
            Some(e) if sample > e => sample,
            Some(e) => (e * 3 + sample) / 4,
        });
    }
}

/// A sampling planner with every buffer allocated once on the device.
pub struct Planner {
    config: PlannerConfig,
    device: Device,
    batch: usize,
    seed: u64,
    /// (B, H, Da) distribution and the returned sequence, which the next plan's mean starts from (shifted).
    mean: Tensor,
    std: Tensor,
    actions: Tensor,
    /// `actions` holds a plan to warm-start from.
    has_warm: bool,
    /// (B, N, H, Da) noise and candidates; iCEM's white noise (B, N, Da, H) and colouring matrix (H, H).
    noise: Tensor,
    colouring: Option<(Tensor, Tensor)>,
    candidates: Tensor,
    /// (B, K) elite indices (u32) and costs; (B, K, H, Da) elites; (B,) reported cost.
    elite_index: Tensor,
    elite_cost: Tensor,
    elites: Tensor,
    cost: Tensor,
    /// [draw counter, elites to carry into the next iteration] (i64).
    state: Tensor,
    bounds: Option<(Tensor, Tensor)>,
    fallback: Option<Tensor>,
    graph: Option<IterationGraph>,
    clock: IterationClock,
    /// Deadline pacing: the start of a plan's iterations, and the ends of the last three iterations.
    started: CudaEvent,
    ends: [CudaEvent; 3],
    /// The last iteration of the previous deadline-bounded plan, whose time is not learned yet.
    unobserved: Option<usize>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner").field("config", &self.config).field("batch", &self.batch).finish_non_exhaustive()
    }
}

/// The (H, H) real matrix of `irfft(rfft(w) · g, n = H)` along time (docs/spec/planners.md §5): row s, column t.
pub fn colouring_matrix(h: usize, beta: f32) -> Vec<f32> {
    if h < 2 {
        return vec![1.0; h * h];
    }
    let nbins = h / 2 + 1;
    let mut gain: Vec<f64> = (0..nbins)
        .map(|k| {
            let f = if k == 0 { 1.0 } else { k as f64 / h as f64 };
            // upstream computes the gain in the solver dtype (f32)
            (f as f32).powf(-beta / 2.0) as f64
        })
        .collect();
    gain[0] = gain[1];
    let mut m = vec![0f32; h * h];
    for s in 0..h {
        for t in 0..h {
            let mut acc = gain[0];
            for (k, g) in gain.iter().enumerate().skip(1) {
                let weight = if h.is_multiple_of(2) && k == h / 2 { 1.0 } else { 2.0 };
                let phase = 2.0 * std::f64::consts::PI * (k as f64) * ((t as f64) - (s as f64)) / h as f64;
                acc += weight * g * phase.cos();
            }
            m[s * h + t] = (acc / h as f64) as f32;
        }
    }
    m
}

/// Identifies the scorer a graph reads: its address and revision.
fn scorer_key<S: CandidateScorer + ?Sized>(scorer: &S) -> (usize, u64) {
    ((scorer as *const S).cast::<()>() as usize, scorer.revision())
}

fn entropy_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // SplitMix64 finaliser over time and pid.
    let mut z = (nanos as u64) ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Planner {
    /// Validates `config` and allocates every buffer for `batch` environments on `device`.
    pub fn new(config: PlannerConfig, batch: usize, device: &Device) -> Result<Self> {
        config.validate()?;
        if batch == 0 {
            return Err(Error::invalid_input("batch", "a planner needs at least one environment"));
        }
        let cuda = cuda(device)?;
        let (n, k, h, da) =
            (config.solver.num_samples(), config.solver.elites(), config.horizon, config.macro_action_dim());
        let f32z = |shape: &[usize]| Tensor::zeros(shape, DType::F32, device);
        // iCEM colours its noise over time; with H = 1 there is nothing to colour and it is drawn white.
        let colouring = match &config.solver {
            SolverConfig::Icem(c) if h > 1 => {
                Some((f32z(&[batch, n, da, h])?, Tensor::from_vec(colouring_matrix(h, c.noise_beta), (h, h), device)?))
            }
            _ => None,
        };
        let bounds = match &config.bounds {
            Some(b) => {
                let tile = |v: &[f32]| v.repeat(config.action_block);
                Some((Tensor::new(tile(&b.low), device)?, Tensor::new(tile(&b.high), device)?))
            }
            None => None,
        };
        let fallback = config.fallback_action.as_ref().map(|f| Tensor::new(f.as_slice(), device)).transpose()?;
        let seed = match config.sampling {
            Sampling::Fixed { seed } | Sampling::Persistent { seed } => seed,
            Sampling::Entropy => entropy_seed(),
        };
        let ctx = cuda.cuda_stream().context().clone();
        let event = || ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT));
        Ok(Self {
            device: device.clone(),
            batch,
            seed,
            mean: f32z(&[batch, h, da])?,
            std: f32z(&[batch, h, da])?,
            actions: f32z(&[batch, h, da])?,
            has_warm: false,
            noise: f32z(&[batch, n, h, da])?,
            colouring,
            candidates: f32z(&[batch, n, h, da])?,
            elite_index: Tensor::zeros((batch, k), DType::U32, device)?,
            elite_cost: f32z(&[batch, k])?,
            elites: f32z(&[batch, k, h, da])?,
            cost: f32z(&[batch])?,
            state: Tensor::zeros(2, DType::I64, device)?,
            bounds,
            fallback,
            graph: None,
            clock: IterationClock::default(),
            started: event()?,
            ends: [event()?, event()?, event()?],
            unobserved: None,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// Environments planned together.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The Philox key in use (the configured seed, or the one drawn for [`Sampling::Entropy`]).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The learned GPU time of one iteration (after the first deadline-bounded plan).
    pub fn iteration_estimate(&self) -> Option<Duration> {
        self.clock.estimate
    }

    /// Forgets the warm start (e.g. after an episode reset).
    pub fn reset(&mut self) {
        self.has_warm = false;
    }

    /// Shape of one candidate batch (B, N, H, Da).
    pub fn candidate_shape(&self) -> [usize; 4] {
        [self.batch, self.config.solver.num_samples(), self.config.horizon, self.config.macro_action_dim()]
    }

    /// Whether a captured iteration graph for `scorer` (its address and revision) is ready, so that plans — with a
    /// deadline too — replay it rather than run eagerly.
    pub fn is_prepared<S: CandidateScorer + ?Sized>(&self, scorer: &S) -> bool {
        self.graph.as_ref().is_some_and(|g| g.scorer == scorer_key(scorer))
    }

    /// Captures the iteration graph for `scorer` now (one eager warm-up iteration, then stream capture), so that the
    /// first [`Planner::plan`] does not pay for it. Call it after the scorer's observation and goal are set (and
    /// again after they change shape); a deadline-bounded plan never captures, it runs eagerly until this is done.
    pub fn prepare<S: CandidateScorer + ?Sized>(&mut self, scorer: &mut S) -> Result<()> {
        self.ensure_graph(scorer)
    }

    /// Plans: `n_steps` iterations (fewer under a deadline), returning the action sequence on the device.
    pub fn plan<S: CandidateScorer + ?Sized>(&mut self, scorer: &mut S, options: &PlanOptions) -> Result<Plan<'_>> {
        self.run(scorer, options, None, None)
    }

    /// Plans eagerly with injected noise, calling `observe` after every iteration (parity tests, debugging).
    pub fn plan_observed<S: CandidateScorer + ?Sized>(
        &mut self,
        scorer: &mut S,
        replay: Option<&NoiseReplay>,
        observe: Observer<'_>,
    ) -> Result<Plan<'_>> {
        let options = PlanOptions { deadline: None, eager: true };
        self.run(scorer, &options, replay, Some(observe))
    }

    /// iCEM with `return_mean = false`: the plan is the best candidate of the last iteration, not the mean.
    fn returns_best(&self) -> bool {
        matches!(&self.config.solver, SolverConfig::Icem(c) if !c.return_mean)
    }

    /// The distribution update and the number of elites carried into the next iteration.
    fn update_rule(&self) -> (Update, usize) {
        match &self.config.solver {
            SolverConfig::Cem(_) => (Update::Cem, 0),
            SolverConfig::Mppi(c) => (Update::Mppi { temperature: c.temperature }, 0),
            SolverConfig::Icem(c) => (Update::Icem { alpha: c.alpha }, c.n_elite_keep.min(c.topk)),
        }
    }

    /// Draws (or copies) this iteration's noise into `noise`.
    fn draw(&self, replay: Option<(&Tensor, usize)>) -> Result<()> {
        let cuda = cuda(&self.device)?;
        let target = self.colouring.as_ref().map_or(&self.noise, |(white, _)| white);
        match replay {
            Some((noise, i)) => target.slice_set(&noise.get(i)?.reshape(target.shape())?, 0, 0)?,
            None => kernels::normal_noise(cuda, target, self.seed, &self.state)?,
        }
        if let Some((white, m)) = &self.colouring {
            kernels::colour_noise(cuda, white, m, &self.noise, self.config.horizon, self.config.macro_action_dim())?;
        }
        Ok(())
    }

    /// One iteration: noise → candidates → costs → elites → distribution update.
    fn iterate<S: CandidateScorer + ?Sized>(&self, scorer: &mut S, replay: Option<(&Tensor, usize)>) -> Result<Tensor> {
        let cuda = cuda(&self.device)?;
        self.draw(replay)?;
        let carry = matches!(self.config.solver, SolverConfig::Icem(_));
        Compose {
            eps: &self.noise,
            mean: &self.mean,
            std: &self.std,
            prev: carry.then_some((&self.elites, self.elites.dim(1)?)),
            state: &self.state,
            bounds: self.bounds.as_ref().map(|(l, h)| (l, h)),
            out: &self.candidates,
        }
        .launch(cuda)?;
        let costs = scorer.score(&self.candidates)?;
        let expected = [self.batch, self.config.solver.num_samples()];
        if costs.dims() != expected || costs.dtype() != DType::F32 {
            return Err(Error::invalid_input(
                "scorer",
                format!("returned {:?} {:?} costs, the planner needs {expected:?} f32", costs.dims(), costs.dtype()),
            ));
        }
        let costs = costs.contiguous()?;
        let k = self.elite_index.dim(1)?;
        kernels::topk(cuda, &costs, k, &self.elite_index, &self.elite_cost)?;
        let (rule, keep_next) = self.update_rule();
        EliteUpdate {
            candidates: &self.candidates,
            index: &self.elite_index,
            value: &self.elite_cost,
            mean: &self.mean,
            std: &self.std,
            elites: &self.elites,
            best: self.returns_best().then_some(&self.actions),
            cost: &self.cost,
            state: &self.state,
            rule,
            keep_next,
        }
        .launch(cuda)?;
        Ok(costs)
    }

    /// Captures one iteration into a CUDA graph when none is current for this scorer.
    fn ensure_graph<S: CandidateScorer + ?Sized>(&mut self, scorer: &mut S) -> Result<()> {
        let key = scorer_key(scorer);
        if self.graph.as_ref().is_some_and(|g| g.scorer == key) {
            return Ok(());
        }
        self.graph = None;
        // Capturing runs one iteration eagerly (warm-up): keep the draw counter so that graph and eager runs
        // consume the same noise stream, and the warm start; the distribution is re-initialised by `plan` anyway.
        let saved = self.state.copy()?;
        // iCEM with return_mean = false writes its best elite into `actions`, the next plan's warm start.
        let saved_actions = self.returns_best().then(|| self.actions.copy()).transpose()?;
        let graph = CapturedGraph::capture(&self.device, || self.iterate(scorer, None).map(drop))?;
        self.state.slice_set(&saved, 0, 0)?;
        if let Some(actions) = saved_actions {
            self.actions.slice_set(&actions, 0, 0)?;
        }
        self.graph = Some(IterationGraph { scorer: key, graph });
        Ok(())
    }

    fn run<S: CandidateScorer + ?Sized>(
        &mut self,
        scorer: &mut S,
        options: &PlanOptions,
        replay: Option<&NoiseReplay>,
        mut observe: Option<Observer<'_>>,
    ) -> Result<Plan<'_>> {
        let n_steps = self.config.solver.n_steps();
        if let Some(r) = replay {
            let [b, n, h, da] = self.candidate_shape();
            // iCEM's white noise has its time axis last, as upstream draws it.
            let per_step =
                if matches!(self.config.solver, SolverConfig::Icem(_)) { [b, n, da, h] } else { [b, n, h, da] };
            let expected = [&[n_steps][..], &per_step[..]].concat();
            if r.noise.dims() != expected.as_slice() {
                return Err(Error::invalid_input(
                    "noise",
                    format!("expected {expected:?} for {} iterations, got {:?}", n_steps, r.noise.dims()),
                ));
            }
        }
        let mut use_graph = !options.eager && replay.is_none() && observe.is_none();
        if use_graph {
            let current = self.graph.as_ref().is_some_and(|g| g.scorer == scorer_key(scorer));
            if !current {
                if options.deadline.is_some() {
                    // Capturing costs an eager warm-up iteration plus the capture itself: not inside a deadline.
                    tracing::debug!("deadline-bounded plan without a current graph: eager (call Planner::prepare)");
                    use_graph = false;
                } else if crate::graph::may_capture() {
                    self.ensure_graph(scorer)?;
                } else {
                    // A thread that may not capture (graph::NoCapture) plans eagerly.
                    use_graph = false;
                }
            }
        }
        let cuda = cuda(&self.device)?;
        // Distribution: warm-start tail shifted by the executed steps (zeros after it), std = var_scale.
        let warm_started = self.config.warm_start && self.has_warm;
        InitDistribution {
            mean: &self.mean,
            std: &self.std,
            warm: warm_started.then_some(&self.actions),
            shift: self.config.receding(),
            var_scale: self.config.solver.var_scale(),
            state: &self.state,
            reset_draw: matches!(self.config.sampling, Sampling::Fixed { .. }),
        }
        .launch(cuda)?;
        // Models with a policy propose the steps the warm start does not cover (all of them without one).
        let covered = if warm_started { self.config.horizon.saturating_sub(self.config.receding()) } else { 0 };
        scorer.propose(&self.mean, covered)?;

        let mut iterations = 0;
        let replay_noise = replay.map(|r| &r.noise);
        if let Some(deadline) = options.deadline {
            iterations = self.run_until(scorer, deadline, use_graph)?;
        } else {
            for i in 0..n_steps {
                match (&self.graph, use_graph) {
                    (Some(g), true) => g.graph.launch()?,
                    _ => {
                        let costs = self.iterate(scorer, replay_noise.map(|n| (n, i)))?;
                        if let Some(observe) = observe.as_mut() {
                            observe(&IterationState {
                                iteration: i,
                                candidates: &self.candidates,
                                costs: &costs,
                                elite_index: &self.elite_index,
                                elite_cost: &self.elite_cost,
                                mean: &self.mean,
                                std: &self.std,
                            })?;
                        }
                    }
                }
                iterations += 1;
            }
        }

        let source = if iterations == n_steps {
            PlanSource::Solved
        } else if iterations > 0 {
            PlanSource::Truncated { iterations }
        } else if warm_started {
            PlanSource::WarmStart
        } else if self.fallback.is_some() {
            PlanSource::Fallback
        } else {
            PlanSource::Prior
        };
        match (&source, &self.fallback) {
            (PlanSource::Fallback, Some(f)) => self.actions.slice_set(
                &f.reshape((1, 1, ()))?.broadcast_as(self.actions.shape())?.contiguous()?,
                0,
                0,
            )?,
            // The update kernel already wrote the last iteration's best elite into `actions`.
            _ if self.returns_best() && iterations > 0 => {}
            _ => self.actions.slice_set(&self.mean, 0, 0)?,
        }
        if iterations == 0 {
            self.cost.slice_set(&Tensor::full(f32::NAN, self.batch, &self.device)?, 0, 0)?;
        }
        self.has_warm = self.config.warm_start;
        Ok(Plan {
            actions: &self.actions,
            cost: &self.cost,
            source,
            iterations,
            receding: self.config.receding(),
            action_block: self.config.action_block,
        })
    }

    /// Issues iterations while each is predicted to finish on the GPU before `deadline`, keeping at most two in
    /// flight so that the host sees the GPU's progress; returns the number of completed iterations.
    fn run_until<S: CandidateScorer + ?Sized>(
        &mut self,
        scorer: &mut S,
        deadline: Instant,
        use_graph: bool,
    ) -> Result<usize> {
        let n_steps = self.config.solver.n_steps();
        let stream = cuda(&self.device)?.cuda_stream();
        self.observe_previous_plan()?;
        // `started` marks the start; ends[i % 3] the end of iteration i (a ring of three: while iteration i is
        // being issued, the ends of i − 1, i − 2 and i − 3 are the ones still needed).
        self.started.record(&stream)?;
        let mut issued = 0usize;
        while issued < n_steps {
            // Learn from the newest iteration that must have finished: i − 2 (or 0 on the very first plan).
            let finished = match issued {
                0 => None,
                1 if self.clock.estimate.is_none() => Some(0),
                1 => None,
                i => Some(i - 2),
            };
            if let Some(done) = finished {
                let end = &self.ends[done % 3];
                end.synchronize()?;
                let begin = if done == 0 { &self.started } else { &self.ends[(done - 1) % 3] };
                let ms = begin.elapsed_ms(end)?;
                self.clock.observe(Duration::from_secs_f64(ms.max(0.0) as f64 / 1e3));
            }
            // Iteration `issued` starts after the one in flight (if any) and takes about one estimate.
            let in_flight = u32::from(issued > 0);
            let per_iteration = self.clock.estimate.unwrap_or_default();
            if Instant::now() + per_iteration * (in_flight + 1) > deadline {
                break;
            }
            // When every remaining iteration is predicted to fit, issue them back to back (no host wait between
            // them, as without a deadline): the GPU never idles for the host, and the plan is solved.
            let remaining = n_steps - issued;
            let fits_all = || {
                let left = u32::try_from(remaining).unwrap_or(u32::MAX);
                Instant::now() + per_iteration * left.saturating_add(in_flight) <= deadline
            };
            if remaining > 1 && self.clock.estimate.is_some() && fits_all() {
                for _ in 0..remaining {
                    match (&self.graph, use_graph) {
                        (Some(g), true) => g.graph.launch()?,
                        _ => drop(self.iterate(scorer, None)?),
                    }
                    self.ends[issued % 3].record(&stream)?;
                    issued += 1;
                }
                break;
            }
            match (&self.graph, use_graph) {
                (Some(g), true) => g.graph.launch()?,
                _ => drop(self.iterate(scorer, None)?),
            }
            self.ends[issued % 3].record(&stream)?;
            issued += 1;
        }
        // The host does not wait for the issued iterations: what follows on the stream (the executed actions, the
        // copy out) is enqueued behind them at once, so that a host thread preempted now does not leave the GPU
        // idle. The last iteration's time is learned at the start of the next deadline-bounded plan: a plan cut
        // short after one or two iterations observes nothing in the loop above, and an estimate that once came out
        // high would otherwise never come down again (every later plan would stop after its first iteration).
        if issued > 0 {
            let last = issued - 1;
            self.unobserved = (last >= 1 || self.clock.estimate.is_some()).then_some(last);
        }
        Ok(issued)
    }

    /// Learns from the previous plan's last iteration (see `run_until`); its events have completed unless the
    /// caller never waited for that plan's result, in which case this waits for them.
    fn observe_previous_plan(&mut self) -> Result<()> {
        if let Some(last) = self.unobserved.take() {
            self.ends[last % 3].synchronize()?;
            let begin = if last == 0 { &self.started } else { &self.ends[(last - 1) % 3] };
            let ms = begin.elapsed_ms(&self.ends[last % 3])?;
            self.clock.observe(Duration::from_secs_f64(ms.max(0.0) as f64 / 1e3));
        }
        Ok(())
    }
}
