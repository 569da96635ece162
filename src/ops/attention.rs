//! Unmasked softmax attention on a fused QKV projection (`kernels/attention.cu`): a ViT layer's attention in one
//! launch, reading q, k and v where the projection wrote them and writing the heads merged, instead of a permute,
//! two batched matmuls, a softmax and a transpose. Heads of 16, 32, 48 or 64 columns run on the tensor cores
//! (f32-class split-TF32 products, any number of positions); other heads up to 64 columns on a SIMT kernel that
//! stages a head's keys and values in shared memory.

use candle_core::backend::BackendStorage;
use std::sync::OnceLock;

use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::launch::{cuda_only, f32_view};
use super::{KernelError, Result};
use crate::kernels;

/// Widest head the kernels take (the tensor-core kernel's widest instance; the SIMT kernel's lanes hold two output
/// columns each).
pub const MAX_HEAD_DIM: usize = 64;
/// Queries per block of the SIMT kernel, one warp each (`SWM_ATT_QUERIES` in `kernels/attention.cu`).
const QUERIES: usize = 8;
/// Queries per block of the tensor-core kernel (`SWM_MMA_QUERIES`), answered by `MMA_WARPS` warps.
const MMA_QUERIES: usize = 16;
/// Warps per block of the tensor-core kernel (`SWM_MMA_WARPS`).
const MMA_WARPS: usize = 8;

/// Whether heads of `dh` columns take the tensor-core kernel (`attention_mma_f32_{dh}`).
fn tensor_core_head(dh: usize) -> bool {
    matches!(dh, 16 | 32 | 48 | 64)
}
/// Most dynamic shared memory a block may ask for where the device does not say (sm_90's 227 KiB).
const SM90_SHARED_BYTES: usize = 227 * 1024;

/// Most dynamic shared memory a block of the first CUDA device may opt into (99 KiB on sm_86/89, 227 on sm_90); 0
/// off CUDA.
fn shared_limit(device: &Device) -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    let Device::Cuda(d) = device else { return 0 };
    *LIMIT.get_or_init(|| {
        let optin = CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN;
        d.cuda_stream().context().attribute(optin).map_or(SM90_SHARED_BYTES, |v| v.max(0) as usize)
    })
}

/// Dynamic shared memory of a block: a head's padded keys and its values over `t` positions, the block's queries
/// and their scores.
fn shared_bytes(t: usize, dh: usize) -> usize {
    4 * (t * (dh + 4) + t * dh + QUERIES * dh + QUERIES * t)
}

/// Whether `heads` heads of a projection `inner` wide (q, k and v each) over `t` positions fit a kernel: heads of
/// 16, 32, 48 or 64 columns (tensor cores, any `t`), or other heads of at most 64 columns, a multiple of 4, whose
/// keys and values fit in `limit` bytes of shared memory.
fn fits(inner: usize, heads: usize, t: usize, limit: usize) -> bool {
    let simt = |dh: usize| dh.is_multiple_of(4) && dh <= MAX_HEAD_DIM && shared_bytes(t, dh) <= limit;
    let head = |dh: usize| tensor_core_head(dh) || simt(dh);
    let positions = t > 0 && t <= i32::MAX as usize;
    heads > 0 && heads <= 65_535 && positions && inner.is_multiple_of(heads) && head(inner / heads)
}

/// Whether [`attention`] takes `qkv` (N, T, 3·inner) as `heads` heads: f32 on a CUDA device, 1 ≤ N ≤ 65535, and
/// heads that fit a kernel (16, 32, 48 or 64 columns; or at most 64 columns, a multiple of 4, with T positions of
/// keys and values in the device's shared memory per block). Callers take the composed ops otherwise.
pub fn supports(qkv: &Tensor, heads: usize) -> bool {
    let Ok((n, t, width)) = qkv.dims3() else { return false };
    let shaped = width.is_multiple_of(3) && (1..=65_535).contains(&n);
    let on_cuda = qkv.device().is_cuda();
    on_cuda && shaped && qkv.dtype() == DType::F32 && fits(width / 3, heads, t, shared_limit(qkv.device()))
}

/// `softmax(q·kᵀ)·v` per head for qkv (N, T, 3·inner), f32 with rows [q | k | v] of `heads` heads each (the
/// softmax scale already folded into q): returns (N, T, inner) with head h in columns h·inner/heads…
pub fn attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    if !supports(qkv, heads) {
        return Err(KernelError::operand(
            "qkv",
            format!(
                "{:?} {:?} as {heads} heads: expected CUDA f32 (1 ≤ N ≤ 65535, T > 0, 3 · heads · dh) with dh 16, \
                 32, 48 or 64, or dh ≤ {MAX_HEAD_DIM} a multiple of 4 and T positions in {} KiB of shared memory",
                qkv.dims(),
                qkv.dtype(),
                shared_limit(qkv.device()) / 1024
            ),
        ));
    }
    Ok(qkv.contiguous()?.apply_op1_no_bwd(&Attention { heads })?)
}

/// The launch behind [`attention`] (shapes checked there).
struct Attention {
    heads: usize,
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "swm-attention"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        cuda_only()
    }

    fn cuda_fwd(&self, qkv: &CudaStorage, layout: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let (n, t, width) = layout.shape().dims3()?;
        let (heads, inner) = (self.heads, width / 3);
        let dev = qkv.device();
        let input = f32_view(qkv, layout)?;
        let misaligned = !layout.start_offset().is_multiple_of(4);
        if misaligned {
            candle_core::bail!("swm-attention: qkv starts at element {}, not 16-byte aligned", layout.start_offset());
        }
        // SAFETY: the kernel below writes every element (each query row of each head) before the tensor is read.
        let out = unsafe { dev.alloc::<f32>(n * t * inner)? };
        let dh = inner / heads;
        let (t32, h32, dh32) = (t as i32, heads as i32, dh as i32);
        if tensor_core_head(dh) {
            let name = format!("attention_mma_f32_{dh}");
            let f = dev.get_or_load_custom_func(&name, "swm_attention", kernels::ATTENTION)?;
            let mut b = f.builder();
            b.arg(&input).arg(&out).arg(&t32).arg(&h32);
            let config = LaunchConfig {
                grid_dim: (t.div_ceil(MMA_QUERIES) as u32, heads as u32, n as u32),
                block_dim: (32 * MMA_WARPS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: matches attention_mma_f32_{dh}(qkv, out, t, heads) with dh one of the four instantiated
            // widths, SWM_MMA_WARPS warps per block (its static shared memory sized for them) and the grid
            // (⌈T / 16⌉, heads, N ≥ 1); qkv holds N·T·3·heads·dh f32, contiguous and 16-byte aligned (candle's
            // allocations are, the offset is checked above, and dh % 16 == 0 keeps every float4 / float2 load
            // aligned); rows and keys past T are neither read nor written; out holds N·T·heads·dh; N, heads ≤ 65535
            // (checked by `attention`).
            unsafe { b.launch(config) }.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
            return Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from((n, t, inner))));
        }
        let f = dev.get_or_load_custom_func("attention_f32", "swm_attention", kernels::ATTENTION)?;
        let shared = shared_bytes(t, dh);
        let attribute = CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        f.set_attribute(attribute, shared as i32).map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        let mut b = f.builder();
        b.arg(&input).arg(&out).arg(&t32).arg(&h32).arg(&dh32);
        let config = LaunchConfig {
            grid_dim: (t.div_ceil(QUERIES) as u32, heads as u32, n as u32),
            block_dim: (32 * QUERIES as u32, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        // SAFETY: matches attention_f32(qkv, out, t, heads, dh) with SWM_ATT_QUERIES warps per block, the grid
        // (⌈T / 8⌉, heads, N ≥ 1) and the dynamic shared memory its layout takes (`shared_bytes`, within the
        // device's opt-in limit, checked by `supports`); qkv holds
        // N·T·3·heads·dh f32 (contiguous, 16-byte aligned: candle's allocations are, and the offset is checked
        // above; dh % 4 == 0 keeps every 16-byte load aligned) and out N·T·heads·dh; dh ≤ 64 (two output columns
        // per lane) and N, heads ≤ 65535 (checked by `attention`).
        unsafe { b.launch(config) }.map_err(|e| candle_core::Error::Cuda(Box::new(e)))?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from((n, t, inner))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_shapes_fit_a_kernel() {
        // ViT-Tiny, -Small and -Base at 224² (257 positions, heads of 64) take the tensor-core kernel, at any
        // number of positions and whatever the shared memory.
        assert_eq!(shared_bytes(257, 64), 4 * (257 * 68 + 257 * 64 + 8 * 64 + 8 * 257));
        let sm90 = SM90_SHARED_BYTES;
        for (inner, heads) in [(192, 3), (384, 6), (768, 12)] {
            assert!(fits(inner, heads, 257, sm90) && fits(inner, heads, 5000, 0), "{inner} / {heads}");
        }
        assert!([16, 32, 48, 64].into_iter().all(tensor_core_head));
        assert!([0, 8, 24, 60, 80, 128].into_iter().all(|dh| !tensor_core_head(dh)));
        // Heads wider than two columns per lane, not a multiple of 4 floats, or not dividing the width.
        assert!(!fits(136, 2, 10, sm90));
        assert!(!fits(60, 2, 10, sm90));
        assert!(!fits(100, 3, 10, sm90));
        assert!(!fits(64, 0, 10, sm90));
        // The SIMT kernel's heads: too many positions for one block's shared memory (sm_90's, or sm_86/89's
        // 99 KiB), and none at all.
        assert!(fits(60, 1, 400, sm90) && !fits(60, 1, 1000, sm90));
        assert!(fits(24 * 3, 3, 257, sm90) && !fits(24 * 3, 3, 600, 99 * 1024));
        assert!(!fits(64, 1, 0, sm90));
        // Off CUDA the kernel takes nothing.
        let host = Tensor::zeros((1, 257, 576), DType::F32, &Device::Cpu).unwrap();
        assert!(!supports(&host, 3));
    }
}
