//! The Hugging Face `ViTModel` encoder (no pooler) as LeWM uses it: pre-LN blocks, exact-erf GELU, CLS output after
//! the final LayerNorm (docs/spec/lewm.md §3.1). Parameter names follow the transformers 4.x state dict.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{layer_norm, linear, LayerNorm, Linear, VarBuilder};

use super::config::VitDims;
use crate::ops::attention::{self, attention};
use crate::ops::bias_act::bias_residual_partials;
use crate::ops::gemm::{self, Epilogue};
use crate::ops::tdmpc2::{self, NormAct};

/// A kernel launcher's error as Candle's (this module's layers speak Candle's `Result`).
fn kernel<T>(r: crate::ops::Result<T>) -> Result<T> {
    r.map_err(candle_core::Error::wrap)
}

/// A Linear's bias (every ViT Linear has one).
fn bias(l: &Linear) -> Result<&Tensor> {
    l.bias().ok_or_else(|| candle_core::Error::Msg("ViT Linear without bias".into()))
}

/// `x·Wᵀ + b` on swm's GEMM (cuBLAS where it does not apply), the bias in its epilogue.
fn linear_bias(l: &Linear, x: &Tensor) -> Result<Tensor> {
    kernel(gemm::linear(x, l.weight(), Epilogue::Bias(bias(l)?)))
}

/// `residual + x·Wᵀ + b`: the GEMM left as its split-K partial sums, then one kernel adds them, the bias and the
/// residual (no reduction launch).
fn linear_residual(l: &Linear, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
    let k = x.dim(D::Minus1)?;
    let partials = kernel(gemm::linear_partials(&x.reshape((x.elem_count() / k.max(1), k))?, l.weight()))?;
    bias_residual_partials(&partials, bias(l)?, residual)
}

/// `linear_residual` followed by the next sublayer's LayerNorm, in one kernel after the GEMM where the row kernel
/// takes the width: returns (the residual stream, its normalised rows).
fn linear_residual_norm(
    l: &Linear,
    x: &Tensor,
    residual: &Tensor,
    ln: &LayerNorm,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let (k, e) = (x.dim(D::Minus1)?, residual.dim(D::Minus1)?);
    let fused = tdmpc2::supports(e, NormAct::Identity) && x.dtype() == DType::F32 && residual.dtype() == DType::F32;
    match ln.bias() {
        Some(beta) if fused => {
            let y =
                kernel(gemm::linear_unreduced(&x.reshape((x.elem_count() / k.max(1), k))?, l.weight(), bias(l)?, 1))?;
            kernel(tdmpc2::residual_norm(&y, &residual.contiguous()?, ln.weight(), beta, eps as f32))
        }
        _ => {
            let sum = linear_residual(l, x, residual)?;
            let normed = norm(ln, eps, &sum)?;
            Ok((sum, normed))
        }
    }
}

/// LayerNorm over the last dim with swm's row kernel (one block per row), where it takes the width; Candle's
/// otherwise.
fn norm(ln: &LayerNorm, eps: f64, x: &Tensor) -> Result<Tensor> {
    let e = x.dim(D::Minus1)?;
    match ln.bias() {
        Some(beta) if tdmpc2::supports(e, NormAct::Identity) && x.dtype() == DType::F32 => {
            let rows = x.elem_count() / e.max(1);
            let y = kernel(tdmpc2::norm_act(&x.reshape((rows, e))?, ln.weight(), beta, eps as f32, NormAct::Identity))?;
            y.reshape(x.shape())
        }
        _ => ln.forward(x),
    }
}

/// Position tables interpolated for other patch grids, computed once per grid (docs/spec/lewm.md §3.1 step 3).
type PositionCache = std::sync::Arc<std::sync::Mutex<Vec<((usize, usize), Tensor)>>>;

/// Interpolated position tables kept (most recently used).
const MAX_INTERPOLATED: usize = 8;

/// Patch embedding + CLS token + position table.
#[derive(Debug, Clone)]
struct Embeddings {
    /// Conv2d weight flattened to a Linear over (channel, row, col) patches: (E, 3·P·P).
    patch: Linear,
    cls: Tensor,
    positions: Tensor,
    patch_size: usize,
    grid: usize,
    interpolated: PositionCache,
}

impl Embeddings {
    fn load(dims: &VitDims, vb: VarBuilder) -> Result<Self> {
        let e = dims.hidden;
        let p = dims.patch;
        let proj = vb.pp("patch_embeddings.projection");
        // A stride-P, kernel-P convolution is a matmul over non-overlapping patches; flattening the kernel in
        // (channel, row, col) order matches the patch layout built in `forward`.
        let weight = proj.get((e, dims.channels, p, p), "weight")?.reshape((e, dims.channels * p * p))?;
        let bias = proj.get(e, "bias")?;
        Ok(Self {
            patch: Linear::new(weight, Some(bias)),
            cls: vb.get((1, 1, e), "cls_token")?,
            positions: vb.get((1, dims.positions(), e), "position_embeddings")?,
            patch_size: p,
            grid: dims.grid(),
            interpolated: PositionCache::default(),
        })
    }

    /// The position table for a `gh × gw` patch grid of an `h × w` image: the trained table when the grid is the
    /// trained one and the image square (as upstream), else its patch rows resized bicubically to `gh × gw`
    /// (Hugging Face's `interpolate_pos_encoding`, which LeWM always enables) with the CLS row kept. An
    /// interpolated table is computed on the device the first time a grid is seen and cached.
    fn positions_for(&self, gh: usize, gw: usize, square: bool) -> Result<Tensor> {
        if square && gh == self.grid && gw == self.grid {
            return Ok(self.positions.clone());
        }
        let mut cache =
            self.interpolated.lock().map_err(|_| candle_core::Error::Msg("position cache poisoned".into()))?;
        if let Some(i) = cache.iter().position(|(g, _)| *g == (gh, gw)) {
            // Most recently used first.
            cache[..=i].rotate_right(1);
            return Ok(cache[0].1.clone());
        }
        let (g, dev) = (self.grid, self.positions.device());
        let e = self.positions.dim(D::Minus1)?;
        let patches = self.positions.narrow(1, 1, g * g)?.reshape((g, g, e))?;
        // Separable: along the width (per grid row), then along the height, as PyTorch's bicubic kernel.
        let wx = Tensor::from_vec(crate::ops::resize::bicubic_matrix(g, gw), (1, gw, g), dev)?;
        let rows = wx.broadcast_as((g, gw, g))?.contiguous()?.matmul(&patches)?; // (g, gw, E)
        let wy = Tensor::from_vec(crate::ops::resize::bicubic_matrix(g, gh), (gh, g), dev)?;
        let grid = wy.matmul(&rows.reshape((g, gw * e))?)?.reshape((1, gh * gw, e))?;
        let table = Tensor::cat(&[&self.positions.narrow(1, 0, 1)?, &grid], 1)?.contiguous()?;
        cache.insert(0, ((gh, gw), table.clone()));
        // A handful of camera geometries at most; an unbounded set of sizes must not grow device memory.
        cache.truncate(MAX_INTERPOLATED);
        Ok(table)
    }

    /// (N, 3, H, W) -> (N, 1 + (H/P)·(W/P), E).
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = pixels.dims4()?;
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        if gh == 0 || gw == 0 {
            candle_core::bail!("image {h}x{w} is smaller than one {p}x{p} patch");
        }
        let positions = self.positions_for(gh, gw, h == w)?;
        // Trailing rows/columns that do not fill a patch are dropped, as the strided convolution does.
        let pixels = if h != gh * p || w != gw * p {
            pixels.narrow(2, 0, gh * p)?.narrow(3, 0, gw * p)?
        } else {
            pixels.clone()
        };
        // (N, C, gh, P, gw, P) -> (N, gh, gw, C, P, P): one row per patch, row-major over the grid.
        let patches = pixels.reshape((n, c, gh, p, gw, p))?.permute((0, 2, 4, 1, 3, 5))?.contiguous()?.reshape((
            n,
            gh * gw,
            c * p * p,
        ))?;
        let tokens = linear_bias(&self.patch, &patches)?;
        let e = tokens.dim(D::Minus1)?;
        let cls = self.cls.broadcast_as((n, 1, e))?;
        Tensor::cat(&[&cls, &tokens], 1)?.broadcast_add(&positions)
    }
}

/// One pre-LN transformer layer with a fused QKV projection.
#[derive(Debug, Clone)]
struct Layer {
    norm_before: LayerNorm,
    qkv: Linear,
    out: Linear,
    norm_after: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    eps: f64,
}

impl Layer {
    fn load(dims: &VitDims, vb: VarBuilder) -> Result<Self> {
        let e = dims.hidden;
        let att = vb.pp("attention.attention");
        // Fused QKV projection, with the softmax scale 1/sqrt(d) folded into the query rows.
        let scale = 1.0 / ((e / dims.heads) as f64).sqrt();
        let mut weights = Vec::with_capacity(3);
        let mut biases = Vec::with_capacity(3);
        for (name, factor) in [("query", scale), ("key", 1.0), ("value", 1.0)] {
            weights.push((att.pp(name).get((e, e), "weight")? * factor)?);
            biases.push((att.pp(name).get(e, "bias")? * factor)?);
        }
        let qkv = Linear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?));
        let eps = dims.layer_norm_eps;
        Ok(Self {
            norm_before: layer_norm(e, eps, vb.pp("layernorm_before"))?,
            qkv,
            out: linear(e, e, vb.pp("attention.output.dense"))?,
            norm_after: layer_norm(e, eps, vb.pp("layernorm_after"))?,
            fc1: linear(e, dims.intermediate, vb.pp("intermediate.dense"))?,
            fc2: linear(dims.intermediate, e, vb.pp("output.dense"))?,
            heads: dims.heads,
            eps,
        })
    }

    /// One block on the residual stream `x` given `normed` = its `layernorm_before` rows. With `next` (the next
    /// block), also returns the output's rows through `next`'s `layernorm_before`, from the same kernel as the output.
    fn forward(&self, x: &Tensor, normed: &Tensor, next: Option<&Layer>) -> Result<(Tensor, Option<Tensor>)> {
        let (n, t, e) = x.dims3()?;
        let (h, d) = (self.heads, e / self.heads);
        let qkv = linear_bias(&self.qkv, normed)?; // (N, T, 3E)
        let ctx = if attention::supports(&qkv, h) {
            // One kernel on the projection as written: no permute, score matrix or transpose.
            kernel(attention(&qkv, h))?
        } else {
            let qkv = qkv.reshape((n, t, 3, h, d))?.permute((2, 0, 3, 1, 4))?.contiguous()?; // (3, N, h, T, d)
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
            probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((n, t, e))?
        };
        let (x, normed) = linear_residual_norm(&self.out, &ctx, x, &self.norm_after, self.eps)?;
        let fc1 = &self.fc1;
        let hidden = kernel(gemm::linear(&normed, fc1.weight(), Epilogue::BiasGelu(bias(fc1)?)))?;
        match next {
            Some(next) => {
                let (x, normed) = linear_residual_norm(&self.fc2, &hidden, &x, &next.norm_before, next.eps)?;
                Ok((x, Some(normed)))
            }
            None => Ok((linear_residual(&self.fc2, &hidden, &x)?, None)),
        }
    }
}

/// ViT encoder returning the CLS token of the final LayerNorm output.
#[derive(Debug, Clone)]
pub struct VitEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: LayerNorm,
    dims: VitDims,
}

impl VitEncoder {
    /// Loads from `vb` rooted at the encoder (`encoder.`).
    pub fn load(dims: &VitDims, vb: VarBuilder) -> Result<Self> {
        let embeddings = Embeddings::load(dims, vb.pp("embeddings"))?;
        let layers = (0..dims.layers)
            .map(|i| Layer::load(dims, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let norm = layer_norm(dims.hidden, dims.layer_norm_eps, vb.pp("layernorm"))?;
        Ok(Self { embeddings, layers, norm, dims: *dims })
    }

    /// Encoder dimensions.
    pub fn dims(&self) -> &VitDims {
        &self.dims
    }

    /// (N, 3, H, W) normalised frames -> (N, E) CLS features.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let pixels = if pixels.dtype() == DType::F32 { pixels.clone() } else { pixels.to_dtype(DType::F32)? };
        let mut x = self.embeddings.forward(&pixels)?;
        if let Some(first) = self.layers.first() {
            // Each block's pre-norm comes out of the previous block's last kernel; the first one's is computed here.
            let mut normed = norm(&first.norm_before, first.eps, &x)?;
            for (i, layer) in self.layers.iter().enumerate() {
                let next = self.layers.get(i + 1);
                let (y, next_normed) = layer.forward(&x, &normed, next)?;
                x = y;
                if let Some(n) = next_normed {
                    normed = n;
                }
            }
        }
        // Only the CLS row is used: normalise just that row (LayerNorm is per token).
        let cls = x.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?;
        self.norm.forward(&cls)
    }
}
