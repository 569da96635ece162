//! `swm::training` on the device against the official package:
//! - the loss modules (`tests/fixtures/losses`, written by `tools/swm_tools/export_losses.py`): every term within
//!   1e-5 absolute, the gradients of LeWM's objective, of the PLDM baseline's default weighting and of temporal
//!   straightening (Candle's autograd) within 1e-4 relative;
//! - the training step (`tests/fixtures/train-tiny`, `tools/swm_tools/export_train.py`) through
//!   `swm::tools::parity::train`: the first step's loss terms and gradients, ten AdamW steps' loss curve and
//!   gradient norms, the trained weights; the trained artifact reloads, reproduces the post-training loss, and its
//!   eval-mode embeddings equal the inference model's (`LeWm`, fused kernels) on the same weights;
//! - the fused training ops against Candle's composed ops, forward and gradients; the attention's head split and
//!   merge copies against Candle's transposes.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use swm::artifact::{convert, Artifact, Checkpoint};
use swm::checkpoint::LoadOptions;
use swm::config::ModelConfig;
use swm::models::lewm::LeWm;
use swm::ops::adamw::{adamw_step, grad_norm, AdamWStep};
use swm::tools::parity;
use swm::training::losses::{lewm_objective, pldm, temporal_straightening};
use swm::training::{Batch, EncoderGrad, Mode, TrainOptions, TrainableLeWm, Trainer, UpdateKernels};

use super::{fixture, gpu, max_abs_diff};

fn close(name: &str, got: &Tensor, want: &Tensor) {
    let (g, w) = (got.to_scalar::<f32>().unwrap(), want.to_scalar::<f32>().unwrap());
    println!("{name}: {g} (official {w})");
    assert!((g - w).abs() <= 1e-5, "{name}: {g} vs the official {w}");
}

fn rel(got: &Tensor, want: &Tensor) -> f32 {
    // A NaN would slip through a max: refuse non-finite gradients first.
    let values = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()), "a non-finite gradient");
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
#[ignore = "needs a CUDA device"]
fn loss_terms_and_gradients_match_the_official_modules_on_the_gpu() {
    let (_gpu, device) = gpu();
    let f = candle_core::safetensors::load(fixture("losses/losses.safetensors"), &device).unwrap();
    let z = Var::from_tensor(&f["z"]).unwrap();
    let pred = Var::from_tensor(&f["pred"]).unwrap();
    let lewm = lewm_objective(z.as_tensor(), pred.as_tensor(), &f["proj_matrix"]).unwrap();
    close("sigreg_loss", &lewm.sigreg_loss, &f["sigreg_loss"]);
    close("pred_loss", &lewm.pred_loss, &f["pred_loss"]);
    close("lewm_loss", &lewm.loss, &f["lewm_loss"]);
    let g = lewm.loss.backward().unwrap();
    assert!(rel(g.get(z.as_tensor()).unwrap(), &f["grad_lewm_z"]) <= 1e-4);
    assert!(rel(g.get(pred.as_tensor()).unwrap(), &f["grad_lewm_pred"]) <= 1e-4);

    let z = Var::from_tensor(&f["z"]).unwrap();
    let p = pldm(z.as_tensor(), Some((&f["a_pred"], &f["a_target"]))).unwrap();
    close("idm_loss", p.idm_loss.as_ref().unwrap(), &f["idm_loss"]);
    close("temp_align_loss", &p.temp_align_loss, &f["temp_align_loss"]);
    close("std_loss", &p.vcreg.std_loss, &f["std_loss"]);
    close("std_t_loss", &p.vcreg.std_t_loss, &f["std_t_loss"]);
    close("cov_loss", &p.vcreg.cov_loss, &f["cov_loss"]);
    close("cov_t_loss", &p.vcreg.cov_t_loss, &f["cov_t_loss"]);
    let g = p.default_objective().unwrap().backward().unwrap();
    assert!(rel(g.get(z.as_tensor()).unwrap(), &f["grad_pldm_z"]) <= 1e-4);

    let z = Var::from_tensor(&f["z"]).unwrap();
    let straight = temporal_straightening(z.as_tensor()).unwrap();
    close("temp_straight_loss", &straight, &f["temp_straight_loss"]);
    let g = straight.backward().unwrap();
    let gz = g.get(z.as_tensor()).unwrap();
    assert!(gz.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()), "zero velocity");
    assert!(rel(gz, &f["grad_straight_z"]) <= 1e-4);
}

fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

/// The fixture's checkpoint converted into an artifact in a temporary directory, the model on `device`, and a
/// trainer with the fixture's options (lr 1e-3, upstream's weight decay and clipping, 256 SIGReg directions).
fn train_fixture(device: &Device, tmp: &std::path::Path) -> (Artifact, Trainer, Batch, HashMap<String, Tensor>) {
    let dir = fixture("train-tiny");
    let artifact =
        convert(&Checkpoint::open(&dir).unwrap(), &LoadOptions::default(), &tmp.join("source"), None).unwrap();
    let ModelConfig::Lewm(config) = &artifact.checkpoint.config else { panic!("not LeWM") };
    let weights = artifact.checkpoint.state_dict(&LoadOptions::default()).unwrap();
    let model = TrainableLeWm::from_state_dict(config, &weights, device).unwrap();
    let options = TrainOptions { lr: 1e-3, num_proj: 256, ..TrainOptions::default() };
    let b = candle_core::safetensors::load(dir.join("batch.safetensors"), device).unwrap();
    let batch = Batch::new(b["pixels"].clone(), b["actions"].clone()).unwrap();
    let steps = candle_core::safetensors::load(dir.join("steps.safetensors"), device).unwrap();
    (artifact, Trainer::new(model, options).unwrap(), batch, steps)
}

#[test]
#[ignore = "needs a CUDA device"]
fn lewm_training_steps_match_the_official_adamw_steps_on_the_gpu() {
    let (_gpu, device) = gpu();
    let tmp = std::env::temp_dir().join(format!("swm-gpu-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);

    // The first step's loss terms and recorded gradients, ten steps' losses and gradient norms, and the trained
    // weights against the official ones (the same check as `swm parity train`).
    // Both ways of computing the encoder's gradients, and both update paths.
    for (encoder_grad, update) in [
        (EncoderGrad::Autograd, UpdateKernels::Candle),
        (EncoderGrad::Manual, UpdateKernels::Candle),
        (EncoderGrad::Manual, UpdateKernels::Fused),
    ] {
        let tiny = fixture("train-tiny");
        let report = parity::train(&tiny, &parity::train_tolerances(), encoder_grad, update, &device).unwrap();
        println!("{encoder_grad:?} {update:?}\n{}", report.table());
        assert!(report.passed(), "training parity failed ({encoder_grad:?}, {update:?})");
        assert!(report.rows.len() > 3 + 8 + 20, "{} rows compared", report.rows.len());
    }

    // The encoder's attention over tokens padded to a multiple of 4 (the tiny model's 17 → 20; TF32 mode's path),
    // here in f32 against the same official steps.
    let before = swm::training::attention_padding();
    swm::training::set_attention_padding(swm::training::AttentionPadding::Always);
    let tiny = fixture("train-tiny");
    let padded = parity::train(&tiny, &parity::train_tolerances(), EncoderGrad::Manual, UpdateKernels::Fused, &device);
    swm::training::set_attention_padding(before);
    let report = padded.unwrap();
    println!("padded attention\n{}", report.table());
    assert!(report.passed(), "training parity failed with the attention's tokens padded");

    // Ten steps again, on the model the artifact part writes.
    let (artifact, mut trainer, batch, steps) = train_fixture(&device, &tmp);
    for k in 0..10 {
        trainer.step(&batch, Some(&steps[&format!("proj_matrix.{k}")])).unwrap();
    }

    // The trained artifact reloads and reproduces the post-training loss (train mode: batch statistics; eval
    // mode: the running statistics it saved).
    let written = artifact.write_with_weights(&trainer.model().state_dict().unwrap(), &tmp.join("trained")).unwrap();
    let ModelConfig::Lewm(config) = &written.checkpoint.config else { panic!("not LeWM") };
    let reread = written.checkpoint.state_dict(&LoadOptions::default()).unwrap();
    let reloaded = TrainableLeWm::from_state_dict(config, &reread, &device).unwrap();
    let mut again = Trainer::new(reloaded, TrainOptions { num_proj: 256, ..TrainOptions::default() }).unwrap();
    let probe = &steps["proj_matrix.9"];
    for mode in [Mode::Eval, Mode::Train] {
        let want = scalar(&trainer.loss(&batch, Some(probe), mode).unwrap().loss);
        let got = scalar(&again.loss(&batch, Some(probe), mode).unwrap().loss);
        println!("post-training loss ({mode:?}): {got} (before saving {want})");
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{mode:?}: {got} after reloading, {want} before");
    }

    // The inference model (fused kernels, weights folded at load) embeds as the trained model does in eval mode.
    let lewm = LeWm::from_state_dict(config, &reread, &device).unwrap();
    let (b, t) = (batch.pixels().dim(0).unwrap(), batch.pixels().dim(1).unwrap());
    let want = lewm.encode(batch.pixels()).unwrap();
    let mut eval = TrainableLeWm::from_state_dict(config, &reread, &device).unwrap();
    let (got, _) = eval.encode(batch.pixels(), batch.actions(), Mode::Eval).unwrap();
    assert_eq!(got.dims(), &[b, t, config.embed_dim()]);
    let diff = max_abs_diff(&got, &want);
    println!("eval-mode embeddings vs the inference model: {diff:e}");
    assert!(diff <= 1e-4, "the trained model's eval forward is {diff:e} from the inference model's");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Rows of `cols` values, some −∞ (softmax masks) when `masked`.
fn rows(device: &Device, shape: &[usize], masked: bool) -> Tensor {
    let x = Tensor::randn(0f32, 1f32, shape, device).unwrap();
    if !masked {
        return x;
    }
    // Every third row is −∞ beyond its first column, the last row −∞ everywhere.
    let cols = *shape.last().unwrap();
    let n = x.elem_count() / cols;
    let mask: Vec<f32> = (0..n * cols)
        .map(|i| {
            if (i / cols == n - 1) || ((i / cols).is_multiple_of(3) && i % cols > 0) {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    x.broadcast_add(&Tensor::from_vec(mask, shape, device).unwrap()).unwrap()
}

/// The fused training ops (`swm::ops::train`) against Candle's composed ops, forward and every gradient, over row
/// widths below, at and above a warp (1, 33, 200, 1000) and row counts across LayerNorm's 128-row blocks.
#[test]
#[ignore = "needs a CUDA device"]
fn fused_training_ops_match_candle_s_composed_ops() {
    use swm::ops::train;
    let (_gpu, device) = gpu();
    let close = |what: &str, a: &Tensor, b: &Tensor, tol: f32| {
        let d = max_abs_diff(a, b);
        assert!(d.is_finite() && d <= tol, "{what}: {d:e}");
    };
    for (rows_n, cols) in [(1, 1), (129, 33), (300, 200), (7, 1000), (257, 192)] {
        let shape = [rows_n, cols];
        let x = Var::from_tensor(&rows(&device, &shape, false)).unwrap();
        let gamma = Var::from_tensor(&rows(&device, &[cols], false)).unwrap();
        let beta = Var::from_tensor(&rows(&device, &[cols], false)).unwrap();
        let probe = rows(&device, &shape, false);
        let what = format!("{rows_n}x{cols}");

        // LayerNorm (eps 1e-5) and its three gradients.
        let fused = train::layer_norm(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5).unwrap();
        let centred = x.as_tensor().broadcast_sub(&x.as_tensor().mean_keepdim(1).unwrap()).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(1).unwrap();
        let composed = centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(gamma.as_tensor())
            .unwrap()
            .broadcast_add(beta.as_tensor())
            .unwrap();
        close(&format!("layer_norm {what}"), &fused, &composed, 1e-5);
        let (gf, gc) = (
            (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap(),
            (composed * &probe).unwrap().sum_all().unwrap().backward().unwrap(),
        );
        for (name, v) in [("dx", &x), ("dgamma", &gamma), ("dbeta", &beta)] {
            let (a, b) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
            let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
            close(&format!("layer_norm {name} {what}"), a, b, 1e-4 * scale);
        }

        // Softmax with masked entries and a fully masked row (0s forward and backward).
        let xm = Var::from_tensor(&rows(&device, &shape, true)).unwrap();
        let fused = train::softmax_last_dim(xm.as_tensor()).unwrap();
        let composed = candle_nn::ops::softmax(xm.as_tensor(), 1).unwrap();
        let last = fused.narrow(0, rows_n - 1, 1).unwrap();
        assert_eq!(last.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0, "a −∞ row gives 0s");
        if rows_n > 1 {
            let (f, c) = (fused.narrow(0, 0, rows_n - 1).unwrap(), composed.narrow(0, 0, rows_n - 1).unwrap());
            close(&format!("softmax {what}"), &f, &c, 1e-6);
            let keep = probe.narrow(0, 0, rows_n - 1).unwrap();
            let gf = (f * &keep).unwrap().sum_all().unwrap().backward().unwrap();
            let gc = (c * &keep).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (gf.get(xm.as_tensor()).unwrap(), gc.get(xm.as_tensor()).unwrap());
            close(
                &format!("softmax dx {what}"),
                &a.narrow(0, 0, rows_n - 1).unwrap(),
                &b.narrow(0, 0, rows_n - 1).unwrap(),
                1e-5,
            );
        }

        // Softmax over a prefix of each row (the encoder's attention over tokens padded to a multiple of 4): the
        // prefix as the plain softmax of those columns, exact zeros after.
        let valid = cols.saturating_sub(3).max(1);
        let got = train::softmax_prefix(x.as_tensor(), valid).unwrap();
        let want = candle_nn::ops::softmax(&x.as_tensor().narrow(1, 0, valid).unwrap(), 1).unwrap();
        close(&format!("softmax prefix {what}"), &got.narrow(1, 0, valid).unwrap(), &want, 1e-6);
        let tail = got.narrow(1, valid, cols - valid).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(tail.to_scalar::<f32>().unwrap(), 0.0, "softmax prefix {what}: padding columns are 0");
        assert!(train::softmax_prefix(x.as_tensor(), cols + 1).is_err(), "a prefix longer than the row");

        // GELU.
        let fused = train::gelu_erf(x.as_tensor()).unwrap();
        let composed = x.as_tensor().gelu_erf().unwrap();
        close(&format!("gelu {what}"), &fused, &composed, 1e-5);
        let gf = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (composed * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        close(&format!("gelu dx {what}"), gf.get(x.as_tensor()).unwrap(), gc.get(x.as_tensor()).unwrap(), 1e-5);

        // Linear (cols → 48) over a 3-d input, and its three gradients.
        let w = Var::from_tensor(&(rows(&device, &[48, cols], false) * 0.1).unwrap()).unwrap();
        let b = Var::from_tensor(&rows(&device, &[48], false)).unwrap();
        let x3 = x.as_tensor().unsqueeze(0).unwrap();
        let fused = train::linear(&x3, w.as_tensor(), b.as_tensor()).unwrap();
        let composed = x3.broadcast_matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
        assert_eq!(fused.dims(), &[1, rows_n, 48]);
        let scale = composed.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
        close(&format!("linear {what}"), &fused, &composed, 1e-5 * scale);
        let probe48 = rows(&device, &[1, rows_n, 48], false);
        let gf = (fused * &probe48).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (composed * &probe48).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("dx", &x), ("dW", &w), ("db", &b)] {
            let (a, c) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
            let scale = c.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
            close(&format!("linear {name} {what}"), a, c, 1e-4 * scale);
        }
    }
}

fn refs(l: &[Tensor]) -> Vec<&Tensor> {
    l.iter().collect()
}

/// torch.optim.AdamW's update after clip_grad_norm_, on the host in f64 (the reference of the fused kernels).
fn adamw_reference(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], coef: f64, hp: &AdamWStep) {
    let (b1, b2) = (hp.beta1, hp.beta2);
    let step_size = hp.lr / (1.0 - b1.powi(hp.step as i32));
    let bias2_sqrt = (1.0 - b2.powi(hp.step as i32)).sqrt();
    for i in 0..p.len() {
        let gi = g[i] * coef;
        p[i] *= 1.0 - hp.lr * hp.weight_decay;
        m[i] += (1.0 - b1) * (gi - m[i]);
        v[i] = v[i] * b2 + (1.0 - b2) * gi * gi;
        p[i] -= step_size * m[i] / (v[i].sqrt() / bias2_sqrt + hp.eps);
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn fused_adamw_and_clipping_follow_torch_s_update() {
    let (_gpu, device) = gpu();
    let to_f64 = |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    // Sizes across the kernels' block and grid boundaries: one value, a warp's worth and one more, a block, the
    // largest LeWM tensor's order.
    let sizes = [1usize, 33, 256, 1025, 70_000, 1_200_000];
    // Clipping that scales the gradients down, clipping on but under its norm (factor 1), no clipping.
    for (clip, scale) in [(Some(1.0), 1.0f64), (Some(1.0), 1e-4), (None, 1.0)] {
        let params: Vec<Tensor> = sizes.iter().map(|&n| Tensor::randn(0f32, 1.0, n, &device).unwrap()).collect();
        let zeros = || sizes.iter().map(|&n| Tensor::zeros(n, DType::F32, &device).unwrap()).collect::<Vec<_>>();
        let (m, v) = (zeros(), zeros());
        let (mut hp_, mut hm, mut hv): (Vec<_>, Vec<_>, Vec<_>) = (
            params.iter().map(to_f64).collect(),
            sizes.iter().map(|&n| vec![0.0; n]).collect(),
            sizes.iter().map(|&n| vec![0.0; n]).collect(),
        );
        for step in 1..=3u64 {
            let grads: Vec<Tensor> =
                sizes.iter().map(|&n| (Tensor::randn(0f32, 1.0, n, &device).unwrap() * scale).unwrap()).collect();
            let hg: Vec<Vec<f64>> = grads.iter().map(to_f64).collect();
            let norm_ref = hg.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
            let coef_ref = clip.map_or(1.0, |c| (c / (norm_ref + 1e-6)).min(1.0));
            let hp = AdamWStep { lr: 1e-3, weight_decay: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, step };
            let norm = grad_norm(&refs(&grads), clip).unwrap();
            adamw_step(&refs(&params), &refs(&grads), &refs(&m), &refs(&v), &norm, &hp).unwrap();
            let got = norm.to_vec1::<f32>().unwrap();
            assert!(((got[0] as f64 - norm_ref) / norm_ref).abs() < 1e-6, "norm {} vs {norm_ref}", got[0]);
            assert!(((got[1] as f64 - coef_ref) / coef_ref).abs() < 1e-6, "coef {} vs {coef_ref}", got[1]);
            for i in 0..sizes.len() {
                adamw_reference(&mut hp_[i], &hg[i], &mut hm[i], &mut hv[i], coef_ref, &hp);
                for (name, got, want) in [("param", &params[i], &hp_[i]), ("m", &m[i], &hm[i]), ("v", &v[i], &hv[i])] {
                    let got = to_f64(got);
                    let scale = want.iter().fold(0f64, |a, x| a.max(x.abs())).max(1e-30);
                    let worst = got.iter().zip(want).fold(0f64, |a, (g, w)| a.max((g - w).abs()));
                    assert!(
                        worst <= 2e-6 * scale.max(if name == "param" { 1.0 } else { 0.0 }),
                        "{name} of tensor {i} ({} values), step {step}, clip {clip:?}: {worst:e} from torch's update",
                        sizes[i]
                    );
                }
            }
        }
    }
    // Bad input is refused with a typed error, nothing launched.
    let p = Tensor::zeros(4, DType::F32, &device).unwrap();
    let g = Tensor::zeros(5, DType::F32, &device).unwrap();
    let norm = grad_norm(&[&p], Some(1.0)).unwrap();
    let hp = AdamWStep { lr: 1e-3, weight_decay: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 1 };
    assert!(adamw_step(&[&p], &[&g], &[&p], &[&p], &norm, &hp).is_err(), "mismatched lengths");
    assert!(adamw_step(&[&p], &[], &[], &[], &norm, &hp).is_err(), "missing lists");
    assert!(adamw_step(&[&p], &[&p], &[&p], &[&p], &norm, &AdamWStep { step: 0, ..hp }).is_err(), "step 0");
    assert!(grad_norm(&[], None).is_err(), "no gradients");
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-60] {
        assert!(grad_norm(&[&p], Some(bad)).is_err(), "max_norm {bad}");
    }
    // A NaN gradient makes the norm and the factor NaN (torch's clip_grad_norm_ does; the update then spreads it).
    let nan = Tensor::new(&[1f32, f32::NAN], &device).unwrap();
    let out = grad_norm(&[&nan], Some(1.0)).unwrap().to_vec1::<f32>().unwrap();
    assert!(out[0].is_nan() && out[1].is_nan(), "{out:?}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn head_split_and_merge_copies_match_candle_s_transposes() {
    use swm::ops::train::{merge_heads, split_heads};
    let (_gpu, device) = gpu();
    // (N, T, heads, d, padded T'): the PushT encoder's 257 tokens padded to 260, unpadded, and an unaligned head
    // width (one value at a time).
    for (n, t, heads, d, to) in [(3, 257, 3, 64, 260), (2, 17, 3, 64, 17), (2, 5, 2, 3, 8)] {
        let x = rows(&device, &[n, t, heads * d], false);
        let split = split_heads(&x, heads, to).unwrap();
        let want = x.reshape((n, t, heads, d)).unwrap().transpose(1, 2).unwrap().pad_with_zeros(2, 0, to - t).unwrap();
        assert_eq!(split.dims(), [n, heads, to, d]);
        assert_eq!(max_abs_diff(&split, &want.contiguous().unwrap()), 0.0, "split {n}x{t}x{heads}x{d}→{to}");
        // Merging the first t rows back gives x exactly.
        let merged = merge_heads(&split, t).unwrap();
        assert_eq!(merged.dims(), [n, t, heads * d]);
        assert_eq!(max_abs_diff(&merged, &x), 0.0, "merge {n}x{t}x{heads}x{d}");
    }
    // Merging reads only the first t rows, whatever the padding rows hold.
    let full = rows(&device, &[2, 3, 8, 4], false);
    let want = full.narrow(2, 0, 5).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape((2, 5, 12));
    assert_eq!(max_abs_diff(&merge_heads(&full, 5).unwrap(), &want.unwrap()), 0.0, "merge of non-zero padding");
    // A contiguous view starting off a 16-byte boundary takes the kernel's one-value-at-a-time path.
    let (n, t, heads, d) = (2, 5, 2, 4);
    let flat = rows(&device, &[1 + n * t * heads * d], false);
    let x = flat.narrow(0, 1, n * t * heads * d).unwrap().reshape((n, t, heads * d)).unwrap();
    let want = x.reshape((n, t, heads, d)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
    assert_eq!(max_abs_diff(&split_heads(&x, heads, t).unwrap(), &want), 0.0, "split of a misaligned view");
    // A token count beyond the padded rows, or heads that do not divide the width, are errors.
    let x = rows(&device, &[2, 5, 6], false);
    assert!(split_heads(&x, 4, 5).is_err() && split_heads(&x, 2, 4).is_err());
    assert!(merge_heads(&split_heads(&x, 2, 8).unwrap(), 9).is_err());
}
