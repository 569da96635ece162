//! Fused kernels for the LeWM predictor's rollout windows (`kernels/predictor.cu`): the double modulated
//! LayerNorm, the gated residual fused with the next norm, and causal window attention on the fused QKV
//! projection with its per-block cache. A ConditionalBlock becomes three GEMMs, a bias+GELU and three kernels.

use candle_core::Tensor;
use cudarc::driver::{LaunchArgs, PushKernelArg};

use super::gemm::Unreduced;
use super::launch::{address, cuda, launched, uninit_f32, warps};
use super::{KernelError, Result};
use crate::kernels;

const MODULE: &str = "swm_predictor";
/// Warps (rows) per block of the row kernels: a scoring call's 300–900 rows spread over every SM rather than a
/// third of them. Measured as fast as 8 warps a block (session 14: a row's time is its chain of loads, not the
/// SMs' share of rows); kept at 2 so that fewer rows still reach every SM.
const ROW_WARPS: usize = 2;
/// Widest row the row kernels hold in registers (32 lanes × 16 values).
const MAX_DIM: usize = 512;

/// The row kernel `name` instantiated for rows of `dim`: the smallest values-per-lane count that holds them.
fn row_kernel(name: &str, dim: usize) -> Result<String> {
    let items = [2, 4, 6, 8, 12, 16].into_iter().find(|n| 32 * n >= dim);
    let items = items.ok_or_else(|| KernelError::operand("width", format!("{dim} > {MAX_DIM}")))?;
    Ok(format!("{name}_{items}"))
}

/// Where a window's AdaLN vectors live: a (N, len, stride) table without bias plus its (stride,) bias; window
/// position p of candidate n reads row n·len + lo + p.
#[derive(Debug, Clone, Copy)]
pub struct ModulationTable<'a> {
    /// The table, contiguous (N, len, stride).
    pub table: &'a Tensor,
    /// The bias added to every row, (stride,).
    pub bias: &'a Tensor,
    /// First table row (action block) of the rows processed.
    pub lo: usize,
    /// Token rows per candidate.
    pub window: usize,
}

/// Pointers and sizes pushed for a [`ModulationTable`].
struct TableArgs {
    table: u64,
    bias: u64,
    stride: i64,
    len: i32,
    lo: i32,
    w: i32,
}

impl TableArgs {
    fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
        b.arg(&self.table).arg(&self.bias).arg(&self.stride).arg(&self.len).arg(&self.lo).arg(&self.w);
    }
}

impl ModulationTable<'_> {
    /// The launch arguments for `rows` tokens whose kernel reads `dim` columns from each of `columns`.
    fn args(&self, rows: usize, dim: usize, columns: &[usize]) -> Result<TableArgs> {
        let (n, len, stride) = self.table.dims3()?;
        if let Some(&column) = columns.iter().find(|&&c| c.checked_add(dim).is_none_or(|end| end > stride)) {
            return Err(KernelError::operand(
                "modulation table",
                format!("{dim} columns from column {column} do not fit rows of {stride}"),
            ));
        }
        if self.window == 0 || rows != n * self.window || self.lo + self.window > len || self.bias.dims() != [stride] {
            return Err(KernelError::operand(
                "modulation table",
                format!(
                    "{rows} tokens in windows of {} at {} do not fit a {:?} table with a {:?} bias",
                    self.window,
                    self.lo,
                    self.table.dims(),
                    self.bias.dims()
                ),
            ));
        }
        Ok(TableArgs {
            table: address(self.table)?,
            bias: address(self.bias)?,
            stride: stride as i64,
            len: len as i32,
            lo: self.lo as i32,
            w: self.window as i32,
        })
    }
}

/// One modulated double norm: the shift/scale chunks (table columns) and the affine LayerNorm after it.
#[derive(Debug, Clone, Copy)]
pub struct AdaNorm<'a> {
    /// Column of the shift vector.
    pub shift: usize,
    /// Column of the (1 + scale) vector.
    pub scale: usize,
    /// Affine LayerNorm weight.
    pub gamma: &'a Tensor,
    /// Affine LayerNorm bias.
    pub beta: &'a Tensor,
    /// Epsilon of the parameter-free LayerNorm.
    pub eps_plain: f32,
    /// Epsilon of the affine LayerNorm.
    pub eps_affine: f32,
}

impl AdaNorm<'_> {
    fn check(&self, dim: usize) -> Result<[u64; 2]> {
        if dim == 0 || dim > MAX_DIM || self.gamma.dims() != [dim] || self.beta.dims() != [dim] {
            return Err(KernelError::operand("norm", format!("width {dim} (1..={MAX_DIM}) with gamma/beta of {dim}")));
        }
        Ok([address(self.gamma)?, address(self.beta)?])
    }
}

/// Rows of a contiguous (rows, dim) operand with dim ≥ 1 (the row kernels read each row's columns from clamped
/// indices, which a zero width would put before the row).
fn check_rows(name: &str, t: &Tensor, dim: usize) -> Result<usize> {
    let (rows, d) = t.dims2()?;
    if d != dim || dim == 0 || !t.is_contiguous() {
        return Err(KernelError::operand(name, format!("expected contiguous (rows, {dim} ≥ 1), got {:?}", t.dims())));
    }
    Ok(rows)
}

/// Checks a residual branch: `y` (packed partial sums, see [`Unreduced::check_packed`]) and `x` of the same
/// (rows, dim), contiguous, a bias of dim.
fn check_branch(y: &Unreduced, bias: Option<&Tensor>, x: &Tensor) -> Result<(usize, usize)> {
    let dim = x.dim(1)?;
    let rows = check_rows("x", x, dim)?;
    y.check_packed(rows, dim)?;
    if bias.is_some_and(|b| b.dims() != [dim]) {
        return Err(KernelError::operand(
            "bias",
            format!("{:?} for a residual {:?}", bias.map(Tensor::dims), x.dims()),
        ));
    }
    Ok((rows, dim))
}

/// `LayerNorm_affine(LayerNorm_plain(x)·scale + shift)` for x (rows, dim).
pub fn adaln_double_norm(x: &Tensor, table: ModulationTable<'_>, norm: AdaNorm<'_>) -> Result<Tensor> {
    let dim = x.dim(1)?;
    let rows = check_rows("x", x, dim)?;
    let [g, be] = norm.check(dim)?;
    let t = table.args(rows, dim, &[norm.shift, norm.scale])?;
    let dev = cuda(x.device())?;
    let out = uninit_f32(dev, (rows, dim))?;
    let (xp, op) = (address(x)?, address(&out)?);
    let (so, sc, rows64, dim32) = (norm.shift as i32, norm.scale as i32, rows as i64, dim as i32);
    let f = dev.get_or_load_custom_func(&row_kernel("adaln_double_norm_f32", dim)?, MODULE, kernels::PREDICTOR)?;
    let mut b = f.builder();
    b.arg(&xp);
    t.push(&mut b);
    b.arg(&so).arg(&sc).arg(&g).arg(&be).arg(&op).arg(&rows64).arg(&dim32).arg(&norm.eps_plain).arg(&norm.eps_affine);
    // SAFETY: matches adaln_double_norm_f32's signature; x/out hold rows·dim f32 (dim ≤ 512), gamma/beta dim, the
    // table covers every (candidate, lo + p) row, the shift and scale columns fit its rows, and its bias every
    // column (checked above).
    launched(unsafe { b.launch(warps(rows, ROW_WARPS)) })?;
    Ok(out)
}

/// `x' = x + gate ⊙ (y + bias)` and `u = adaln_double_norm(x')` with `next`: returns (x', u). `y` may be
/// split-K partial sums, added here.
pub fn residual_norm(
    y: &Unreduced,
    bias: Option<&Tensor>,
    table: ModulationTable<'_>,
    gate: usize,
    x: &Tensor,
    next: AdaNorm<'_>,
) -> Result<(Tensor, Tensor)> {
    let (rows, dim) = check_branch(y, bias, x)?;
    let [g, be] = next.check(dim)?;
    let t = table.args(rows, dim, &[gate, next.shift, next.scale])?;
    let dev = cuda(x.device())?;
    let (x_out, u_out) = (uninit_f32(dev, (rows, dim))?, uninit_f32(dev, (rows, dim))?);
    let bp = bias.map(address).transpose()?.unwrap_or(0);
    let (yp, xp, xo, uo) = (address(&y.partials)?, address(x)?, address(&x_out)?, address(&u_out)?);
    let (gate, so, sc, rows64, dim32) = (gate as i32, next.shift as i32, next.scale as i32, rows as i64, dim as i32);
    let (splits, split_stride) = (y.splits() as i32, (rows * dim) as i64);
    let f = dev.get_or_load_custom_func(&row_kernel("residual_norm_f32", dim)?, MODULE, kernels::PREDICTOR)?;
    let mut b = f.builder();
    b.arg(&yp).arg(&splits).arg(&split_stride).arg(&bp);
    t.push(&mut b);
    b.arg(&gate).arg(&xp).arg(&xo).arg(&so).arg(&sc).arg(&g).arg(&be).arg(&uo).arg(&rows64).arg(&dim32);
    b.arg(&next.eps_plain).arg(&next.eps_affine);
    // SAFETY: matches residual_norm_f32_N's signature (N·32 ≥ dim); y holds splits·rows·dim f32, x/x_out/u_out
    // rows·dim (dim ≤ 512), bias and gamma/beta dim, the table covers every token's row and the gate, shift and
    // scale columns fit its rows (checked above).
    launched(unsafe { b.launch(warps(rows, ROW_WARPS)) })?;
    Ok((x_out, u_out))
}

/// `x + gate ⊙ (y + bias)` for (rows, dim) tensors, the gate at column `gate` of the modulation table; `y` may be
/// split-K partial sums.
pub fn gate_residual(
    y: &Unreduced,
    bias: Option<&Tensor>,
    table: ModulationTable<'_>,
    gate: usize,
    x: &Tensor,
) -> Result<Tensor> {
    let (rows, dim) = check_branch(y, bias, x)?;
    let t = table.args(rows, dim, &[gate])?;
    let dev = cuda(x.device())?;
    let out = uninit_f32(dev, (rows, dim))?;
    let bp = bias.map(address).transpose()?.unwrap_or(0);
    let (yp, xp, op, g, rows64, dim32) =
        (address(&y.partials)?, address(x)?, address(&out)?, gate as i32, rows as i64, dim as i32);
    let (splits, split_stride) = (y.splits() as i32, (rows * dim) as i64);
    let f = dev.get_or_load_custom_func(&row_kernel("gate_residual_f32", dim)?, MODULE, kernels::PREDICTOR)?;
    let mut b = f.builder();
    b.arg(&yp).arg(&splits).arg(&split_stride).arg(&bp);
    t.push(&mut b);
    b.arg(&g).arg(&xp).arg(&op).arg(&rows64).arg(&dim32);
    // SAFETY: matches gate_residual_f32_N's signature (N·32 ≥ dim); y holds splits·rows·dim f32, x/out rows·dim,
    // bias dim (or null), the table covers every token's row and the gate's columns fit its rows (checked above).
    launched(unsafe { b.launch(warps(rows, ROW_WARPS)) })?;
    Ok(out)
}

/// Causal attention for window positions `first..first + q` whose QKV projections are `fresh` (N, q, 3·inner);
/// earlier positions come from `cache` (N, cap, 3·inner), which receives the new keys/values. Answers the queries
/// from `q_start` on: (N·(first + q − q_start), inner).
pub fn window_attention(
    fresh: &Tensor,
    cache: Option<&Tensor>,
    first: usize,
    q_start: usize,
    heads: usize,
    dim_head: usize,
) -> Result<Tensor> {
    let inner = heads * dim_head;
    let (n, q, width) = fresh.dims3()?;
    let valid = first + q;
    let cap = match cache {
        Some(c) if c.dims() == [n, c.dim(1)?, 3 * inner] && c.is_contiguous() && valid <= c.dim(1)? => c.dim(1)?,
        Some(c) => return Err(KernelError::operand("cache", format!("{:?} cannot hold {valid} positions", c.dims()))),
        None if first == 0 => q,
        None => return Err(KernelError::operand("cache", format!("positions before {first} need a cache"))),
    };
    if width != 3 * inner
        || !fresh.is_contiguous()
        || q == 0
        || q_start < first
        || q_start >= valid
        || !(1..=128).contains(&dim_head)
    {
        return Err(KernelError::operand(
            "qkv",
            format!("{:?} at {first}, queries from {q_start}, {heads} heads of {dim_head} (1..=128)", fresh.dims()),
        ));
    }
    let dev = cuda(fresh.device())?;
    let queries = valid - q_start;
    let out = uninit_f32(dev, (n * queries, inner))?;
    let (f_ptr, c_ptr, o_ptr) = (address(fresh)?, cache.map(address).transpose()?.unwrap_or(0), address(&out)?);
    let args = [n, cap, first, q, q_start, heads, dim_head].map(|v| v as i32);
    let f = dev.get_or_load_custom_func("window_attention_f32", MODULE, kernels::PREDICTOR)?;
    let mut b = f.builder();
    b.arg(&f_ptr).arg(&c_ptr).arg(&o_ptr);
    for a in &args {
        b.arg(a);
    }
    // SAFETY: matches window_attention_f32(const float* fresh, float* cache, float* out, int candidates, cap,
    // first, q, q_start, heads, dh); fresh holds N·q·3·inner f32, cache N·cap·3·inner (or null with first = 0),
    // out N·queries·inner; first + q ≤ cap, dh ≤ 128 (checked above).
    launched(unsafe { b.launch(warps(n * queries * heads, 8)) })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulation_columns_must_fit_the_table_rows_before_any_launch() {
        let dev = candle_core::Device::Cpu;
        let table = Tensor::zeros((2, 3, 12), candle_core::DType::F32, &dev).unwrap();
        let bias = Tensor::zeros(12, candle_core::DType::F32, &dev).unwrap();
        let t = ModulationTable { table: &table, bias: &bias, lo: 0, window: 1 };
        let operand = |r: Result<TableArgs>| match r {
            Err(KernelError::Operand { operand, .. }) => operand,
            Err(other) => panic!("expected an operand error, got {other:?}"),
            Ok(_) => panic!("a host table passed as a device one"),
        };
        // Columns 7..13 overrun 12-wide rows; an offset near usize::MAX does not wrap around.
        assert_eq!(operand(t.args(2, 6, &[0, 7])), "modulation table");
        assert_eq!(operand(t.args(2, 6, &[usize::MAX])), "modulation table");
        // Columns that fit pass the table's checks: only the host tensor's address is refused.
        assert_eq!(operand(t.args(2, 6, &[0, 6])), "tensor");
    }
}
