//! `swm::training` on the device against the official package:
//! - the loss modules (`tests/fixtures/losses`, written by `tools/swm_tools/export_losses.py`): every term within
//!   1e-5 absolute, the gradients of LeWM's objective, of the PLDM baseline's default weighting and of temporal
//!   straightening (Candle's autograd) within 1e-4 relative;
//! - the training step (`tests/fixtures/train-tiny`, `tools/swm_tools/export_train.py`): the first step's loss
//!   terms and gradients, ten AdamW steps' loss curve and gradient norms within 1e-4 relative; the trained
//!   artifact reloads, reproduces the post-training loss, and its eval-mode embeddings equal the inference
//!   model's (`LeWm`, fused kernels) on the same weights.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use swm::artifact::{convert, Artifact, Checkpoint};
use swm::checkpoint::LoadOptions;
use swm::config::ModelConfig;
use swm::models::lewm::LeWm;
use swm::training::losses::{lewm_objective, pldm, temporal_straightening};
use swm::training::{Batch, Mode, TrainOptions, TrainableLeWm, Trainer};

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

fn within_rel(what: &str, got: f32, want: f32, tol: f32) {
    assert!(got.is_finite() && ((got - want) / want).abs() <= tol, "{what}: {got} vs the official {want}");
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

    // The first step's loss and the gradients the fixture recorded.
    let (_, mut first, batch, steps) = train_fixture(&device, &tmp);
    let loss = first.loss(&batch, Some(&steps["proj_matrix.0"]), Mode::Train).unwrap();
    for (name, got) in [("loss", &loss.loss), ("pred_loss", &loss.pred_loss), ("sigreg_loss", &loss.sigreg_loss)] {
        let want = scalar(&steps[&format!("{name}.0")]);
        assert!((scalar(got) - want).abs() <= 1e-5, "{name}: {} vs the official {want}", scalar(got));
    }
    let grads = loss.loss.backward().unwrap();
    let vars: HashMap<String, Var> = first.model().named_vars().map(|(k, v)| (k.to_string(), v.clone())).collect();
    for (key, want) in steps.iter().filter_map(|(k, v)| k.strip_prefix("grad.").map(|k| (k, v))) {
        let got = grads.get(vars[key].as_tensor()).unwrap();
        let rel = max_abs_diff(got, want)
            / want.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        println!("grad {key}: {rel:e} relative");
        assert!(rel <= 1e-4, "{key}: gradient {rel:e} relative from torch's");
    }

    // Ten AdamW steps follow the official loss curve.
    let (artifact, mut trainer, batch, steps) = train_fixture(&device, &tmp);
    for k in 0..10 {
        let out = trainer.step(&batch, Some(&steps[&format!("proj_matrix.{k}")])).unwrap();
        let (got, want) = (scalar(&out.loss.loss), scalar(&steps[&format!("loss.{k}")]));
        println!("step {k}: loss {got} (official {want}), |g| {}", scalar(&out.grad_norm));
        within_rel(&format!("step {k} loss"), got, want, 1e-4);
        within_rel(
            &format!("step {k} gradient norm"),
            scalar(&out.grad_norm),
            scalar(&steps[&format!("grad_norm.{k}")]),
            1e-4,
        );
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
    let (b, t) = (batch.pixels.dim(0).unwrap(), batch.pixels.dim(1).unwrap());
    let want = lewm.encode(&batch.pixels).unwrap();
    let mut eval = TrainableLeWm::from_state_dict(config, &reread, &device).unwrap();
    let (got, _) = eval.encode(&batch.pixels, &batch.actions, Mode::Eval).unwrap();
    assert_eq!(got.dims(), &[b, t, config.embed_dim()]);
    let diff = max_abs_diff(&got, &want);
    println!("eval-mode embeddings vs the inference model: {diff:e}");
    assert!(diff <= 1e-4, "the trained model's eval forward is {diff:e} from the inference model's");
    let _ = std::fs::remove_dir_all(&tmp);
}
