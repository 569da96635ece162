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

/// The activation fused into a head Linear's GEMM epilogue.
#[derive(Clone, Copy)]
enum Act {
    None,
    Gelu,
    Silu,
}

/// `act(l(x))` through [`crate::ops::gemm::linear`], the bias and activation in the GEMM's epilogue.
fn apply(l: &Linear, x: &Tensor, act: Act) -> Result<Tensor> {
    use crate::ops::gemm::{linear, Epilogue};
    let b = l.bias().ok_or_else(|| candle_core::Error::Msg("head Linear without bias".into()))?;
    let epilogue = match act {
        Act::None => Epilogue::Bias(b),
        Act::Gelu => Epilogue::BiasGelu(b),
        Act::Silu => Epilogue::BiasSilu(b),
    };
    linear(x, l.weight(), epilogue).map_err(candle_core::Error::wrap)
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.norm {
            Some(norm) => norm.forward(&self.fc1.forward(x)?)?.gelu_erf()?,
            // BatchNorm folded (or none): the bias add and GELU are the GEMM's epilogue.
            None => apply(&self.fc1, &x.contiguous()?, Act::Gelu)?,
        };
        apply(&self.fc2, &h, Act::None)
    }
}

/// `Embedder`: a kernel-1 Conv1d over time (a per-step Linear) then `Linear -> SiLU -> Linear`. The Conv1d and the
/// first Linear are two affine maps in a row, folded into one at load time: `W = W₁·W_c`, `b = W₁·b_c + b₁`.
#[derive(Debug, Clone)]
pub struct ActionEncoder {
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
        let embed0 = vb.pp("embed.0");
        let (w1, b1) = (embed0.get((hidden, cfg.smoothed_dim), "weight")?, embed0.get(hidden, "bias")?);
        let folded_w = w1.matmul(&w)?;
        let folded_b = (w1.matmul(&b.unsqueeze(1)?)?.squeeze(1)? + b1)?;
        Ok(Self { fc1: Linear::new(folded_w, Some(folded_b)), fc2: linear(hidden, cfg.emb_dim, vb.pp("embed.2"))? })
    }
}

impl Module for ActionEncoder {
    /// (…, T, A_in) -> (…, T, Ea).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        apply(&self.fc2, &apply(&self.fc1, x, Act::Silu)?, Act::None)
    }
}
