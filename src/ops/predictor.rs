//! Fused kernels for the LeWM predictor's rollout windows (`kernels/predictor.cu`): the double modulated
//! LayerNorm, causal window attention on the fused QKV projection, and the gated residual with the Linear bias
//! folded in. Together they turn a ConditionalBlock into three GEMMs and four kernels.

use candle_core::Tensor;
use cudarc::driver::PushKernelArg;

use super::launch::{address, cuda, grid, launched, uninit_f32, warps};
use crate::error::{Error, Result};
use crate::kernels;

const MODULE: &str = "swm_predictor";

/// Where a window's AdaLN vectors live: a (N, len, stride) table, window position p of candidate n reading row
/// n·len + lo + p.
#[derive(Debug, Clone, Copy)]
pub struct ModulationTable<'a> {
    /// The table, contiguous (N, len, stride).
    pub table: &'a Tensor,
    /// First table row (action block) of the window.
    pub lo: usize,
    /// Window length w.
    pub window: usize,
}

impl ModulationTable<'_> {
    fn dims(&self, rows: usize) -> Result<(u64, i64, i32, i32, i32)> {
        let (n, len, stride) = self.table.dims3()?;
        if self.window == 0 || rows != n * self.window || self.lo + self.window > len {
            return Err(Error::invalid_input(
                "modulation table",
                format!(
                    "{rows} tokens in windows of {} at {} do not fit a {:?} table",
                    self.window,
                    self.lo,
                    self.table.dims()
                ),
            ));
        }
        Ok((address(self.table)?, stride as i64, len as i32, self.lo as i32, self.window as i32))
    }
}

fn check_rows(name: &str, t: &Tensor, dim: usize) -> Result<usize> {
    let (rows, d) = t.dims2()?;
    if d != dim || !t.is_contiguous() {
        return Err(Error::invalid_input(name, format!("expected contiguous (rows, {dim}), got {:?}", t.dims())));
    }
    Ok(rows)
}

/// `LayerNorm(gamma, beta, eps_affine)(LayerNorm_plain(x, eps_plain)·scale + shift)` for x (rows, dim), with shift
/// and scale at columns `shift_off`, `scale_off` of the modulation table.
#[allow(clippy::too_many_arguments)]
pub fn adaln_double_norm(
    x: &Tensor,
    table: ModulationTable<'_>,
    shift_off: usize,
    scale_off: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps_plain: f32,
    eps_affine: f32,
) -> Result<Tensor> {
    let dim = x.dim(1)?;
    let rows = check_rows("x", x, dim)?;
    if dim > 1024 || gamma.dims() != [dim] || beta.dims() != [dim] {
        return Err(Error::invalid_input("norm", format!("dim {dim} (≤ 1024) with gamma/beta of {dim}")));
    }
    let dev = cuda(x.device())?;
    let (t, stride, len, lo, w) = table.dims(rows)?;
    let out = uninit_f32(dev, (rows, dim))?;
    let (xp, gp, bp, op) = (address(x)?, address(gamma)?, address(beta)?, address(&out)?);
    let (so, sc, rows64, dim32) = (shift_off as i32, scale_off as i32, rows as i64, dim as i32);
    let f = dev.get_or_load_custom_func("adaln_double_norm_f32", MODULE, kernels::PREDICTOR)?;
    let mut b = f.builder();
    b.arg(&xp).arg(&t).arg(&stride).arg(&len).arg(&lo).arg(&w).arg(&so).arg(&sc).arg(&gp).arg(&bp).arg(&op);
    b.arg(&rows64).arg(&dim32).arg(&eps_plain).arg(&eps_affine);
    // SAFETY: matches adaln_double_norm_f32's signature; x/out hold rows·dim f32, gamma/beta dim, the table
    // covers every (candidate, lo + p) row (checked above) and the column offsets + dim lie within its stride.
    launched(unsafe { b.launch(warps(rows)) })?;
    Ok(out)
}

/// Causal attention over the first `valid` positions of `qkv` (N, cap, 3·heads·dh), answering the queries at
/// positions `q_start..valid` → (N·(valid − q_start), heads·dh).
pub fn window_attention(qkv: &Tensor, valid: usize, q_start: usize, heads: usize, dim_head: usize) -> Result<Tensor> {
    let inner = heads * dim_head;
    let (n, cap, width) = qkv.dims3()?;
    if width != 3 * inner || !qkv.is_contiguous() || valid > cap || q_start >= valid || dim_head > 128 {
        return Err(Error::invalid_input(
            "qkv",
            format!("{:?} for {valid} positions from {q_start}, {heads} heads of {dim_head} (≤ 128)", qkv.dims()),
        ));
    }
    let dev = cuda(qkv.device())?;
    let queries = valid - q_start;
    let out = uninit_f32(dev, (n * queries, inner))?;
    let (q, o) = (address(qkv)?, address(&out)?);
    let args = [n, cap, valid, q_start, heads, dim_head].map(|v| v as i32);
    let f = dev.get_or_load_custom_func("window_attention_f32", MODULE, kernels::PREDICTOR)?;
    let mut b = f.builder();
    b.arg(&q).arg(&o);
    for a in &args {
        b.arg(a);
    }
    // SAFETY: matches window_attention_f32(const float*, float*, int candidates, cap, valid, q_start, heads, dh);
    // qkv holds N·cap·3·inner f32, out N·queries·inner; valid ≤ cap, dh ≤ 128 (checked above).
    launched(unsafe { b.launch(warps(n * queries * heads)) })?;
    Ok(out)
}

/// `x + gate ⊙ (y + bias)` for (rows, dim) tensors, the gate at column `gate_off` of the modulation table; `y` may
/// also be (splits, rows, dim) partial sums of a split-K matmul, added here.
pub fn gate_residual(
    y: &Tensor,
    bias: Option<&Tensor>,
    table: ModulationTable<'_>,
    gate_off: usize,
    x: &Tensor,
) -> Result<Tensor> {
    let dim = x.dim(1)?;
    let rows = check_rows("x", x, dim)?;
    let (splits, y_rows, y_dim) = match y.dims() {
        [r, d] => (1, *r, *d),
        [s, r, d] => (*s, *r, *d),
        other => {
            return Err(Error::invalid_input(
                "y",
                format!("expected (rows, dim) or (splits, rows, dim), got {other:?}"),
            ))
        }
    };
    if y_rows != rows || y_dim != dim || !y.is_contiguous() || bias.is_some_and(|b| b.dims() != [dim]) {
        return Err(Error::invalid_input("y", format!("{:?} vs residual {:?}", y.dims(), x.dims())));
    }
    let splits = splits as i32;
    let dev = cuda(x.device())?;
    let (t, stride, len, lo, w) = table.dims(rows)?;
    let out = uninit_f32(dev, (rows, dim))?;
    let bp = bias.map(address).transpose()?.unwrap_or(0);
    let (yp, xp, op, g, rows64, dim32) =
        (address(y)?, address(x)?, address(&out)?, gate_off as i32, rows as i64, dim as i32);
    let f = dev.get_or_load_custom_func("gate_residual_f32", MODULE, kernels::PREDICTOR)?;
    let mut b = f.builder();
    b.arg(&yp).arg(&splits).arg(&bp).arg(&t).arg(&stride).arg(&len).arg(&lo).arg(&w).arg(&g).arg(&xp).arg(&op);
    b.arg(&rows64).arg(&dim32);
    // SAFETY: matches gate_residual_f32's signature; y holds splits·rows·dim f32, x/out rows·dim, bias dim (or null), the table
    // covers every token's row (checked above).
    launched(unsafe { b.launch(grid(rows * dim)) })?;
    Ok(out)
}
