//! Shared plumbing for kernels launched on raw device addresses: buffers are contiguous Candle CUDA tensors,
//! kernels run on Candle's stream, so they are ordered with Candle's own ops and can be captured in CUDA graphs.
//!
//! Kernels with at most three inputs and one fresh output are Candle `CustomOp`s (`bias_act`, `preprocess`). The
//! predictor kernels (four or more inputs, two outputs, a cache written in place) and the planner kernels (several
//! persistent buffers updated in place) do not fit that trait and are launched here.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaDevice, CudaStorage, DType, Device, Layout, Shape, Storage, Tensor};
use cudarc::driver::{CudaView, DevicePtr, LaunchConfig};

use super::{KernelError, Result};

/// The CUDA device of `device`, or a typed error.
pub(crate) fn cuda(device: &Device) -> Result<&CudaDevice> {
    match device {
        Device::Cuda(d) => Ok(d),
        _ => Err(KernelError::operand("device", "swm kernels run on a CUDA device")),
    }
}

/// Device address of the first element of a contiguous CUDA tensor.
///
/// The address stays valid while `t` (or a clone sharing its storage) is alive; callers keep the tensor alive
/// for as long as work using the address may run (the planner owns its buffers).
pub(crate) fn address(t: &Tensor) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    if !layout.is_contiguous() {
        return Err(KernelError::operand("tensor", format!("expected a contiguous tensor, got {:?}", layout.dims())));
    }
    let Storage::Cuda(s) = &*storage else {
        return Err(KernelError::operand("tensor", "expected a CUDA tensor"));
    };
    let stream = s.device().cuda_stream();
    let (base, size) = match t.dtype() {
        DType::F32 => (s.as_cuda_slice::<f32>()?.device_ptr(&stream).0, 4),
        DType::U8 => (s.as_cuda_slice::<u8>()?.device_ptr(&stream).0, 1),
        DType::BF16 => (s.as_cuda_slice::<half::bf16>()?.device_ptr(&stream).0, 2),
        DType::U32 => (s.as_cuda_slice::<u32>()?.device_ptr(&stream).0, 4),
        DType::I64 => (s.as_cuda_slice::<i64>()?.device_ptr(&stream).0, 8),
        DType::F64 => (s.as_cuda_slice::<f64>()?.device_ptr(&stream).0, 8),
        other => return Err(KernelError::operand("tensor", format!("unsupported dtype {other:?}"))),
    };
    Ok(base + (layout.start_offset() * size) as u64)
}

/// The f32 view of a contiguous storage from its layout's offset: what a `CustomOp`'s kernel reads.
pub(crate) fn f32_view<'a>(storage: &'a CudaStorage, layout: &Layout) -> candle_core::Result<CudaView<'a, f32>> {
    if !layout.is_contiguous() {
        candle_core::bail!("swm kernels take contiguous tensors, got {:?}", layout.dims());
    }
    Ok(storage.as_cuda_slice::<f32>()?.slice(layout.start_offset()..))
}

/// The host side of every swm `CustomOp`: its kernels run on CUDA only.
pub(crate) fn cuda_only() -> candle_core::Result<(CpuStorage, Shape)> {
    candle_core::bail!("swm kernels run on CUDA only")
}

/// A new contiguous f32 tensor whose contents are undefined until a kernel writes them.
///
/// Callers launch a kernel that writes every element before anything reads the tensor.
pub(crate) fn uninit_f32(dev: &CudaDevice, shape: impl Into<Shape>) -> Result<Tensor> {
    let shape = shape.into();
    // SAFETY: the caller's kernel writes every element before the tensor is read (see above).
    let slice = unsafe { dev.alloc::<f32>(shape.elem_count()) }?;
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone()));
    Ok(Tensor::from_storage(storage, shape, candle_core::op::BackpropOp::none(), false))
}

/// A grid-stride launch configuration for `elements` threads.
pub(crate) fn grid(elements: usize) -> LaunchConfig {
    LaunchConfig::for_num_elems(elements.clamp(1, 1 << 30) as u32)
}

/// Warp-per-item launch configuration with `per_block` warps per block: 8 for many items (a window attention's
/// queries), 2 where a few hundred rows (a rollout's candidates) should spread over every SM rather than fill a
/// third of them.
pub(crate) fn warps(items: usize, per_block: usize) -> LaunchConfig {
    let blocks = items.div_ceil(per_block).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (32 * per_block as u32, 1, 1), shared_mem_bytes: 0 }
}

/// Drops a launch's value, keeping its driver error.
pub(crate) fn launched<T>(r: std::result::Result<T, cudarc::driver::DriverError>) -> Result<()> {
    Ok(r.map(drop)?)
}
