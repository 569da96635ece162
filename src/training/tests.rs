//! The training step's math on the host against the official package (`tests/fixtures/train-tiny`, written by
//! `tools/swm_tools/export_train.py`: the tiny LeWM in train mode, dropout 0, ten AdamW steps on one batch with
//! SIGReg's directions recorded). The public constructor refuses the host; the GPU test
//! (`tests/gpu/training.rs`) runs the same comparison on CUDA through the public API.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};

use super::lewm::{on_any_device, Mode};
use super::{Batch, EncoderGrad, TrainOptions, Trainer};
use crate::checkpoint::StateDict;
use crate::config::ModelConfig;
use crate::models::lewm::Config;

/// The committed tiny fixture, or the one `SWM_TRAIN_FIXTURE` names (e.g. a PushT-sized export, too large to
/// commit: `python -m swm_tools.export_train --config configs/lewm-pusht.json --batch 4 --out DIR`).
fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWM_TRAIN_FIXTURE") {
        return PathBuf::from(dir);
    }
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    PathBuf::from(root).join("tests/fixtures/train-tiny")
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join(name), &Device::Cpu).expect(name)
}

fn config() -> Config {
    match ModelConfig::load(dir().join("config.json")).unwrap() {
        ModelConfig::Lewm(c) => *c,
        other => panic!("not a LeWM config: {:?}", other.family()),
    }
}

fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// The fixture's options: lr 1e-3 (larger than upstream's 5e-5, so that ten steps move the weights measurably),
/// upstream's weight decay and clipping, 256 SIGReg directions.
fn options() -> TrainOptions {
    TrainOptions { lr: 1e-3, num_proj: 256, ..TrainOptions::default() }
}

fn trainer() -> Trainer {
    trainer_with(EncoderGrad::Autograd)
}

fn trainer_with(encoder_grad: EncoderGrad) -> Trainer {
    let weights = StateDict::from_tensors(load("model.safetensors"), "model.safetensors");
    let model = on_any_device(&config(), &weights, &Device::Cpu).unwrap();
    Trainer::new(model, TrainOptions { encoder_grad, ..options() }).unwrap()
}

fn batch() -> Batch {
    let b = load("batch.safetensors");
    Batch::new(b["pixels"].clone(), b["actions"].clone()).unwrap()
}

#[test]
fn the_first_step_s_loss_and_gradients_match_the_official_training_step() {
    let (steps, batch, mut trainer) = (load("steps.safetensors"), batch(), trainer());
    let loss = trainer.loss(&batch, Some(&steps["proj_matrix.0"]), Mode::Train).unwrap();
    for (name, got) in [("loss", &loss.loss), ("pred_loss", &loss.pred_loss), ("sigreg_loss", &loss.sigreg_loss)] {
        let want = scalar(&steps[&format!("{name}.0")]);
        assert!((scalar(got) - want).abs() <= 1e-5, "{name}: {} vs the official {want}", scalar(got));
    }
    let grads = loss.loss.backward().unwrap();
    let vars: HashMap<_, _> = trainer.model().named_vars().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let mut checked = 0;
    for (key, want) in steps.iter().filter_map(|(k, v)| k.strip_prefix("grad.").map(|k| (k, v))) {
        let got = grads.get(vars[key].as_tensor()).unwrap_or_else(|| panic!("no gradient for {key}"));
        let rel = max_abs(&(got - want).unwrap()) / max_abs(want);
        assert!(rel <= 1e-4, "{key}: gradient {rel:e} relative from torch's");
        checked += 1;
    }
    assert!(checked >= 8, "the fixture names {checked} gradients");
}

/// The tensors the fixture marks as gradient-free (`meta.json`): zero gradient in exact arithmetic, so that Adam's
/// normalisation `m / (√v + ε)` turns rounding noise into ±lr steps in both implementations — a key bias, the bias
/// of a Linear before train-mode BatchNorm or of the LayerNorm before that Linear, and the running means after
/// them. Every other tensor is held to the official weights.
fn gradient_free() -> Vec<String> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("meta.json")).expect("meta.json")).expect("JSON");
    meta["gradient_free"]
        .as_array()
        .expect("gradient_free")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect()
}

#[test]
fn ten_adamw_steps_follow_the_official_loss_curve_and_end_at_its_weights() {
    ten_steps(EncoderGrad::Autograd);
}

#[test]
fn with_the_encoder_s_hand_written_backward_too() {
    ten_steps(EncoderGrad::Manual);
}

#[test]
fn the_encoder_s_hand_written_backward_gives_autograd_s_gradients() {
    let (steps, batch) = (load("steps.safetensors"), batch());
    let pm = &steps["proj_matrix.0"];
    let (mut auto, mut manual) = (trainer_with(EncoderGrad::Autograd), trainer_with(EncoderGrad::Manual));
    let (loss_a, grads_a) = auto.gradients(&batch, Some(pm)).unwrap();
    let (loss_m, grads_m) = manual.gradients(&batch, Some(pm)).unwrap();
    let (la, lm) = (scalar(&loss_a.loss), scalar(&loss_m.loss));
    assert!(((la - lm) / la).abs() <= 1e-6, "the same forward: {la} and {lm}");
    let manual_vars: HashMap<_, _> = manual.model().named_vars().map(|(k, v)| (k.to_string(), v.clone())).collect();
    // Relative to each gradient's size; the fixture's gradient-free tensors (zero in exact arithmetic, rounding
    // noise in both backwards) against 1e-2 of the largest gradient instead.
    let largest =
        auto.model().named_vars().filter_map(|(_, v)| grads_a.get(v.as_tensor())).map(max_abs).fold(0f32, f32::max);
    let free = gradient_free();
    let mut encoder = 0;
    for (key, var) in auto.model().named_vars() {
        let a = grads_a.get(var.as_tensor()).unwrap_or_else(|| panic!("autograd: no gradient for {key}"));
        let m = grads_m.get(manual_vars[key].as_tensor()).unwrap_or_else(|| panic!("manual: no gradient for {key}"));
        assert_eq!(a.dims(), m.dims(), "{key}");
        let scale = if free.iter().any(|k| k == key) { max_abs(a).max(1e-2 * largest) } else { max_abs(a) };
        let rel = max_abs(&(a - m).unwrap()) / scale;
        assert!(rel <= 1e-4, "{key}: {rel:e} relative between the two backwards");
        encoder += usize::from(key.starts_with("encoder."));
    }
    assert!(encoder >= 20, "{encoder} encoder parameters compared");
}

fn ten_steps(encoder_grad: EncoderGrad) {
    let (steps, batch, mut trainer) = (load("steps.safetensors"), batch(), trainer_with(encoder_grad));
    let n = steps.keys().filter(|k| k.starts_with("loss.")).count();
    assert_eq!(n, 10);
    for k in 0..n {
        let out = trainer.step(&batch, Some(&steps[&format!("proj_matrix.{k}")])).unwrap();
        let (got, want) = (scalar(&out.loss.loss), scalar(&steps[&format!("loss.{k}")]));
        let (norm, official_norm) = (scalar(&out.grad_norm), scalar(&steps[&format!("grad_norm.{k}")]));
        eprintln!(
            "step {k}: loss {got} (official {want}, {:.1e} relative), |g| {norm} ({:.1e} relative)",
            ((got - want) / want).abs(),
            ((norm - official_norm) / official_norm).abs()
        );
        assert!(((got - want) / want).abs() <= 1e-4, "step {k}: loss {got} vs the official {want}");
        // The norm's drift grows with the steps (a PushT-sized run reaches 1.2e-4 at step ten, its loss 4e-5).
        let (got, want) = (norm, official_norm);
        assert!(((got - want) / want).abs() <= 3e-4, "step {k}: gradient norm {got} vs the official {want}");
    }
    assert_eq!(trainer.steps(), n);
    let trained = trainer.model().state_dict().unwrap();
    let (mut compared, free) = (0, gradient_free());
    for (key, want) in steps.iter().filter_map(|(k, v)| k.strip_prefix("final.").map(|k| (k, v))) {
        let got = trained.get(key).unwrap_or_else(|| panic!("the trained state dict lacks {key}"));
        compared += 1;
        if want.dtype().is_float() {
            let diff = max_abs(&(got - want).unwrap());
            if free.iter().any(|k| k == key) {
                continue;
            }
            assert!(diff <= 1e-4 * max_abs(want).max(1.0), "{key}: {diff:e} from the official weights");
        } else {
            let (g, w) = (got.to_scalar::<i64>().unwrap(), want.to_scalar::<i64>().unwrap());
            assert_eq!(g, w, "{key}");
        }
    }
    assert_eq!(compared, trained.len(), "every tensor of the state dict compared");
    assert!(
        free.iter().all(|k| k.ends_with(".bias") || k.ends_with(".running_mean")),
        "only biases and running means can be gradient-free: {free:?}"
    );
}

#[test]
fn bad_batches_and_options_are_typed_errors() {
    let b = load("batch.safetensors");
    let (pixels, actions) = (&b["pixels"], &b["actions"]);
    let err = Batch::new(pixels.clone(), actions.narrow(0, 0, 3).unwrap()).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    let err = Batch::new(pixels.narrow(1, 0, 1).unwrap(), actions.narrow(1, 0, 1).unwrap()).unwrap_err().to_string();
    assert!(err.contains("at least 2"), "{err}");
    let err = Batch::new(pixels.narrow(2, 0, 1).unwrap(), actions.clone()).unwrap_err().to_string();
    assert!(err.contains("3 channels"), "{err}");
    let model = || {
        let weights = StateDict::from_tensors(load("model.safetensors"), "model.safetensors");
        on_any_device(&config(), &weights, &Device::Cpu).unwrap()
    };
    for bad in [
        TrainOptions { lr: f64::NAN, ..options() },
        TrainOptions { beta2: 1.0, ..options() },
        TrainOptions { clip: Some(0.0), ..options() },
        TrainOptions { num_proj: 0, ..options() },
    ] {
        assert!(Trainer::new(model(), bad).is_err(), "{bad:?} accepted");
    }
    // A frame of another size than the trained one is refused, not silently interpolated.
    let mut t = Trainer::new(model(), options()).unwrap();
    let small = Batch::new(pixels.narrow(3, 0, 16).unwrap(), actions.clone()).unwrap();
    let err = t.loss(&small, None, Mode::Train).unwrap_err().to_string();
    assert!(err.contains("trained size"), "{err}");
    // The public constructor refuses the host.
    let weights = StateDict::from_tensors(load("model.safetensors"), "model.safetensors");
    assert!(super::TrainableLeWm::from_state_dict(&config(), &weights, &Device::Cpu).is_err());
}

#[test]
fn trained_weights_written_as_an_artifact_reload_unchanged() {
    let tmp = std::env::temp_dir().join(format!("swm-train-artifact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let checkpoint = crate::artifact::Checkpoint::open(dir()).unwrap();
    let options = crate::checkpoint::LoadOptions::default();
    let source = crate::artifact::convert(&checkpoint, &options, &tmp.join("source"), None).unwrap();
    let (steps, batch, mut trainer) = (load("steps.safetensors"), batch(), trainer());
    trainer.step(&batch, Some(&steps["proj_matrix.0"])).unwrap();
    let trained = trainer.model().state_dict().unwrap();
    let written = source.write_with_weights(&trained, &tmp.join("trained")).unwrap();
    let reread = written.checkpoint.state_dict(&options).unwrap();
    assert_eq!(reread.len(), trained.len());
    for (key, want) in trained.iter() {
        let got = reread.get(key).unwrap_or_else(|| panic!("{key} not written"));
        assert_eq!(got.dtype(), want.dtype(), "{key}");
        let same = got.to_dtype(candle_core::DType::F64).unwrap().eq(&want.to_dtype(candle_core::DType::F64).unwrap());
        assert!(same.unwrap().flatten_all().unwrap().min(0).unwrap().to_scalar::<u8>().unwrap() == 1, "{key} changed");
    }
    assert_eq!(written.schema, source.schema);
    assert_eq!(written.preprocess, source.preprocess);
    // The source artifact's own files are never written over.
    assert!(source.write_with_weights(&trained, &tmp.join("source")).is_err());
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn npz_batches_are_normalised_or_refused_with_typed_errors() {
    let tmp = std::env::temp_dir().join(format!("swm-train-npz-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let norm = crate::ops::ImageNormalization::IMAGENET;
    let bytes: Vec<u8> = (0..2 * 2 * 3 * 4 * 4).map(|i| (i * 37 % 256) as u8).collect();
    let pixels = Tensor::from_vec(bytes.clone(), (2, 2, 3, 4, 4), &Device::Cpu).unwrap();
    let actions = Tensor::zeros((2, 2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let path = tmp.join("u8.npz");
    Tensor::write_npz(&[("pixels", &pixels), ("actions", &actions)], &path).unwrap();
    let batch = Batch::from_npz(&path, &norm, &Device::Cpu).unwrap();
    // uint8 frames: scaled to [0, 1] and normalised per channel.
    let got = batch.pixels().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, (&g, &b)) in got.iter().zip(&bytes).enumerate() {
        let c = (i / 16) % 3;
        let want = (b as f32 / 255.0 - norm.mean[c]) / norm.std[c];
        assert!((g - want).abs() <= 1e-5, "element {i}: {g} vs {want}");
    }
    // An archive numpy wrote (np.savez: ZIP64, data descriptors) reads through the bounded reader.
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let numpy = Batch::from_npz(&root.join("tests/fixtures/train-tiny/batch_u8.npz"), &norm, &Device::Cpu).unwrap();
    assert_eq!(numpy.pixels().dims(), &[2, 2, 3, 4, 4]);
    assert_eq!(numpy.actions().dims(), &[2, 2, 4]);
    // Channel-last frames, a missing array and integer actions are typed errors naming the problem.
    let hwc = pixels.permute((0, 1, 3, 4, 2)).unwrap().contiguous().unwrap();
    Tensor::write_npz(&[("pixels", &hwc), ("actions", &actions)], tmp.join("hwc.npz")).unwrap();
    let err = Batch::from_npz(&tmp.join("hwc.npz"), &norm, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("channel-first"), "{err}");
    Tensor::write_npz(&[("pixels", &pixels)], tmp.join("no-actions.npz")).unwrap();
    let err = Batch::from_npz(&tmp.join("no-actions.npz"), &norm, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("no `actions`"), "{err}");
    let int_actions = actions.to_dtype(candle_core::DType::I64).unwrap();
    Tensor::write_npz(&[("pixels", &pixels), ("actions", &int_actions)], tmp.join("int.npz")).unwrap();
    assert!(Batch::from_npz(&tmp.join("int.npz"), &norm, &Device::Cpu).is_err());
    // Batch::new takes preprocessed floats only: raw uint8 frames would train on 0–255 values.
    let err = Batch::new(pixels, actions).unwrap_err().to_string();
    assert!(err.contains("float"), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn nan_and_infinite_actions_are_mapped_as_nan_to_num_does() {
    let (steps, b) = (load("steps.safetensors"), load("batch.safetensors"));
    let mut trainer = trainer();
    let mut values = b["actions"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[1] = f32::INFINITY;
    values[2] = f32::NEG_INFINITY;
    let actions = Tensor::from_vec(values, b["actions"].shape(), &Device::Cpu).unwrap();
    let batch = Batch::new(b["pixels"].clone(), actions).unwrap();
    let loss = trainer.loss(&batch, Some(&steps["proj_matrix.0"]), Mode::Eval).unwrap();
    assert!(scalar(&loss.loss).is_finite(), "±∞ actions give a finite loss (as torch.nan_to_num)");
}

#[test]
fn the_schedule_warms_up_linearly_from_zero_then_follows_the_cosine() {
    use super::Schedule;
    let s = Schedule { base: 1e-3, warmup: 4, cosine: true, total: 14 };
    assert_eq!(s.lr(0), 0.0, "upstream's first warm-up step trains at lr 0");
    assert!((s.lr(2) - 5e-4).abs() < 1e-15);
    assert_eq!(s.lr(4), 1e-3);
    assert!((s.lr(9) - 5e-4).abs() < 1e-12, "half way down the cosine: {}", s.lr(9));
    assert!(s.lr(13) > 0.0 && s.lr(13) < 3e-5);
    assert!(s.lr(14).abs() < 1e-18 && s.lr(100).abs() < 1e-18);
    let constant = Schedule { base: 5e-5, warmup: 0, cosine: false, total: 10 };
    assert!((0..10).all(|k| constant.lr(k) == 5e-5));
    // The trainer takes the schedule's rates and refuses invalid ones.
    let mut t = trainer();
    assert!(t.set_lr(f64::NAN).is_err() && t.set_lr(-1.0).is_err());
    t.set_lr(s.lr(2)).unwrap();
}
