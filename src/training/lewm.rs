//! LeWM in training mode: the forward of upstream's `LeWM.encode` / `LeWM.predict` in `module.train()` state —
//! BatchNorm on batch statistics (running statistics updated with momentum 0.1 and the unbiased batch variance),
//! the predictor's dropout — written with Candle's differentiable ops, so that `loss.backward()` reaches every
//! parameter. swm's inference model ([`crate::models::lewm::LeWm`]) runs fused kernels without a backward and
//! folds weights at load time (BatchNorm into the Linear, the query scale into the QKV rows); here every parameter
//! is a [`Var`] under its upstream state-dict name, used unfolded, so an optimiser updates exactly what upstream's
//! does and [`TrainableLeWm::state_dict`] writes a checkpoint that the inference model loads again.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};

use crate::checkpoint::StateDict;
use crate::error::{Error, Result};
use crate::models::lewm::{legacy_vit_key, Config, MlpConfig, Norm, VitDims};

/// BatchNorm1d's epsilon and momentum (PyTorch's defaults, which upstream keeps).
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;
/// `nn.LayerNorm`'s default epsilon (the MLP heads, the predictor's affine norms).
const LN_EPS: f64 = 1e-5;
/// The parameter-free norms of the predictor's AdaLN-zero blocks.
const BLOCK_NORM_EPS: f64 = 1e-6;

/// Whether a forward pass trains (batch statistics, dropout) or evaluates (running statistics, no dropout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `module.train()`: BatchNorm normalises with the batch's statistics and updates its running ones; dropout
    /// is active.
    Train,
    /// `module.eval()`: BatchNorm uses its running statistics; no dropout.
    Eval,
}

/// LeWM's parameters as Candle [`Var`]s on a CUDA device, with the BatchNorm buffers beside them.
#[derive(Debug)]
pub struct TrainableLeWm {
    config: Config,
    pub(super) dims: VitDims,
    /// Every float parameter under its upstream name, in key order.
    params: BTreeMap<String, Var>,
    /// BatchNorm running means and variances (not trained; updated by train-mode forwards).
    buffers: BTreeMap<String, Tensor>,
    /// BatchNorm `num_batches_tracked` counters, kept on the host and incremented per train-mode forward.
    counters: BTreeMap<String, i64>,
    /// The predictor's dropout probability in train mode (upstream's config value unless overridden).
    dropout: f64,
    /// The predictor's embedding dropout probability in train mode (likewise).
    emb_dropout: f64,
    device: Device,
}

fn is_buffer(key: &str) -> bool {
    key.ends_with(".running_mean") || key.ends_with(".running_var")
}

fn missing(key: &str) -> Error {
    Error::invalid_input("weights", format!("the state dict has no `{key}`"))
}

impl TrainableLeWm {
    /// Builds the trainable model from a checkpoint's state dict (either ViT key layout), validated against the
    /// config's parameter table, on the CUDA `device`.
    pub fn from_state_dict(config: &Config, weights: &StateDict, device: &Device) -> Result<Self> {
        if !device.is_cuda() {
            return Err(Error::invalid_input("device", "training runs on the CUDA device"));
        }
        Self::build(config, weights, device)
    }

    fn build(config: &Config, weights: &StateDict, device: &Device) -> Result<Self> {
        // Hugging Face's ViT dropouts (0 in upstream's configs) are not implemented: refuse rather than ignore them.
        for key in ["hidden_dropout_prob", "attention_probs_dropout_prob"] {
            if let Some(p) = config.encoder.overrides.get(key).and_then(|v| v.as_f64()).filter(|p| *p != 0.0) {
                return Err(Error::invalid_input(
                    "config",
                    format!("encoder.{key} = {p}: training supports the encoder without dropout (upstream's 0)"),
                ));
            }
        }
        let mut weights = weights.clone();
        weights.rename_keys(legacy_vit_key)?;
        weights.validate(&config.parameter_table()?)?;
        let dims = config.encoder.dims()?;
        let (mut params, mut buffers, mut counters) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (key, tensor) in weights.iter() {
            if !tensor.dtype().is_float() {
                let count = tensor.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
                counters.insert(key.to_string(), count.first().copied().unwrap_or(0));
            } else if is_buffer(key) {
                buffers.insert(key.to_string(), tensor.to_dtype(DType::F32)?.to_device(device)?);
            } else {
                let value = tensor.to_dtype(DType::F32)?.to_device(device)?;
                params.insert(key.to_string(), Var::from_tensor(&value)?);
            }
        }
        Ok(Self {
            config: config.clone(),
            dims,
            params,
            buffers,
            counters,
            dropout: config.predictor.dropout,
            emb_dropout: config.predictor.emb_dropout,
            device: device.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device holding the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trained parameters, in state-dict key order (what an optimiser updates).
    pub fn vars(&self) -> Vec<Var> {
        self.params.values().cloned().collect()
    }

    /// The trained parameters with their upstream names.
    pub fn named_vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Overrides the predictor's train-mode dropout probability, its blocks' and its embedding's (upstream's
    /// config says 0.1 and 0; parity tests use 0, as no other implementation can replay PyTorch's dropout masks).
    pub fn set_dropout(&mut self, p: f64) -> Result<()> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid_input("dropout", format!("{p} is outside [0, 1)")));
        }
        self.dropout = p;
        self.emb_dropout = p;
        Ok(())
    }

    /// The whole state dict on the host: the current parameters, the BatchNorm buffers and counters, under
    /// upstream's names (what [`crate::models::lewm::LeWm::from_state_dict`] loads).
    pub fn state_dict(&self) -> Result<StateDict> {
        let mut tensors = Vec::with_capacity(self.params.len() + self.buffers.len() + self.counters.len());
        for (k, v) in &self.params {
            tensors.push((k.clone(), v.as_tensor().to_device(&Device::Cpu)?));
        }
        for (k, v) in &self.buffers {
            tensors.push((k.clone(), v.to_device(&Device::Cpu)?));
        }
        for (k, &n) in &self.counters {
            tensors.push((k.clone(), Tensor::new(n, &Device::Cpu)?));
        }
        Ok(StateDict::from_tensors(tensors, "trained"))
    }

    pub(super) fn var(&self, key: &str) -> Result<&Var> {
        self.params.get(key).ok_or_else(|| missing(key))
    }

    pub(super) fn p(&self, key: &str) -> Result<Tensor> {
        self.params.get(key).map(|v| v.as_tensor().clone()).ok_or_else(|| missing(key))
    }

    fn linear(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let w = self.p(&format!("{prefix}.weight"))?;
        let b = self.params.get(&format!("{prefix}.bias")).map(|v| v.as_tensor());
        linear(x, &w, b)
    }

    fn layer_norm(&self, x: &Tensor, prefix: &str, eps: f64) -> Result<Tensor> {
        let (w, b) = (self.p(&format!("{prefix}.weight"))?, self.p(&format!("{prefix}.bias"))?);
        affine_layer_norm(x, &w, &b, eps)
    }

    fn dropout(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        Ok(match mode {
            Mode::Train if self.dropout > 0.0 => candle_nn::ops::dropout(x, self.dropout as f32)?,
            _ => x.clone(),
        })
    }

    /// `LeWM.encode`: (B, T, 3, H, W) preprocessed frames at the trained image size and (B, T, A) action blocks
    /// (NaN actions are zeroed first, as upstream's training step does) -> ((B, T, D) embeddings, (B, T, Ea)
    /// action embeddings).
    pub fn encode(&mut self, pixels: &Tensor, actions: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let frames = self.frames(pixels)?;
        let (b, t) = (pixels.dim(0)?, pixels.dim(1)?);
        let (cls, _) = self.encoder_forward(&frames, false)?;
        self.encode_from_cls(&cls, actions, (b, t), mode)
    }

    /// Checks `pixels` (B, T, 3, S, S) at the trained size and returns them as (B·T, 3, S, S) f32 frames.
    pub(super) fn frames(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = pixels.dims5().map_err(|_| {
            Error::invalid_input("pixels", format!("expected (B, T, 3, H, W), got {:?}", pixels.dims()))
        })?;
        let side = self.dims.image;
        if c != 3 || h != side || w != side {
            return Err(Error::invalid_input(
                "pixels",
                format!("training takes 3×{side}×{side} frames (the trained size), got {c}×{h}×{w}"),
            ));
        }
        Ok(pixels.to_dtype(DType::F32)?.reshape((b * t, c, h, w))?)
    }

    /// The rest of [`TrainableLeWm::encode`] from the encoder's CLS features `cls` (B·T, E).
    pub(super) fn encode_from_cls(
        &mut self,
        cls: &Tensor,
        actions: &Tensor,
        (b, t): (usize, usize),
        mode: Mode,
    ) -> Result<(Tensor, Tensor)> {
        let cls = cls.clone();
        let emb = match self.config.projector.clone() {
            Some(cfg) => self.mlp(&cls, "projector", &cfg, mode)?,
            None => cls,
        };
        let emb = emb.reshape((b, t, ()))?;
        let actions = actions.to_dtype(DType::F32)?;
        // nan_to_num(action, 0): NaN (the only value unequal to itself) becomes 0, ±∞ the largest finite values.
        let actions = actions.eq(&actions)?.where_cond(&actions, &actions.zeros_like()?)?.clamp(f32::MIN, f32::MAX)?;
        Ok((emb, self.embed_actions(&actions)?))
    }

    /// `LeWM.predict`: (B, T, D) embeddings and (B, T, Ea) action embeddings -> (B, T, D) next-step predictions.
    pub fn predict(&mut self, emb: &Tensor, act_emb: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t, _) = emb.dims3()?;
        let out = self.predictor(emb, act_emb, mode)?;
        Ok(match self.config.pred_proj.clone() {
            Some(cfg) => self.mlp(&out.reshape((b * t, ()))?, "pred_proj", &cfg, mode)?.reshape((b, t, ()))?,
            None => out,
        })
    }

    /// upstream's `MLP`: `Linear -> norm -> GELU -> Linear` on (N, in) rows.
    fn mlp(&mut self, x: &Tensor, prefix: &str, cfg: &MlpConfig, mode: Mode) -> Result<Tensor> {
        let h = self.linear(x, &format!("{prefix}.net.0"))?;
        let h = match cfg.norm_fn {
            Norm::BatchNorm => self.batch_norm(&h, &format!("{prefix}.net.1"), mode)?,
            Norm::LayerNorm => self.layer_norm(&h, &format!("{prefix}.net.1"), LN_EPS)?,
            Norm::Identity => h,
        };
        self.linear(&gelu(&h)?, &format!("{prefix}.net.3"))
    }

    /// `BatchNorm1d` on (N, C). In train mode it normalises with the batch mean and biased variance and moves
    /// the running statistics towards the batch's (the variance unbiased), as PyTorch does.
    fn batch_norm(&mut self, x: &Tensor, prefix: &str, mode: Mode) -> Result<Tensor> {
        let (mean_key, var_key) = (format!("{prefix}.running_mean"), format!("{prefix}.running_var"));
        let (gamma, beta) = (self.p(&format!("{prefix}.weight"))?, self.p(&format!("{prefix}.bias"))?);
        let normalised = match mode {
            Mode::Eval => {
                let mean = self.buffers.get(&mean_key).ok_or_else(|| missing(&mean_key))?;
                let var = self.buffers.get(&var_key).ok_or_else(|| missing(&var_key))?;
                x.broadcast_sub(mean)?.broadcast_div(&(var + BN_EPS)?.sqrt()?)?
            }
            Mode::Train => {
                let n = x.dim(0)?;
                if n < 2 {
                    return Err(Error::invalid_input(
                        "batch",
                        format!("BatchNorm in train mode needs more than one row per channel, got {n}"),
                    ));
                }
                let mean = x.mean_keepdim(0)?;
                let centred = x.broadcast_sub(&mean)?;
                let var = centred.sqr()?.mean_keepdim(0)?;
                let normalised = centred.broadcast_div(&(&var + BN_EPS)?.sqrt()?)?;
                let unbiased = (var.detach() * (n as f64 / (n as f64 - 1.0)))?.squeeze(0)?;
                for (key, stat) in [(&mean_key, mean.detach().squeeze(0)?), (&var_key, unbiased)] {
                    let running = self.buffers.get_mut(key).ok_or_else(|| missing(key))?;
                    *running = ((&*running * (1.0 - BN_MOMENTUM))? + (stat * BN_MOMENTUM)?)?;
                }
                if let Some(count) = self.counters.get_mut(&format!("{prefix}.num_batches_tracked")) {
                    *count += 1;
                }
                normalised
            }
        };
        Ok(normalised.broadcast_mul(&gamma)?.broadcast_add(&beta)?)
    }

    /// upstream's `Embedder`: a kernel-1 Conv1d over time, then `Linear -> SiLU -> Linear`.
    fn embed_actions(&self, actions: &Tensor) -> Result<Tensor> {
        let conv = self.p("action_encoder.patch_embed.weight")?.squeeze(2)?;
        let x = linear(actions, &conv, Some(&self.p("action_encoder.patch_embed.bias")?))?;
        let x = candle_nn::ops::silu(&self.linear(&x, "action_encoder.embed.0")?)?;
        self.linear(&x, "action_encoder.embed.2")
    }

    /// upstream's `Predictor` (AdaLN-zero conditional transformer, causal attention).
    fn predictor(&self, emb: &Tensor, act_emb: &Tensor, mode: Mode) -> Result<Tensor> {
        let cfg = &self.config.predictor;
        let (b, t, _) = emb.dims3()?;
        if t == 0 || t > cfg.num_frames {
            return Err(Error::invalid_input(
                "emb",
                format!("a predictor window of {t} frames; the model takes 1..={}", cfg.num_frames),
            ));
        }
        let tf = "predictor.transformer";
        let x = emb.broadcast_add(&self.p("predictor.pos_embedding")?.narrow(1, 0, t)?)?;
        let x = match mode {
            Mode::Train if self.emb_dropout > 0.0 => candle_nn::ops::dropout(&x, self.emb_dropout as f32)?,
            _ => x,
        };
        let projected = cfg.input_dim != cfg.hidden_dim;
        let (mut x, c) = if projected {
            (self.linear(&x, &format!("{tf}.input_proj"))?, self.linear(act_emb, &format!("{tf}.cond_proj"))?)
        } else {
            (x, act_emb.clone())
        };
        let mask = causal_mask(t, &self.device)?;
        let (heads, dh) = (cfg.heads, cfg.dim_head);
        let inner = cfg.inner();
        let c = candle_nn::ops::silu(&c)?;
        // The parameter-free norms as affine ones with constant γ = 1, β = 0 (one fused op on the device).
        let (ones, zeros) = (
            Tensor::ones(cfg.hidden_dim, DType::F32, &self.device)?,
            Tensor::zeros(cfg.hidden_dim, DType::F32, &self.device)?,
        );
        let plain_norm = |x: &Tensor| affine_layer_norm(x, &ones, &zeros, BLOCK_NORM_EPS);
        for j in 0..cfg.depth {
            let l = format!("{tf}.layers.{j}");
            let m = self.linear(&c, &format!("{l}.adaLN_modulation.1"))?.chunk(6, D::Minus1)?;
            // modulate(norm(x), shift, scale) = norm(x)·(1 + scale) + shift
            let modulate = |x: &Tensor, shift: &Tensor, scale: &Tensor| -> Result<Tensor> {
                Ok((plain_norm(x)?.mul(&(scale + 1.0)?)? + shift)?)
            };
            // Attention: LayerNorm -> QKV (no bias) -> causal softmax(QKᵀ/√dh) V -> out projection.
            let u = self.layer_norm(&modulate(&x, &m[0], &m[1])?, &format!("{l}.attn.norm"), LN_EPS)?;
            let qkv = linear(&u, &self.p(&format!("{l}.attn.to_qkv.weight"))?, None)?;
            let split = |i: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(D::Minus1, i * inner, inner)?
                    .reshape((b, t, heads, dh))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = (q * (1.0 / (dh as f64).sqrt()))?.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let probs = self.dropout(&softmax(&scores)?, mode)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, inner))?;
            let attn = if self.config.predictor_has_out_proj() {
                self.dropout(&self.linear(&ctx, &format!("{l}.attn.to_out.0"))?, mode)?
            } else {
                ctx
            };
            x = (&x + m[2].mul(&attn)?)?;
            // Feed-forward: LayerNorm -> Linear -> GELU -> dropout -> Linear -> dropout.
            let u = self.layer_norm(&modulate(&x, &m[3], &m[4])?, &format!("{l}.mlp.net.0"), LN_EPS)?;
            let h = self.dropout(&gelu(&self.linear(&u, &format!("{l}.mlp.net.1"))?)?, mode)?;
            let y = self.dropout(&self.linear(&h, &format!("{l}.mlp.net.4"))?, mode)?;
            x = (&x + m[5].mul(&y)?)?;
        }
        let x = self.layer_norm(&x, &format!("{tf}.norm"), LN_EPS)?;
        if cfg.hidden_dim != cfg.output() {
            self.linear(&x, &format!("{tf}.output_proj"))
        } else {
            Ok(x)
        }
    }
}

/// `x Wᵀ + b` over the last dim of a tensor of any rank.
pub(super) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    if x.device().is_cuda() {
        let zeros;
        let b = match b {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(w.dim(0)?, DType::F32, x.device())?;
                &zeros
            }
        };
        return Ok(crate::ops::train::linear(x, w, b)?);
    }
    let dims = x.dims().to_vec();
    let (rows, k) = (dims[..dims.len() - 1].iter().product::<usize>(), dims[dims.len() - 1]);
    let y = x.reshape((rows, k))?.matmul(&w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    Ok(y.reshape(out)?)
}

// On the device the step runs swm's fused kernels with their fused backward (`ops::train`); on the host (the math
// tests only) the same functions composed from Candle's primitive ops.

/// LayerNorm over the last dim with affine γ, β (biased variance, as PyTorch).
pub(super) fn affine_layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cuda() {
        return Ok(crate::ops::train::layer_norm(x, gamma, beta, eps as f32)?);
    }
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(centred.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Softmax over the last dim.
pub(super) fn softmax(x: &Tensor) -> Result<Tensor> {
    Ok(if x.device().is_cuda() {
        crate::ops::train::softmax_last_dim(x)?
    } else {
        candle_nn::ops::softmax(x, D::Minus1)?
    })
}

/// Exact (erf) GELU.
pub(super) fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(if x.device().is_cuda() { crate::ops::train::gelu_erf(x)? } else { x.gelu_erf()? })
}

/// (T, T) additive causal mask: 0 on and below the diagonal, −∞ above.
fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
    Ok(Tensor::from_vec(values, (t, t), device)?)
}

/// Builds the model on any device (the host test of the math; the public constructor refuses the host).
#[cfg(test)]
pub(crate) fn on_any_device(config: &Config, weights: &StateDict, device: &Device) -> Result<TrainableLeWm> {
    TrainableLeWm::build(config, weights, device)
}
