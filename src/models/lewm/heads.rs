//! Small LeWM heads: the BatchNorm MLP (`projector`, `pred_proj`) and the action-block `Embedder`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};

use super::config::{ActionEncoderConfig, MlpConfig, Norm};

const BN_EPS: f64 = 1e-5;
const LN_EPS: f64 = 1e-5;

/// `Linear -> Norm -> GELU -> Linear`, applied to the last dim. In eval mode BatchNorm is an affine map, so it is
/// folded into the first Linear at load time: `W' = s·W`, `b' = s·(b − μ) + β` with `s = γ / sqrt(σ² + eps)`.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    norm: Option<LayerNorm>,
    fc2: Linear,
}

impl Mlp {
    /// Loads from `vb` rooted at the module (`projector.` or `pred_proj.`).
    pub fn load(cfg: &MlpConfig, vb: VarBuilder) -> Result<Self> {
        let hid = cfg.hidden_dim;
        let net0 = vb.pp("net.0");
        let w = net0.get((hid, cfg.input_dim), "weight")?;
        let b = net0.get(hid, "bias")?;
        let (fc1, norm) = match cfg.norm_fn {
            Norm::BatchNorm => {
                let bn = vb.pp("net.1");
                let gamma = bn.get(hid, "weight")?;
                let beta = bn.get(hid, "bias")?;
                let mean = bn.get(hid, "running_mean")?;
                let var = bn.get(hid, "running_var")?;
                let s = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
                let w = w.broadcast_mul(&s.unsqueeze(1)?)?;
                let b = ((b - mean)?.mul(&s)? + beta)?;
                (Linear::new(w, Some(b)), None)
            }
            Norm::LayerNorm => (Linear::new(w, Some(b)), Some(layer_norm(hid, LN_EPS, vb.pp("net.1"))?)),
            Norm::Identity => (Linear::new(w, Some(b)), None),
        };
        Ok(Self { fc1, norm, fc2: linear(hid, cfg.output(), vb.pp("net.3"))? })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.norm {
            Some(norm) => norm.forward(&self.fc1.forward(x)?)?.gelu_erf()?,
            // BatchNorm folded (or none): the bias add and GELU are one fused kernel.
            None => crate::ops::bias_act::linear_gelu(&self.fc1, &x.contiguous()?)?,
        };
        self.fc2.forward(&h)
    }
}

/// `Embedder`: a kernel-1 Conv1d over time (a per-step Linear) then `Linear -> SiLU -> Linear`.
#[derive(Debug, Clone)]
pub struct ActionEncoder {
    smooth: Linear,
    fc1: Linear,
    fc2: Linear,
}

impl ActionEncoder {
    /// Loads from `vb` rooted at `action_encoder.`.
    pub fn load(cfg: &ActionEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let conv = vb.pp("patch_embed");
        let w = conv.get((cfg.smoothed_dim, cfg.input_dim, 1), "weight")?.squeeze(2)?;
        let b = conv.get(cfg.smoothed_dim, "bias")?;
        let hidden = cfg.mlp_scale * cfg.emb_dim;
        Ok(Self {
            smooth: Linear::new(w, Some(b)),
            fc1: linear(cfg.smoothed_dim, hidden, vb.pp("embed.0"))?,
            fc2: linear(hidden, cfg.emb_dim, vb.pp("embed.2"))?,
        })
    }
}

impl Module for ActionEncoder {
    /// (…, T, A_in) -> (…, T, Ea).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.smooth.forward(x)?;
        self.fc2.forward(&candle_nn::ops::silu(&self.fc1.forward(&s)?)?)
    }
}
