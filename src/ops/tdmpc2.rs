//! TD-MPC2 row kernels (`kernels/tdmpc2.cu`): a NormedLinear's LayerNorm + Mish / SimNorm in one launch, and a
//! two-hot head's expectation (softmax · bins, symexp) in one launch. Each replaces 5–10 Candle kernels.

use candle_core::Tensor;
use cudarc::driver::PushKernelArg;

use super::launch::{address, cuda, launched, uninit_f32, warps};
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
}

fn kernel(name: &str, width: usize) -> Result<String> {
    let items = [2, 4, 8, 16].into_iter().find(|n| 32 * n >= width);
    let items = items.ok_or_else(|| KernelError::operand("width", format!("{width} > {MAX_WIDTH}")))?;
    Ok(format!("{name}_{items}"))
}

/// Whether [`norm_act`] handles rows of `width` with `act`.
pub fn supports(width: usize, act: NormAct) -> bool {
    let group_fits = match act {
        NormAct::Mish => true,
        NormAct::SimNorm(g) => g.is_power_of_two() && g <= 32 && width.is_multiple_of(g),
    };
    width <= MAX_WIDTH && group_fits
}

/// `act(LayerNorm(x)·γ + β)` over the last dim of a contiguous (rows, width) tensor.
pub fn norm_act(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32, act: NormAct) -> Result<Tensor> {
    let (rows, width) = x.dims2()?;
    if !x.is_contiguous() || gamma.dims() != [width] || beta.dims() != [width] || !supports(width, act) {
        return Err(KernelError::operand(
            "x",
            format!("{:?} with γ {:?}, β {:?} and {act:?}: unsupported", x.dims(), gamma.dims(), beta.dims()),
        ));
    }
    let dev = cuda(x.device())?;
    let out = uninit_f32(dev, (rows, width))?;
    let (xp, gp, bp, op) = (address(x)?, address(gamma)?, address(beta)?, address(&out)?);
    let (act_code, group) = match act {
        NormAct::Mish => (0i32, 1i32),
        NormAct::SimNorm(g) => (1, g as i32),
    };
    let (rows64, width32) = (rows as i64, width as i32);
    let f = dev.get_or_load_custom_func(&kernel("norm_act_f32", width)?, MODULE, kernels::TDMPC2)?;
    let mut b = f.builder();
    b.arg(&xp).arg(&gp).arg(&bp).arg(&op).arg(&rows64).arg(&width32).arg(&eps).arg(&act_code).arg(&group);
    // SAFETY: matches norm_act_f32_N(x, gamma, beta, out, rows, dim, eps, act, group) with 32·N ≥ width; x and out
    // hold rows·width f32, gamma/beta width; a SimNorm group divides 32 and the width (checked by `supports`).
    launched(unsafe { b.launch(warps(rows)) })?;
    Ok(out)
}

/// `symexp(Σ_i softmax(logits)_i · bins_i)` per row of contiguous (rows, bins) logits → (rows, 1).
pub fn two_hot_inv(logits: &Tensor, bins: &Tensor) -> Result<Tensor> {
    let (rows, nb) = logits.dims2()?;
    if !logits.is_contiguous() || bins.dims() != [nb] || nb > MAX_WIDTH {
        return Err(KernelError::operand(
            "logits",
            format!(
                "{:?} with bins {:?}: expected (rows, ≤ {MAX_WIDTH}) and matching bins",
                logits.dims(),
                bins.dims()
            ),
        ));
    }
    let dev = cuda(logits.device())?;
    let out = uninit_f32(dev, (rows, 1))?;
    let (lp, bp, op, rows64, nb32) = (address(logits)?, address(bins)?, address(&out)?, rows as i64, nb as i32);
    let f = dev.get_or_load_custom_func(&kernel("two_hot_inv_f32", nb)?, MODULE, kernels::TDMPC2)?;
    let mut b = f.builder();
    b.arg(&lp).arg(&bp).arg(&op).arg(&rows64).arg(&nb32);
    // SAFETY: matches two_hot_inv_f32_N(logits, bins, out, rows, nb) with 32·N ≥ nb; logits hold rows·nb f32,
    // bins nb, out rows.
    launched(unsafe { b.launch(warps(rows)) })?;
    Ok(out)
}
