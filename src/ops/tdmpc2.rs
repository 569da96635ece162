//! TD-MPC2 row kernels (`kernels/tdmpc2.cu`): a NormedLinear's LayerNorm + Mish / SimNorm in one launch, and a
//! two-hot head's expectation (softmax · bins, symexp) in one launch. Each replaces 5–10 Candle kernels.

use candle_core::Tensor;
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::gemm::Unreduced;
use super::launch::{address, cuda, grid, launched, uninit_f32, warps};
use super::{KernelError, Result};
use crate::kernels;

const MODULE: &str = "swm_tdmpc2";
/// Widest row the kernels hold in registers (32 lanes × 16 values).
pub const MAX_WIDTH: usize = 512;

/// The activation after a NormedLinear's LayerNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormAct {
    /// `x · tanh(softplus(x))`.
    Mish,
    /// Softmax over consecutive groups of this many values (a power of two ≤ 32).
    SimNorm(usize),
    /// None: the LayerNorm alone (a ViT layer's pre-norms).
    Identity,
}

/// The width class N of a row of `width`, the kernels' name suffix: the smallest N ∈ {2, 4, 8, 16} with 32·N ≥
/// width (a warp-per-row kernel's values per lane; norm_act spreads them over max(1, N / 4) warps).
fn lane_items(width: usize) -> Result<usize> {
    let items = [2, 4, 8, 16].into_iter().find(|n| 32 * n >= width);
    items.ok_or_else(|| KernelError::operand("width", format!("{width} > {MAX_WIDTH}")))
}

fn kernel(name: &str, width: usize) -> Result<String> {
    Ok(format!("{name}_{}", lane_items(width)?))
}

/// Whether [`norm_act`] handles rows of `width` with `act`.
pub fn supports(width: usize, act: NormAct) -> bool {
    let group_fits = match act {
        NormAct::Mish | NormAct::Identity => true,
        NormAct::SimNorm(g) => g.is_power_of_two() && g <= 32 && width.is_multiple_of(g),
    };
    width <= MAX_WIDTH && group_fits
}

/// `act(LayerNorm(x)·γ + β)` over the last dim of a contiguous (rows, width) tensor.
pub fn norm_act(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32, act: NormAct) -> Result<Tensor> {
    norm_act_heads(x, gamma, beta, eps, act, 1)
}

/// [`norm_act`] for `heads` layers side by side: x is (rows, heads·width), head h's LayerNorm and activation
/// apply to column block h with γ and β at h·width (both heads·width long).
pub fn norm_act_heads(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    act: NormAct,
    heads: usize,
) -> Result<Tensor> {
    norm_act_unreduced(&Unreduced::contiguous(x.clone(), heads)?, gamma, beta, eps, act)
}

/// [`norm_act_heads`] on a GEMM's unreduced output (see [`Unreduced`]): the partial sums and the bias are added
/// as the rows are read — the reduction launch folded into this one. Returns (rows, heads·width), contiguous.
pub fn norm_act_unreduced(y: &Unreduced, gamma: &Tensor, beta: &Tensor, eps: f32, act: NormAct) -> Result<Tensor> {
    let dev = cuda(y.partials.device())?;
    let out = uninit_f32(dev, (y.rows, y.heads * y.width))?;
    launch_norm_act(y, None, gamma, beta, eps, act, &out, y.heads * y.width)?;
    Ok(out)
}

/// [`norm_act_unreduced`] written into the first heads·width columns of each row of `out` (rows, ≥ heads·width):
/// a TD-MPC2 step's latent straight into the next step's input `[z, a, 0…]`, whose other columns are left as they
/// are. `out` is written through a shared reference: it must own its storage (a buffer the caller alone holds,
/// not a view of a tensor read elsewhere), and may not overlap the partial sums read.
pub fn norm_act_unreduced_into(
    y: &Unreduced,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    act: NormAct,
    out: &Tensor,
) -> Result<()> {
    let all = y.heads * y.width;
    let fits = matches!(out.dims2(), Ok((rows, cols)) if rows == y.rows && cols >= all)
        && out.dtype() == candle_core::DType::F32
        && out.is_contiguous()
        && out.device().same_device(y.partials.device());
    let (start, end) = (address(out)?, address(out)? + 4 * out.elem_count() as u64);
    let (read, read_end) = (address(&y.partials)?, address(&y.partials)? + 4 * y.partials.elem_count() as u64);
    if !fits || (start < read_end && read < end) {
        return Err(KernelError::operand(
            "out",
            format!(
                "{:?} ({:?}) for {} rows of {all} values, not overlapping the partial sums {:?}",
                out.dims(),
                out.dtype(),
                y.rows,
                y.partials.dims()
            ),
        ));
    }
    launch_norm_act(y, None, gamma, beta, eps, act, out, out.dim(1)?)
}

/// A pre-LN transformer's residual step and the next sublayer's LayerNorm in one launch: `sum = residual + y`
/// (y a one-head GEMM output with its bias, possibly unreduced; summed as [`crate::ops::bias_act`]'s residual
/// kernel does) and `LayerNorm(sum)·γ + β`. Returns (sum, normed), both contiguous like `residual`.
pub fn residual_norm(
    y: &Unreduced,
    residual: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor)> {
    // The sum has the residual's shape, so the residual's checks in the launcher cover it too.
    let dev = cuda(residual.device())?;
    let sum = uninit_f32(dev, residual.shape().clone())?;
    let normed = uninit_f32(dev, (y.rows, y.heads * y.width))?;
    launch_norm_act(y, Some((residual, &sum)), gamma, beta, eps, NormAct::Identity, &normed, y.heads * y.width)?;
    Ok((sum, normed.reshape(residual.shape())?))
}

/// Launches `norm_act_f32_N` on `y` into `out`, whose rows are `out_stride` values apart (each row's heads·width
/// values at its start); with (residual, sum), `residual` (rows, heads·width) is added before the norm and the row
/// written to `sum` (a fresh tensor of the residual's shape) as well.
#[allow(clippy::too_many_arguments)]
fn launch_norm_act(
    y: &Unreduced,
    residual: Option<(&Tensor, &Tensor)>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    act: NormAct,
    out: &Tensor,
    out_stride: usize,
) -> Result<()> {
    let Unreduced { rows, heads, width, splits, split_stride, head_stride, row_stride, .. } = *y;
    let all = heads * width;
    let params_f32 = gamma.dtype() == candle_core::DType::F32 && beta.dtype() == candle_core::DType::F32;
    let residual_fits = residual.is_none_or(|(r, sum)| {
        sum.dims() == r.dims()
            && sum.is_contiguous()
            && sum.dtype() == candle_core::DType::F32
            && r.dtype() == candle_core::DType::F32
            && r.is_contiguous()
            && r.elem_count() == rows * all
            && r.device().same_device(y.partials.device())
    });
    let on_device = gamma.device().same_device(y.partials.device()) && beta.device().same_device(y.partials.device());
    let fits =
        y.check(heads, width).is_ok() && gamma.dims() == [all] && beta.dims() == [all] && params_f32 && on_device;
    let out_fits = out.dtype() == candle_core::DType::F32
        && out.is_contiguous()
        && out_stride >= all
        && (rows == 0 || out.elem_count() >= (rows - 1) * out_stride + all)
        && out.device().same_device(y.partials.device());
    if !fits || !residual_fits || !out_fits || !supports(width, act) {
        return Err(KernelError::operand(
            "x",
            format!(
                "{:?} as {rows} rows of {heads} heads × {width} with γ {:?}, β {:?}, residual {:?} and {act:?}: \
                 unsupported",
                y.partials.dims(),
                gamma.dims(),
                beta.dims(),
                residual.map(|(r, _)| r.dims())
            ),
        ));
    }
    let dev = cuda(y.partials.device())?;
    let (xp, gp, bp, op) = (address(&y.partials)?, address(gamma)?, address(beta)?, address(out)?);
    let biasp = y.bias.as_ref().map(address).transpose()?.unwrap_or(0);
    let (rp, sp) = match residual {
        Some((r, sum)) => (address(r)?, address(sum)?),
        None => (0, 0),
    };
    let (act_code, group) = match act {
        NormAct::Mish => (0i32, 1i32),
        NormAct::SimNorm(g) => (1, g as i32),
        NormAct::Identity => (2, 1),
    };
    let (rows64, width32, heads32, splits32) = ((rows * heads) as i64, width as i32, heads as i32, splits as i32);
    let (ss, hs, rs) = (split_stride as i64, head_stride as i64, row_stride as i64);
    let f = dev.get_or_load_custom_func(&kernel("norm_act_f32", width)?, MODULE, kernels::TDMPC2)?;
    let mut b = f.builder();
    b.arg(&xp).arg(&splits32).arg(&ss).arg(&hs).arg(&rs).arg(&biasp).arg(&gp).arg(&bp).arg(&op);
    let out_stride64 = out_stride as i64;
    b.arg(&rows64).arg(&width32).arg(&eps).arg(&act_code).arg(&group).arg(&heads32).arg(&rp).arg(&sp);
    b.arg(&out_stride64);
    // One block per row of max(1, N / 4) warps, as `norm_act_f32_N` is compiled for.
    let warps = (lane_items(width)? / 4).max(1) as u32;
    let blocks = (rows * heads).clamp(1, 1 << 20) as u32;
    let config = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (32 * warps, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: matches norm_act_f32_N(x, splits, split_stride, head_stride, row_stride, bias, gamma, beta, out, rows,
    // dim, eps, act, group, heads, residual, sum_out, out_stride) with 32·N ≥ width; every value read lies within
    // the partials (checked: the farthest row start plus width), the bias (when set), γ and β hold heads·width f32,
    // out holds (rows − 1)·out_stride + heads·width f32 with out_stride ≥ heads·width (checked), the residual and
    // the sum when set (checked; the sum fresh) rows·heads·width; a SimNorm group divides 32 and the width (checked
    // by `supports`).
    launched(unsafe { b.launch(config) })
}

/// `symexp(Σ_i softmax(logits)_i · bins_i)` per row of contiguous (rows, bins) logits → (rows, 1).
pub fn two_hot_inv(logits: &Tensor, bins: &Tensor) -> Result<Tensor> {
    let u = Unreduced::contiguous(logits.clone(), 1)?;
    check_logits(&u, bins, 1)?;
    let dev = cuda(logits.device())?;
    let out = uninit_f32(dev, (u.rows, 1))?;
    launch_two_hot(&u, bins, &out, 1.0, false)?;
    Ok(out)
}

/// `ret += scale · two_hot_inv(logits)`: a reward head's value added to a discounted return (rows, 1) in place,
/// as `ret + (value · scale)` with rounded operations. `ret` is written through a shared reference: it must own
/// its storage (a fresh buffer the caller alone holds, not a view or clone of a tensor read elsewhere).
pub fn two_hot_accumulate(logits: &Tensor, bins: &Tensor, ret: &Tensor, scale: f32) -> Result<()> {
    two_hot_accumulate_unreduced(&Unreduced::contiguous(logits.clone(), 1)?, bins, ret, scale)
}

/// [`two_hot_accumulate`] on a reward head's unreduced logits (see [`Unreduced`]; one head).
pub fn two_hot_accumulate_unreduced(logits: &Unreduced, bins: &Tensor, ret: &Tensor, scale: f32) -> Result<()> {
    check_logits(logits, bins, 1)?;
    check_ret(ret, logits)?;
    launch_two_hot(logits, bins, ret, scale, true)
}

/// TD-MPC2's planning cost from the Q ensemble's logits (rows, heads·bins) — head h in column block h — and the
/// discounted return `ret` (rows, 1): `−(ret + discount·(q̄ − c·|q̄|·σ))` over the heads' two-hot values (σ with
/// Bessel's correction), (rows,). One launch for the heads' values and the conservative estimate.
pub fn q_cost(logits: &Tensor, bins: &Tensor, heads: usize, ret: &Tensor, c: f32, discount: f32) -> Result<Tensor> {
    q_cost_unreduced(&Unreduced::contiguous(logits.clone(), heads)?, bins, ret, c, discount)
}

/// [`q_cost`] on the ensemble's unreduced logits (see [`Unreduced`]: one head per Q head).
pub fn q_cost_unreduced(logits: &Unreduced, bins: &Tensor, ret: &Tensor, c: f32, discount: f32) -> Result<Tensor> {
    let heads = logits.heads;
    if !(2..=MAX_HEADS).contains(&heads) {
        return Err(KernelError::operand("heads", format!("{heads}: 2 ..= {MAX_HEADS} Q heads")));
    }
    check_logits(logits, bins, heads)?;
    check_ret(ret, logits)?;
    let rows = logits.rows;
    let dev = cuda(logits.partials.device())?;
    let out = uninit_f32(dev, rows)?;
    let (lp, bp, rp, op) = (address(&logits.partials)?, address(bins)?, address(ret)?, address(&out)?);
    let biasp = logits.bias.as_ref().map(address).transpose()?.unwrap_or(0);
    let (rows64, nb32, heads32, splits32) = (rows as i64, logits.width as i32, heads as i32, logits.splits as i32);
    let (ss, hs, rs) = (logits.split_stride as i64, logits.head_stride as i64, logits.row_stride as i64);
    let f = dev.get_or_load_custom_func(&kernel("q_cost_f32", logits.width)?, MODULE, kernels::TDMPC2)?;
    let mut b = f.builder();
    b.arg(&lp).arg(&splits32).arg(&ss).arg(&hs).arg(&rs).arg(&biasp).arg(&bp).arg(&rp).arg(&op);
    b.arg(&rows64).arg(&nb32).arg(&heads32).arg(&c).arg(&discount);
    let blocks = rows.clamp(1, 1 << 20) as u32;
    let config = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (32 * heads as u32, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: matches q_cost_f32_N(logits, splits, split_stride, head_stride, row_stride, bias, bins, ret, out, rows,
    // nb, heads, c, discount) with 32·N ≥ nb and heads ≤ SWM_MAX_HEADS; every logit read lies within the partials
    // and the bias holds heads·nb f32 (checked by `check_logits`), bins nb, ret and out rows (checked above); the
    // block has one warp per head (the kernel's shared array holds SWM_MAX_HEADS ≥ heads values).
    launched(unsafe { b.launch(config) })?;
    Ok(out)
}

/// Most Q heads [`q_cost`] takes (`SWM_MAX_HEADS` in `kernels/tdmpc2.cu`).
pub const MAX_HEADS: usize = 8;

/// Checks unreduced logits of `heads` heads of `bins.len()` bins: every value the kernels read lies in the partials
/// (and the bias).
fn check_logits(logits: &Unreduced, bins: &Tensor, heads: usize) -> Result<()> {
    let nb = bins.elem_count();
    let bins_ok = bins.dims() == [nb] && bins.dtype() == candle_core::DType::F32 && nb > 0 && nb <= MAX_WIDTH;
    if !bins_ok || logits.check(heads, nb).is_err() {
        return Err(KernelError::operand(
            "logits",
            format!(
                "{:?} as {} rows of {} heads × {} with bins {:?}: expected {heads} heads of ≤ {MAX_WIDTH} f32 bins",
                logits.partials.dims(),
                logits.rows,
                logits.heads,
                logits.width,
                bins.dims()
            ),
        ));
    }
    Ok(())
}

/// A return (rows, 1) of f32 on the logits' device.
fn check_ret(ret: &Tensor, logits: &Unreduced) -> Result<()> {
    let same_device = ret.device().same_device(logits.partials.device());
    if ret.elem_count() != logits.rows || !ret.is_contiguous() || ret.dtype() != candle_core::DType::F32 || !same_device
    {
        return Err(KernelError::operand("ret", format!("{:?} for {} rows", ret.dims(), logits.rows)));
    }
    Ok(())
}

fn launch_two_hot(logits: &Unreduced, bins: &Tensor, out: &Tensor, scale: f32, accumulate: bool) -> Result<()> {
    let dev = cuda(logits.partials.device())?;
    let (lp, bp, op) = (address(&logits.partials)?, address(bins)?, address(out)?);
    let biasp = logits.bias.as_ref().map(address).transpose()?.unwrap_or(0);
    let (rows64, nb32, splits32) = (logits.rows as i64, logits.width as i32, logits.splits as i32);
    let (ss, ld) = (logits.split_stride as i64, logits.row_stride as i64);
    let acc = i32::from(accumulate);
    let f = dev.get_or_load_custom_func(&kernel("two_hot_inv_f32", logits.width)?, MODULE, kernels::TDMPC2)?;
    let mut b = f.builder();
    b.arg(&lp).arg(&splits32).arg(&ss).arg(&biasp).arg(&bp).arg(&op).arg(&rows64).arg(&nb32).arg(&ld);
    b.arg(&scale).arg(&acc);
    // SAFETY: matches two_hot_inv_f32_N(logits, splits, split_stride, bias, bins, out, rows, nb, ld, scale,
    // accumulate) with 32·N ≥ nb; every logit read lies within the partials and the bias holds nb f32 (checked by
    // `check_logits` for one head), bins nb, out rows (checked by the callers).
    launched(unsafe { b.launch(warps(logits.rows, 2)) })
}

/// Every horizon step's input at once, (H, N, width ≥ Z + A): step t's row r is `[·, actions[r, t], 0…]`, with
/// `z[r / repeat]` as the latent columns of step 0 and zeros as those of later steps, for the dynamics'
/// [`norm_act_unreduced_into`] to fill as the rollout advances (see [`concat_rows`] for one step).
pub fn step_inputs(z: &Tensor, repeat: usize, actions: &Tensor, width: usize) -> Result<Tensor> {
    let (zrows, zdim) = z.dims2()?;
    let (rows, horizon, adim) = actions.dims3()?;
    let f32s = z.dtype() == candle_core::DType::F32 && actions.dtype() == candle_core::DType::F32;
    let shaped = repeat > 0 && zrows * repeat == rows && horizon > 0 && width >= zdim + adim;
    if !shaped || !f32s || !z.device().same_device(actions.device()) {
        return Err(KernelError::operand(
            "actions",
            format!("{:?} with latents {:?} repeated {repeat}× into {width} columns", actions.dims(), z.dims()),
        ));
    }
    let dev = cuda(z.device())?;
    let out = uninit_f32(dev, (horizon, rows, width))?;
    let (zp, ap, op) = (address(z)?, address(actions)?, address(&out)?);
    let (rep, zd, stride, ad, rows64) = (repeat as i64, zdim as i32, (horizon * adim) as i64, adim as i32, rows as i64);
    let width32 = i32::try_from(width).map_err(|_| KernelError::operand("width", format!("{width} columns")))?;
    let steps32 = i32::try_from(horizon).map_err(|_| KernelError::operand("actions", format!("{horizon} steps")))?;
    let f = dev.get_or_load_custom_func("step_inputs_f32", MODULE, kernels::TDMPC2)?;
    let mut b = f.builder();
    b.arg(&zp).arg(&rep).arg(&zd).arg(&ap).arg(&stride).arg(&ad).arg(&width32).arg(&op).arg(&rows64).arg(&steps32);
    // SAFETY: matches step_inputs_f32(z, repeat, zdim, a, a_stride, adim, width, out, rows, steps); z holds
    // (rows / repeat)·zdim f32 (checked), the actions rows·horizon·adim, of which step s of row r is read at
    // r·horizon·adim + s·adim (s < horizon), out horizon·rows·width with width ≥ zdim + adim (checked).
    launched(unsafe { b.launch(grid(horizon * rows * width)) })?;
    Ok(out)
}

/// A model step's input `[z[r / repeat], actions[r, step], 0…]` for rows r < N, (N, width ≥ Z + A), in one launch: z
/// (N / repeat, Z) repeated over each env's candidates, actions (N, H, A) read at horizon step `step` in place (both
/// contiguous), zeros in the columns past Z + A (a row padded for the GEMM's 16-byte copies).
pub fn concat_rows(z: &Tensor, repeat: usize, actions: &Tensor, step: usize, width: usize) -> Result<Tensor> {
    let (zrows, zdim) = z.dims2()?;
    let (rows, horizon, adim) = actions.dims3()?;
    let f32s = z.dtype() == candle_core::DType::F32 && actions.dtype() == candle_core::DType::F32;
    let shaped = repeat > 0 && zrows * repeat == rows && step < horizon && width >= zdim + adim;
    if !shaped || !f32s || !z.device().same_device(actions.device()) {
        return Err(KernelError::operand(
            "actions",
            format!(
                "{:?} at step {step} with latents {:?} repeated {repeat}× into {width} columns",
                actions.dims(),
                z.dims()
            ),
        ));
    }
    let dev = cuda(z.device())?;
    let out = uninit_f32(dev, (rows, width))?;
    let (zp, ap, op) = (address(z)?, address(actions)? + (step * adim * 4) as u64, address(&out)?);
    let (rep, zd, stride, ad, rows64) = (repeat as i64, zdim as i32, (horizon * adim) as i64, adim as i32, rows as i64);
    let width32 = i32::try_from(width).map_err(|_| KernelError::operand("width", format!("{width} columns")))?;
    let f = dev.get_or_load_custom_func("concat_rows_f32", MODULE, kernels::TDMPC2)?;
    let mut b = f.builder();
    b.arg(&zp).arg(&rep).arg(&zd).arg(&ap).arg(&stride).arg(&ad).arg(&width32).arg(&op).arg(&rows64);
    // SAFETY: matches concat_rows_f32(z, repeat, zdim, a, a_stride, adim, width, out, rows); z holds
    // (rows / repeat)·zdim f32 (checked), the actions rows·horizon·adim from which row r's step is read at
    // r·horizon·adim + step·adim (step < horizon), out rows·width with width ≥ zdim + adim (checked).
    launched(unsafe { b.launch(grid(rows * width)) })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn operand<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(KernelError::Operand { operand, .. }) => operand,
            other => panic!("expected an operand error, got {other:?}"),
        }
    }

    #[test]
    fn step_inputs_name_bad_shapes_before_touching_a_device() {
        let cpu = Device::Cpu;
        let z = Tensor::zeros((2, 8), DType::F32, &cpu).unwrap();
        let actions = Tensor::zeros((6, 3, 2), DType::F32, &cpu).unwrap();
        // 2 latents × 3 candidates = 6 rows; a row of 10 holds 8 + 2.
        assert_eq!(operand(step_inputs(&z, 2, &actions, 10)), "actions", "2 × 2 ≠ 6 rows");
        assert_eq!(operand(step_inputs(&z, 3, &actions, 9)), "actions", "a row narrower than z and a");
        assert_eq!(operand(step_inputs(&z, 0, &actions, 10)), "actions", "no candidates per latent");
        let empty = Tensor::zeros((6, 0, 2), DType::F32, &cpu).unwrap();
        assert_eq!(operand(step_inputs(&z, 3, &empty, 10)), "actions", "no horizon");
        let f64s = actions.to_dtype(DType::F64).unwrap();
        assert_eq!(operand(step_inputs(&z, 3, &f64s, 10)), "actions", "f64 actions");
        // Shapes that fit reach the device check: host tensors are refused, not launched.
        assert!(step_inputs(&z, 3, &actions, 10).is_err());
    }
}
