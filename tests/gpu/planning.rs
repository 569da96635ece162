//! Planner GPU tests: parity with the official solvers (committed fixtures), elite selection, seeds, warm
//! starts, deadlines and convergence on a known optimum.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use swm::graph::NoCapture;
use swm::planning::{
    ActionBounds, CandidateScorer, CemConfig, IcemConfig, MppiConfig, PlanOptions, PlanSource, Planner, PlannerConfig,
    Sampling, SolverConfig,
};
use swm::tools::parity::{self, PlannerCosts};

use super::{demo_model, fixture, gpu, max_abs_diff};
use swm::models::lewm::{LeWmSession, RolloutSemantics};

/// cost = Σ (x − target)² over (H, Da), computed with Candle ops on the device; optionally NaN for some
/// candidates; optionally slowed down by extra work (for deadline tests).
struct Quadratic {
    target: Tensor,
    nan_every: Option<usize>,
    extra_work: usize,
}

impl Quadratic {
    fn new(target: &[f32], h: usize, device: &Device) -> Self {
        let t = Tensor::new(target, device).unwrap().reshape((1, 1, 1, target.len())).unwrap();
        let t = t.broadcast_as((1, 1, h, target.len())).unwrap().contiguous().unwrap();
        Self { target: t, nan_every: None, extra_work: 0 }
    }
}

impl CandidateScorer for Quadratic {
    fn score(&mut self, candidates: &Tensor) -> swm::Result<Tensor> {
        let mut cost = candidates.broadcast_sub(&self.target)?.sqr()?.sum((2, 3))?;
        for _ in 0..self.extra_work {
            let m = Tensor::ones((512, 512), DType::F32, candidates.device())?;
            let busy = m.matmul(&m)?.sum_all()?.affine(0.0, 0.0)?;
            cost = cost.broadcast_add(&busy)?;
        }
        if let Some(k) = self.nan_every {
            let n = cost.dim(1)?;
            let mask: Vec<f32> = (0..n).map(|i| if i % k == 1 { f32::NAN } else { 0.0 }).collect();
            cost = cost.broadcast_add(&Tensor::new(mask.as_slice(), cost.device())?)?;
        }
        Ok(cost)
    }

    fn revision(&self) -> u64 {
        0
    }
}

fn config(solver: SolverConfig, horizon: usize, a: usize) -> PlannerConfig {
    let mut c = PlannerConfig::new(solver, horizon, a, 1);
    c.sampling = Sampling::Fixed { seed: 11 };
    c
}

#[test]
#[ignore = "needs a CUDA device"]
fn planners_reproduce_the_official_solvers_iteration_by_iteration() {
    let (_gpu, device) = gpu();
    let paths = parity::FixturePaths { dir: fixture("lewm-tiny"), weights: None, config: None };
    for solver in ["cem", "mppi", "icem"] {
        for costs in [PlannerCosts::Recorded, PlannerCosts::Model] {
            let report = parity::planner(&paths, solver, costs, 1e-4, 1e-2, &device).unwrap();
            println!("{}", report.table());
            assert!(report.passed(), "{}", report.table());
            assert_eq!(report.rows.len(), 8);
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn elites_are_the_lowest_costs_and_nan_candidates_never_win() {
    let (_gpu, device) = gpu();
    let (h, a, n, k) = (3, 2, 200, 10);
    let mut scorer = Quadratic::new(&[0.3, -0.2], h, &device);
    scorer.nan_every = Some(7);
    let solver = SolverConfig::Cem(CemConfig { num_samples: n, n_steps: 2, topk: k, var_scale: 1.0 });
    let mut planner = Planner::new(config(solver, h, a), 3, &device).unwrap();
    let mut checked = 0;
    planner
        .plan_observed(&mut scorer, None, &mut |s| {
            let costs = s.costs.to_vec2::<f32>()?;
            let index = s.elite_index.to_vec2::<u32>()?;
            let value = s.elite_cost.to_vec2::<f32>()?;
            for b in 0..3 {
                let mut order: Vec<usize> = (0..n).filter(|i| !costs[b][*i].is_nan()).collect();
                order.sort_by(|&i, &j| costs[b][i].total_cmp(&costs[b][j]).then(i.cmp(&j)));
                let want: Vec<u32> = order[..k].iter().map(|&i| i as u32).collect();
                assert_eq!(index[b], want, "env {b} iteration {}", s.iteration);
                for (v, &i) in value[b].iter().zip(&want) {
                    assert_eq!(*v, costs[b][i as usize]);
                }
            }
            checked += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(checked, 2);
}

#[test]
#[ignore = "needs a CUDA device"]
fn noise_is_standard_normal_and_candidate_zero_is_the_mean() {
    let (_gpu, device) = gpu();
    let (h, a, n) = (8, 4, 4096);
    let mut scorer = Quadratic::new(&[0.0; 4], h, &device);
    let solver = SolverConfig::Cem(CemConfig { num_samples: n, n_steps: 1, topk: 30, var_scale: 0.5 });
    let mut planner = Planner::new(config(solver, h, a), 1, &device).unwrap();
    planner
        .plan_observed(&mut scorer, None, &mut |s| {
            let c = s.candidates.flatten_all()?.to_vec1::<f32>()?;
            let j = h * a;
            assert!(c[..j].iter().all(|&x| x == 0.0), "candidate 0 is the initial mean (zeros)");
            let rest = &c[j..];
            let mean = rest.iter().map(|&x| x as f64).sum::<f64>() / rest.len() as f64;
            let var = rest.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / rest.len() as f64;
            assert!(mean.abs() < 0.01, "noise mean {mean}");
            assert!((var.sqrt() - 0.5).abs() < 0.01, "noise std {} (var_scale 0.5)", var.sqrt());
            let tails = rest.iter().filter(|x| x.abs() > 1.5).count() as f64 / rest.len() as f64;
            assert!((tails - 0.0027).abs() < 0.0015, "3-sigma tail mass {tails}");
            Ok(())
        })
        .unwrap();
}

#[test]
#[ignore = "needs a CUDA device"]
fn solvers_converge_to_a_known_optimum() {
    let (_gpu, device) = gpu();
    let (h, a) = (4, 2);
    let target = [0.4f32, -0.6];
    let solvers = [
        SolverConfig::Cem(CemConfig { num_samples: 256, n_steps: 12, topk: 24, var_scale: 1.0 }),
        SolverConfig::Mppi(MppiConfig {
            num_samples: 512,
            n_steps: 20,
            topk: Some(64),
            temperature: 0.05,
            var_scale: 0.2,
        }),
        SolverConfig::Icem(IcemConfig { num_samples: 256, n_steps: 12, topk: 24, ..Default::default() }),
    ];
    for solver in solvers {
        let name = solver.name();
        let mut scorer = Quadratic::new(&target, h, &device);
        let mut planner = Planner::new(config(solver, h, a), 2, &device).unwrap();
        let plan = planner.plan(&mut scorer, &PlanOptions::default()).unwrap();
        assert_eq!(plan.source, PlanSource::Solved);
        let got = plan.actions.to_vec3::<f32>().unwrap();
        for (b, env) in got.iter().enumerate() {
            for step in env {
                for (d, v) in step.iter().enumerate() {
                    assert!((v - target[d]).abs() < 0.08, "{name} env {b}: {v} vs {}", target[d]);
                }
            }
        }
        let cost = plan.cost.to_vec1::<f32>().unwrap();
        assert!(cost.iter().all(|c| c.is_finite() && *c < 0.2), "{name} cost {cost:?}");
    }
    // iCEM clamps to the bounds: an optimum outside them is approached from inside.
    let mut c =
        config(SolverConfig::Icem(IcemConfig { num_samples: 256, n_steps: 10, topk: 24, ..Default::default() }), h, a);
    c.bounds = Some(ActionBounds { low: vec![-0.2, -0.2], high: vec![0.2, 0.2] });
    let mut scorer = Quadratic::new(&target, h, &device);
    let mut planner = Planner::new(c, 1, &device).unwrap();
    let plan = planner.plan(&mut scorer, &PlanOptions::default()).unwrap();
    let got = plan.actions.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(got.iter().all(|v| v.abs() <= 0.2 + 1e-6), "{got:?}");
    assert!(got.chunks(2).all(|p| p[0] > 0.15 && p[1] < -0.15), "{got:?}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn seeds_replay_persist_and_graphs_match_eager() {
    let (_gpu, device) = gpu();
    let (h, a) = (5, 3);
    let solver = SolverConfig::Icem(IcemConfig { num_samples: 64, n_steps: 4, topk: 8, ..Default::default() });
    let mut scorer = Quadratic::new(&[0.1, 0.2, 0.3], h, &device);
    let mut fixed = config(solver.clone(), h, a);
    fixed.warm_start = false;
    let mut planner = Planner::new(fixed.clone(), 2, &device).unwrap();
    let first = planner.plan(&mut scorer, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    let second = planner.plan(&mut scorer, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    assert_eq!(max_abs_diff(&first, &second), 0.0, "a fixed seed replays bit-identically (graph)");
    let eager = planner.plan(&mut scorer, &PlanOptions { eager: true, ..Default::default() }).unwrap();
    assert_eq!(max_abs_diff(&first, eager.actions), 0.0, "graph replay == eager");

    let mut persistent = fixed.clone();
    persistent.sampling = Sampling::Persistent { seed: 11 };
    let mut planner = Planner::new(persistent, 2, &device).unwrap();
    let p1 = planner.plan(&mut scorer, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    let p2 = planner.plan(&mut scorer, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    assert_eq!(max_abs_diff(&first, &p1), 0.0, "persistent starts where fixed does");
    assert!(max_abs_diff(&p1, &p2) > 0.0, "a persistent planner advances its noise");
    // Another planner with the same persistent seed retraces the same sequence (eager this time).
    let mut again = fixed.clone();
    again.sampling = Sampling::Persistent { seed: 11 };
    let mut planner = Planner::new(again, 2, &device).unwrap();
    let eager = PlanOptions { eager: true, ..Default::default() };
    planner.plan(&mut scorer, &eager).unwrap();
    let q2 = planner.plan(&mut scorer, &eager).unwrap().actions.copy().unwrap();
    assert_eq!(max_abs_diff(&p2, &q2), 0.0);

    let mut entropy = fixed;
    entropy.sampling = Sampling::Entropy;
    let e1 = Planner::new(entropy.clone(), 2, &device).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let e2 = Planner::new(entropy, 2, &device).unwrap();
    assert_ne!(e1.seed(), e2.seed(), "entropy seeds differ between planners");
}

#[test]
#[ignore = "needs a CUDA device"]
fn warm_start_shifts_the_previous_plan_by_the_receding_horizon() {
    let (_gpu, device) = gpu();
    let (h, a, r) = (5, 2, 2);
    let solver = SolverConfig::Cem(CemConfig { num_samples: 32, n_steps: 3, topk: 4, var_scale: 1.0 });
    let mut c = config(solver, h, a);
    c.receding_horizon = Some(r);
    let mut scorer = Quadratic::new(&[0.5, -0.5], h, &device);
    let mut planner = Planner::new(c, 2, &device).unwrap();
    let plan = planner.plan(&mut scorer, &PlanOptions::default()).unwrap();
    let previous = plan.actions.to_vec3::<f32>().unwrap();
    assert_eq!(plan.executed().unwrap().dims(), &[2, r, a]);
    assert_eq!(plan.executed_to_host().unwrap().len(), 2 * r * a);
    let mut seen = false;
    planner
        .plan_observed(&mut scorer, None, &mut |s| {
            if s.iteration == 0 {
                let c0 = s.candidates.narrow(1, 0, 1)?.squeeze(1)?.to_vec3::<f32>()?;
                for b in 0..2 {
                    for t in 0..h {
                        let want: Vec<f32> = if t + r < h { previous[b][t + r].clone() } else { vec![0.0; a] };
                        assert_eq!(c0[b][t], want, "env {b} step {t}");
                    }
                }
                seen = true;
            }
            Ok(())
        })
        .unwrap();
    assert!(seen);
    planner.reset();
    planner
        .plan_observed(&mut scorer, None, &mut |s| {
            if s.iteration == 0 {
                let c0 = s.candidates.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
                assert!(c0.iter().all(|&v| v == 0.0), "after reset the mean starts at zero");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
#[ignore = "needs a CUDA device"]
fn deadlines_bound_gpu_time_and_say_what_they_returned() {
    let (_gpu, device) = gpu();
    let (h, a) = (4, 2);
    let solver = SolverConfig::Cem(CemConfig { num_samples: 128, n_steps: 40, topk: 8, var_scale: 1.0 });
    let mut scorer = Quadratic::new(&[0.1, 0.1], h, &device);
    scorer.extra_work = 6;
    let mut c = config(solver, h, a);
    c.fallback_action = Some(vec![0.25, -0.25]);
    let mut planner = Planner::new(c, 1, &device).unwrap();
    planner.prepare(&mut scorer).unwrap();
    // Nothing fits: no warm start yet -> the fallback.
    let past = PlanOptions { deadline: Some(Instant::now()), eager: false };
    let plan = planner.plan(&mut scorer, &past).unwrap();
    assert_eq!((plan.source, plan.iterations), (PlanSource::Fallback, 0));
    let got = plan.actions.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(got.chunks(2).all(|p| p == [0.25, -0.25]));
    assert!(plan.cost.to_vec1::<f32>().unwrap()[0].is_nan());
    // A generous deadline solves; the planner learns the iteration time.
    let far = PlanOptions { deadline: Some(Instant::now() + Duration::from_secs(30)), eager: false };
    let t0 = Instant::now();
    let plan = planner.plan(&mut scorer, &far).unwrap();
    assert_eq!(plan.source, PlanSource::Solved);
    // `plan` returns once the iterations are issued; reading the cost waits for them.
    plan.cost.to_vec1::<f32>().unwrap();
    let full = t0.elapsed();
    let per_iteration = planner.iteration_estimate().expect("learned from events");
    // The estimate is the GPU time of one of the 40 iterations, not a stale or negative interval.
    let mean_iteration = full.as_secs_f64() / 40.0;
    let estimate = per_iteration.as_secs_f64();
    assert!(estimate > 0.5 * mean_iteration && estimate < 2.0 * mean_iteration, "{per_iteration:?} vs {full:?} / 40");
    // A third of the full time: truncated, never later than the deadline plus one iteration.
    let budget = full / 3;
    let t0 = Instant::now();
    let plan = planner.plan(&mut scorer, &PlanOptions { deadline: Some(t0 + budget), eager: false }).unwrap();
    plan.cost.to_vec1::<f32>().unwrap();
    let took = t0.elapsed();
    let PlanSource::Truncated { iterations } = plan.source else {
        panic!("expected truncation, got {:?}", plan.source)
    };
    assert!(iterations > 0 && iterations < 40, "{iterations}");
    assert!(took <= budget + per_iteration + Duration::from_millis(2), "{took:?} vs {budget:?} + {per_iteration:?}");
    println!("deadline {budget:?}: {iterations} iterations in {took:?} (iteration ≈ {per_iteration:?})");
    // Without `prepare`, a deadline-bounded plan runs eagerly instead of capturing inside the deadline.
    let solver = SolverConfig::Cem(CemConfig { num_samples: 128, n_steps: 4, topk: 8, var_scale: 1.0 });
    let mut fresh = Planner::new(config(solver, h, a), 1, &device).unwrap();
    let plan = fresh.plan(&mut scorer, &far).unwrap();
    assert_eq!((plan.source, plan.iterations), (PlanSource::Solved, 4));
    // With a warm start, an impossible deadline returns it.
    let plan = planner.plan(&mut scorer, &PlanOptions { deadline: Some(Instant::now()), eager: false }).unwrap();
    assert_eq!(plan.source, PlanSource::WarmStart);
}

#[test]
#[ignore = "needs a CUDA device"]
fn planner_graphs_recapture_when_the_session_reallocates() {
    let (_gpu, device) = gpu();
    let model = demo_model(&device);
    let mut session = LeWmSession::new(model.clone(), RolloutSemantics::Release011);
    session.set_observation(&Tensor::randn(0f32, 1., (1, 2, 3, 32, 32), &device).unwrap()).unwrap();
    session.set_goal(&Tensor::randn(0f32, 1., (1, 1, 3, 32, 32), &device).unwrap()).unwrap();
    let solver = SolverConfig::Cem(CemConfig { num_samples: 48, n_steps: 3, topk: 6, var_scale: 1.0 });
    let mut c = PlannerConfig::new(solver, 4, 2, 2);
    c.sampling = Sampling::Fixed { seed: 5 };
    c.warm_start = false;
    let mut planner = Planner::new(c, 1, &device).unwrap();
    let graphed = planner.plan(&mut session, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    let eager = planner.plan(&mut session, &PlanOptions { eager: true, ..Default::default() }).unwrap();
    assert!(max_abs_diff(&graphed, eager.actions) < 1e-5);
    // A new goal of the same shape is stored in place: the graph follows it.
    let goal = Tensor::randn(0f32, 1., (1, 1, 3, 32, 32), &device).unwrap();
    session.set_goal(&goal).unwrap();
    let graphed2 = planner.plan(&mut session, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    let eager2 = planner.plan(&mut session, &PlanOptions { eager: true, ..Default::default() }).unwrap();
    assert!(max_abs_diff(&graphed2, eager2.actions) < 1e-5);
    assert!(max_abs_diff(&graphed, &graphed2) > 1e-6, "the plan follows the new goal");
    // Another session through the same planner: the graph is recaptured for it, never reused across scorers.
    let mut other = LeWmSession::new(model.clone(), RolloutSemantics::Release011);
    other.set_observation(&Tensor::randn(0f32, 1., (1, 2, 3, 32, 32), &device).unwrap()).unwrap();
    other.set_goal(&Tensor::randn(0f32, 1., (1, 1, 3, 32, 32), &device).unwrap()).unwrap();
    let graphed3 = planner.plan(&mut other, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    let eager3 = planner.plan(&mut other, &PlanOptions { eager: true, ..Default::default() }).unwrap();
    assert!(max_abs_diff(&graphed3, eager3.actions) < 1e-5);
    assert!(max_abs_diff(&graphed3, &graphed2) > 1e-6);
    // A scorer returning the wrong shape is a typed error naming the scorer.
    struct Wrong;
    impl CandidateScorer for Wrong {
        fn score(&mut self, c: &Tensor) -> swm::Result<Tensor> {
            Ok(Tensor::zeros((1, c.dim(1)? + 1), DType::F32, c.device())?)
        }
        fn revision(&self) -> u64 {
            0
        }
    }
    let err = planner.plan(&mut Wrong, &PlanOptions { eager: true, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("scorer"), "{err}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn icem_returns_its_best_candidate_and_capture_keeps_the_warm_start() {
    let (_gpu, device) = gpu();
    let (h, a) = (4, 2);
    let solver = SolverConfig::Icem(IcemConfig {
        num_samples: 64,
        n_steps: 3,
        topk: 8,
        return_mean: false,
        ..Default::default()
    });
    let mut c = config(solver, h, a);
    c.receding_horizon = Some(1);
    let mut scorer = Quadratic::new(&[0.3, -0.1], h, &device);
    // The returned plan is the best candidate of the last iteration.
    let mut reference = Planner::new(c.clone(), 2, &device).unwrap();
    let mut best = None;
    let plan = reference
        .plan_observed(&mut scorer, None, &mut |s| {
            let index = s.elite_index.to_vec2::<u32>()?;
            let rows = (0..2)
                .map(|b| s.candidates.get(b)?.get(index[b][0] as usize))
                .collect::<candle_core::Result<Vec<_>>>()?;
            best = Some(Tensor::stack(&rows, 0)?);
            Ok(())
        })
        .unwrap();
    assert_eq!(max_abs_diff(plan.actions, best.as_ref().unwrap()), 0.0);
    let eager = PlanOptions { eager: true, ..Default::default() };
    let second = reference.plan(&mut scorer, &eager).unwrap().actions.copy().unwrap();
    // Same plans through a CUDA graph captured between them: the capture's warm-up iteration must not disturb
    // the warm start the second plan shifts.
    let mut graphed = Planner::new(c, 2, &device).unwrap();
    graphed.plan(&mut scorer, &eager).unwrap();
    let second_graphed = graphed.plan(&mut scorer, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    assert_eq!(max_abs_diff(&second, &second_graphed), 0.0);
}

/// A thread holding a `NoCapture` (a C caller running a steady plan itself) never captures: a planner without a
/// current graph plans eagerly there — the same plan — and says so; one with a graph replays it.
#[test]
#[ignore = "needs a CUDA device"]
fn a_thread_that_may_not_capture_plans_eagerly_and_says_so() {
    let (_gpu, device) = gpu();
    let (h, a) = (5, 3);
    let solver = SolverConfig::Icem(IcemConfig { num_samples: 64, n_steps: 4, topk: 8, ..Default::default() });
    let mut scorer = Quadratic::new(&[0.1, 0.2, 0.3], h, &device);
    let mut fixed = config(solver, h, a);
    fixed.warm_start = false;
    let mut planner = Planner::new(fixed, 2, &device).unwrap();
    let eager = {
        let refused = NoCapture::new();
        let plan = planner.plan(&mut scorer, &PlanOptions::default()).unwrap().actions.copy().unwrap();
        assert_eq!(refused.skipped(), 1, "the capture was skipped, once");
        assert!(!planner.is_prepared(&scorer), "nothing was captured");
        plan
    };
    let graphed = planner.plan(&mut scorer, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    assert!(planner.is_prepared(&scorer), "captured once captures are allowed");
    assert_eq!(max_abs_diff(&eager, &graphed), 0.0, "the eager plan is the graph's");
    let refused = NoCapture::new();
    let replayed = planner.plan(&mut scorer, &PlanOptions::default()).unwrap().actions.copy().unwrap();
    assert_eq!(refused.skipped(), 0, "a current graph is replayed, not skipped");
    assert_eq!(max_abs_diff(&replayed, &graphed), 0.0);
}
