//! TD-MPC2 GPU tests: parity with the official package on the committed tiny fixture (pixels + two state
//! modalities), typed input errors, and MPPI planning over the TD-MPC2 cost in a CUDA graph.

use std::sync::Arc;

use candle_core::Tensor;
use swm::models::tdmpc2::{TdMpc2, TdMpc2Session};
use swm::planning::{CandidateScorer, MppiConfig, PlanOptions, PlanSource, Planner, PlannerConfig, SolverConfig};
use swm::tools::{demo, parity};

use super::{fixture, gpu};

#[test]
#[ignore = "needs a CUDA device"]
fn tdmpc2_tiny_fixture_matches_the_official_package() {
    let (_gpu, device) = gpu();
    let paths = parity::FixturePaths { dir: fixture("tdmpc2-tiny"), weights: None, config: None };
    let report = parity::tdmpc2(&paths, &parity::tdmpc2_tolerances(), &device).unwrap();
    print!("{}", report.table());
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.rows.len(), 6);
}

fn bench_model(device: &candle_core::Device) -> Arc<TdMpc2> {
    let config = demo::tdmpc2_bench_config();
    Arc::new(TdMpc2::from_state_dict(&config, &demo::random_tdmpc2_state_dict(&config, 3).unwrap(), device).unwrap())
}

#[test]
#[ignore = "needs a CUDA device"]
fn tdmpc2_session_rejects_bad_inputs_with_typed_errors() {
    let (_gpu, device) = gpu();
    let model = bench_model(&device);
    let mut session = TdMpc2Session::new(model.clone());
    let candidates = Tensor::zeros((1, 4, 3, 6), candle_core::DType::F32, &device).unwrap();
    assert!(session.score(&candidates).unwrap_err().to_string().contains("no observation"));
    let wrong = Tensor::zeros((1, 23), candle_core::DType::F32, &device).unwrap();
    assert!(session.set_observation(&[("state", &wrong)]).unwrap_err().to_string().contains("state"));
    assert!(session.set_observation(&[("pixels", &wrong)]).unwrap_err().to_string().contains("`state`"));
    let state = Tensor::randn(0f32, 1.0, (2, 24), &device).unwrap();
    session.set_observation(&[("state", &state)]).unwrap();
    // Two envs encoded, one env of candidates; and a wrong action dim.
    assert!(session.score(&candidates).is_err());
    let bad = Tensor::zeros((2, 4, 3, 5), candle_core::DType::F32, &device).unwrap();
    assert!(session.score(&bad).is_err());
    let ok = Tensor::rand(-1f32, 1.0, (2, 4, 3, 6), &device).unwrap();
    let cost = session.score(&ok).unwrap();
    assert_eq!(cost.dims(), &[2, 4]);
    assert!(cost.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|c| c.is_finite()));
}

#[test]
#[ignore = "needs a CUDA device"]
fn mppi_plans_over_the_tdmpc2_cost_in_a_graph() {
    let (_gpu, device) = gpu();
    let model = bench_model(&device);
    let mut session = TdMpc2Session::new(model);
    let state = Tensor::randn(0f32, 1.0, (1, 24), &device).unwrap();
    session.set_observation(&[("state", &state)]).unwrap();
    let solver = SolverConfig::Mppi(MppiConfig {
        num_samples: 512,
        n_steps: 6,
        topk: Some(64),
        temperature: 0.5,
        ..Default::default()
    });
    let mut planner = Planner::new(PlannerConfig::new(solver, 3, 6, 1), 1, &device).unwrap();
    let plan = planner.plan(&mut session, &PlanOptions::default()).unwrap();
    assert_eq!(plan.source, PlanSource::Solved);
    let actions = plan.actions.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(actions.len(), 3 * 6);
    assert!(actions.iter().all(|a| a.is_finite()));
    // The reported cost (MPPI: the last iteration's mean elite cost) and the returned plan re-scored are finite.
    let again = session.score(&plan.actions.unsqueeze(1).unwrap()).unwrap();
    let reported = plan.cost.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    let rescored = again.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    assert!(reported.is_finite() && rescored.is_finite());
}

#[test]
#[ignore = "needs a CUDA device"]
fn fused_row_kernels_match_candle_ops() {
    use candle_core::{Module, D};
    use swm::ops::tdmpc2::{norm_act, two_hot_inv, NormAct};
    let (_gpu, device) = gpu();
    for width in [40usize, 64, 192, 512] {
        let x = (Tensor::randn(0f32, 2.0, (37, width), &device).unwrap() + 0.5).unwrap();
        let gamma = (Tensor::randn(0f32, 0.2, width, &device).unwrap() + 1.0).unwrap();
        let beta = Tensor::randn(0f32, 0.3, width, &device).unwrap();
        let ln = candle_nn::LayerNorm::new(gamma.clone(), beta.clone(), 1e-5).forward(&x).unwrap();
        // Mish: x · tanh(log(1 + e^x)).
        let want = (&ln * ln.exp().unwrap().affine(1.0, 1.0).unwrap().log().unwrap().tanh().unwrap()).unwrap();
        let got = norm_act(&x, &gamma, &beta, 1e-5, NormAct::Mish).unwrap();
        // Values reach ~6; the kernel's fast-math exp/log1p/tanh and its own LayerNorm sum order differ in the
        // last bits.
        let err = super::max_abs_diff(&got, &want);
        assert!(err < 5e-5, "mish, width {width}: {err}");
        // SimNorm over groups of 8.
        let grouped = ln.reshape((37, width / 8, 8)).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&grouped).unwrap().reshape((37, width)).unwrap();
        let got = norm_act(&x, &gamma, &beta, 1e-5, NormAct::SimNorm(8)).unwrap();
        assert!(super::max_abs_diff(&got, &want) < 1e-6, "simnorm, width {width}");
        // The LayerNorm alone (a ViT layer's norms; 192 is ViT-Tiny's width).
        let got = norm_act(&x, &gamma, &beta, 1e-5, NormAct::Identity).unwrap();
        assert!(super::max_abs_diff(&got, &ln) < 1e-5, "layernorm, width {width}");
    }
    // two_hot_inv over 101 bins in [-6, 2]: symexp of the softmax-weighted mean bin.
    let logits = Tensor::randn(0f32, 3.0, (29, 101), &device).unwrap();
    let bins: Vec<f32> = (0..101).map(|i| -6.0 + 0.08 * i as f32).collect();
    let bins = Tensor::from_vec(bins, 101, &device).unwrap();
    let mean = candle_nn::ops::softmax_last_dim(&logits).unwrap().broadcast_mul(&bins).unwrap();
    let mean = mean.sum_keepdim(D::Minus1).unwrap();
    let want = (mean.sign().unwrap() * mean.abs().unwrap().exp().unwrap().affine(1.0, -1.0).unwrap()).unwrap();
    let got = two_hot_inv(&logits, &bins).unwrap();
    assert_eq!(got.dims(), &[29, 1]);
    // symexp amplifies: compare relative to the largest value (up to e^6).
    let scale = want.abs().unwrap().max_keepdim(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    let err = super::max_abs_diff(&got, &want);
    assert!(err <= 2e-6 * scale.max(1.0), "two_hot_inv: {err} at scale {scale}");
    // Rows wider than the kernels hold are a typed error.
    let wide = Tensor::zeros((2, 1024), candle_core::DType::F32, &device).unwrap();
    let g = Tensor::ones(1024, candle_core::DType::F32, &device).unwrap();
    assert!(norm_act(&wide, &g, &g, 1e-5, NormAct::Mish).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn actor_prior_proposes_the_initial_mean_after_the_warm_prefix() {
    use swm::models::tdmpc2::ActorPrior;
    let (_gpu, device) = gpu();
    let model = bench_model(&device);
    let state = Tensor::randn(0f32, 1.0, (2, 24), &device).unwrap();
    let mut session = TdMpc2Session::new(model.clone()).with_prior(ActorPrior::Mean);
    session.set_observation(&[("state", &state)]).unwrap();
    let z0 = session.latent().unwrap().clone();
    // From scratch: the actor's mean rolled out through the dynamics.
    let mean = Tensor::zeros((2, 3, 6), candle_core::DType::F32, &device).unwrap();
    session.propose(&mean, 0).unwrap();
    let (mut z, mut want) = (z0.clone(), Vec::new());
    for _ in 0..3 {
        let a = model.pi_mean(&z).unwrap();
        z = model.next(&z, &a).unwrap().0;
        want.push(a);
    }
    let want = Tensor::stack(&want, 1).unwrap();
    assert!(super::max_abs_diff(&mean, &want) < 1e-6);
    // After a warm prefix of one step, the rest continues from the latent the prefix reaches.
    let prefix = Tensor::rand(-1f32, 1.0, (2, 1, 6), &device).unwrap();
    let mean =
        Tensor::cat(&[&prefix, &Tensor::zeros((2, 2, 6), candle_core::DType::F32, &device).unwrap()], 1).unwrap();
    session.propose(&mean, 1).unwrap();
    let mut z = model.next(&z0, &prefix.squeeze(1).unwrap()).unwrap().0;
    let a1 = model.pi_mean(&z).unwrap();
    z = model.next(&z, &a1).unwrap().0;
    let a2 = model.pi_mean(&z).unwrap();
    let want = Tensor::cat(&[prefix, a1.unsqueeze(1).unwrap(), a2.unsqueeze(1).unwrap()], 1).unwrap();
    assert!(super::max_abs_diff(&mean, &want) < 1e-6);
    // Sampled: squashed into (−1, 1), and not the mean.
    let mut sampled = TdMpc2Session::new(model).with_prior(ActorPrior::Sampled);
    sampled.set_observation(&[("state", &state)]).unwrap();
    let drawn = Tensor::zeros((2, 3, 6), candle_core::DType::F32, &device).unwrap();
    sampled.propose(&drawn, 0).unwrap();
    let values = drawn.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    // The graph draws anew on every plan; a new session with the same seed replays the same draws.
    sampled.propose(&drawn, 0).unwrap();
    let second = drawn.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_ne!(values, second, "a second plan must draw new actor noise");
    let mut twin = TdMpc2Session::new(bench_model(&device)).with_prior(ActorPrior::Sampled);
    twin.set_observation(&[("state", &state)]).unwrap();
    let replay = Tensor::zeros((2, 3, 6), candle_core::DType::F32, &device).unwrap();
    twin.propose(&replay, 0).unwrap();
    assert_eq!(replay.flatten_all().unwrap().to_vec1::<f32>().unwrap(), values);
    // A wrong action block is a typed error.
    let wrong = Tensor::zeros((2, 3, 12), candle_core::DType::F32, &device).unwrap();
    assert!(sampled.propose(&wrong, 0).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn fused_hot_path_matches_the_composed_layers() {
    let (_gpu, device) = gpu();
    let model = bench_model(&device);
    assert!(model.is_fused(), "the bench model's widths take the fused kernels");
    let composed = model.without_fusion();
    assert!(!composed.is_fused());
    let (n, h, a, z) = (300, 3, model.action_dim(), model.latent_dim());
    let zs = candle_nn::ops::softmax_last_dim(&Tensor::randn(0f32, 1.0, (n, z), &device).unwrap()).unwrap();
    let actions = Tensor::randn(0f32, 0.5, (n, h, a), &device).unwrap().tanh().unwrap();
    let first = actions.narrow(1, 0, 1).unwrap().squeeze(1).unwrap().contiguous().unwrap();
    // Split-K sums in another order: f32 rounding apart, no more.
    let close = |got: &Tensor, want: &Tensor, what: &str| {
        let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let err = super::max_abs_diff(got, want);
        assert!(err <= 1e-5 * scale.max(1.0), "{what}: {err} at scale {scale}");
    };
    let (next, reward) = model.next(&zs, &first).unwrap();
    let (next_c, reward_c) = composed.next(&zs, &first).unwrap();
    close(&next, &next_c, "next latent");
    close(&reward, &reward_c, "reward");
    close(&model.next_latent(&zs, &first).unwrap(), &next_c, "next_latent");
    let q = model.q_values(&zs, &first).unwrap();
    assert_eq!(q.dims(), &[model.config().wm.num_q, n, 1]);
    close(&q, &composed.q_values(&zs, &first).unwrap(), "q_values");
    let cost = model.cost(&zs, &actions).unwrap();
    assert_eq!(cost.dims(), &[n]);
    close(&cost, &composed.cost(&zs, &actions).unwrap(), "cost");
    // Horizons 1 (no latent written in place) and 2 (one).
    for h in [1, 2] {
        let short = actions.narrow(1, 0, h).unwrap().contiguous().unwrap();
        close(&model.cost(&zs, &short).unwrap(), &composed.cost(&zs, &short).unwrap(), &format!("cost, H{h}"));
    }
    // One latent per env standing for its 100 candidates (the planners' scoring) = the latents copied out.
    let per_env = zs.narrow(0, 0, 3).unwrap();
    let copied = per_env.unsqueeze(1).unwrap().broadcast_as((3, 100, z)).unwrap().contiguous().unwrap();
    let copied = copied.reshape((n, z)).unwrap();
    let repeated = model.cost_repeated(&per_env, 100, &actions).unwrap();
    close(&repeated, &composed.cost(&copied, &actions).unwrap(), "cost, repeated latents");
    close(
        &composed.cost_repeated(&per_env, 100, &actions).unwrap(),
        &composed.cost(&copied, &actions).unwrap(),
        "composed, repeated",
    );
    assert!(model.cost_repeated(&per_env, 7, &actions).is_err(), "300 candidates are not 3 × 7");
    // A step's input: the latent repeated, the action read at its horizon step in place.
    let width = z + a;
    let za = swm::ops::tdmpc2::concat_rows(&per_env, 100, &actions, 2, width).unwrap();
    let want = Tensor::cat(&[&copied, &actions.narrow(1, 2, 1).unwrap().squeeze(1).unwrap()], 1).unwrap();
    assert_eq!(super::max_abs_diff(&za, &want), 0.0);
    // Padded to a multiple of 4 columns: the same values, then zeros.
    let padded = swm::ops::tdmpc2::concat_rows(&per_env, 100, &actions, 2, width + 3).unwrap();
    let zeros = Tensor::zeros((n, 3), candle_core::DType::F32, &device).unwrap();
    assert_eq!(super::max_abs_diff(&padded, &Tensor::cat(&[&want, &zeros], 1).unwrap()), 0.0);
    assert!(swm::ops::tdmpc2::concat_rows(&per_env, 100, &actions, 3, width).is_err(), "step past the horizon");
    assert!(swm::ops::tdmpc2::concat_rows(&per_env, 100, &actions, 2, width - 1).is_err(), "row too narrow");
}

#[test]
#[ignore = "needs a CUDA device"]
fn q_cost_and_reward_accumulation_match_candle_ops() {
    use candle_core::D;
    use swm::ops::tdmpc2::{q_cost, two_hot_accumulate, two_hot_inv};
    let (_gpu, device) = gpu();
    let (rows, heads, nb) = (53, 5, 101);
    let bins: Vec<f32> = (0..nb).map(|i| -10.0 + 0.2 * i as f32).collect();
    let bins = Tensor::from_vec(bins, nb, &device).unwrap();
    let logits = Tensor::randn(0f32, 2.0, (rows, heads * nb), &device).unwrap();
    let ret = Tensor::randn(0f32, 3.0, (rows, 1), &device).unwrap();
    let (c, discount) = (1.0f32, 0.97f32);
    let got = q_cost(&logits, &bins, heads, &ret, c, discount).unwrap();
    // Candle: each head's value, then mean, Bessel variance and the conservative estimate.
    let q = two_hot_inv(&logits.reshape((rows * heads, nb)).unwrap(), &bins).unwrap().reshape((rows, heads)).unwrap();
    let mean = q.mean_keepdim(D::Minus1).unwrap();
    let var = q.broadcast_sub(&mean).unwrap().sqr().unwrap().sum_keepdim(D::Minus1).unwrap();
    let sd = var.affine(1.0 / (heads - 1) as f64, 0.0).unwrap().sqrt().unwrap();
    let conservative = (&mean - (mean.abs().unwrap() * sd).unwrap().affine(c as f64, 0.0).unwrap()).unwrap();
    let want = (&ret + conservative.affine(discount as f64, 0.0).unwrap()).unwrap().neg().unwrap().squeeze(1).unwrap();
    assert_eq!(got.dims(), &[rows]);
    let scale = want.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(super::max_abs_diff(&got, &want) <= 1e-6 * scale.max(1.0));
    // The reward added into a return in place: ret + value · scale.
    let acc = ret.copy().unwrap();
    let head0 = logits.narrow(1, 0, nb).unwrap().contiguous().unwrap();
    two_hot_accumulate(&head0, &bins, &acc, 0.5).unwrap();
    let want = (&ret + two_hot_inv(&head0, &bins).unwrap().affine(0.5, 0.0).unwrap()).unwrap();
    assert_eq!(super::max_abs_diff(&acc, &want), 0.0);
    // Too many or too few heads, and logits that do not split into heads of bins, are typed errors.
    assert!(q_cost(&logits, &bins, 1, &ret, c, discount).is_err());
    assert!(q_cost(&logits, &bins, 4, &ret, c, discount).is_err());
    assert!(two_hot_accumulate(&head0, &bins, &ret.narrow(0, 0, 3).unwrap(), 1.0).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn layer_norm_adds_unreduced_partial_sums_as_the_reduction_would() {
    let (_gpu, device) = gpu();
    // Split over K (these shapes split on a GPU of ~80 SMs or more: H100/H200 have 132), then unsplit (the GEMM
    // writes the whole output with its bias).
    for split in [true, false] {
        swm::ops::gemm::set_split_k(split);
        let result = std::panic::catch_unwind(|| unreduced_matches_reduced(&device, split));
        swm::ops::gemm::set_split_k(true);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

fn unreduced_matches_reduced(device: &candle_core::Device, split: bool) {
    use swm::ops::gemm::{
        linear, linear_columns, linear_columns_unreduced, linear_heads, linear_heads_unreduced, linear_unreduced,
        Epilogue,
    };
    use swm::ops::tdmpc2::{norm_act_heads, norm_act_unreduced, NormAct};
    // With split-K on, a GPU of 80 SMs or more splits every GEMM here (fewer tiles than 4 blocks per SM).
    let candle_core::Device::Cuda(cuda) = device else { panic!("a CUDA device") };
    let sms = cuda
        .cuda_stream()
        .context()
        .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .unwrap();
    let splits_ok = |splits: usize| match (split, sms >= 80) {
        (true, true) => splits > 1,
        (true, false) => splits >= 1,
        (false, _) => splits == 1,
    };
    let randn = |shape: &[usize], std: f32| Tensor::randn(0f32, std, shape, device).unwrap();
    let (rows, k, width, heads) = (512, 517, 512, 5);
    let x = randn(&[rows, k], 1.0);
    let gamma = (randn(&[heads * width], 0.1) + 1.0).unwrap();
    let beta = randn(&[heads * width], 0.1);
    // One GEMM whose output is `heads` column blocks (split over K at these sizes).
    let w = randn(&[heads * width, k], 0.05);
    let b = randn(&[heads * width], 0.1);
    let u = linear_unreduced(&x, &w, &b, heads).unwrap();
    assert!(splits_ok(u.splits()), "{} splits", u.splits());
    let want = norm_act_heads(&linear(&x, &w, Epilogue::Bias(&b)).unwrap(), &gamma, &beta, 1e-5, NormAct::Mish, heads);
    let got = norm_act_unreduced(&u, &gamma, &beta, 1e-5, NormAct::Mish).unwrap();
    assert_eq!(super::max_abs_diff(&got, &want.unwrap()), 0.0, "column blocks");
    assert!(super::max_abs_diff(&u.reduce().unwrap(), &linear(&x, &w, Epilogue::Bias(&b)).unwrap()) < 1e-4);
    // Batched heads, each on its own column block of the input.
    let xh = randn(&[rows, heads * width], 1.0);
    let wh = randn(&[heads, width, width], 0.05);
    let u = linear_heads_unreduced(&xh, &wh, &b).unwrap();
    assert!(splits_ok(u.splits()));
    let reduced = linear_heads(&xh, &wh, Epilogue::Bias(&b)).unwrap();
    let want = norm_act_heads(&reduced, &gamma, &beta, 1e-5, NormAct::Mish, heads).unwrap();
    let got = norm_act_unreduced(&u, &gamma, &beta, 1e-5, NormAct::Mish).unwrap();
    assert_eq!(super::max_abs_diff(&got, &want), 0.0, "batched heads");
    assert!(super::max_abs_diff(&u.reduce().unwrap(), &reduced) < 1e-4);
    // One column block of a wider activation, SimNorm after the LayerNorm.
    let wc = randn(&[width, width], 0.05);
    let (g1, b1, bias1) =
        (gamma.narrow(0, 0, width).unwrap(), beta.narrow(0, 0, width).unwrap(), b.narrow(0, 0, width).unwrap());
    let u = linear_columns_unreduced(&xh, width, &wc, &bias1).unwrap();
    let reduced = linear_columns(&xh, width, &wc, Epilogue::Bias(&bias1)).unwrap();
    let want = norm_act_heads(&reduced, &g1, &b1, 1e-5, NormAct::SimNorm(8), 1).unwrap();
    let got = norm_act_unreduced(&u, &g1, &b1, 1e-5, NormAct::SimNorm(8)).unwrap();
    assert_eq!(super::max_abs_diff(&got, &want), 0.0, "column block");
    // γ of the wrong length is a typed error.
    assert!(norm_act_unreduced(&u, &gamma, &b1, 1e-5, NormAct::Mish).is_err());

    // A ViT block's residual step and the next pre-norm in one kernel: the values of the residual kernel and the
    // LayerNorm launched apart, bit for bit (ViT-Tiny's width and a wide one).
    use swm::ops::bias_act::bias_residual_partials;
    use swm::ops::gemm::linear_partials;
    use swm::ops::tdmpc2::{norm_act, residual_norm};
    for e in [192, 512] {
        let (wr, br, res) = (randn(&[e, k], 0.05), randn(&[e], 0.1), randn(&[rows, e], 1.0));
        let (g, bt) = (gamma.narrow(0, 0, e).unwrap(), beta.narrow(0, 0, e).unwrap());
        let u = linear_unreduced(&x, &wr, &br, 1).unwrap();
        assert!(splits_ok(u.splits()), "{} splits", u.splits());
        let (sum, normed) = residual_norm(&u, &res, &g, &bt, 1e-12).unwrap();
        let want_sum = bias_residual_partials(&linear_partials(&x, &wr).unwrap(), &br, &res).unwrap();
        let want = norm_act(&want_sum, &g, &bt, 1e-12, NormAct::Identity).unwrap();
        assert_eq!(super::max_abs_diff(&sum, &want_sum), 0.0, "residual sum, width {e}");
        assert_eq!(super::max_abs_diff(&normed, &want), 0.0, "pre-norm, width {e}");
        // A residual of the wrong row count is a typed error.
        assert!(residual_norm(&u, &res.narrow(0, 0, rows - 1).unwrap(), &g, &bt, 1e-12).is_err());
    }

    // The two-hot kernels on unreduced logits: a reward head (101 bins of a column block) and a Q ensemble.
    use swm::ops::tdmpc2::{q_cost, q_cost_unreduced, two_hot_accumulate, two_hot_accumulate_unreduced};
    let nb = 101;
    let bins = Tensor::from_vec((0..nb).map(|i| -10.0 + 0.2 * i as f32).collect::<Vec<_>>(), nb, device).unwrap();
    let wr = randn(&[nb, width], 0.05);
    let br = randn(&[nb], 0.1);
    let u = linear_columns_unreduced(&xh, 0, &wr, &br).unwrap();
    assert!(splits_ok(u.splits()));
    let ret = randn(&[rows, 1], 1.0);
    let (got, want) = (ret.copy().unwrap(), ret.copy().unwrap());
    two_hot_accumulate_unreduced(&u, &bins, &got, 0.9).unwrap();
    two_hot_accumulate(&linear_columns(&xh, 0, &wr, Epilogue::Bias(&br)).unwrap(), &bins, &want, 0.9).unwrap();
    assert_eq!(super::max_abs_diff(&got, &want), 0.0, "reward head");
    let wq = randn(&[heads, nb, width], 0.05);
    let bq = randn(&[heads * nb], 0.1);
    let u = linear_heads_unreduced(&xh, &wq, &bq).unwrap();
    assert!(splits_ok(u.splits()));
    let got = q_cost_unreduced(&u, &bins, &ret, 1.0, 0.97).unwrap();
    let reduced = linear_heads(&xh, &wq, Epilogue::Bias(&bq)).unwrap();
    let want = q_cost(&reduced, &bins, heads, &ret, 1.0, 0.97).unwrap();
    assert_eq!(super::max_abs_diff(&got, &want), 0.0, "Q ensemble");
}

#[test]
#[ignore = "needs a CUDA device"]
fn tf32_mode_leaves_a_cublas_gemms_bias_to_the_norm_kernel() {
    use swm::ops::gemm::{linear, linear_unreduced, Epilogue};
    use swm::ops::tdmpc2::{norm_act_heads, norm_act_unreduced, residual_norm, NormAct};
    /// Restores the TF32 switch when the test ends, also by a failed assertion.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            swm::device::set_tf32(self.0);
        }
    }
    let (_gpu, device) = gpu();
    let _restore = Restore(swm::device::tf32());
    swm::device::set_tf32(true);
    let randn = |shape: &[usize], std: f32| Tensor::randn(0f32, std, shape, &device).unwrap();
    // The Q ensemble's first layer of the bench config (5 heads × 512 over a padded step input): 320 tiles × 2
    // splits, more blocks than one wave of four per SM below 160 SMs (H100, H200: 132), so TF32 mode runs it on
    // cuBLAS, whole, with the bias still to add.
    let (rows, k, width, heads) = (512, 520, 512, 5);
    let x = randn(&[rows, k], 1.0);
    let w = randn(&[heads * width, k], 0.05);
    let b = randn(&[heads * width], 0.1);
    let (gamma, beta) = ((randn(&[heads * width], 0.1) + 1.0).unwrap(), randn(&[heads * width], 0.1));
    let u = linear_unreduced(&x, &w, &b, heads).unwrap();
    assert!(u.splits() == 1 && u.bias_pending(), "{} splits, bias pending {}", u.splits(), u.bias_pending());
    // The kernel's f32 add of the bias is the broadcast add's: the same values, bit for bit.
    let whole = linear(&x, &w, Epilogue::Bias(&b)).unwrap();
    assert_eq!(super::max_abs_diff(&u.reduce().unwrap(), &whole), 0.0, "reduce");
    let want = norm_act_heads(&whole, &gamma, &beta, 1e-5, NormAct::Mish, heads).unwrap();
    let got = norm_act_unreduced(&u, &gamma, &beta, 1e-5, NormAct::Mish).unwrap();
    assert_eq!(super::max_abs_diff(&got, &want), 0.0, "norm + Mish");
    // A ViT residual step on such a GEMM (1024 tiles): the bias added before the residual, as the broadcast add
    // then the residual kernel would.
    let (rows, e) = (8192, 512);
    let (xr, wr, br, res) = (randn(&[rows, k], 1.0), randn(&[e, k], 0.05), randn(&[e], 0.1), randn(&[rows, e], 1.0));
    let u = linear_unreduced(&xr, &wr, &br, 1).unwrap();
    assert!(u.splits() == 1 && u.bias_pending(), "residual GEMM: {} splits", u.splits());
    let (g, bt) = (gamma.narrow(0, 0, e).unwrap(), beta.narrow(0, 0, e).unwrap());
    let (sum, normed) = residual_norm(&u, &res, &g, &bt, 1e-6).unwrap();
    let want_sum = (linear(&xr, &wr, Epilogue::Bias(&br)).unwrap() + &res).unwrap();
    assert_eq!(super::max_abs_diff(&sum, &want_sum), 0.0, "residual sum");
    let want = swm::ops::tdmpc2::norm_act(&want_sum, &g, &bt, 1e-6, NormAct::Identity).unwrap();
    assert_eq!(super::max_abs_diff(&normed, &want), 0.0, "the normalised sum");
}

#[test]
#[ignore = "needs a CUDA device"]
fn step_inputs_are_concat_rows_and_the_norm_writes_the_next_latent_in_place() {
    use swm::ops::gemm::linear_unreduced;
    use swm::ops::tdmpc2::{concat_rows, norm_act_unreduced, norm_act_unreduced_into, step_inputs, NormAct};
    let (_gpu, device) = gpu();
    let randn = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &device).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
    };
    // 4 envs × 128 candidates, a latent of 512, 6 actions, rows padded to 520 columns, horizon 3.
    let (envs, repeat, zdim, adim, width, h) = (4, 128, 512, 6, 520, 3);
    let (z, actions) = (randn(&[envs, zdim]), randn(&[envs * repeat, h, adim]));
    let inputs = step_inputs(&z, repeat, &actions, width).unwrap();
    assert_eq!(inputs.dims(), &[h, envs * repeat, width]);
    // Step 0 is concat_rows'; later steps match it past the latent columns (which the dynamics write).
    assert!(bits(&inputs.get(0).unwrap()) == bits(&concat_rows(&z, repeat, &actions, 0, width).unwrap()));
    let zn = randn(&[envs * repeat, zdim]);
    for t in 1..h {
        let want = concat_rows(&zn, 1, &actions, t, width).unwrap().narrow(1, zdim, width - zdim).unwrap();
        let got = inputs.get(t).unwrap().narrow(1, zdim, width - zdim).unwrap();
        assert!(bits(&got) == bits(&want), "step {t}: actions and padding");
        let latent = inputs.get(t).unwrap().narrow(1, 0, zdim).unwrap();
        assert!(bits(&latent).iter().all(|&v| v == 0), "step {t}: zeros until the dynamics write the latent");
    }
    // The dynamics' last NormedLinear (split over K, SimNorm) written into step 1's latent columns: the same bits
    // as its own output, the action and padding columns untouched.
    let (w, b) = ((randn(&[zdim, 512]) * 0.05).unwrap(), (randn(&[zdim]) * 0.1).unwrap());
    let (gamma, beta) = (((randn(&[zdim]) * 0.1).unwrap() + 1.0).unwrap(), (randn(&[zdim]) * 0.1).unwrap());
    let y = linear_unreduced(&randn(&[envs * repeat, 512]), &w, &b, 1).unwrap();
    let want = norm_act_unreduced(&y, &gamma, &beta, 1e-5, NormAct::SimNorm(8)).unwrap();
    let before = bits(&inputs.get(1).unwrap().narrow(1, zdim, width - zdim).unwrap());
    let step1 = inputs.get(1).unwrap();
    norm_act_unreduced_into(&y, &gamma, &beta, 1e-5, NormAct::SimNorm(8), &step1).unwrap();
    assert!(bits(&step1.narrow(1, 0, zdim).unwrap()) == bits(&want), "the latent columns");
    assert!(bits(&step1.narrow(1, zdim, width - zdim).unwrap()) == before, "the other columns");
    // Too few rows or columns, and an output over the partial sums, are typed errors.
    let short = inputs.get(1).unwrap().narrow(0, 0, 10).unwrap();
    assert!(norm_act_unreduced_into(&y, &gamma, &beta, 1e-5, NormAct::SimNorm(8), &short).is_err());
    let narrow = Tensor::zeros((envs * repeat, zdim - 1), candle_core::DType::F32, &device).unwrap();
    assert!(norm_act_unreduced_into(&y, &gamma, &beta, 1e-5, NormAct::SimNorm(8), &narrow).is_err());
    let whole = swm::ops::gemm::Unreduced::contiguous(want.copy().unwrap(), 1).unwrap();
    let over = whole.reduce().unwrap();
    let aliased = swm::ops::gemm::Unreduced::contiguous(over.clone(), 1).unwrap();
    assert!(norm_act_unreduced_into(&aliased, &gamma, &beta, 1e-5, NormAct::SimNorm(8), &over).is_err());
}
