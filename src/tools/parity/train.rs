//! Training parity: swm's LeWM training step against an export of the official one
//! (`python -m swm_tools.export_train`: `config.json` + `model.safetensors`, `batch.safetensors`,
//! `steps.safetensors`, `meta.json` with the optimiser's hyper-parameters and the gradient-free tensors).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::Deserialize;

use super::{compare, Comparison, ParityError, ParityReport};
use crate::artifact::Checkpoint;
use crate::checkpoint::LoadOptions;
use crate::config::{parse_json, ModelConfig};
use crate::tools::ToolError;
use crate::training::{Batch, EncoderGrad, TrainOptions, TrainableLeWm, Trainer, UpdateKernels};

/// Default training tolerances: `first_loss` absolute (the first step's loss terms); the rest relative to the
/// reference's largest magnitude — `grad` (the recorded step-0 gradients), `loss` (every step's objective),
/// `grad_norm` (every step's gradient norm, whose drift grows with the steps) and `weights` (every trained tensor
/// but the gradient-free ones, scaled by max(1, |reference|)).
pub fn train_tolerances() -> BTreeMap<String, f64> {
    [("first_loss", 1e-5), ("grad", 1e-4), ("loss", 1e-4), ("grad_norm", 3e-4), ("weights", 1e-4)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The hyper-parameters `export_train` recorded.
#[derive(Debug, Deserialize)]
struct TrainMeta {
    steps: usize,
    lr: f64,
    weight_decay: f64,
    betas: [f64; 2],
    eps: f64,
    clip: f64,
    num_proj: usize,
    #[serde(default)]
    gradient_free: Vec<String>,
}

fn get<'a>(arrays: &'a HashMap<String, Tensor>, path: &Path, key: &str) -> Result<&'a Tensor, ParityError> {
    arrays.get(key).ok_or_else(|| ParityError::MissingKey { path: path.into(), key: key.into() })
}

/// The reference's largest magnitude, at least `floor`.
fn scale(reference: &Tensor, floor: f64) -> Result<f64, ToolError> {
    Ok(reference.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?.max(floor))
}

/// [`compare`] with a tolerance relative to the reference's largest magnitude.
fn relative(key: &str, ours: &Tensor, reference: &Tensor, rel: f64) -> Result<Comparison, ToolError> {
    compare(key, ours, reference, rel * scale(reference, 0.0)?)
}

/// Trains the fixture's model on its batch for its recorded steps with its recorded SIGReg directions, the
/// encoder's gradients computed as `encoder_grad` says and the update by `update`'s kernels, and compares the first
/// step's loss terms and gradients, every step's loss and gradient norm, and the trained weights.
pub fn train(
    dir: &Path,
    tolerances: &BTreeMap<String, f64>,
    encoder_grad: EncoderGrad,
    update: UpdateKernels,
    device: &Device,
) -> Result<ParityReport, ToolError> {
    let tol = |key: &str| tolerances.get(key).copied().unwrap_or(1e-4);
    let meta_path = dir.join("meta.json");
    let text = crate::config::read_text(&meta_path)?;
    let meta: TrainMeta = parse_json(&text, &meta_path)?;
    let checkpoint = Checkpoint::open(dir)?;
    let ModelConfig::Lewm(config) = &checkpoint.config else {
        return Err(ToolError::invalid_input("fixture", "training parity is for LeWM"));
    };
    let weights = checkpoint.state_dict(&LoadOptions::default())?;
    let (batch_path, steps_path) = (dir.join("batch.safetensors"), dir.join("steps.safetensors"));
    let arrays = candle_core::safetensors::load(&batch_path, device)?;
    let batch =
        Batch::new(get(&arrays, &batch_path, "pixels")?.clone(), get(&arrays, &batch_path, "actions")?.clone())?;
    let steps = candle_core::safetensors::load(&steps_path, device)?;
    let step = |name: &str| get(&steps, &steps_path, name);
    let options = TrainOptions {
        lr: meta.lr,
        weight_decay: meta.weight_decay,
        beta1: meta.betas[0],
        beta2: meta.betas[1],
        eps: meta.eps,
        clip: (meta.clip > 0.0).then_some(meta.clip),
        num_proj: meta.num_proj,
        encoder_grad,
        update,
    };
    let trainer = || -> Result<Trainer, ToolError> {
        let mut model = TrainableLeWm::from_state_dict(config, &weights, device)?;
        model.set_dropout(0.0)?;
        Ok(Trainer::new(model, options)?)
    };
    let mut rows = Vec::new();

    // The first step's terms and the recorded gradients, on a model of its own (a train-mode forward moves the
    // BatchNorm statistics).
    let mut first = trainer()?;
    let (loss, grads) = first.gradients(&batch, Some(step("proj_matrix.0")?))?;
    for (name, ours) in [("loss", &loss.loss), ("pred_loss", &loss.pred_loss), ("sigreg_loss", &loss.sigreg_loss)] {
        rows.push(compare(&format!("{name}.0"), ours, step(&format!("{name}.0"))?, tol("first_loss"))?);
    }
    let vars: HashMap<&str, &Var> = first.model().named_vars().collect();
    for (key, reference) in steps.iter().filter_map(|(k, v)| k.strip_prefix("grad.").map(|k| (k, v))) {
        let var = vars.get(key).ok_or_else(|| ToolError::invalid_input("fixture", format!("no parameter `{key}`")))?;
        let ours = grads
            .get(var.as_tensor())
            .ok_or_else(|| ToolError::invalid_input("fixture", format!("`{key}` received no gradient")))?;
        rows.push(relative(&format!("grad {key}"), ours, reference, tol("grad"))?);
    }

    // Every step's objective and gradient norm.
    let mut trainer = trainer()?;
    for k in 0..meta.steps {
        let out = trainer.step(&batch, Some(step(&format!("proj_matrix.{k}"))?))?;
        rows.push(relative(&format!("loss.{k}"), &out.loss.loss, step(&format!("loss.{k}"))?, tol("loss"))?);
        let norm = step(&format!("grad_norm.{k}"))?;
        rows.push(relative(&format!("grad_norm.{k}"), &out.grad_norm, norm, tol("grad_norm"))?);
    }

    // The trained weights, one row over every comparable tensor (the largest difference relative to each
    // tensor's max(1, |reference|)), and the BatchNorm counters.
    let trained = trainer.model().state_dict()?;
    let limit = tol("weights");
    let (mut worst, mut worst_key, mut compared, mut non_finite) = (0f64, String::new(), 0usize, false);
    let (mut beyond, mut elements) = (0usize, 0usize);
    let mut counters_agree = true;
    for (key, reference) in steps.iter().filter_map(|(k, v)| k.strip_prefix("final.").map(|k| (k, v))) {
        let ours = trained
            .get(key)
            .ok_or_else(|| ToolError::invalid_input("fixture", format!("the trained state dict lacks `{key}`")))?;
        if !reference.dtype().is_float() {
            let (a, b) =
                (ours.to_dtype(DType::I64)?.to_vec0::<i64>()?, reference.to_dtype(DType::I64)?.to_vec0::<i64>()?);
            counters_agree &= a == b;
            continue;
        }
        if meta.gradient_free.iter().any(|k| k == key) {
            continue;
        }
        let c = compare(key, ours, reference, f64::INFINITY)?;
        non_finite |= c.non_finite;
        let s = scale(reference, 1.0)?;
        if c.max_abs / s > worst {
            (worst, worst_key) = (c.max_abs / s, key.to_string());
        }
        // Elements further than the tolerance from the official ones (on the same max(1, |reference|) scale).
        let diff = (ours.to_device(reference.device())?.to_dtype(DType::F32)? - reference.to_dtype(DType::F32)?)?;
        beyond += diff.abs()?.gt(limit * s)?.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize;
        elements += reference.elem_count();
        compared += 1;
    }
    rows.push(Comparison {
        key: format!("weights (worst {worst_key}; {beyond} of {elements} elements beyond)"),
        shape: vec![compared],
        max_abs: worst,
        max_rel: worst,
        tolerance: limit,
        non_finite,
        ok: !non_finite && compared > 0 && worst <= limit,
    });
    Ok(ParityReport {
        fixture: dir.to_path_buf(),
        device: crate::device::name(device).unwrap_or_default(),
        rows,
        decisions: vec![("BatchNorm counters".into(), counters_agree)],
    })
}
