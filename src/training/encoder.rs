//! The ViT encoder's training forward, and its hand-written backward ([`EncoderGrad::Manual`]). The forward is one
//! function for both ways of differentiating it: through Candle's graph (attached parameters, nothing kept), or on
//! detached parameters keeping the activations each layer's backward needs (a tape); the backward walks the
//! layers in reverse with GEMMs and the fused backward kernels, from the gradient of the CLS features, and returns
//! every encoder parameter's gradient. Candle's autograd does the same work through its graph, where every edge
//! adds a gradient into a fresh zero tensor and every op is a host-issued launch: the encoder is ~90 % of LeWM's
//! training FLOPs and most of those edges.
//!
//! [`EncoderGrad::Manual`]: super::EncoderGrad::Manual

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{DType, Tensor, D};

use super::lewm::{affine_layer_norm, gelu, linear, softmax, TrainableLeWm};
use crate::error::Result;
use crate::models::lewm::VitDims;

/// What one encoder layer's backward reads.
struct LayerTape {
    /// The layer's input and the first LayerNorm's output.
    x0: Tensor,
    h1: Tensor,
    /// Queries (scaled), keys and values, (N, heads, T', d); the attention probabilities (N, heads, T', T'). In
    /// TF32 mode on CUDA T' is T rounded up to a multiple of 4 (q, k and v get zero rows; the padded keys get
    /// probability 0, and the padded queries' rows, a softmax over the real keys, meet a zero gradient), so
    /// that the attention's GEMMs see 16-byte-aligned rows: cuBLAS's TF32 tensor-core kernels need them, and fall
    /// back to `align1` kernels for an odd T such as 257 (one H200 call: step 156.6 → 149.7 ms GPU). In f32 the
    /// GEMMs are SIMT either way and the padding cost more than it saved (239.8 → 246.8 ms), so T' = T.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    probs: Tensor,
    /// The heads merged back, (N, T, E).
    ctx: Tensor,
    /// After the attention's residual, the second LayerNorm's output and the MLP's pre-activation (its GELU is
    /// recomputed in the backward rather than kept: four times the hidden size per layer).
    x1: Tensor,
    h2: Tensor,
    u: Tensor,
}

/// The encoder's forward activations.
pub(super) struct Tape {
    /// (N, patches, 3·P·P) flattened patches.
    patches: Tensor,
    layers: Vec<LayerTape>,
    /// The last layer's output's CLS rows, (N, E) (the final LayerNorm's input).
    last: Tensor,
}

/// Prefix of layer `i`'s parameters.
fn layer(i: usize) -> String {
    format!("encoder.encoder.layer.{i}")
}

/// (N, T, E) → (N, heads, T, d), contiguous.
fn heads(x: &Tensor, h: usize) -> Result<Tensor> {
    let (n, t, e) = x.dims3()?;
    Ok(x.reshape((n, t, h, e / h))?.transpose(1, 2)?.contiguous()?)
}

/// When the hand-written encoder pads its attention's tokens to a multiple of 4 (see [`LayerTape`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AttentionPadding {
    /// In TF32 mode on CUDA (the default): where cuBLAS's tensor-core kernels need the aligned rows.
    Tf32 = 0,
    /// Always on CUDA (tests run the padded path in f32 against the official gradients).
    Always = 1,
    /// Never: the attention over T tokens as written (benchmarks compare).
    Never = 2,
}

static PADDING: AtomicU8 = AtomicU8::new(AttentionPadding::Tf32 as u8);

/// Sets [`AttentionPadding`], process-wide; applies to the steps run afterwards.
pub fn set_attention_padding(padding: AttentionPadding) {
    PADDING.store(padding as u8, Ordering::Relaxed);
}

/// The current [`AttentionPadding`].
pub fn attention_padding() -> AttentionPadding {
    match PADDING.load(Ordering::Relaxed) {
        x if x == AttentionPadding::Always as u8 => AttentionPadding::Always,
        x if x == AttentionPadding::Never as u8 => AttentionPadding::Never,
        _ => AttentionPadding::Tf32,
    }
}

/// Tokens of the attention's operands for `t` tokens: `t` rounded up to a multiple of 4 where [`attention_padding`]
/// says so and `eligible` (the hand-written backward's tape, on a CUDA device), else `t`.
fn padded_tokens(t: usize, eligible: bool) -> usize {
    let pad = match attention_padding() {
        AttentionPadding::Tf32 => crate::device::tf32(),
        AttentionPadding::Always => true,
        AttentionPadding::Never => false,
    };
    if eligible && pad {
        t.next_multiple_of(4)
    } else {
        t
    }
}

/// (N, heads, T, d) → (N, heads, T', d) with zero rows T.. (no copy when T' = T).
fn pad_tokens(x: &Tensor, to: usize) -> Result<Tensor> {
    let t = x.dim(2)?;
    Ok(if to > t { x.pad_with_zeros(2, 0, to - t)? } else { x.clone() })
}

/// `a · bᵀ` over (…, m, d) and (…, n, d): the attention's products contracting over the head dimension
/// (scores Q·Kᵀ, and G·Vᵀ in the backward), on [`crate::ops::gemm::batched_matmul`]: swm's batched GEMM for the
/// tape's detached operands on the device, which it reads as they lie (H200, one call: step 196.2 → 191.8 ms GPU
/// in f32; the products contracting over the 257 tokens stay on cuBLAS: on swm's kernel they need transposed
/// copies and 16-byte-aligned rows, and were slower); Candle's differentiable matmul for tracked operands.
fn bmm_nt(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(crate::ops::gemm::batched_matmul(a, &b.t()?)?)
}

/// Whether `x` takes the device's copy kernels: on CUDA and tracking no gradient (the tape's detached operands;
/// the kernels have no backward).
fn untracked_on_device(x: &Tensor) -> bool {
    x.device().is_cuda() && !x.track_op()
}

/// The attention's head split, (N, T, E) → (N, heads, `to`, d) with zero rows T..`to`: one coalesced copy on the
/// device for untracked operands, Candle's transpose and padding elsewhere.
fn split_heads(x: &Tensor, h: usize, to: usize) -> Result<Tensor> {
    if untracked_on_device(x) {
        return Ok(crate::ops::train::split_heads(x, h, to)?);
    }
    pad_tokens(&heads(x, h)?, to)
}

/// The heads merged back from the first `t` token rows of (N, heads, T', d): (N, t, E), one coalesced copy on the
/// device for untracked operands, Candle's narrow and transpose elsewhere.
fn merge_heads(x: &Tensor, t: usize) -> Result<Tensor> {
    if untracked_on_device(x) {
        return Ok(crate::ops::train::merge_heads(x, t)?);
    }
    merge(&x.narrow(2, 0, t)?)
}

/// (N, heads, T, d) → (N, T, E), contiguous.
fn merge(x: &Tensor) -> Result<Tensor> {
    let (n, h, t, d) = x.dims4()?;
    Ok(x.transpose(1, 2)?.contiguous()?.reshape((n, t, h * d))?)
}

/// LayerNorm's backward: the fused kernels on the device, the same formulas composed on the host.
fn layer_norm_backward(x: &Tensor, g: &Tensor, gamma: &Tensor, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    if x.device().is_cuda() {
        return Ok(crate::ops::train::layer_norm_backward(x, g, gamma, eps as f32)?);
    }
    let e = x.dim(D::Minus1)?;
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let rstd = (centred.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    let xhat = centred.broadcast_mul(&rstd)?;
    let gg = g.broadcast_mul(gamma)?;
    let a = gg.mean_keepdim(D::Minus1)?;
    let b = (&gg * &xhat)?.mean_keepdim(D::Minus1)?;
    let dx = gg.broadcast_sub(&a)?.sub(&xhat.broadcast_mul(&b)?)?.broadcast_mul(&rstd)?;
    let rows = x.elem_count() / e;
    let dgamma = (g * &xhat)?.reshape((rows, e))?.sum(0)?;
    let dbeta = g.reshape((rows, e))?.sum(0)?;
    Ok((dx, dgamma, dbeta))
}

/// Softmax's backward from its output.
fn softmax_backward(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    if y.device().is_cuda() {
        return Ok(crate::ops::train::softmax_backward(y, g)?);
    }
    Ok((y * g.broadcast_sub(&(g * y)?.sum_keepdim(D::Minus1)?)?)?)
}

/// Exact GELU's backward from its input: `g · (Φ(x) + x·φ(x))`.
fn gelu_backward(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    if x.device().is_cuda() {
        return Ok(crate::ops::train::gelu_backward(x, g)?);
    }
    let cdf = (((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5)?;
    let pdf = ((x.sqr()? * -0.5)?.exp()? * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2))?;
    Ok((g * (cdf + (x * pdf)?)?)?)
}

impl TrainableLeWm {
    /// The Hugging Face ViT: (N, 3, S, S) frames → the CLS features (N, E) after the final LayerNorm. With `tape`,
    /// on detached parameters (the features are part of no graph) and returning the tape
    /// [`TrainableLeWm::encoder_backward`] reads; without, through Candle's graph.
    pub(super) fn encoder_forward(&self, pixels: &Tensor, tape: bool) -> Result<(Tensor, Option<Tape>)> {
        let VitDims { hidden: e, heads: h, patch: p, layer_norm_eps: eps, .. } = self.dims;
        let g = self.dims.grid();
        let n = pixels.dim(0)?;
        let w = |key: &str| -> Result<Tensor> {
            let t = self.p(key)?;
            Ok(if tape { t.detach() } else { t })
        };
        let pre = "encoder.embeddings";
        // The stride-P convolution as a matmul over non-overlapping patches flattened in (channel, row, col).
        let patches =
            pixels.detach().reshape((n, 3, g, p, g, p))?.permute((0, 2, 4, 1, 3, 5))?.reshape((n, g * g, 3 * p * p))?;
        let weight = w(&format!("{pre}.patch_embeddings.projection.weight"))?.reshape((e, 3 * p * p))?;
        let tokens = linear(&patches, &weight, Some(&w(&format!("{pre}.patch_embeddings.projection.bias"))?))?;
        let cls = w(&format!("{pre}.cls_token"))?.broadcast_as((n, 1, e))?;
        let mut x = Tensor::cat(&[&cls, &tokens], 1)?.broadcast_add(&w(&format!("{pre}.position_embeddings"))?)?;
        let scale = 1.0 / ((e / h) as f64).sqrt();
        let mut layers = Vec::with_capacity(self.dims.layers);
        for i in 0..self.dims.layers {
            let l = layer(i);
            let ln = |x: &Tensor, name: &str| -> Result<Tensor> {
                affine_layer_norm(x, &w(&format!("{l}.{name}.weight"))?, &w(&format!("{l}.{name}.bias"))?, eps)
            };
            // The softmax scale multiplies the query's weights and bias (small tensors) rather than the queries.
            let proj = |x: &Tensor, name: &str, factor: f64| -> Result<Tensor> {
                let (wt, b) = (w(&format!("{l}.{name}.weight"))?, w(&format!("{l}.{name}.bias"))?);
                if factor == 1.0 {
                    return linear(x, &wt, Some(&b));
                }
                linear(x, &(wt * factor)?, Some(&(b * factor)?))
            };
            let x0 = x;
            let h1 = ln(&x0, "layernorm_before")?;
            let att = "attention.attention";
            let t = h1.dim(1)?;
            let tp = padded_tokens(t, tape && h1.device().is_cuda());
            let q = split_heads(&proj(&h1, &format!("{att}.query"), scale)?, h, tp)?;
            let k = split_heads(&proj(&h1, &format!("{att}.key"), 1.0)?, h, tp)?;
            let v = split_heads(&proj(&h1, &format!("{att}.value"), 1.0)?, h, tp)?;
            let scores = bmm_nt(&q, &k)?;
            let probs = if tp > t { crate::ops::train::softmax_prefix(&scores, t)? } else { softmax(&scores)? };
            let ctx = merge_heads(&probs.matmul(&v)?, t)?;
            let x1 = (&x0 + proj(&ctx, "attention.output.dense", 1.0)?)?;
            let h2 = ln(&x1, "layernorm_after")?;
            let u = proj(&h2, "intermediate.dense", 1.0)?;
            x = (&x1 + proj(&gelu(&u)?, "output.dense", 1.0)?)?;
            if tape {
                layers.push(LayerTape { x0, h1, q, k, v, probs, ctx, x1, h2, u });
            }
        }
        // LayerNorm is per token: normalising only the CLS row equals upstream's norm-then-select.
        let last = x.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        let cls = affine_layer_norm(&last, &w("encoder.layernorm.weight")?, &w("encoder.layernorm.bias")?, eps)?;
        Ok((cls, tape.then_some(Tape { patches, layers, last })))
    }

    /// The gradients of every encoder parameter, by name, from the gradient `g_cls` (N, E) of the CLS features
    /// [`TrainableLeWm::encoder_forward`] returned with `tape`.
    pub(super) fn encoder_backward(&self, tape: Tape, g_cls: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let VitDims { hidden: e, heads: h, patch: p, layer_norm_eps: eps, .. } = self.dims;
        let w = |key: &str| -> Result<Tensor> { Ok(self.p(key)?.detach()) };
        let mut grads = Vec::with_capacity(16 * self.dims.layers + 8);
        let (dx, dgamma, dbeta) = layer_norm_backward(&tape.last, g_cls, &w("encoder.layernorm.weight")?, eps)?;
        grads.push(("encoder.layernorm.weight".to_string(), dgamma));
        grads.push(("encoder.layernorm.bias".to_string(), dbeta));
        let (n, t) = (tape.patches.dim(0)?, tape.patches.dim(1)? + 1);
        // Only the CLS row reaches the loss: the last layer's output gradient is zero elsewhere.
        let mut g = Tensor::cat(&[&dx.unsqueeze(1)?, &Tensor::zeros((n, t - 1, e), DType::F32, dx.device())?], 1)?;
        let scale = 1.0 / ((e / h) as f64).sqrt();
        for (i, lt) in tape.layers.into_iter().enumerate().rev() {
            let l = layer(i);
            let mut push = |name: &str, d: Tensor| grads.push((format!("{l}.{name}"), d));
            // MLP: x = x1 + gelu(h2·W1ᵀ + b1)·W2ᵀ + b2.
            let a = gelu(&lt.u)?;
            let (g_a, dw2, db2) = crate::ops::train::linear_backward(&a, &w(&format!("{l}.output.dense.weight"))?, &g)?;
            drop(a);
            push("output.dense.weight", dw2);
            push("output.dense.bias", db2);
            let g_u = gelu_backward(&lt.u, &g_a)?;
            let (g_h2, dw1, db1) =
                crate::ops::train::linear_backward(&lt.h2, &w(&format!("{l}.intermediate.dense.weight"))?, &g_u)?;
            push("intermediate.dense.weight", dw1);
            push("intermediate.dense.bias", db1);
            let (dx1, dgamma, dbeta) =
                layer_norm_backward(&lt.x1, &g_h2, &w(&format!("{l}.layernorm_after.weight"))?, eps)?;
            push("layernorm_after.weight", dgamma);
            push("layernorm_after.bias", dbeta);
            let g_x1 = (&g + dx1)?;
            // Attention: x1 = x0 + merge(softmax(Q·Kᵀ)·V)·Woᵀ + bo, Q scaled by 1/√d through its weights.
            let (g_ctx, dwo, dbo) =
                crate::ops::train::linear_backward(&lt.ctx, &w(&format!("{l}.attention.output.dense.weight"))?, &g_x1)?;
            push("attention.output.dense.weight", dwo);
            push("attention.output.dense.bias", dbo);
            // On padded operands (see LayerTape): the padded rows of g_c are 0, so are the padded probabilities'
            // gradients, and the padded rows of g_q, g_k and g_v are dropped.
            let g_c = split_heads(&g_ctx, h, lt.q.dim(2)?)?;
            let g_probs = bmm_nt(&g_c, &lt.v)?;
            let g_v = lt.probs.t()?.matmul(&g_c)?;
            let g_s = softmax_backward(&lt.probs, &g_probs)?;
            let g_q = g_s.matmul(&lt.k)?;
            let g_k = g_s.t()?.matmul(&lt.q)?;
            let att = "attention.attention";
            let mut g_h1: Option<Tensor> = None;
            for (name, g_proj, factor) in [("query", &g_q, scale), ("key", &g_k, 1.0), ("value", &g_v, 1.0)] {
                let weight = w(&format!("{l}.{att}.{name}.weight"))?;
                let weight = if factor == 1.0 { weight } else { (weight * factor)? };
                let (dh, dw, db) = crate::ops::train::linear_backward(&lt.h1, &weight, &merge_heads(g_proj, t)?)?;
                let (dw, db) = if factor == 1.0 { (dw, db) } else { ((dw * factor)?, (db * factor)?) };
                push(&format!("{att}.{name}.weight"), dw);
                push(&format!("{att}.{name}.bias"), db);
                g_h1 = Some(match g_h1 {
                    Some(acc) => (acc + dh)?,
                    None => dh,
                });
            }
            let g_h1 = g_h1.ok_or_else(|| crate::Error::Internal("no attention projection".into()))?;
            let (dx0, dgamma, dbeta) =
                layer_norm_backward(&lt.x0, &g_h1, &w(&format!("{l}.layernorm_before.weight"))?, eps)?;
            push("layernorm_before.weight", dgamma);
            push("layernorm_before.bias", dbeta);
            g = (g_x1 + dx0)?;
        }
        // Embeddings: x = cat(cls, patches·Wᵀ + b) + positions.
        let pre = "encoder.embeddings";
        grads.push((format!("{pre}.position_embeddings"), g.sum_keepdim(0)?));
        grads.push((format!("{pre}.cls_token"), g.narrow(1, 0, 1)?.sum_keepdim(0)?));
        // The patch projection's weight and bias only (the frames need no gradient): gᵀ·patches and 1ᵀ·g.
        let shape = self.p(&format!("{pre}.patch_embeddings.projection.weight"))?.shape().clone();
        let rows = n * (t - 1);
        let g_tokens = g.narrow(1, 1, t - 1)?.contiguous()?.reshape((rows, e))?;
        let dw = g_tokens.t()?.matmul(&tape.patches.reshape((rows, 3 * p * p))?)?;
        let db = Tensor::ones((1, rows), DType::F32, g.device())?.matmul(&g_tokens)?.reshape(e)?;
        grads.push((format!("{pre}.patch_embeddings.projection.weight"), dw.reshape(shape)?));
        grads.push((format!("{pre}.patch_embeddings.projection.bias"), db));
        Ok(grads)
    }
}
