//! The LeWM predictor: a causal transformer whose blocks are modulated per token by the action embedding through
//! AdaLN-zero (docs/spec/lewm.md §3.5). Parameter names follow `stable_worldmodel.wm.lewm.module.Predictor`.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};

use super::config::PredictorConfig;
use crate::ops::gemm::{linear as gemm, linear_partials, Epilogue, Unreduced};
use crate::ops::predictor::{
    adaln_double_norm, gate_residual, residual_norm, window_attention, AdaNorm, ModulationTable,
};

/// A modulated double norm whose affine LayerNorm is `norm`, with shift/scale at table columns `shift`, `scale`.
fn ada_norm(norm: &LayerNorm, shift: usize, scale: usize) -> crate::Result<AdaNorm<'_>> {
    let beta = norm.bias().ok_or_else(|| crate::Error::invalid_input("predictor", "LayerNorm without bias"))?;
    Ok(AdaNorm {
        shift,
        scale,
        gamma: norm.weight(),
        beta,
        eps_plain: BLOCK_NORM_EPS as f32,
        eps_affine: NORM_EPS as f32,
    })
}

const BLOCK_NORM_EPS: f64 = 1e-6;
const NORM_EPS: f64 = 1e-5;

#[derive(Debug, Clone)]
struct Attention {
    norm: LayerNorm,
    to_qkv: Linear,
    to_out: Option<Linear>,
    heads: usize,
    dim_head: usize,
}

impl Attention {
    fn load(cfg: &PredictorConfig, has_out: bool, vb: VarBuilder) -> Result<Self> {
        let (w, inner) = (cfg.hidden_dim, cfg.inner());
        Ok(Self {
            norm: layer_norm(w, NORM_EPS, vb.pp("norm"))?,
            to_qkv: {
                // The softmax scale 1/sqrt(dh) is folded into the query rows.
                let qkv = vb.pp("to_qkv").get((3 * inner, w), "weight")?;
                let q = (qkv.narrow(0, 0, inner)? * (1.0 / (cfg.dim_head as f64).sqrt()))?;
                Linear::new(Tensor::cat(&[&q, &qkv.narrow(0, inner, 2 * inner)?], 0)?, None)
            },
            to_out: if has_out { Some(linear(inner, w, vb.pp("to_out.0"))?) } else { None },
            heads: cfg.heads,
            dim_head: cfg.dim_head,
        })
    }

    /// `mask`: (T, T) additive causal mask.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, d) = (self.heads, self.dim_head);
        // The inner dim is laid out '(h d)': head index is the outer factor.
        let qkv = self.to_qkv.forward(&self.norm.forward(x)?)?.reshape((b, t, 3, h, d))?;
        let qkv = qkv.permute((2, 0, 3, 1, 4))?.contiguous()?; // (3, B, h, T, d)
        let q = qkv.get(0)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, t, h * d))?;
        match &self.to_out {
            Some(out) => out.forward(&ctx),
            None => Ok(ctx),
        }
    }
}

#[derive(Debug, Clone)]
struct FeedForward {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl FeedForward {
    fn load(cfg: &PredictorConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: layer_norm(cfg.hidden_dim, NORM_EPS, vb.pp("net.0"))?,
            fc1: linear(cfg.hidden_dim, cfg.mlp_dim, vb.pp("net.1"))?,
            fc2: linear(cfg.mlp_dim, cfg.hidden_dim, vb.pp("net.4"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(&self.norm.forward(x)?)?.gelu_erf()?)
    }
}

/// `ConditionalBlock`: attention and FFN, each behind a parameter-free LayerNorm modulated by (shift, scale) and
/// gated, all six vectors computed per token from the conditioning.
#[derive(Debug, Clone)]
struct ConditionalBlock {
    attn: Attention,
    mlp: FeedForward,
    modulation: Linear,
    plain_norm: LayerNorm,
}

impl ConditionalBlock {
    fn load(cfg: &PredictorConfig, has_out: bool, vb: VarBuilder) -> Result<Self> {
        let w = cfg.hidden_dim;
        let device = vb.device().clone();
        let dtype = vb.dtype();
        Ok(Self {
            attn: Attention::load(cfg, has_out, vb.pp("attn"))?,
            mlp: FeedForward::load(cfg, vb.pp("mlp"))?,
            modulation: {
                // The `1 +` of both modulated norms is folded into the bias of the two scale chunks, so the forward
                // computes `norm(x) · scale' + shift` with scale' = 1 + scale.
                let m = vb.pp("adaLN_modulation.1");
                let bias = m.get(6 * w, "bias")?;
                let one: Vec<f32> = (0..6 * w).map(|i| if matches!(i / w, 1 | 4) { 1.0 } else { 0.0 }).collect();
                let one = Tensor::from_vec(one, 6 * w, &device)?.to_dtype(dtype)?;
                Linear::new(m.get((6 * w, w), "weight")?, Some((bias + one)?))
            },
            plain_norm: LayerNorm::new(
                Tensor::ones(w, dtype, &device)?,
                Tensor::zeros(w, dtype, &device)?,
                BLOCK_NORM_EPS,
            ),
        })
    }

    /// The modulated norm in front of the attention, its vectors from table column `offset` on.
    fn attn_norm(&self, offset: usize, width: usize) -> crate::Result<AdaNorm<'_>> {
        ada_norm(&self.attn.norm, offset, offset + width)
    }

    /// The modulated norm in front of the feed-forward.
    fn mlp_norm(&self, offset: usize, width: usize) -> crate::Result<AdaNorm<'_>> {
        ada_norm(&self.mlp.norm, offset + 3 * width, offset + 4 * width)
    }

    /// The fused forward of the new tokens of a rollout window (see [`Predictor::forward_window_last`]):
    /// `x` (N·q, W) holds positions `first..first + q` and `u` their attention-norm output; their keys/values
    /// are appended to `cache` when given (else `first` must be 0). With `last_only`, only the window's last
    /// position is carried past the attention. Returns the residual stream and, when `next` is given, the next
    /// block's attention-norm output of it.
    #[allow(clippy::too_many_arguments)]
    fn forward_fused(
        &self,
        x: &Tensor,
        u: &Tensor,
        step: &WindowStep<'_>,
        cache: Option<&Tensor>,
        offset: usize,
        last_only: bool,
        next: Option<AdaNorm<'_>>,
    ) -> crate::Result<(Tensor, Option<Tensor>)> {
        let (rows, width) = x.dims2()?;
        let (first, q) = (step.first, step.new);
        let n = rows / q;
        let qkv = gemm(u, self.attn.to_qkv.weight(), Epilogue::None)?;
        let inner = qkv.dim(1)? / 3;
        let qkv = qkv.reshape((n, q, 3 * inner))?;
        let valid = first + q;
        let q_start = if last_only { valid - 1 } else { first };
        let ctx = window_attention(&qkv, cache, first, q_start, self.attn.heads, self.attn.dim_head)?;
        let (x, first, q) = if last_only && q > 1 {
            (x.reshape((n, q, width))?.narrow(1, q - 1, 1)?.contiguous()?.reshape((n, width))?, valid - 1, 1)
        } else {
            (x.clone(), first, q)
        };
        let (y, bias) = match &self.attn.to_out {
            Some(out) => (linear_partials(&ctx, out.weight())?, out.bias()),
            None => (Unreduced::contiguous(ctx.contiguous()?, 1)?, None),
        };
        let rows_of = step.rows(first, q);
        let (x, u) = residual_norm(&y, bias, rows_of, offset + 2 * width, &x, self.mlp_norm(offset, width)?)?;
        let fc1_bias =
            self.mlp.fc1.bias().ok_or_else(|| crate::Error::invalid_input("predictor", "fc1 without bias"))?;
        let h = gemm(&u, self.mlp.fc1.weight(), Epilogue::BiasGelu(fc1_bias))?;
        let y = linear_partials(&h, self.mlp.fc2.weight())?;
        let gate = offset + 5 * width;
        Ok(match next {
            Some(norm) => {
                let (x, u) = residual_norm(&y, self.mlp.fc2.bias(), rows_of, gate, &x, norm)?;
                (x, Some(u))
            }
            None => (gate_residual(&y, self.mlp.fc2.bias(), rows_of, gate, &x)?, None),
        })
    }

    fn forward(&self, x: &Tensor, cond: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let m = self.modulation.forward(&candle_nn::ops::silu(cond)?)?;
        let parts = m.chunk(6, D::Minus1)?;
        // scale1/scale2 already include the `1 +` (see `load`).
        let (shift1, scale1, gate1) = (&parts[0], &parts[1], &parts[2]);
        let (shift2, scale2, gate2) = (&parts[3], &parts[4], &parts[5]);
        let u = (self.plain_norm.forward(x)?.mul(scale1)? + shift1)?;
        let x = (x + gate1.mul(&self.attn.forward(&u, mask)?)?)?;
        let u = (self.plain_norm.forward(&x)?.mul(scale2)? + shift2)?;
        &x + gate2.mul(&self.mlp.forward(&u)?)?
    }
}

/// Where the new tokens of a rollout window sit: window start `lo` (the first action block it pairs with, a row
/// of `table`), and positions `first..first + new` inside the window.
struct WindowStep<'a> {
    table: &'a Tensor,
    bias: &'a Tensor,
    lo: usize,
    first: usize,
    new: usize,
}

impl WindowStep<'_> {
    /// The table rows of `count` tokens per candidate from window position `first`.
    fn rows(&self, first: usize, count: usize) -> ModulationTable<'_> {
        ModulationTable { table: self.table, bias: self.bias, lo: self.lo + first, window: count }
    }
}

/// Per-block QKV projections of a window that grows by one frame per rollout step (while it has not started
/// sliding, positions keep their embeddings and causal attention lets earlier positions be reused).
#[derive(Debug)]
pub struct WindowCache {
    qkv: Vec<Tensor>,
    len: usize,
}

impl WindowCache {
    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The predictor: `forward(emb (B,T,D), act_emb (B,T,D)) -> (B,T,Dout)` for T ≤ `num_frames`.
#[derive(Debug, Clone)]
pub struct Predictor {
    pos_embedding: Tensor,
    input_proj: Option<Linear>,
    cond_proj: Option<Linear>,
    output_proj: Option<Linear>,
    blocks: Vec<ConditionalBlock>,
    norm: LayerNorm,
    /// Causal masks for window lengths 1..=num_frames, built once.
    masks: Vec<Tensor>,
    /// Every block's AdaLN modulation weight stacked along the output dim, (depth·6·W, W), and its bias.
    modulation_weight: Tensor,
    modulation_bias: Tensor,
    num_frames: usize,
}

impl Predictor {
    /// Loads from `vb` rooted at `predictor.`.
    pub fn load(cfg: &PredictorConfig, has_out: bool, vb: VarBuilder) -> Result<Self> {
        let (d, w, dout) = (cfg.input_dim, cfg.hidden_dim, cfg.output());
        let tf = vb.pp("transformer");
        let (input_proj, cond_proj) = if d != w {
            (Some(linear(d, w, tf.pp("input_proj"))?), Some(linear(d, w, tf.pp("cond_proj"))?))
        } else {
            (None, None)
        };
        let output_proj = if w != dout { Some(linear(w, dout, tf.pp("output_proj"))?) } else { None };
        let blocks = (0..cfg.depth)
            .map(|j| ConditionalBlock::load(cfg, has_out, tf.pp(format!("layers.{j}"))))
            .collect::<Result<Vec<_>>>()?;
        let device = vb.device().clone();
        let masks = (1..=cfg.num_frames)
            .map(|t| {
                let values: Vec<f32> =
                    (0..t * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
                Tensor::from_vec(values, (t, t), &device)?.to_dtype(vb.dtype())
            })
            .collect::<Result<Vec<_>>>()?;
        // All blocks' modulation Linears stacked once (one GEMM per scoring call); each block keeps a view of its
        // rows, so the weights are stored once.
        let mut blocks = blocks;
        let weights = blocks.iter().map(|b| b.modulation.weight().clone()).collect::<Vec<_>>();
        let biases = blocks.iter().filter_map(|b| b.modulation.bias().cloned()).collect::<Vec<_>>();
        let (modulation_weight, modulation_bias) = (Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?);
        let rows = 6 * w;
        for (j, block) in blocks.iter_mut().enumerate() {
            block.modulation = Linear::new(
                modulation_weight.narrow(0, j * rows, rows)?,
                Some(modulation_bias.narrow(0, j * rows, rows)?),
            );
        }
        Ok(Self {
            modulation_weight,
            modulation_bias,
            pos_embedding: vb.get((1, cfg.num_frames, d), "pos_embedding")?,
            input_proj,
            cond_proj,
            output_proj,
            blocks,
            norm: layer_norm(w, NORM_EPS, tf.pp("norm"))?,
            masks,
            num_frames: cfg.num_frames,
        })
    }

    /// Window length the positional table supports.
    pub fn num_frames(&self) -> usize {
        self.num_frames
    }

    /// The AdaLN vectors of every block for every action embedding, computed once per scoring call, without
    /// their bias ([`Predictor::modulation_bias`], added by the kernels that read them): `act_emb` (N, L, D) →
    /// (N, L, depth·6·W), block j's six chunks of W at column 6·W·j (shift, 1 + scale, gate for attention, then
    /// for the feed-forward).
    pub fn modulation_table(&self, act_emb: &Tensor) -> crate::Result<Tensor> {
        let c = match &self.cond_proj {
            Some(cp) => cp.forward(act_emb)?,
            None => act_emb.clone(),
        };
        Ok(gemm(&candle_nn::ops::silu(&c)?.contiguous()?, &self.modulation_weight, Epilogue::None)?)
    }

    /// The bias of [`Predictor::modulation_table`]'s columns, (depth·6·W,).
    pub fn modulation_bias(&self) -> &Tensor {
        &self.modulation_bias
    }

    /// An empty [`WindowCache`] for `n` candidates. Its buffers are not initialised: the attention kernel writes a
    /// position before any later step reads it.
    pub fn window_cache(&self, n: usize, device: &candle_core::Device) -> crate::Result<WindowCache> {
        let inner = self.blocks.first().map(|b| b.attn.heads * b.attn.dim_head).unwrap_or(0);
        let dev = crate::ops::launch::cuda(device)?;
        let qkv = (0..self.blocks.len())
            .map(|_| crate::ops::launch::uninit_f32(dev, (n, self.num_frames, 3 * inner)))
            .collect::<crate::ops::Result<Vec<_>>>()?;
        Ok(WindowCache { qkv, len: 0 })
    }

    /// The fused forward of one rollout window, returning only its last position (N, Dout).
    ///
    /// `emb` (N, q, D) holds window positions `first..first + q`, paired with rows `lo + first..` of `table`
    /// (from [`Predictor::modulation_table`]). With `first = 0` it is the whole window; with `first > 0` the
    /// earlier positions come from `cache` (which must hold exactly `first`). A given cache is extended.
    pub fn forward_window_last(
        &self,
        emb: &Tensor,
        table: &Tensor,
        lo: usize,
        first: usize,
        mut cache: Option<&mut WindowCache>,
    ) -> crate::Result<Tensor> {
        let (n, q, _) = emb.dims3()?;
        if q == 0 || first + q > self.num_frames {
            return Err(crate::Error::invalid_input(
                "window",
                format!("positions {first}..{}; the predictor supports windows of 1..={}", first + q, self.num_frames),
            ));
        }
        if cache.as_ref().map_or(first != 0, |c| c.len != first) {
            return Err(crate::Error::invalid_input("window", format!("position {first} needs a cache of {first}")));
        }
        let pos = self.pos_embedding.narrow(1, first, q)?;
        let mut x = if emb.is_contiguous() {
            // A whole window: the positions as a bias over rows of q·D (one kernel, not a broadcast's indexing).
            let d = emb.dim(2)?;
            crate::ops::bias_act::bias_add(&emb.reshape((n, q * d))?, &pos.flatten_all()?)?.reshape((n, q, d))?
        } else {
            emb.broadcast_add(&pos)?
        };
        if let Some(ip) = &self.input_proj {
            x = ip.forward(&x)?;
        }
        let width = x.dim(2)?;
        let mut x = x.contiguous()?.reshape((n * q, width))?;
        let step = WindowStep { table, bias: &self.modulation_bias, lo, first, new: q };
        let Some(block0) = self.blocks.first() else {
            return Err(crate::Error::invalid_input("predictor", "no blocks"));
        };
        let mut u = adaln_double_norm(&x, step.rows(first, q), block0.attn_norm(0, width)?)?;
        for (j, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_ref().map(|c| &c.qkv[j]);
            let next = self.blocks.get(j + 1).map(|b| b.attn_norm(6 * width * (j + 1), width)).transpose()?;
            let last = next.is_none();
            let (x_next, u_next) = block.forward_fused(&x, &u, &step, slot, 6 * width * j, last, next)?;
            x = x_next;
            if let Some(u_next) = u_next {
                u = u_next;
            }
        }
        if let Some(c) = cache.as_mut() {
            c.len = first + q;
        }
        let last = self.norm.forward(&x)?;
        Ok(match &self.output_proj {
            Some(p) => p.forward(&last)?,
            None => last,
        })
    }

    /// `emb`, `act_emb`: (B, T, D) with T ≤ `num_frames`; positions are window-relative.
    pub fn forward(&self, emb: &Tensor, act_emb: &Tensor) -> Result<Tensor> {
        let t = emb.dim(1)?;
        if t == 0 || t > self.num_frames {
            candle_core::bail!("predictor window of {t} steps; supported 1..={}", self.num_frames);
        }
        let mut x = emb.broadcast_add(&self.pos_embedding.narrow(1, 0, t)?)?;
        let mut c = act_emb.clone();
        if let (Some(ip), Some(cp)) = (&self.input_proj, &self.cond_proj) {
            x = ip.forward(&x)?;
            c = cp.forward(&c)?;
        }
        let mask = &self.masks[t - 1];
        for block in &self.blocks {
            x = block.forward(&x, &c, mask)?;
        }
        let x = self.norm.forward(&x)?;
        match &self.output_proj {
            Some(p) => p.forward(&x),
            None => Ok(x),
        }
    }
}
