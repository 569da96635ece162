//! Planner configuration: upstream defaults, JSON round trips, validation naming the field, the colouring matrix.

use swm::config::ConfigError;
use swm::planning::{
    colouring_matrix, ActionBounds, CemConfig, IcemConfig, MppiConfig, PlannerConfig, Sampling, SolverConfig,
};

fn cem(num_samples: usize, topk: usize) -> PlannerConfig {
    PlannerConfig::new(SolverConfig::Cem(CemConfig { num_samples, topk, ..Default::default() }), 5, 2, 5)
}

/// The validation error's field and reason.
fn refused(config: &PlannerConfig) -> (String, String) {
    match config.validate() {
        Err(ConfigError::Invalid { field, reason, .. }) => (field, reason),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn defaults_are_upstreams() {
    assert_eq!(CemConfig::default(), CemConfig { num_samples: 300, var_scale: 1.0, n_steps: 30, topk: 30 });
    let m = MppiConfig::default();
    assert_eq!((m.num_samples, m.n_steps, m.topk, m.temperature, m.var_scale), (300, 30, Some(30), 0.5, 1.0));
    let i = IcemConfig::default();
    assert_eq!((i.noise_beta, i.alpha, i.n_elite_keep, i.return_mean), (2.0, 0.1, 5, true));
    let c = cem(300, 30);
    assert_eq!((c.macro_action_dim(), c.receding()), (10, 5));
    assert_eq!(c.sampling, Sampling::Persistent { seed: 1234 });
    c.validate().unwrap();
    // JSON: omitted fields take upstream defaults.
    let parsed =
        PlannerConfig::from_json_str(r#"{"solver": {"kind": "icem"}, "horizon": 5, "action_dim": 2}"#).unwrap();
    assert_eq!(parsed.solver, SolverConfig::Icem(IcemConfig::default()));
    assert_eq!(parsed.action_block, 1);
}

#[test]
fn zero_samples_and_too_many_elites_are_refused() {
    assert_eq!(refused(&cem(0, 0)).0, "solver.num_samples");
    let (field, reason) = refused(&cem(10, 20));
    assert_eq!(field, "solver.topk");
    assert!(reason.contains("20 elites out of 10"), "{reason}");
    let (field, reason) = refused(&cem(10, 1));
    assert_eq!(field, "solver.topk");
    assert!(reason.contains("NaN"), "{reason}");
    assert_eq!(refused(&cem(swm::planning::MAX_SAMPLES + 1, 30)).0, "solver.num_samples");
    let mut c = cem(300, 30);
    if let SolverConfig::Cem(s) = &mut c.solver {
        s.n_steps = 0;
    }
    assert_eq!(refused(&c).0, "solver.n_steps");
}

#[test]
fn nan_or_negative_std_and_bad_temperature_are_refused() {
    for bad in [f32::NAN, -1.0, 0.0, f32::INFINITY] {
        let c = PlannerConfig::new(SolverConfig::Cem(CemConfig { var_scale: bad, ..Default::default() }), 5, 2, 5);
        assert_eq!(refused(&c).0, "solver.var_scale", "{bad}");
    }
    let c = PlannerConfig::new(SolverConfig::Mppi(MppiConfig { temperature: 0.0, ..Default::default() }), 5, 2, 5);
    assert_eq!(refused(&c).0, "solver.temperature");
    let c = PlannerConfig::new(SolverConfig::Mppi(MppiConfig { topk: Some(0), ..Default::default() }), 5, 2, 5);
    assert_eq!(refused(&c).0, "solver.topk");
    // MPPI without topk weights every sample.
    let c = PlannerConfig::new(SolverConfig::Mppi(MppiConfig { topk: None, ..Default::default() }), 5, 2, 5);
    c.validate().unwrap();
    assert_eq!(c.solver.elites(), 300);
    let c = PlannerConfig::new(SolverConfig::Icem(IcemConfig { alpha: 1.0, ..Default::default() }), 5, 2, 5);
    assert_eq!(refused(&c).0, "solver.alpha");
    let c = PlannerConfig::new(SolverConfig::Icem(IcemConfig { noise_beta: -1.0, ..Default::default() }), 5, 2, 5);
    assert_eq!(refused(&c).0, "solver.noise_beta");
}

#[test]
fn bad_bounds_horizons_and_fallbacks_are_refused() {
    let mut c = cem(300, 30);
    c.bounds = Some(ActionBounds { low: vec![-1.0], high: vec![1.0, 1.0] });
    assert_eq!(refused(&c).0, "bounds.low");
    c.bounds = Some(ActionBounds { low: vec![-1.0, 0.5], high: vec![1.0, 0.2] });
    let (field, reason) = refused(&c);
    assert_eq!(field, "bounds");
    assert!(reason.contains("dim 1"), "{reason}");
    c.bounds = Some(ActionBounds { low: vec![f32::NAN, 0.0], high: vec![1.0, 1.0] });
    assert_eq!(refused(&c).0, "bounds.low");
    c.bounds = None;
    c.receding_horizon = Some(6);
    assert_eq!(refused(&c).0, "receding_horizon");
    c.receding_horizon = Some(0);
    assert_eq!(refused(&c).0, "receding_horizon");
    c.receding_horizon = None;
    c.fallback_action = Some(vec![0.0; 2]);
    let (field, reason) = refused(&c);
    assert_eq!(field, "fallback_action");
    assert!(reason.contains("macro action of 10"), "{reason}");
    c.fallback_action = Some(vec![f32::NAN; 10]);
    assert_eq!(refused(&c).0, "fallback_action");
    c.fallback_action = None;
    c.horizon = 0;
    assert_eq!(refused(&c).0, "horizon");
    let c = PlannerConfig::new(SolverConfig::Icem(IcemConfig::default()), 65, 2, 1);
    assert_eq!(refused(&c).0, "horizon");
    let c = PlannerConfig::new(
        SolverConfig::Icem(IcemConfig { num_samples: 5, topk: 5, n_elite_keep: 5, ..Default::default() }),
        5,
        2,
        1,
    );
    assert_eq!(refused(&c).0, "solver.n_elite_keep");
}

#[test]
fn json_errors_name_the_field() {
    let err =
        PlannerConfig::from_json_str(r#"{"solver": {"kind": "cem", "topk": "many"}, "horizon": 5, "action_dim": 2}"#)
            .unwrap_err()
            .to_string();
    // Internally tagged enums end serde's field path at `solver`; the message still names the bad value.
    assert!(err.contains("field `solver`") && err.contains("\"many\"") && err.contains("usize"), "{err}");
    let err = PlannerConfig::from_json_str(r#"{"solver": {"kind": "cem", "top_k": 3}, "horizon": 5, "action_dim": 2}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("top_k"), "{err}");
    let err =
        PlannerConfig::from_json_str(r#"{"solver": {"kind": "cem", "topk": 400}, "horizon": 5, "action_dim": 2}"#)
            .unwrap_err()
            .to_string();
    assert!(err.contains("solver.topk") && err.contains("400 elites out of 300"), "{err}");
}

#[test]
fn exporter_solver_configs_map_onto_planner_configs() {
    let v = serde_json::json!({"solver": "icem", "num_samples": 24, "var_scale": 1.0, "n_steps": 3, "topk": 6,
        "noise_beta": 2.0, "alpha": 0.1, "n_elite_keep": 3, "return_mean": true, "horizon": 4,
        "action_block": 2, "action_dim": 2, "low": [-0.9, -0.7], "high": [0.8, 0.95], "seed": 7});
    let c = swm::tools::parity::planner_config(&v).unwrap();
    assert_eq!(c.macro_action_dim(), 4);
    assert_eq!(c.sampling, Sampling::Fixed { seed: 7 });
    assert_eq!(c.bounds.unwrap().high, vec![0.8, 0.95]);
    let mut v = v;
    v["topk"] = serde_json::json!(1);
    assert!(swm::tools::parity::planner_config(&v).is_err());
}

/// irfft(rfft(w)·g) by the definition of the DFT, in f64.
fn coloured_by_dft(w: &[f64], beta: f64) -> Vec<f64> {
    let h = w.len();
    let bins = h / 2 + 1;
    let mut gain: Vec<f64> =
        (0..bins).map(|k| if k == 0 { 1.0 } else { k as f64 / h as f64 }.powf(-beta / 2.0)).collect();
    gain[0] = gain[1];
    let tau = 2.0 * std::f64::consts::PI;
    let spectrum: Vec<(f64, f64)> = (0..bins)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (s, x) in w.iter().enumerate() {
                let p = tau * (k * s) as f64 / h as f64;
                re += x * p.cos();
                im -= x * p.sin();
            }
            (re * gain[k], im * gain[k])
        })
        .collect();
    (0..h)
        .map(|t| {
            // Hermitian extension of the half spectrum; the imaginary parts of DC/Nyquist are dropped.
            let mut acc = spectrum[0].0;
            for (k, &(re, im)) in spectrum.iter().enumerate().skip(1) {
                let p = tau * (k * t) as f64 / h as f64;
                let term = re * p.cos() - im * p.sin();
                acc += if h.is_multiple_of(2) && k == h / 2 { re * p.cos() } else { 2.0 * term };
            }
            acc / h as f64
        })
        .collect()
}

#[test]
fn icem_colouring_matrix_is_irfft_of_scaled_rfft() {
    for h in [2usize, 3, 5, 8, 13] {
        for beta in [0.0f32, 1.0, 2.0, 2.5] {
            let m = colouring_matrix(h, beta);
            let w: Vec<f64> = (0..h).map(|i| ((i * 7919 % 13) as f64 - 6.0) / 3.0).collect();
            let want = coloured_by_dft(&w, beta as f64);
            for t in 0..h {
                let got: f64 = (0..h).map(|s| w[s] * m[s * h + t] as f64).sum();
                assert!((got - want[t]).abs() < 1e-5, "H {h} beta {beta} t {t}: {got} vs {}", want[t]);
            }
        }
    }
    // β = 0 is white: the identity.
    let m = colouring_matrix(6, 0.0);
    for s in 0..6 {
        for t in 0..6 {
            assert!((m[s * 6 + t] - if s == t { 1.0 } else { 0.0 }).abs() < 1e-6);
        }
    }
}
