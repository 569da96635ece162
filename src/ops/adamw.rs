//! The optimiser step of training in three launches (`kernels/train.cu`): the global gradient L2 norm and
//! `clip_grad_norm_`'s factor, then `torch.optim.AdamW`'s update of every parameter and both moments in place.
//! Candle's ops spend ~17 kernels (and as many allocations and host launches) per parameter on the same update.
//! Parameters, gradients and moments are contiguous f32 CUDA tensors; a table of their device addresses (built on
//! the host, copied to the device each step: the gradients are new tensors every step) tells the kernels where
//! each tensor lies.

use candle_core::{DType, Device, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::launch::{address, cuda, launched, uninit_f32};
use super::{KernelError, Result};
use crate::kernels;

/// Threads per block of the table kernels.
const THREADS: u32 = 256;

/// One AdamW step's hyper-parameters; `step` counts from 1 (the bias corrections' exponent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay λ (the parameter is multiplied by 1 − lr·λ).
    pub weight_decay: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the bias-corrected root second moment.
    pub eps: f64,
    /// The step's number, from 1.
    pub step: u64,
}

/// Blocks per tensor: enough for the largest one, at most 512 (grid-stride beyond).
fn blocks_per_tensor(sizes: &[i64]) -> u32 {
    let largest = sizes.iter().copied().max().unwrap_or(1).max(1) as u64;
    largest.div_ceil(u64::from(THREADS) * 4).clamp(1, 512) as u32
}

/// The tensors' lengths and a device table of their addresses (`per_row` tensors per row, in order).
fn table(rows: &[&[&Tensor]], device: &Device) -> Result<(Tensor, Tensor, Vec<i64>)> {
    let n = rows.first().map_or(0, |r| r.len());
    if n == 0 || n > 65_535 {
        return Err(KernelError::operand("tensors", format!("{n} tensors (1 to 65535 per launch)")));
    }
    let mut addresses = Vec::with_capacity(n * rows.len());
    let mut sizes = Vec::with_capacity(n);
    for i in 0..n {
        let len = rows[0][i].elem_count();
        for (k, column) in rows.iter().enumerate() {
            let t = column.get(i).ok_or_else(|| KernelError::operand("tensors", "lists of different lengths"))?;
            if t.dtype() != DType::F32 || t.elem_count() != len {
                return Err(KernelError::operand(
                    "tensors",
                    format!("tensor {i} of list {k}: {:?} {:?}, expected f32 of {len} values", t.dtype(), t.dims()),
                ));
            }
            if !t.device().same_device(device) {
                return Err(KernelError::operand("tensors", format!("tensor {i} of list {k} is on another device")));
            }
            addresses.push(address(t)? as i64);
        }
        sizes.push(len as i64);
    }
    // Row-major: the kernels read row i's addresses at [per_row · i ..].
    let table = Tensor::from_vec(addresses, n * rows.len(), device)?;
    let lengths = Tensor::from_vec(sizes.clone(), n, device)?;
    Ok((table, lengths, sizes))
}

/// The global L2 norm of `grads` and `clip_grad_norm_`'s factor `min(1, max_norm / (norm + 1e-6))` (1 without
/// `max_norm`; NaN when the norm is, as in torch), as a (2,) f32 device tensor: nothing is read back. The squares
/// are summed in double. `max_norm` must be positive and finite in f32.
pub fn grad_norm(grads: &[&Tensor], max_norm: Option<f64>) -> Result<Tensor> {
    if let Some(m) = max_norm.filter(|m| !(m.is_finite() && (*m as f32) > 0.0 && (*m as f32).is_finite())) {
        return Err(KernelError::operand("max_norm", format!("{m} (clipping needs a positive finite norm)")));
    }
    let device = grads.first().ok_or_else(|| KernelError::operand("grads", "no gradients"))?.device().clone();
    let dev = cuda(&device)?;
    let (table, lengths, sizes) = table(&[grads], &device)?;
    let per = blocks_per_tensor(&sizes);
    let count = sizes.len() as u32;
    let partial = Tensor::zeros((count * per) as usize, DType::F64, &device)?;
    let (t, l, p) = (address(&table)?, address(&lengths)?, address(&partial)?);
    let f = dev.get_or_load_custom_func("sumsq_multi_f32", "swm_train", kernels::TRAIN)?;
    let mut b = f.builder();
    b.arg(&t).arg(&l).arg(&p);
    let cfg = LaunchConfig { grid_dim: (per, count, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: sumsq_multi_f32(const u64* grads, const i64* sizes, double* partial); the table holds `count`
    // addresses of live f32 gradients of sizes[i] values (checked above; `grads` outlive the stream-ordered work
    // through the caller's borrow and Candle's stream-ordered frees), partial holds count·per doubles.
    launched(unsafe { b.launch(cfg) })?;
    let out = uninit_f32(dev, 2)?;
    let (o, total, max) = (address(&out)?, i64::from(count * per), max_norm.unwrap_or(0.0) as f32);
    let f = dev.get_or_load_custom_func("grad_norm_f32", "swm_train", kernels::TRAIN)?;
    let mut b = f.builder();
    b.arg(&p).arg(&total).arg(&max).arg(&o);
    let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: grad_norm_f32(const double* partial, long long count, float max_norm, float* out); partial holds
    // `total` doubles, out 2 floats, both written by this stream's work only.
    launched(unsafe { b.launch(cfg) })?;
    Ok(out)
}

/// AdamW in place (`torch.optim.AdamW`'s foreach update): every gradient is first scaled by `norm[1]` (the
/// clipping factor [`grad_norm`] returns), then each parameter and its two moments move. Four lists of the same
/// length, each tensor contiguous f32 on one CUDA device, lengths matching per index.
pub fn adamw_step(
    params: &[&Tensor],
    grads: &[&Tensor],
    m: &[&Tensor],
    v: &[&Tensor],
    norm: &Tensor,
    hp: &AdamWStep,
) -> Result<()> {
    if hp.step == 0 {
        return Err(KernelError::operand("step", "AdamW steps count from 1"));
    }
    for (name, list) in [("grads", grads), ("m", m), ("v", v)] {
        if list.len() != params.len() {
            return Err(KernelError::operand(name, format!("{} tensors for {} parameters", list.len(), params.len())));
        }
    }
    if norm.dtype() != DType::F32 || norm.elem_count() != 2 {
        return Err(KernelError::operand("norm", format!("expected grad_norm's (2,) f32, got {:?}", norm.dims())));
    }
    let device = params.first().ok_or_else(|| KernelError::operand("params", "no parameters"))?.device().clone();
    let dev = cuda(&device)?;
    let (table, lengths, sizes) = table(&[params, grads, m, v], &device)?;
    let count = sizes.len() as u32;
    let per = blocks_per_tensor(&sizes);
    let (t, l, c) = (address(&table)?, address(&lengths)?, address(norm)?);
    // The scalars as torch computes them (in double on the host, then used in float by the kernels).
    let decay = (1.0 - hp.lr * hp.weight_decay) as f32;
    let one_minus_beta1 = (1.0 - hp.beta1) as f32;
    let beta2 = hp.beta2 as f32;
    let one_minus_beta2 = (1.0 - hp.beta2) as f32;
    let exponent = i32::try_from(hp.step).unwrap_or(i32::MAX);
    let step_size = (hp.lr / (1.0 - hp.beta1.powi(exponent))) as f32;
    let bias2_sqrt = (1.0 - hp.beta2.powi(exponent)).sqrt() as f32;
    let eps = hp.eps as f32;
    let f = dev.get_or_load_custom_func("adamw_multi_f32", "swm_train", kernels::TRAIN)?;
    let mut b = f.builder();
    b.arg(&t).arg(&l).arg(&c);
    b.arg(&decay).arg(&one_minus_beta1).arg(&beta2).arg(&one_minus_beta2).arg(&step_size).arg(&bias2_sqrt).arg(&eps);
    let cfg = LaunchConfig { grid_dim: (per, count, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: adamw_multi_f32(const u64* table, const i64* sizes, const float* coef, float ×7); the table holds
    // 4·count addresses of live contiguous f32 tensors of sizes[i] values each (checked above), coef 2 floats;
    // the parameters and moments are written in place, by this stream's work only (Candle orders its own reads
    // of them on the same stream).
    launched(unsafe { b.launch(cfg) })
}
