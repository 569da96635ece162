//! LeWM's training step as upstream's `scripts/train/lewm.py` runs it: `lejepa_forward` in train mode
//! (`pred_loss + 0.09 · sigreg_loss`), backward, global gradient-norm clipping, and `torch.optim.AdamW` (decoupled
//! weight decay, bias correction; swm's fused kernels on CUDA, `candle_nn::AdamW` on the host — see
//! `optimizer.rs`). Everything stays on the device: the loss, the gradient norm and the clipping coefficient are
//! tensors; reading them is the caller's choice (the CLI prints them once per step).

use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use super::lewm::{Mode, TrainableLeWm};
use super::losses::{lewm_objective_on_any_device, LewmLoss};
use super::optimizer::Update;
use crate::error::{Error, Result};
use crate::ops::preprocess::ImageNormalization;

/// The optimiser's and the step's hyper-parameters. Defaults: upstream's `lewm.yaml` (AdamW lr 5e-5, weight decay
/// 1e-3, PyTorch's betas and eps; gradient clipping at norm 1.0; SIGReg over 1024 directions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainOptions {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay (applied to every parameter, as upstream's single parameter group).
    pub weight_decay: f64,
    /// Adam's β₁.
    pub beta1: f64,
    /// Adam's β₂.
    pub beta2: f64,
    /// Adam's ε.
    pub eps: f64,
    /// Global L2 gradient-norm clipping (`clip_grad_norm_`); `None` leaves the gradients as they are.
    pub clip: Option<f64>,
    /// Random SIGReg directions drawn per step.
    pub num_proj: usize,
    /// How the encoder's gradients are computed.
    pub encoder_grad: EncoderGrad,
    /// Which kernels compute the norm, the clipping and the AdamW update.
    pub update: UpdateKernels,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            lr: 5e-5,
            weight_decay: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            clip: Some(1.0),
            num_proj: 1024,
            encoder_grad: EncoderGrad::Manual,
            update: UpdateKernels::Fused,
        }
    }
}

/// How a step computes the ViT encoder's gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncoderGrad {
    /// Candle's autograd through the whole model.
    Autograd,
    /// The encoder's hand-written backward (`training::encoder`) from the gradient of its CLS features, Candle's
    /// autograd for the rest: the same gradients without a graph edge per op in the encoder (the default: a
    /// PushT-sized step 25 % faster than `Autograd` on an H200).
    #[default]
    Manual,
}

/// Which kernels run the update after the backward (the gradient norm, the clipping and AdamW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateKernels {
    /// Candle's ops and `candle_nn::AdamW`: ~17 kernels and host launches per parameter.
    Candle,
    /// swm's fused kernels (`ops::adamw`), three launches for every parameter together, on CUDA (the host runs
    /// Candle's ops). The default: the same ten-step parity as `Candle` and a PushT-sized step 16 % faster in f32
    /// (325 → 272 ms on an H200).
    #[default]
    Fused,
}

/// upstream's `LinearWarmupCosineAnnealingLR` (warm-up start 0, η_min 0) over `total` steps: `base · k / warmup`
/// for step `k < warmup` (step 0 trains at 0, as upstream's first epoch does), then the cosine from `base` down to
/// 0 at step `total`. `warmup = 0` and `cosine = false` keep `base` throughout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The peak learning rate.
    pub base: f64,
    /// Linear warm-up steps from 0.
    pub warmup: usize,
    /// Whether the rate anneals along a cosine after the warm-up.
    pub cosine: bool,
    /// Steps of the whole run (the cosine reaches 0 there).
    pub total: usize,
}

impl Schedule {
    /// The learning rate of step `k` (0-based).
    pub fn lr(&self, k: usize) -> f64 {
        if k < self.warmup {
            return self.base * k as f64 / self.warmup as f64;
        }
        if !self.cosine || self.total <= self.warmup {
            return self.base;
        }
        let progress = (k - self.warmup) as f64 / (self.total - self.warmup) as f64;
        self.base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

/// One training batch on the device: `pixels` (B, T, 3, S, S) preprocessed float frames at the trained size and
/// `actions` (B, T, A) action blocks (NaN allowed: zeroed as upstream does). The predictor sees the first T − 1
/// frames and is scored against the last T − 1.
#[derive(Debug, Clone)]
pub struct Batch {
    pixels: Tensor,
    actions: Tensor,
}

impl Batch {
    /// Checks the tensors: float, shapes matching each other (same B and T, B ≥ 2, T ≥ 2, three channels).
    pub fn new(pixels: Tensor, actions: Tensor) -> Result<Self> {
        for (name, t) in [("pixels", &pixels), ("actions", &actions)] {
            if !t.dtype().is_float() {
                return Err(Error::invalid_input(
                    name,
                    format!(
                        "expected preprocessed float values, got {:?} (Batch::from_npz normalises uint8 frames)",
                        t.dtype()
                    ),
                ));
            }
        }
        let (b, t, c, _, _) = pixels.dims5().map_err(|_| {
            Error::invalid_input("pixels", format!("expected (batch, time, 3, H, W), got {:?}", pixels.dims()))
        })?;
        let (ab, at, _) = actions.dims3().map_err(|_| {
            Error::invalid_input("actions", format!("expected (batch, time, action_dim), got {:?}", actions.dims()))
        })?;
        if c != 3 {
            return Err(Error::invalid_input("pixels", format!("expected 3 channels, got {c}")));
        }
        if (ab, at) != (b, t) {
            return Err(Error::invalid_input(
                "actions",
                format!("batch {ab} × time {at} does not match the frames' batch {b} × time {t}"),
            ));
        }
        if t < 2 || b < 2 {
            return Err(Error::invalid_input(
                "pixels",
                format!("a training batch needs at least 2 clips of 2 frames, got {b} × {t}"),
            ));
        }
        Ok(Self { pixels, actions })
    }

    /// The preprocessed frames, (B, T, 3, S, S).
    pub fn pixels(&self) -> &Tensor {
        &self.pixels
    }

    /// The action blocks, (B, T, A).
    pub fn actions(&self) -> &Tensor {
        &self.actions
    }

    /// Reads an NPZ with `pixels` (B, T, 3, H, W) — `uint8` (scaled to [0, 1] and normalised with `norm` on the
    /// device) or float (already preprocessed) — and `actions` (B, T, A), onto `device`.
    pub fn from_npz(path: &Path, norm: &ImageNormalization, device: &Device) -> Result<Self> {
        // The bounded reader: `np.savez` archives whose arrays hold exactly what their headers say (a header
        // claiming a huge shape is an error, not an allocation).
        let npz_error = |reason: String| Error::invalid_input("batch", format!("{}: {reason}", path.display()));
        let arrays = swm_weights::read_npz(path, &swm_weights::Limits::default())
            .map_err(|e| npz_error(format!("{e} (an np.savez archive of `pixels` and `actions`)")))?;
        let find = |name: &str| -> Result<Tensor> {
            let raw =
                arrays.iter().find(|t| t.info.name == name).ok_or_else(|| npz_error(format!("no `{name}` array")))?;
            let dtype = crate::checkpoint::candle_dtype(raw.info.dtype)
                .ok_or_else(|| npz_error(format!("`{name}` is {}, not a supported dtype", raw.info.dtype)))?;
            Ok(Tensor::from_raw_buffer(&raw.data, dtype, &raw.info.shape, &Device::Cpu)?)
        };
        let (pixels, actions) = (find("pixels")?, find("actions")?);
        if pixels.rank() != 5 || pixels.dim(2)? != 3 {
            return Err(Error::invalid_input(
                "pixels",
                format!(
                    "{}: expected (batch, time, 3, H, W) channel-first frames, got {:?}",
                    path.display(),
                    pixels.dims()
                ),
            ));
        }
        let pixels = match pixels.dtype() {
            DType::U8 => {
                let x = (pixels.to_device(device)?.to_dtype(DType::F32)? / 255.0)?;
                let shape = (1, 1, 3, 1, 1);
                let mean = Tensor::new(&norm.mean, device)?.reshape(shape)?;
                let std = Tensor::new(&norm.std, device)?.reshape(shape)?;
                x.broadcast_sub(&mean)?.broadcast_div(&std)?
            }
            d if d.is_float() => pixels.to_dtype(DType::F32)?.to_device(device)?,
            d => return Err(Error::invalid_input("pixels", format!("expected uint8 or float frames, got {d:?}"))),
        };
        if !actions.dtype().is_float() {
            return Err(Error::invalid_input("actions", format!("expected float actions, got {:?}", actions.dtype())));
        }
        Self::new(pixels, actions.to_dtype(DType::F32)?.to_device(device)?)
    }
}

/// What one step computed, as device scalars (read them with `to_scalar` when needed: each read waits for the
/// GPU).
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The objective and its terms before the update.
    pub loss: LewmLoss,
    /// The global gradient L2 norm before clipping.
    pub grad_norm: Tensor,
}

/// LeWM with its AdamW state: `step` trains on one batch.
pub struct Trainer {
    model: TrainableLeWm,
    optimizer: Update,
    options: TrainOptions,
    steps: usize,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").field("options", &self.options).field("steps", &self.steps).finish_non_exhaustive()
    }
}

impl Trainer {
    /// A trainer over `model` with fresh AdamW moments.
    pub fn new(model: TrainableLeWm, options: TrainOptions) -> Result<Self> {
        let bad = |name: &str, v: f64| Error::invalid_input(name, format!("{v} is not a valid value"));
        if !(options.lr.is_finite() && options.lr >= 0.0) {
            return Err(bad("lr", options.lr));
        }
        if !(options.weight_decay.is_finite() && options.weight_decay >= 0.0) {
            return Err(bad("weight_decay", options.weight_decay));
        }
        if !(0.0..1.0).contains(&options.beta1) || !(0.0..1.0).contains(&options.beta2) {
            return Err(bad("betas", if (0.0..1.0).contains(&options.beta1) { options.beta2 } else { options.beta1 }));
        }
        if !(options.eps.is_finite() && options.eps > 0.0) {
            return Err(bad("eps", options.eps));
        }
        if let Some(c) = options.clip.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(bad("clip", c));
        }
        if options.num_proj == 0 {
            return Err(Error::invalid_input("num_proj", "SIGReg needs at least one direction"));
        }
        let optimizer = Update::new(model.vars(), options)?;
        Ok(Self { model, optimizer, options, steps: 0 })
    }

    /// The model (its parameters as trained so far).
    pub fn model(&self) -> &TrainableLeWm {
        &self.model
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Sets the learning rate of the next steps (a [`Schedule`] drives it step by step).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::invalid_input("lr", format!("{lr} is not a valid learning rate")));
        }
        self.optimizer.set_lr(lr);
        self.options.lr = lr;
        Ok(())
    }

    /// The objective on `batch` in `mode` (no update; in [`Mode::Train`] the BatchNorm running statistics move, as
    /// in any train-mode forward). `proj_matrix` (D, P) gives SIGReg's directions; `None` draws `num_proj`
    /// standard-normal ones on the device, as upstream does per call.
    pub fn loss(&mut self, batch: &Batch, proj_matrix: Option<&Tensor>, mode: Mode) -> Result<LewmLoss> {
        let (emb, act_emb) = self.model.encode(&batch.pixels, &batch.actions, mode)?;
        self.objective(&emb, &act_emb, proj_matrix, mode)
    }

    /// The objective and the gradients of every parameter, as [`TrainOptions::encoder_grad`] says (train mode).
    pub fn gradients(&mut self, batch: &Batch, proj_matrix: Option<&Tensor>) -> Result<(LewmLoss, GradStore)> {
        // The returned loss terms are detached: holding them must not keep the step's graph (and its activations)
        // alive through clipping and the update.
        let detached = |l: LewmLoss| LewmLoss {
            pred_loss: l.pred_loss.detach(),
            sigreg_loss: l.sigreg_loss.detach(),
            loss: l.loss.detach(),
        };
        if self.options.encoder_grad == EncoderGrad::Autograd {
            let loss = self.loss(batch, proj_matrix, Mode::Train)?;
            let grads = loss.loss.backward()?;
            return Ok((detached(loss), grads));
        }
        let (b, t) = (batch.pixels.dim(0)?, batch.pixels.dim(1)?);
        let (cls, tape) = self.model.encoder_forward(&self.model.frames(&batch.pixels)?, true)?;
        let tape = tape.ok_or_else(|| Error::Internal("the encoder kept no tape".into()))?;
        let cls = Var::from_tensor(&cls)?;
        let (emb, act_emb) = self.model.encode_from_cls(cls.as_tensor(), &batch.actions, (b, t), Mode::Train)?;
        let loss = self.objective(&emb, &act_emb, proj_matrix, Mode::Train)?;
        drop((emb, act_emb));
        let mut grads = loss.loss.backward()?;
        let loss = detached(loss);
        let g_cls = grads
            .remove(cls.as_tensor())
            .ok_or_else(|| Error::Internal("the objective does not depend on the encoder".into()))?;
        for (name, g) in self.model.encoder_backward(tape, &g_cls)? {
            grads.insert(self.model.var(&name)?.as_tensor(), g);
        }
        Ok((loss, grads))
    }

    /// Predictions from the first T − 1 embeddings, then LeWM's objective.
    fn objective(
        &mut self,
        emb: &Tensor,
        act_emb: &Tensor,
        proj_matrix: Option<&Tensor>,
        mode: Mode,
    ) -> Result<LewmLoss> {
        // Batch::new guarantees T ≥ 2.
        let history = emb.dim(1)?.saturating_sub(1).max(1);
        let pred = self.model.predict(&emb.narrow(1, 0, history)?, &act_emb.narrow(1, 0, history)?, mode)?;
        let drawn;
        let proj_matrix = match proj_matrix {
            Some(m) => m,
            None => {
                let d = emb.dim(2)?;
                drawn = Tensor::randn(0f32, 1f32, (d, self.options.num_proj), emb.device())?;
                &drawn
            }
        };
        // The model is on the CUDA device (its constructor refuses the host): the objective needs no second check.
        lewm_objective_on_any_device(emb, &pred, proj_matrix)
    }

    /// One training step on `batch`: the train-mode objective, its gradients, clipping to the global norm, and
    /// the AdamW update. See [`Trainer::loss`] for `proj_matrix`. A non-finite gradient (see
    /// [`StepOutput::grad_norm`]) has already reached the parameters and the moments when this returns: check it
    /// before keeping the model.
    pub fn step(&mut self, batch: &Batch, proj_matrix: Option<&Tensor>) -> Result<StepOutput> {
        let (loss, grads) = self.gradients(batch, proj_matrix)?;
        let grad_norm = self.optimizer.step(grads)?;
        self.steps += 1;
        Ok(StepOutput { loss, grad_norm })
    }
}
