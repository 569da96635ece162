//! GPU tests. Each is `#[ignore = "needs a CUDA device"]` so CI (no GPU) lists them as ignored; on the GPU host
//! `bash .gpu/run.sh` runs them with `--include-ignored`. A test that finds no device fails, never passes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Tensor, D};
use swm::models::lewm::{GraphedEncoder, LeWm, LeWmSession, RolloutSemantics};
use swm::ops::{normalize_rgb_frames, ImageNormalization};
use swm::tools::{demo, parity};

#[path = "gpu/engine.rs"]
mod engine;
#[path = "gpu/gemm.rs"]
mod gemm;
#[path = "gpu/media.rs"]
mod media;
#[path = "gpu/nvdec.rs"]
mod nvdec;
#[path = "gpu/planning.rs"]
mod planning;
#[path = "gpu/preprocess.rs"]
mod preprocess;
#[path = "gpu/tdmpc2.rs"]
mod tdmpc2;
#[path = "gpu/training.rs"]
mod training;
#[path = "gpu/upload.rs"]
mod upload;

/// GPU tests run one at a time: CUDA graph capture must not overlap with another thread creating streams or
/// synchronizing the (shared, primary) context, which the parallel test harness would otherwise do.
static GPU_LOCK: Mutex<()> = Mutex::new(());

/// The CUDA device (and the lock that serialises GPU tests), or a test failure that says why.
fn gpu() -> (MutexGuard<'static, ()>, Device) {
    let guard = GPU_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let device = swm::device::cuda(0).unwrap_or_else(|e| panic!("needs a CUDA device: {e}"));
    (guard, device)
}

/// A committed fixture, found at run time through `CARGO_MANIFEST_DIR` (cargo sets it for `cargo test`, the GPU
/// bundle's run.sh for the copied binaries), so that a test binary built in one checkout runs from another.
fn fixture(name: &str) -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| panic!("set CARGO_MANIFEST_DIR to the repository root (the fixtures live there)"));
    PathBuf::from(root).join("tests/fixtures").join(name)
}

/// A committed test media file (`tests/data/media`), found like [`fixture`].
fn media_file(name: &str) -> PathBuf {
    fixture("../data/media").join(name)
}

fn demo_model(device: &Device) -> Arc<LeWm> {
    Arc::new(LeWm::from_state_dict(&demo::config(), &demo::state_dict(3).unwrap(), device).unwrap())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// The largest |a − b| of two equally long host vectors.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
#[ignore = "needs a CUDA device"]
fn normalize_rgb_kernel_matches_host_arithmetic() {
    let (_gpu, device) = gpu();
    let (n, h, w) = (2usize, 5usize, 7usize);
    let bytes: Vec<u8> = (0..n * h * w * 3).map(|i| (i * 37 % 256) as u8).collect();
    let frames = Tensor::from_vec(bytes.clone(), (n, h, w, 3), &device).unwrap();
    let norm = ImageNormalization::IMAGENET;
    let out = normalize_rgb_frames(&frames, &norm).unwrap();
    assert_eq!(out.dims(), &[n, 3, h, w]);
    let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for img in 0..n {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let v = bytes[((img * h + y) * w + x) * 3 + c] as f32 / 255.0;
                    let want = (v - norm.mean[c]) / norm.std[c];
                    let idx = ((img * 3 + c) * h + y) * w + x;
                    assert!((got[idx] - want).abs() < 1e-5, "pixel {img},{c},{y},{x}: {} vs {want}", got[idx]);
                }
            }
        }
    }
    // A strided view is made contiguous before the kernel; wrong inputs are typed errors.
    let view = frames.narrow(2, 1, 3).unwrap();
    assert_eq!(normalize_rgb_frames(&view, &norm).unwrap().dims(), &[n, 3, h, 3]);
    let floats = frames.to_dtype(DType::F32).unwrap();
    assert!(normalize_rgb_frames(&floats, &norm).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn lewm_tiny_fixture_matches_the_official_package() {
    let (_gpu, device) = gpu();
    let report = parity::lewm(
        &parity::FixturePaths { dir: fixture("lewm-tiny"), weights: None, config: None },
        &parity::lewm_tolerances(),
        &device,
    )
    .unwrap();
    println!("{}", report.table());
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.rows.len(), 6);
}

#[test]
#[ignore = "needs a CUDA device"]
fn session_score_equals_goal_cost_of_the_last_rollout_step() {
    let (_gpu, device) = gpu();
    let model = demo_model(&device);
    let mut session = LeWmSession::new(model.clone(), RolloutSemantics::Release011);
    session.set_observation(&Tensor::randn(0f32, 1., (2, 2, 3, 32, 32), &device).unwrap()).unwrap();
    let goal_px = Tensor::randn(0f32, 1., (2, 1, 3, 32, 32), &device).unwrap();
    session.set_goal(&goal_px).unwrap();
    let candidates = Tensor::randn(0f32, 1., (2, 6, 4, 4), &device).unwrap();
    let cost = session.score(&candidates).unwrap();
    assert_eq!(cost.dims(), &[2, 6]);
    // 0.1.1: H = 2 context frames, Ttot = 4 -> 3 predictions, K = Ttot + 1.
    let all = session.rollout(&candidates, true).unwrap();
    assert_eq!(all.dims(), &[2, 6, 5, 32]);
    let last = all.narrow(2, 4, 1).unwrap().squeeze(2).unwrap();
    let again = session.rollout(&candidates, false).unwrap();
    assert!(max_abs_diff(&last, &again) < 1e-5);
    // The cost is Σ_d (last prediction − this env's goal embedding)², recomputed here on the host.
    let goal = model.encode(&goal_px).unwrap().squeeze(1).unwrap().to_vec2::<f32>().unwrap();
    let last = last.to_vec3::<f32>().unwrap();
    let got = cost.to_vec2::<f32>().unwrap();
    for b in 0..2 {
        for s in 0..6 {
            let want: f32 = last[b][s].iter().zip(&goal[b]).map(|(p, g)| (p - g) * (p - g)).sum();
            assert!((got[b][s] - want).abs() <= 1e-4 * want.max(1.0), "env {b} sample {s}: {} vs {want}", got[b][s]);
        }
    }
    // Candidates differ -> costs differ; the same candidate in two slots -> the same cost.
    let dup = Tensor::cat(&[&candidates.narrow(1, 0, 1).unwrap(), &candidates.narrow(1, 0, 1).unwrap()], 1).unwrap();
    let c = session.score(&dup).unwrap().to_vec2::<f32>().unwrap();
    assert!((c[0][0] - c[0][1]).abs() < 1e-4);
    let all_costs = cost.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(all_costs.iter().all(|v| v.is_finite() && *v >= 0.0));
    assert!(all_costs.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-6));
}

#[test]
#[ignore = "needs a CUDA device"]
fn head_semantics_agree_with_release_semantics_for_one_context_frame() {
    let (_gpu, device) = gpu();
    let model = demo_model(&device);
    let obs = Tensor::randn(0f32, 1., (1, 1, 3, 32, 32), &device).unwrap();
    let goal = Tensor::randn(0f32, 1., (1, 1, 3, 32, 32), &device).unwrap();
    let candidates = Tensor::randn(0f32, 1., (1, 5, 5, 4), &device).unwrap();
    let mut costs = Vec::new();
    for semantics in [RolloutSemantics::Release011, RolloutSemantics::Head] {
        let mut s = LeWmSession::new(model.clone(), semantics);
        s.set_observation(&obs).unwrap();
        s.set_goal(&goal).unwrap();
        costs.push(s.score(&candidates).unwrap());
    }
    assert!(max_abs_diff(&costs[0], &costs[1]) < 1e-5);
    // With two context frames HEAD needs the executed history and refuses to guess.
    let mut s = LeWmSession::new(model, RolloutSemantics::Head);
    s.set_observation(&Tensor::randn(0f32, 1., (1, 2, 3, 32, 32), &device).unwrap()).unwrap();
    s.set_goal(&goal).unwrap();
    let err = s.score(&candidates).unwrap_err().to_string();
    assert!(err.contains("action_history"), "{err}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn bad_inputs_are_typed_errors() {
    let (_gpu, device) = gpu();
    let model = demo_model(&device);
    let mut session = LeWmSession::new(model.clone(), RolloutSemantics::Release011);
    let err = session.score(&Tensor::zeros((1, 2, 3, 4), DType::F32, &device).unwrap()).unwrap_err();
    assert!(err.to_string().contains("no observation"), "{err}");
    assert!(session.set_observation(&Tensor::zeros((1, 1, 4, 32, 32), DType::F32, &device).unwrap()).is_err());
    assert!(session.set_observation(&Tensor::zeros((1, 3, 32, 32), DType::F32, &device).unwrap()).is_err());
    session.set_observation(&Tensor::zeros((1, 1, 3, 32, 32), DType::F32, &device).unwrap()).unwrap();
    session.set_goal(&Tensor::zeros((1, 1, 3, 32, 32), DType::F32, &device).unwrap()).unwrap();
    let wrong_dim = Tensor::zeros((1, 2, 3, 5), DType::F32, &device).unwrap();
    assert!(session.score(&wrong_dim).unwrap_err().to_string().contains("action dim"));
    let wrong_batch = Tensor::zeros((3, 2, 3, 4), DType::F32, &device).unwrap();
    assert!(session.score(&wrong_batch).unwrap_err().to_string().contains("batch"));
    let e = model.encode(&Tensor::zeros((1, 1, 3, 2, 2), DType::F32, &device).unwrap()).unwrap_err();
    assert!(e.to_string().contains("smaller than one"), "{e}");
    // Other sizes interpolate the position table (upstream's interpolate_pos_encoding) instead of failing.
    let wide = model.encode(&Tensor::randn(0f32, 1., (1, 1, 3, 32, 48), &device).unwrap()).unwrap();
    assert_eq!(wide.dims(), &[1, 1, 32]);
    assert!(wide.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()));
    let d = model.embed_actions(&Tensor::zeros((1, 1, 4), DType::F32, &device).unwrap()).unwrap();
    assert_eq!(d.dim(D::Minus1).unwrap(), 32);
}

#[test]
#[ignore = "needs a CUDA device"]
fn graph_replays_match_eager_and_follow_new_inputs() {
    let (_gpu, device) = gpu();
    let model = demo_model(&device);
    let encoder = GraphedEncoder::new(&model, 1, 2).unwrap();
    for seed in 0..3 {
        let px = Tensor::randn(seed as f32, 1., (1, 2, 3, 32, 32), &device).unwrap();
        let eager = model.encode(&px).unwrap();
        let replayed = encoder.encode(&px).unwrap().copy().unwrap();
        assert!(max_abs_diff(&eager, &replayed) < 1e-5, "encode replay {seed}");
    }
    assert!(encoder.encode(&Tensor::zeros((1, 1, 3, 32, 32), DType::F32, &device).unwrap()).is_err());

    let mut session = LeWmSession::new(model.clone(), RolloutSemantics::Release011);
    session.set_observation(&Tensor::randn(0f32, 1., (1, 1, 3, 32, 32), &device).unwrap()).unwrap();
    session.set_goal(&Tensor::randn(0f32, 1., (1, 1, 3, 32, 32), &device).unwrap()).unwrap();
    let mut previous: Option<Tensor> = None;
    for step in 0..3 {
        let candidates = Tensor::randn(0f32, 1., (1, 8, 4, 4), &device).unwrap();
        if step == 2 {
            // A new observation of the same shape is stored in place and seen by the captured graph.
            session.set_observation(&Tensor::randn(1f32, 1., (1, 1, 3, 32, 32), &device).unwrap()).unwrap();
        }
        let eager = session.score(&candidates).unwrap();
        let graphed = session.score_graphed(&candidates).unwrap().copy().unwrap();
        assert!(max_abs_diff(&eager, &graphed) < 1e-4, "score replay {step}");
        if let Some(p) = &previous {
            assert!(max_abs_diff(p, &graphed) > 1e-6, "replay {step} returned stale costs");
        }
        previous = Some(graphed);
    }
    // A different candidate shape recaptures; a wrong one is still a typed error.
    let other = Tensor::randn(0f32, 1., (1, 3, 2, 4), &device).unwrap();
    assert_eq!(session.score_graphed(&other).unwrap().dims(), &[1, 3]);
    assert!(session.score_graphed(&Tensor::zeros((1, 3, 2, 9), DType::F32, &device).unwrap()).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn fused_linear_epilogues_match_unfused_candle_ops() {
    use swm::ops::bias_act::{bias_gelu, bias_residual};
    let (_gpu, device) = gpu();
    let y = Tensor::randn(0f32, 1., (3, 7, 48), &device).unwrap();
    let b = Tensor::randn(0f32, 1., 48, &device).unwrap();
    let r = Tensor::randn(0f32, 1., (3, 7, 48), &device).unwrap();
    let want = y.broadcast_add(&b).unwrap().gelu_erf().unwrap();
    assert!(max_abs_diff(&bias_gelu(&y, &b).unwrap(), &want) < 1e-5);
    let want = (&r + y.broadcast_add(&b).unwrap()).unwrap();
    assert!(max_abs_diff(&bias_residual(&y, &b, &r).unwrap(), &want) < 1e-5);
    // The same on a GEMM left as split-K partial sums (21 rows × 512 deep: several splits), shaped as the residual.
    let x = Tensor::randn(0f32, 1., (21, 512), &device).unwrap();
    let w = Tensor::randn(0f32, 0.05, (48, 512), &device).unwrap();
    let partials = swm::ops::gemm::linear_partials(&x, &w).unwrap();
    assert!(partials.splits() > 1, "a 21 × 48 × 512 product splits K");
    let xw = x.matmul(&w.t().unwrap()).unwrap().reshape((3, 7, 48)).unwrap();
    let want = (&r + xw.broadcast_add(&b).unwrap()).unwrap();
    let got = swm::ops::bias_act::bias_residual_partials(&partials, &b, &r).unwrap();
    assert_eq!(got.dims(), r.dims());
    assert!(max_abs_diff(&got, &want) < 1e-4);
    // Partials that do not make up the residual are a typed error, not a wrong read.
    let short = swm::ops::gemm::linear_partials(&x.narrow(0, 0, 20).unwrap(), &w).unwrap();
    assert!(swm::ops::bias_act::bias_residual_partials(&short, &b, &r).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn vit_attention_kernel_matches_candle_attention() {
    use swm::ops::attention::attention;
    let (_gpu, device) = gpu();
    // ViT-Tiny at 224² (257 positions, 3 heads of 64: 17 key chunks, the last of one key), fewer positions than
    // one chunk (warps without keys), every tensor-core head width, partial query tiles, several frames, more
    // positions than shared memory would hold, and heads of 24 and 60 on the SIMT kernel. The wider spread (1.5)
    // makes later chunks raise the running maximum.
    let shapes = [
        (1, 257, 3, 64, 0.5f32),
        (2, 5, 2, 24, 0.5),
        (3, 130, 4, 48, 0.5),
        (1, 64, 1, 32, 0.5),
        (2, 65, 6, 64, 0.5),
        (1, 577, 2, 32, 0.5),
        (1, 3, 1, 16, 0.5),
        (2, 33, 2, 16, 0.5),
        (1, 1000, 1, 64, 0.5),
        (1, 100, 2, 60, 0.5),
        (1, 257, 3, 64, 1.5),
    ];
    for (n, t, heads, dh, spread) in shapes {
        let inner = heads * dh;
        let qkv = Tensor::randn(0f32, spread, (n, t, 3 * inner), &device).unwrap();
        let got = attention(&qkv, heads).unwrap();
        assert_eq!(got.dims(), &[n, t, inner]);
        let split = qkv.reshape((n, t, 3, heads, dh)).unwrap().permute((2, 0, 3, 1, 4)).unwrap().contiguous().unwrap();
        let (q, k, v) = (split.get(0).unwrap(), split.get(1).unwrap(), split.get(2).unwrap());
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t().unwrap()).unwrap()).unwrap();
        let want = probs.matmul(&v).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        let err = max_abs_diff(&got, &want.reshape((n, t, inner)).unwrap());
        let bound = if spread > 1.0 { 1e-4 } else { 2e-5 };
        assert!(err < bound, "n {n}, t {t}, {heads} heads of {dh}, spread {spread}: {err}");
    }
    // Positions past T are neither read nor written: T rows of a longer buffer whose further rows are NaN (the
    // narrowed view is contiguous from offset 0, so the kernel gets the buffer as it is), on every tensor-core
    // width and a partial last chunk / query tile; the rows after T in the output buffer stay untouched (the
    // output is fresh: its shape is checked, and any NaN read would reach the values compared).
    for (t, heads, dh) in [(17, 2, 64), (33, 1, 16), (250, 3, 48), (9, 2, 32)] {
        let inner = heads * dh;
        let valid = Tensor::randn(0f32, 0.5, (1, t, 3 * inner), &device).unwrap();
        let nan = Tensor::full(f32::NAN, (1, 24, 3 * inner), &device).unwrap();
        let qkv = Tensor::cat(&[&valid, &nan], 1).unwrap().narrow(1, 0, t).unwrap();
        assert!(qkv.is_contiguous());
        let got = attention(&qkv, heads).unwrap();
        let want = attention(&valid, heads).unwrap();
        let total = got.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(total.is_finite(), "t {t}, {heads} heads of {dh}: rows past T were read");
        assert_eq!(max_abs_diff(&got, &want), 0.0, "t {t}, {heads} heads of {dh}");
    }
    // Heads wider than 64 or not a multiple of 4, too many positions for the SIMT kernel's shared memory and
    // widths that are not three projections are typed errors.
    assert!(attention(&Tensor::zeros((1, 4, 3 * 68), DType::F32, &device).unwrap(), 1).is_err());
    assert!(attention(&Tensor::zeros((1, 4, 3 * 2 * 30), DType::F32, &device).unwrap(), 2).is_err());
    assert!(attention(&Tensor::zeros((1, 1000, 3 * 60), DType::F32, &device).unwrap(), 1).is_err());
    assert!(attention(&Tensor::zeros((1, 4, 100), DType::F32, &device).unwrap(), 2).is_err());
}

#[test]
#[ignore = "needs a CUDA device"]
fn fused_rollout_matches_the_reference_predictor() {
    let (_gpu, device) = gpu();
    // The tiny demo model and the PushT-sized one (16 heads of 64, inner 1024 ≠ width 192, mlp 2048).
    let pusht = demo::pusht_config();
    let models = [
        demo_model(&device),
        Arc::new(LeWm::from_state_dict(&pusht, &demo::random_state_dict(&pusht, 9).unwrap(), &device).unwrap()),
    ];
    for model in models {
        let d = model.embed_dim();
        // (context frames, steps, window): growing windows use the QKV cache, sliding ones recompute.
        for (h, steps, hs) in [(1usize, 5usize, 3usize), (2, 4, 3), (3, 2, 3), (1, 4, 2), (1, 1, 3)] {
            let context = Tensor::randn(0f32, 1., (7, h, d), &device).unwrap();
            let actions = Tensor::randn(0f32, 1., (7, h + steps - 1, model.action_dim()), &device).unwrap();
            let paired = model.embed_actions(&actions).unwrap();
            let fused = model.rollout_embeddings(&context, &paired, steps, hs, true).unwrap();
            let reference = model.rollout_embeddings_reference(&context, &paired, steps, hs).unwrap();
            assert_eq!(fused.dims(), reference.dims());
            let scale =
                reference.abs().unwrap().max_keepdim(0).unwrap().max_keepdim(1).unwrap().max_keepdim(2).unwrap();
            let scale = scale.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0].max(1.0);
            let err = max_abs_diff(&fused, &reference);
            assert!(err <= 2e-5 * scale, "width {d}, H {h}, {steps} steps, window {hs}: max abs {err} (scale {scale})");
        }
    }
}
