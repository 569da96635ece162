//! The update after the backward: the global gradient L2 norm, `clip_grad_norm_` and `torch.optim.AdamW`: Candle's
//! ops and [`candle_nn::AdamW`] (whose update is torch's), or, with [`UpdateKernels::Fused`] on CUDA, swm's fused
//! kernels (`ops::adamw`: three launches for every parameter together).

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use super::trainer::{TrainOptions, UpdateKernels};
use crate::error::{Error, Result};
use crate::ops::adamw::{adamw_step, grad_norm, AdamWStep};

/// AdamW over a fixed list of parameters, with its moments.
pub(crate) enum Update {
    /// The fused kernels (CUDA).
    Fused { vars: Vec<Var>, m: Vec<Tensor>, v: Vec<Tensor>, hyper: TrainOptions, steps: u64 },
    /// Candle's ops and `candle_nn::AdamW` (the host, and the default on CUDA).
    Composed { vars: Vec<Var>, adamw: AdamW, clip: Option<f64> },
}

impl Update {
    /// Fresh (zero) moments for `vars` (f32 on one device), with `hyper`'s AdamW hyper-parameters and clipping.
    pub fn new(vars: Vec<Var>, hyper: TrainOptions) -> Result<Self> {
        let first = vars.first().ok_or_else(|| Error::invalid_input("parameters", "nothing to train"))?;
        if !first.device().is_cuda() || hyper.update == UpdateKernels::Candle {
            let params = ParamsAdamW {
                lr: hyper.lr,
                beta1: hyper.beta1,
                beta2: hyper.beta2,
                eps: hyper.eps,
                weight_decay: hyper.weight_decay,
            };
            let adamw = AdamW::new(vars.clone(), params)?;
            return Ok(Self::Composed { vars, adamw, clip: hyper.clip });
        }
        if let Some(var) = vars.iter().find(|v| v.dtype() != DType::F32) {
            return Err(Error::invalid_input(
                "parameters",
                format!("the fused AdamW trains f32, got {:?}", var.dtype()),
            ));
        }
        let zeros = |v: &Var| Tensor::zeros(v.shape(), DType::F32, v.device());
        let m = vars.iter().map(zeros).collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars.iter().map(zeros).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self::Fused { vars, m, v, hyper, steps: 0 })
    }

    /// Sets the learning rate of the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Self::Fused { hyper, .. } => hyper.lr = lr,
            Self::Composed { adamw, .. } => adamw.set_learning_rate(lr),
        }
    }

    /// Clips `grads` to the global norm and applies AdamW to every parameter that has a gradient (the others are
    /// left as they are, no decay either, as torch does; the bias correction counts the optimiser's steps, as
    /// `candle_nn::AdamW` does — torch counts per parameter, the same when every parameter gets a gradient every
    /// step, as LeWM's do); returns the norm before clipping, a device scalar.
    pub fn step(&mut self, grads: GradStore) -> Result<Tensor> {
        match self {
            Self::Fused { vars, m, v, hyper, steps } => {
                let mut with = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (i, var) in vars.iter().enumerate() {
                    if let Some(g) = grads.get(var.as_tensor()) {
                        with.0.push(var.as_tensor().clone());
                        with.1.push(g.contiguous()?);
                        with.2.push(m[i].clone());
                        with.3.push(v[i].clone());
                    }
                }
                if with.0.is_empty() {
                    return Err(Error::Internal("the objective reached no parameter".into()));
                }
                fn refs(l: &[Tensor]) -> Vec<&Tensor> {
                    l.iter().collect()
                }
                let (p, g, mm, vv) = (refs(&with.0), refs(&with.1), refs(&with.2), refs(&with.3));
                let norm = grad_norm(&g, hyper.clip)?;
                *steps += 1;
                let hp = AdamWStep {
                    lr: hyper.lr,
                    weight_decay: hyper.weight_decay,
                    beta1: hyper.beta1,
                    beta2: hyper.beta2,
                    eps: hyper.eps,
                    step: *steps,
                };
                adamw_step(&p, &g, &mm, &vv, &norm, &hp)?;
                Ok(norm.narrow(0, 0, 1)?.squeeze(0)?)
            }
            Self::Composed { vars, adamw, clip } => {
                let mut grads = grads;
                let squares = vars
                    .iter()
                    .filter_map(|var| grads.get(var.as_tensor()).map(|g| g.sqr()?.sum_all()))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                if squares.is_empty() {
                    return Err(Error::Internal("the objective reached no parameter".into()));
                }
                let norm = Tensor::stack(&squares, 0)?.sum_all()?.sqrt()?;
                if let Some(max_norm) = *clip {
                    // clip_grad_norm_: every gradient times min(1, max_norm / (norm + 1e-6)).
                    let coef = ((norm.clone() + 1e-6)?.recip()? * max_norm)?.clamp(0f32, 1f32)?;
                    for var in vars.iter() {
                        if let Some(g) = grads.remove(var.as_tensor()) {
                            grads.insert(var.as_tensor(), g.broadcast_mul(&coef)?);
                        }
                    }
                }
                adamw.step(&grads)?;
                Ok(norm)
            }
        }
    }
}
