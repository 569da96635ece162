//! TD-MPC2 as stable-worldmodel implements it (spec `docs/spec/tdmpc2.md`): per-modality encoders whose concatenation is
//! SimNorm-ed, an MLP latent dynamics, a two-hot reward head, a Gaussian actor and a Q ensemble. Parameter names
//! mirror upstream's `state_dict()`.
//!
//! - [`TdMpc2`] holds the weights on the GPU: `encode`, `next` (dynamics + reward), `pi_mean`, `q_values` and the
//!   planning objective [`TdMpc2::cost`] (`get_cost`, §6).
//! - [`TdMpc2Session`] caches the encoded observation and scores candidate batches `[batch, samples, horizon, A]`
//!   for the planners.

mod config;

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{layer_norm, linear, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};

pub use config::{Config, Encoding, WmConfig};

use crate::checkpoint::StateDict;
use crate::error::{Error, Result};
use crate::ops::gemm::{
    linear as gemm, linear_columns, linear_columns_unreduced, linear_heads_unreduced, linear_unreduced, Epilogue,
    Unreduced,
};
use crate::ops::tdmpc2::{self as ops, NormAct};

const LN_EPS: f64 = 1e-5;

/// `x · tanh(softplus(x))`.
fn mish(x: &Tensor) -> candle_core::Result<Tensor> {
    // softplus(x) = max(x, 0) + log(1 + e^{−|x|}), exact for large |x| in f32.
    let softplus = (x.relu()? + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    x * softplus.tanh()?
}

/// Softmax over consecutive groups of `group` values of the last dim.
fn simnorm(x: &Tensor, group: usize) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let last = *dims.last().unwrap_or(&0);
    let mut grouped = dims[..dims.len().saturating_sub(1)].to_vec();
    grouped.extend([last / group, group]);
    candle_nn::ops::softmax_last_dim(&x.reshape(grouped)?)?.reshape(dims)
}

/// What follows a `NormedLinear`'s LayerNorm.
#[derive(Debug, Clone, Copy)]
enum Act {
    Mish,
    SimNorm(usize),
}

/// `act(LN(x·Wᵀ + b))` (dropout is training-only).
#[derive(Debug, Clone)]
struct NormedLinear {
    linear: Linear,
    ln: LayerNorm,
    act: Act,
}

impl NormedLinear {
    fn load(inp: usize, out: usize, act: Act, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self { linear: linear(inp, out, vb.clone())?, ln: layer_norm(out, LN_EPS, vb.pp("ln"))?, act })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(beta), [_, _]) = (self.fused_norm(), x.dims()) {
            // The GEMM's split-K partial sums and bias are added by the LayerNorm kernel as it reads them.
            let y = linear_unreduced(&x.contiguous()?, self.linear.weight(), self.bias()?, 1)?;
            return Ok(ops::norm_act_unreduced(&y, self.ln.weight(), beta, LN_EPS as f32, self.kernel_act())?);
        }
        let y = gemm(&x.contiguous()?, self.linear.weight(), Epilogue::Bias(self.bias()?))?;
        self.norm_act(y)
    }

    /// This layer on column block `from..` of a wider activation (see [`linear_columns`]).
    fn forward_columns(&self, x: &Tensor, from: usize) -> Result<Tensor> {
        if let Some(beta) = self.fused_norm() {
            let y = linear_columns_unreduced(x, from, self.linear.weight(), self.bias()?)?;
            return Ok(ops::norm_act_unreduced(&y, self.ln.weight(), beta, LN_EPS as f32, self.kernel_act())?);
        }
        self.norm_act(linear_columns(x, from, self.linear.weight(), Epilogue::Bias(self.bias()?))?)
    }

    /// [`NormedLinear::forward_columns`] written into the first columns of `out`'s rows (the next step's input);
    /// false, with nothing written, where the fused LayerNorm kernel does not take this layer.
    fn forward_columns_into(&self, x: &Tensor, from: usize, out: &Tensor) -> Result<bool> {
        let Some(beta) = self.fused_norm() else { return Ok(false) };
        let y = linear_columns_unreduced(x, from, self.linear.weight(), self.bias()?)?;
        ops::norm_act_unreduced_into(&y, self.ln.weight(), beta, LN_EPS as f32, self.kernel_act(), out)?;
        Ok(true)
    }

    /// The LayerNorm's β when the fused LayerNorm + activation kernel takes this layer's width.
    fn fused_norm(&self) -> Option<&Tensor> {
        let width = self.linear.weight().dim(0).ok()?;
        ops::supports(width, self.kernel_act()).then(|| self.ln.bias()).flatten()
    }

    fn kernel_act(&self) -> NormAct {
        match self.act {
            Act::Mish => NormAct::Mish,
            Act::SimNorm(v) => NormAct::SimNorm(v),
        }
    }

    fn bias(&self) -> Result<&Tensor> {
        self.linear.bias().ok_or_else(|| Error::invalid_input("tdmpc2", "Linear without bias"))
    }

    /// The LayerNorm and activation of the linear's output `y`.
    fn norm_act(&self, y: Tensor) -> Result<Tensor> {
        let act = self.kernel_act();
        let (rows, width) = (y.elem_count() / y.dim(D::Minus1)?, y.dim(D::Minus1)?);
        if let Some(beta) = self.fused_norm() {
            // LayerNorm and activation in one kernel.
            let out = ops::norm_act(&y.reshape((rows, width))?, self.ln.weight(), beta, LN_EPS as f32, act)?;
            return Ok(out.reshape(y.dims())?);
        }
        let y = self.ln.forward(&y)?;
        Ok(match self.act {
            Act::Mish => mish(&y)?,
            Act::SimNorm(v) => simnorm(&y, v)?,
        })
    }
}

/// Upstream `mlp(in, m, out, act)`: two Mish NormedLinears, then a NormedLinear with `act` or a plain Linear.
#[derive(Debug, Clone)]
struct Mlp {
    l0: NormedLinear,
    l1: NormedLinear,
    last: Last,
}

#[derive(Debug, Clone)]
enum Last {
    Normed(NormedLinear),
    Plain(Linear),
}

impl Mlp {
    fn load(inp: usize, m: usize, out: usize, last_act: Option<Act>, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            l0: NormedLinear::load(inp, m, Act::Mish, vb.pp("0"))?,
            l1: NormedLinear::load(m, m, Act::Mish, vb.pp("1"))?,
            last: match last_act {
                Some(act) => Last::Normed(NormedLinear::load(m, out, act, vb.pp("2"))?),
                None => Last::Plain(linear(m, out, vb.pp("2"))?),
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.l1.forward(&self.l0.forward(x)?)?;
        match &self.last {
            Last::Normed(l) => l.forward(&h),
            Last::Plain(l) => {
                let bias = l.bias().ok_or_else(|| Error::invalid_input("tdmpc2", "Linear without bias"))?;
                Ok(gemm(&h, l.weight(), Epilogue::Bias(bias))?)
            }
        }
    }
}

/// Layers of several MLPs computed together: `heads` NormedLinears (Mish) whose weights sit side by side,
/// (heads·out, in) for a shared input (one GEMM) or stacked (heads, out, in) for inputs that are the column blocks
/// of one activation (one batched GEMM); bias and LayerNorm γ, β of heads·out.
#[derive(Debug, Clone)]
struct HeadsLayer {
    weight: Tensor,
    bias: Tensor,
    gamma: Tensor,
    beta: Tensor,
    heads: usize,
    shared_input: bool,
}

impl HeadsLayer {
    /// `layers` (Mish NormedLinears of one width) together; None when a LayerNorm has no bias. A shared input's
    /// weight gets `pad` zero columns (an input row padded to a multiple of 4 floats: the GEMM's 16-byte copies).
    fn new(layers: &[&NormedLinear], shared_input: bool, pad: usize) -> Result<Option<Self>> {
        let mut parts: [Vec<Tensor>; 4] = Default::default();
        for l in layers {
            let Some(beta) = l.ln.bias() else { return Ok(None) };
            parts[0].push(l.linear.weight().clone());
            parts[1].push(l.bias()?.clone());
            parts[2].push(l.ln.weight().clone());
            parts[3].push(beta.clone());
        }
        let weight = if shared_input { Tensor::cat(&parts[0], 0)? } else { Tensor::stack(&parts[0], 0)? };
        let weight = match (shared_input, pad) {
            (true, 1..) => {
                let zeros = Tensor::zeros((weight.dim(0)?, pad), weight.dtype(), weight.device())?;
                Tensor::cat(&[&weight, &zeros], 1)?
            }
            _ => weight,
        };
        let [_, bias, gamma, beta] = parts.map(|p| Tensor::cat(&p, 0));
        Ok(Some(Self { weight, bias: bias?, gamma: gamma?, beta: beta?, heads: layers.len(), shared_input }))
    }

    /// (N, in) for a shared input, (N, heads·in) otherwise → (N, heads·out). The GEMM's split-K partial sums and
    /// bias are added by the LayerNorm kernel as it reads them.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if self.shared_input {
            linear_unreduced(x, &self.weight, &self.bias, self.heads)?
        } else {
            linear_heads_unreduced(x, &self.weight, &self.bias)?
        };
        Ok(ops::norm_act_unreduced(&y, &self.gamma, &self.beta, LN_EPS as f32, NormAct::Mish)?)
    }
}

/// The planning hot path's layout of the same weights, built at load when the fused kernels take the model's
/// widths: the reward and dynamics MLPs' hidden layers side by side (their first layers share the input (z, a)),
/// and the Q ensemble as one batched MLP. A horizon step is then 4 GEMMs instead of 6 and the ensemble 3 instead
/// of 3·Q, each with more blocks in flight, and the Q values reduce to the cost in one kernel.
#[derive(Debug, Clone)]
struct Fused {
    /// Latent and action columns of a step input (z, a, zero padding).
    latent: usize,
    actions: usize,
    /// Zero columns that round a step input up to a multiple of 4 floats (the GEMM's 16-byte copies).
    pad: usize,
    /// reward.0 | dynamics.0 on (z, a).
    rd0: HeadsLayer,
    /// reward.1, dynamics.1 on their blocks of `rd0`'s output.
    rd1: HeadsLayer,
    /// qs.*.0 on (z, a).
    q0: HeadsLayer,
    /// qs.*.1.
    q1: HeadsLayer,
    /// qs.*.2 stacked (Q, NB, m) and its bias (Q·NB).
    q2: (Tensor, Tensor),
}

impl Fused {
    fn new(dynamics: &Mlp, reward: &Mlp, qs: &[Mlp], config: &Config) -> Result<Option<Self>> {
        let (m, nb) = (config.wm.mlp_dim, config.wm.num_bins);
        let fits = ops::supports(m, NormAct::Mish) && nb <= ops::MAX_WIDTH && (2..=ops::MAX_HEADS).contains(&qs.len());
        let Last::Plain(_) = &reward.last else { return Ok(None) };
        if !fits || qs.iter().any(|q| !matches!(q.last, Last::Plain(_))) {
            return Ok(None);
        }
        let (latent, actions) = (config.latent_dim(), config.action_dim);
        let pad = (latent + actions).next_multiple_of(4) - (latent + actions);
        let q0: Vec<&NormedLinear> = qs.iter().map(|q| &q.l0).collect();
        let q1: Vec<&NormedLinear> = qs.iter().map(|q| &q.l1).collect();
        let (Some(rd0), Some(rd1), Some(q0), Some(q1)) = (
            HeadsLayer::new(&[&reward.l0, &dynamics.l0], true, pad)?,
            HeadsLayer::new(&[&reward.l1, &dynamics.l1], false, 0)?,
            HeadsLayer::new(&q0, true, pad)?,
            HeadsLayer::new(&q1, false, 0)?,
        ) else {
            return Ok(None);
        };
        let mut weights = Vec::with_capacity(qs.len());
        let mut biases = Vec::with_capacity(qs.len());
        for q in qs {
            if let Last::Plain(l) = &q.last {
                weights.push(l.weight().clone());
                biases.push(l.bias().ok_or_else(|| Error::invalid_input("tdmpc2", "Linear without bias"))?.clone());
            }
        }
        let q2 = (Tensor::stack(&weights, 0)?, Tensor::cat(&biases, 0)?);
        Ok(Some(Self { latent, actions, pad, rd0, rd1, q0, q1, q2 }))
    }

    /// Columns of a step input.
    fn width(&self) -> usize {
        self.latent + self.actions + self.pad
    }

    /// A step input (N, width) from z (N, Z) and a (N, A): (z, a) and the zero padding, in one launch.
    fn input(&self, z: &Tensor, a: &Tensor) -> Result<Tensor> {
        if z.dim(1)? != self.latent || a.dims() != [z.dim(0)?, self.actions] {
            return Err(Error::invalid_input(
                "z, a",
                format!(
                    "{:?} and {:?}: expected (N, {}) latents and (N, {}) actions",
                    z.dims(),
                    a.dims(),
                    self.latent,
                    self.actions
                ),
            ));
        }
        Ok(ops::concat_rows(&z.contiguous()?, 1, &a.unsqueeze(1)?.contiguous()?, 0, self.width())?)
    }

    /// The reward and dynamics MLPs' last hidden activations on a step input: (N, 2m), reward's block first.
    fn rd_hidden(&self, za: &Tensor) -> Result<Tensor> {
        self.rd1.forward(&self.rd0.forward(za)?)
    }

    /// Every Q head's logits on a step input: (N, Q·NB), head h in column block h.
    fn q_logits(&self, za: &Tensor) -> Result<Tensor> {
        Ok(self.q_logits_unreduced(za)?.reduce()?)
    }

    /// [`Fused::q_logits`] left as the last GEMM's partial sums and bias, for the kernel that reduces the heads
    /// to the cost.
    fn q_logits_unreduced(&self, za: &Tensor) -> Result<Unreduced> {
        let h = self.q1.forward(&self.q0.forward(za)?)?;
        Ok(linear_heads_unreduced(&h, &self.q2.0, &self.q2.1)?)
    }
}

/// A non-pixel modality's encoder: `NormedLinear(in, e) → Linear(e, out) → LayerNorm`.
#[derive(Debug, Clone)]
struct ExtraEncoder {
    name: String,
    input: usize,
    l0: NormedLinear,
    l1: Linear,
    ln: LayerNorm,
}

/// The pixel encoder: four Mish convolutions (no padding), flatten (C, H, W), Linear.
#[derive(Debug, Clone)]
struct PixelEncoder {
    convs: Vec<Conv2d>,
    linear: Linear,
    side: usize,
}

impl PixelEncoder {
    fn load(cfg: &Config, width: usize, side_out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let cnn = vb.pp("cnn");
        let specs = [(3, 7, 2), (32, 5, 2), (32, 3, 2), (32, 3, 1)];
        let convs = specs
            .iter()
            .enumerate()
            .map(|(i, &(cin, k, stride))| {
                let c = Conv2dConfig { stride, ..Default::default() };
                candle_nn::conv2d(cin, 32, k, c, cnn.pp((2 * i).to_string()))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let side = cfg.image_size.unwrap_or(0);
        Ok(Self { convs, linear: linear(32 * side_out * side_out, width, vb.pp("pixel_encoder"))?, side })
    }

    /// (N, 3, S, S) ImageNet-normalised pixels → (N, Pd).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for conv in &self.convs {
            h = mish(&conv.forward(&h)?)?;
        }
        let h = h.flatten_from(1)?;
        let bias = self.linear.bias().ok_or_else(|| Error::invalid_input("tdmpc2", "Linear without bias"))?;
        Ok(gemm(&h.contiguous()?, self.linear.weight(), Epilogue::Bias(bias))?)
    }
}

/// The TD-MPC2 model on a CUDA device (f32).
#[derive(Debug, Clone)]
pub struct TdMpc2 {
    config: Config,
    pixels: Option<PixelEncoder>,
    extras: Vec<ExtraEncoder>,
    dynamics: Mlp,
    reward: Mlp,
    pi: Mlp,
    qs: Vec<Mlp>,
    /// `linspace(vmin, vmax, num_bins)` (f32, like upstream's default-dtype bins).
    bins: Tensor,
    /// The same weights laid out for the fused hot path; None: every layer on its own.
    fused: Option<Arc<Fused>>,
    device: Device,
}

/// One observation modality: its name in `wm.encoding` and a (batch, …) tensor.
pub type Observation<'a> = (&'a str, &'a Tensor);

impl TdMpc2 {
    /// Builds the model from a `VarBuilder` rooted at the state-dict root.
    pub fn load(config: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        config.validate().map_err(candle_core::Error::wrap)?;
        let (a, m, nb, z) = (config.action_dim, config.wm.mlp_dim, config.wm.num_bins, config.latent_dim());
        let pixels = match (config.wm.encoding.pixels(), config.cnn_side()) {
            (Some(width), Some(side)) => Some(PixelEncoder::load(config, width, side, vb.clone())?),
            _ => None,
        };
        let extras = config
            .wm
            .encoding
            .extras()
            .map(|(name, out)| {
                let input = config.extra_dims.get(name).copied().unwrap_or(0);
                let e = config.wm.enc_dim;
                let vb = vb.pp(format!("extra_encoders.{name}"));
                Ok(ExtraEncoder {
                    name: name.to_string(),
                    input,
                    l0: NormedLinear::load(input, e, Act::Mish, vb.pp("0"))?,
                    l1: linear(e, out, vb.pp("1"))?,
                    ln: layer_norm(out, LN_EPS, vb.pp("2"))?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = config.wm.simnorm_dim;
        // torch.linspace in f32: from the start for the first half, from the end for the second.
        let (lo, hi) = (config.wm.vmin as f32, config.wm.vmax as f32);
        let step = (hi - lo) / (nb - 1) as f32;
        let bins: Vec<f32> =
            (0..nb).map(|i| if i < nb / 2 { lo + step * i as f32 } else { hi - step * (nb - 1 - i) as f32 }).collect();
        let dynamics = Mlp::load(z + a, m, z, Some(Act::SimNorm(v)), vb.pp("dynamics"))?;
        let reward = Mlp::load(z + a, m, nb, None, vb.pp("reward"))?;
        let qs = (0..config.wm.num_q)
            .map(|i| Mlp::load(z + a, m, nb, None, vb.pp(format!("qs.{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let fused = match vb.device() {
            Device::Cuda(_) => Fused::new(&dynamics, &reward, &qs, config).map_err(candle_core::Error::wrap)?,
            _ => None,
        };
        Ok(Self {
            pixels,
            extras,
            dynamics,
            reward,
            pi: Mlp::load(z, m, 2 * a, None, vb.pp("pi"))?,
            qs,
            bins: Tensor::from_vec(bins, nb, vb.device())?,
            fused: fused.map(Arc::new),
            device: vb.device().clone(),
            config: config.clone(),
        })
    }

    /// The same model with every layer run on its own (the composed path the fused one is tested against; also
    /// what models whose widths the fused kernels do not take run).
    pub fn without_fusion(&self) -> Self {
        Self { fused: None, ..self.clone() }
    }

    /// Whether the fused hot path is in use (see [`TdMpc2::without_fusion`]).
    pub fn is_fused(&self) -> bool {
        self.fused.is_some()
    }

    /// Validates `weights` against the config's parameter table (strict, like upstream's load), uploads them to
    /// `device` and builds the model. Errors name the missing or misshaped tensor.
    pub fn from_state_dict(config: &Config, weights: &StateDict, device: &Device) -> Result<Self> {
        config.validate()?;
        weights.validate(&config.parameter_table()?)?;
        let vb = weights.to_var_builder(DType::F32, device)?;
        Ok(Self::load(config, vb)?)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Action dim A.
    pub fn action_dim(&self) -> usize {
        self.config.action_dim
    }

    /// Whether observations go through the pixel encoder (cuDNN convolutions, whose handles Candle keeps per
    /// calling thread).
    pub fn has_pixel_encoder(&self) -> bool {
        self.pixels.is_some()
    }

    /// The CUDA device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Latent width Z.
    pub fn latent_dim(&self) -> usize {
        self.config.latent_dim()
    }

    /// `encode`: one (N, …) tensor per encoded modality → (N, Z). Pixels are (N, 3, S, S) or (N, S, S, 3),
    /// ImageNet-normalised; other modalities (N, extra_dims[key]).
    pub fn encode(&self, observations: &[Observation<'_>]) -> Result<Tensor> {
        let find = |name: &str| {
            observations.iter().find(|(k, _)| *k == name).map(|(_, t)| *t).ok_or_else(|| {
                Error::invalid_input("observation", format!("the model encodes `{name}`, which was not given"))
            })
        };
        let mut parts = Vec::with_capacity(self.extras.len() + 1);
        let mut rows = None;
        if let Some(enc) = &self.pixels {
            let x = find("pixels")?.to_dtype(DType::F32)?;
            let x = match x.dims() {
                [_, s1, s2, 3] if *s1 == enc.side && *s2 == enc.side => x.permute((0, 3, 1, 2))?.contiguous()?,
                [_, 3, s1, s2] if *s1 == enc.side && *s2 == enc.side => x,
                d => {
                    return Err(Error::invalid_input(
                        "pixels",
                        format!("expected (N, 3, {0}, {0}) or (N, {0}, {0}, 3), got {d:?}", enc.side),
                    ))
                }
            };
            rows = Some(x.dim(0)?);
            parts.push(enc.forward(&x)?);
        }
        for enc in &self.extras {
            let x = find(&enc.name)?.to_dtype(DType::F32)?;
            let (n, d) = x.dims2().map_err(|_| {
                Error::invalid_input(enc.name.clone(), format!("expected (N, {}), got {:?}", enc.input, x.dims()))
            })?;
            if d != enc.input || rows.is_some_and(|r| r != n) {
                return Err(Error::invalid_input(
                    enc.name.clone(),
                    format!("expected ({}, {}), got {:?}", rows.unwrap_or(n), enc.input, x.dims()),
                ));
            }
            rows = Some(n);
            let h = enc.l0.forward(&x)?;
            let bias = enc.l1.bias().ok_or_else(|| Error::invalid_input("tdmpc2", "Linear without bias"))?;
            parts.push(enc.ln.forward(&gemm(&h, enc.l1.weight(), Epilogue::Bias(bias))?)?);
        }
        Ok(simnorm(&Tensor::cat(&parts, D::Minus1)?, self.config.wm.simnorm_dim)?)
    }

    /// `two_hot_inv`: symexp of the softmax-weighted mean bin, (N, NB) → (N, 1).
    fn two_hot_inv(&self, logits: &Tensor) -> Result<Tensor> {
        if logits.dim(D::Minus1)? <= ops::MAX_WIDTH {
            let nb = logits.dim(D::Minus1)?;
            let mut dims = logits.dims().to_vec();
            let rows = logits.elem_count() / nb;
            if let Some(last) = dims.last_mut() {
                *last = 1;
            }
            return Ok(ops::two_hot_inv(&logits.contiguous()?.reshape((rows, nb))?, &self.bins)?.reshape(dims)?);
        }
        let probs = candle_nn::ops::softmax_last_dim(logits)?;
        let v = probs.broadcast_mul(&self.bins)?.sum_keepdim(D::Minus1)?;
        // symexp(v) = sign(v)·(e^{|v|} − 1)
        Ok((v.sign()? * v.abs()?.exp()?.affine(1.0, -1.0)?)?)
    }

    /// One model step from latent `z` (N, Z) with action `a` (N, A): (next latent, reward (N, 1)).
    pub fn next(&self, z: &Tensor, a: &Tensor) -> Result<(Tensor, Tensor)> {
        if let Some(f) = &self.fused {
            let h = f.rd_hidden(&f.input(z, a)?)?;
            let (reward_logits, next) = self.rd_heads(&h)?;
            return Ok((next, self.two_hot_inv(&reward_logits.reduce()?)?));
        }
        let za = Tensor::cat(&[z, a], D::Minus1)?;
        let reward = self.two_hot_inv(&self.reward.forward(&za)?)?;
        Ok((self.dynamics.forward(&za)?, reward))
    }

    /// The next latent only (the dynamics MLP; no reward): the actor proposal's rollouts.
    pub fn next_latent(&self, z: &Tensor, a: &Tensor) -> Result<Tensor> {
        self.dynamics.forward(&Tensor::cat(&[z, a], D::Minus1)?)
    }

    /// The reward logits (N, NB) and the next latent (N, Z) from the fused hidden activations (N, 2m).
    fn rd_heads(&self, h: &Tensor) -> Result<(Unreduced, Tensor)> {
        let m = self.config.wm.mlp_dim;
        let (Last::Plain(reward), Last::Normed(dynamics)) = (&self.reward.last, &self.dynamics.last) else {
            return Err(Error::Internal("the fused TD-MPC2 path without its last layers".into()));
        };
        let bias = reward.bias().ok_or_else(|| Error::invalid_input("tdmpc2", "Linear without bias"))?;
        let logits = linear_columns_unreduced(h, 0, reward.weight(), bias)?;
        Ok((logits, dynamics.forward_columns(h, m)?))
    }

    /// [`TdMpc2::rd_heads`] with the next latent written into the first columns of `next_input` (the next step's
    /// input, see [`ops::step_inputs`]); None where the dynamics' last layer cannot be written so (then the caller
    /// runs `rd_heads`).
    fn rd_heads_into(&self, h: &Tensor, next_input: &Tensor) -> Result<Option<Unreduced>> {
        let m = self.config.wm.mlp_dim;
        let (Last::Plain(reward), Last::Normed(dynamics)) = (&self.reward.last, &self.dynamics.last) else {
            return Err(Error::Internal("the fused TD-MPC2 path without its last layers".into()));
        };
        let bias = reward.bias().ok_or_else(|| Error::invalid_input("tdmpc2", "Linear without bias"))?;
        if !dynamics.forward_columns_into(h, m, next_input)? {
            return Ok(None);
        }
        Ok(Some(linear_columns_unreduced(h, 0, reward.weight(), bias)?))
    }

    /// The actor's mean action `tanh(μ(z))`, (N, A).
    pub fn pi_mean(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.pi.forward(z)?.narrow(D::Minus1, 0, self.action_dim())?.tanh()?)
    }

    /// An actor sample `tanh(μ + exp(log σ)·ε)` for standard-normal noise ε (N, A), with
    /// `log σ = −10 + 6·(tanh(ρ) + 1)` (docs/spec/tdmpc2.md §2, §5), (N, A).
    pub fn pi_sample(&self, z: &Tensor, eps: &Tensor) -> Result<Tensor> {
        let a = self.action_dim();
        let out = self.pi.forward(z)?;
        let (mu, rho) = (out.narrow(D::Minus1, 0, a)?, out.narrow(D::Minus1, a, a)?);
        let log_std = rho.tanh()?.affine(6.0, -4.0)?;
        Ok((mu + log_std.exp()?.mul(eps)?)?.tanh()?)
    }

    /// Every Q head's value at (z, a): (num_q, N, 1).
    pub fn q_values(&self, z: &Tensor, a: &Tensor) -> Result<Tensor> {
        if let Some(f) = &self.fused {
            let (n, q, nb) = (z.dim(0)?, self.qs.len(), self.config.wm.num_bins);
            let values = self.two_hot_inv(&f.q_logits(&f.input(z, a)?)?.reshape((n * q, nb))?)?;
            return Ok(values.reshape((n, q))?.t()?.contiguous()?.reshape((q, n, 1))?);
        }
        let za = Tensor::cat(&[z, a], D::Minus1)?;
        let qs = self.qs.iter().map(|q| self.two_hot_inv(&q.forward(&za)?)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&qs, 0)?)
    }

    /// The planning cost (`get_cost`, §6) of candidates (N, H, A) from latents `z` (N, Z): minus the discounted
    /// predicted rewards plus γ^H times the conservative terminal value `q̄ − c·|q̄|·σ_q` (σ with Bessel's
    /// correction) at the actor's mean action. Returns (N,).
    pub fn cost(&self, z: &Tensor, candidates: &Tensor) -> Result<Tensor> {
        self.cost_repeated(z, 1, candidates)
    }

    /// [`TdMpc2::cost`] with each latent of `z` (N / repeat, Z) standing for `repeat` consecutive candidates (an
    /// env's latent for all its samples), without copying it out per candidate.
    pub fn cost_repeated(&self, z: &Tensor, repeat: usize, candidates: &Tensor) -> Result<Tensor> {
        let (n, h, a) = candidates.dims3()?;
        let shaped = repeat > 0 && n % repeat == 0 && z.dims() == [n / repeat, self.latent_dim()];
        if a != self.action_dim() || !shaped {
            return Err(Error::invalid_input(
                "candidates",
                format!(
                    "{:?} with latents {:?} for {repeat} candidates each: expected (N, H, {}) and (N / {repeat}, {})",
                    candidates.dims(),
                    z.dims(),
                    self.action_dim(),
                    self.latent_dim()
                ),
            ));
        }
        let gamma = self.config.wm.discount as f32;
        let mut ret = Tensor::zeros((n, 1), DType::F32, &self.device)?;
        let mut discount = 1.0f32;
        if let (Some(f), true) = (&self.fused, h > 0) {
            // Every step's input (z, a_t) is written by one launch that reads the actions in place, except the
            // latent of steps after the first, which the dynamics' LayerNorm kernel writes there as it computes it.
            // `ret` and the inputs are this function's own buffers: the kernels write into them in place.
            let candidates = candidates.contiguous()?;
            let width = f.width();
            let inputs = ops::step_inputs(&z.contiguous()?, repeat, &candidates, width)?;
            let mut z = z.clone();
            for t in 0..h {
                let hidden = f.rd_hidden(&inputs.get(t)?)?;
                let into = if t + 1 < h { self.rd_heads_into(&hidden, &inputs.get(t + 1)?)? } else { None };
                let reward_logits = match into {
                    Some(logits) => logits,
                    None => {
                        let (logits, next) = self.rd_heads(&hidden)?;
                        if t + 1 < h {
                            inputs.get(t + 1)?.slice_set(&next, 1, 0)?;
                        }
                        z = next;
                        logits
                    }
                };
                ops::two_hot_accumulate_unreduced(&reward_logits, &self.bins, &ret, discount)?;
                discount *= gamma;
            }
            let za = ops::concat_rows(&z, 1, &self.pi_mean(&z)?.unsqueeze(1)?.contiguous()?, 0, width)?;
            let c = self.config.wm.uncertainty_penalty as f32;
            return Ok(ops::q_cost_unreduced(&f.q_logits_unreduced(&za)?, &self.bins, &ret, c, discount)?);
        }
        let mut z = match repeat {
            1 => z.clone(),
            r => z.unsqueeze(1)?.broadcast_as((n / r, r, z.dim(1)?))?.contiguous()?.reshape((n, ()))?,
        };
        for t in 0..h {
            let (next, reward) = self.next(&z, &candidates.narrow(1, t, 1)?.squeeze(1)?)?;
            ret = (ret + reward.affine(discount as f64, 0.0)?)?;
            discount *= gamma;
            z = next;
        }
        let q = self.q_values(&z, &self.pi_mean(&z)?)?;
        let mean = q.mean(0)?;
        let var = q.broadcast_sub(&mean)?.sqr()?.sum(0)?.affine(1.0 / (self.qs.len() - 1) as f64, 0.0)?;
        let c = self.config.wm.uncertainty_penalty;
        let conservative = (&mean - (mean.abs()? * var.sqrt()?)?.affine(c, 0.0)?)?;
        let ret = (ret + conservative.affine(discount as f64, 0.0)?)?;
        Ok(ret.neg()?.squeeze(1)?)
    }
}

/// How a [`TdMpc2Session`] proposes a planner's initial mean (upstream: `get_action` of the actor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActorPrior {
    /// Actor samples `tanh(μ + σ·ε)` rolled out through the dynamics and averaged over `num_pi_trajs`, as upstream
    /// does. ε is drawn on the device (the planners' Philox noise) from the session's seed, a new draw per plan; a
    /// new session with the same seed replays the same proposals.
    #[default]
    Sampled,
    /// The actor's mean `tanh(μ)` rolled out through the dynamics: deterministic.
    Mean,
    /// No proposal: zeros, as for models without a policy.
    Off,
}

/// The actor proposal of one (mean buffer, prefix length, session revision), captured as a CUDA graph that
/// draws its own noise (the draw counter lives on the device, so every replay draws anew).
#[derive(Debug)]
struct ProposalGraph {
    key: (u64, usize, u64),
    graph: crate::graph::CapturedGraph,
    /// The noise buffer the graph writes on every replay: it lives as long as the graph (freed with the capture,
    /// the replays wrote into whatever the memory pool handed out next — another engine's draw counter, in a GPU
    /// test that ran after others).
    _noise: Noise,
}

/// A planning session: the encoded observation of each env, scoring candidates with [`TdMpc2::cost`] and
/// proposing initial means with the actor.
#[derive(Debug)]
pub struct TdMpc2Session {
    model: Arc<TdMpc2>,
    latent: Option<Tensor>,
    revision: u64,
    prior: ActorPrior,
    seed: u64,
    /// Philox draw counter of the sampled prior (device i64 [2]), created with the first proposal.
    draws: Option<Tensor>,
    proposal: Option<ProposalGraph>,
}

impl TdMpc2Session {
    /// A session without an observation yet (actor prior: [`ActorPrior::Sampled`], seed 0).
    pub fn new(model: Arc<TdMpc2>) -> Self {
        let revision = crate::planning::next_revision();
        Self { model, latent: None, revision, prior: ActorPrior::default(), seed: 0, draws: None, proposal: None }
    }

    /// Sets the seed of the sampled actor prior (default 0).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets how initial means are proposed.
    pub fn with_prior(mut self, prior: ActorPrior) -> Self {
        self.prior = prior;
        self
    }

    /// The model.
    pub fn model(&self) -> &Arc<TdMpc2> {
        &self.model
    }

    /// Encodes the current observation, one row per env.
    pub fn set_observation(&mut self, observations: &[Observation<'_>]) -> Result<()> {
        let z = self.model.encode(observations)?;
        if self.latent.as_ref().is_some_and(|l| l.dims() != z.dims()) {
            self.revision = crate::planning::next_revision();
        }
        match &self.latent {
            // Same shape: written in place so that captured graphs keep reading it.
            Some(l) if l.dims() == z.dims() => l.slice_set(&z, 0, 0)?,
            _ => self.latent = Some(z),
        }
        Ok(())
    }

    /// The encoded observation (envs, Z).
    pub fn latent(&self) -> Option<&Tensor> {
        self.latent.as_ref()
    }
}

impl crate::planning::CandidateScorer for TdMpc2Session {
    fn score(&mut self, candidates: &Tensor) -> Result<Tensor> {
        let z = self.latent.as_ref().ok_or_else(|| Error::invalid_input("session", "no observation set"))?;
        let (b, s, h, a) = candidates.dims4()?;
        if b != z.dim(0)? {
            return Err(Error::invalid_input(
                "candidates",
                format!("{b} envs of candidates for {} encoded observations", z.dim(0)?),
            ));
        }
        let cost = self.model.cost_repeated(z, s, &candidates.reshape((b * s, h, a))?)?;
        Ok(cost.reshape((b, s))?)
    }

    fn revision(&self) -> u64 {
        self.revision
    }

    /// `get_action(info, horizon = H − from, prefix_actions = mean[:, ..from])` (docs/spec/tdmpc2.md §5.2): the latent is
    /// advanced through the given steps, then the actor proposes the rest (averaged over `num_pi_trajs` sampled
    /// rollouts). Noise draw and rollout are one CUDA graph per (mean buffer, `from`): a plan adds one launch.
    fn propose(&mut self, mean: &Tensor, from: usize) -> Result<()> {
        let (b, h, da) = mean.dims3()?;
        if self.prior == ActorPrior::Off || from >= h {
            return Ok(());
        }
        let z0 = self.latent.clone().ok_or_else(|| Error::invalid_input("session", "no observation set"))?;
        let a = self.model.action_dim();
        if da != a || z0.dim(0)? != b || !mean.is_contiguous() {
            return Err(Error::invalid_input(
                "mean",
                format!("{:?}: the actor proposes ({}, H, {a}) (action block 1)", mean.dims(), z0.dim(0)?),
            ));
        }
        let trajs = if self.prior == ActorPrior::Sampled { self.model.config().num_pi_trajs } else { 1 };
        let key = (crate::ops::launch::address(mean)?, from, self.revision);
        if self.proposal.as_ref().is_none_or(|p| p.key != key) {
            let draws = match &self.draws {
                Some(d) => d.clone(),
                None => Tensor::zeros(2, DType::I64, mean.device())?,
            };
            self.draws = Some(draws.clone());
            let noise = Noise {
                eps: Tensor::zeros((trajs, h - from, b, a), DType::F32, mean.device())?,
                seed: self.seed,
                draws,
            };
            if !crate::graph::may_capture() {
                // A thread that may not capture (graph::NoCapture): this plan's proposal runs eagerly.
                return propose_into(&self.model, self.prior, &z0, mean, from, &noise);
            }
            let (model, prior, mean_buf) = (self.model.clone(), self.prior, mean.clone());
            // The capture's eager warm-up draws noise too: the counter is put back after it, so that every
            // proposal — captured, replayed or eager — consumes one draw, and graph and eager runs plan alike.
            let before = noise.draws.copy()?;
            let graph = crate::graph::CapturedGraph::capture(mean.device(), || {
                propose_into(&model, prior, &z0, &mean_buf, from, &noise)
            })?;
            noise.draws.slice_set(&before, 0, 0)?;
            self.proposal = Some(ProposalGraph { key, graph, _noise: noise });
        }
        match &self.proposal {
            Some(p) => Ok(p.graph.launch()?),
            None => Ok(()),
        }
    }
}

/// The sampled prior's noise: a buffer (trajs, H − from, B, A) filled by the planners' Philox kernel with draw
/// `draws[0]` under `seed` (the kernel advances the counter).
#[derive(Debug)]
struct Noise {
    eps: Tensor,
    seed: u64,
    draws: Tensor,
}

/// The actor proposal written into `mean[:, from..]`: the latent advanced through `mean[:, ..from]`, then
/// `noise.eps.dim(0)` rollouts of the actor (sampled with fresh noise, or its mean) averaged.
fn propose_into(
    model: &TdMpc2,
    prior: ActorPrior,
    z0: &Tensor,
    mean: &Tensor,
    from: usize,
    noise: &Noise,
) -> Result<()> {
    let eps = &noise.eps;
    let (trajs, steps) = (eps.dim(0)?, eps.dim(1)?);
    if prior == ActorPrior::Sampled {
        let cuda = crate::ops::launch::cuda(eps.device())?;
        crate::ops::planner::normal_noise(cuda, eps, noise.seed, &noise.draws)?;
    }
    let mut z = z0.clone();
    for t in 0..from {
        z = model.next_latent(&z, &mean.narrow(1, t, 1)?.squeeze(1)?)?;
    }
    let mut sum: Option<Tensor> = None;
    for j in 0..trajs {
        let mut zt = z.clone();
        let mut actions = Vec::with_capacity(steps);
        for t in 0..steps {
            let action = match prior {
                ActorPrior::Sampled => model.pi_sample(&zt, &eps.get(j)?.get(t)?)?,
                _ => model.pi_mean(&zt)?,
            };
            zt = model.next_latent(&zt, &action)?;
            actions.push(action);
        }
        let rollout = Tensor::stack(&actions, 1)?;
        sum = Some(match sum {
            Some(s) => (s + rollout)?,
            None => rollout,
        });
    }
    if let Some(sum) = sum {
        mean.slice_set(&sum.affine(1.0 / trajs as f64, 0.0)?.contiguous()?, 1, from)?;
    }
    Ok(())
}
