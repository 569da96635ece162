//! Opening the CUDA device swm runs on.
//!
//! swm has no CPU inference path: every model, planner and preprocessing kernel runs on one CUDA stream of one
//! device. [`cuda`] opens that device with its own stream (not the legacy per-thread default stream), so all
//! work of a session is ordered on one queue.

use candle_core::Device;

use crate::ops::KernelError;

mod upload;

pub use upload::{Upload, UploadKind, Uploader, MAX_BUFFERS};

/// No usable CUDA device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The driver reported no device, the ordinal is out of range or the driver is missing.
    #[error("no CUDA device {ordinal}: {reason} (swm needs an NVIDIA GPU with driver >= 580 / CUDA 13)")]
    Unavailable {
        /// Requested device ordinal.
        ordinal: usize,
        /// What the driver reported.
        reason: String,
    },
}

/// A shared library the GPU half of swm links, and what it provides, in the order the loader needs them.
pub const CUDA_LIBRARIES: [(&str, &str); 5] = [
    ("libcuda.so.1", "the NVIDIA driver"),
    ("libcudart.so.13", "the CUDA 13 runtime"),
    ("libcublas.so.13", "cuBLAS 13"),
    ("libcurand.so.10", "cuRAND (CUDA 13)"),
    ("libcudnn.so.9", "cuDNN 9"),
];

/// A library of [`CUDA_LIBRARIES`] that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("no NVIDIA driver found: {library} ({what}) cannot be loaded: {reason}")]
pub struct MissingLibrary {
    /// The soname (`libcuda.so.1`, ...).
    pub library: &'static str,
    /// What it provides.
    pub what: &'static str,
    /// The dynamic loader's message.
    pub reason: String,
}

/// Checks that every library of [`CUDA_LIBRARIES`] loads (the dynamic loader's search: `LD_LIBRARY_PATH`, the
/// cache, the system directories), so that a GPU command can say which one is missing instead of failing to start.
/// Touches no device and creates no CUDA context.
pub fn probe_cuda_libraries() -> Result<(), MissingLibrary> {
    for (library, what) in CUDA_LIBRARIES {
        // SAFETY: loading runs the library's initialisers. These are NVIDIA's driver and CUDA libraries, which the
        // GPU half of swm loads at start-up anyway; nothing is called in them, and each is closed again on drop.
        let loaded = unsafe { libloading::Library::new(library) };
        if let Err(e) = loaded {
            // libloading's own text is "dlopen failed"; the loader's reason is its source.
            let reason = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
            return Err(MissingLibrary { library, what, reason: first_line(&reason) });
        }
    }
    Ok(())
}

/// Opens CUDA device `ordinal` with a dedicated stream. The device's memory pool then keeps the memory swm frees
/// for reuse (it is not handed back to the driver at synchronisations): the process holds its peak allocation
/// for its lifetime, as a PyTorch process does, and other processes sharing the GPU cannot use it.
pub fn cuda(ordinal: usize) -> Result<Device, DeviceError> {
    let device = Device::new_cuda_with_stream(ordinal)
        .map_err(|e| DeviceError::Unavailable { ordinal, reason: first_line(&e.to_string()) })?;
    if let Device::Cuda(cuda) = &device {
        // SAFETY: every tensor of this device is created and used on its one stream (created just above), so the
        // cross-stream event tracking that this turns off has nothing to order; it only adds an event record per
        // kernel argument on the hot path.
        unsafe { cuda.disable_event_tracking() };
        keep_freed_memory(cuda);
    }
    Ok(device)
}

/// Makes the device's stream-ordered memory pool keep freed memory across synchronisations, as PyTorch's caching
/// allocator does: cudarc allocates with `cuMemAllocAsync`, whose pool by default hands freed memory back to the
/// driver at every synchronisation, so a step that synchronises (a training step read by the CLI, every eager
/// call) maps its activations afresh each time. The process keeps its peak allocation reserved instead. The
/// setting belongs to the device's current pool, process-wide. Best effort: a driver that refuses leaves the
/// default (logged).
fn keep_freed_memory(cuda: &candle_core::CudaDevice) {
    use cudarc::driver::sys;
    let context = cuda.cuda_stream().context().clone();
    if !context.has_async_alloc() {
        return;
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut keep_all: u64 = u64::MAX;
    // SAFETY: `pool` receives the current pool of the context's device (a valid device handle); the attribute
    // takes a pointer to a u64 (cuuint64_t) that outlives the call.
    let result = unsafe {
        let got = sys::cuDeviceGetMemPool(&mut pool, context.cu_device());
        if got == sys::CUresult::CUDA_SUCCESS {
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut keep_all as *mut u64).cast(),
            )
        } else {
            got
        }
    };
    if result != sys::CUresult::CUDA_SUCCESS {
        tracing::warn!("the CUDA memory pool keeps its default release threshold: {result:?}");
    }
}

/// Lets f32 matmuls run on TF32 tensor cores (inputs rounded to a 10-bit mantissa, f32 accumulation),
/// process-wide: the counterpart of `torch.backends.cuda.matmul.allow_tf32`, upstream's speed knob for planning.
/// Off by default (full f32). Applies to matmuls issued — or CUDA graphs captured — after the call.
pub fn set_tf32(enabled: bool) {
    candle_core::cuda::set_gemm_reduced_precision_f32(enabled);
}

/// Whether [`set_tf32`] is on.
pub fn tf32() -> bool {
    candle_core::cuda::gemm_reduced_precision_f32()
}

/// Name of the GPU behind `device` (e.g. "NVIDIA H100 80GB HBM3"), or `None` for a non-CUDA device.
pub fn name(device: &Device) -> Option<String> {
    let Device::Cuda(cuda) = device else { return None };
    cuda.cuda_stream().context().name().ok()
}

/// Candle attaches a backtrace to driver errors when RUST_BACKTRACE is set; keep the message only.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// Page-locked host memory that receives device results with one asynchronous copy on the device's stream.
///
/// Allocated once (not write-combined, so the host reads it at full speed); [`PinnedOutput::copy_from`] enqueues
/// the device-to-host copy and [`PinnedOutput::wait`] blocks until that copy (and the work before it on the
/// stream) has finished.
pub struct PinnedOutput {
    host: cudarc::driver::PinnedHostSlice<f32>,
    stream: std::sync::Arc<cudarc::driver::CudaStream>,
    /// Recorded after each copy. The pinned slice's own event is recorded only under cudarc's event tracking,
    /// which swm's devices turn off: waiting on it would return before the copy.
    copied: cudarc::driver::CudaEvent,
}

impl std::fmt::Debug for PinnedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedOutput").field("len", &self.host.len()).finish()
    }
}

impl PinnedOutput {
    /// `len` f32 of pinned host memory for results of `device`'s stream.
    pub fn new(device: &Device, len: usize) -> crate::ops::Result<Self> {
        let Device::Cuda(cuda) = device else {
            return Err(KernelError::operand("device", "pinned output buffers need a CUDA device"));
        };
        let stream = cuda.cuda_stream();
        // SAFETY: the memory is uninitialised until the first copy; `wait` only hands it out after a copy, and
        // `f32` has no invalid bit patterns. Flags 0: cacheable (not write-combined) memory, read by the host.
        let host = unsafe { stream.context().alloc_pinned_with_flags::<f32>(len.max(1), 0) }?;
        let copied = stream.context().new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DISABLE_TIMING))?;
        Ok(Self { host, stream, copied })
    }

    /// Capacity in f32.
    pub fn len(&self) -> usize {
        self.host.len()
    }

    /// Always false (the buffer holds at least one value).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Enqueues the copy of `src` (a contiguous f32 CUDA tensor of at most [`PinnedOutput::len`] values) into the
    /// buffer, ordered after the work already on the stream.
    pub fn copy_from(&mut self, src: &candle_core::Tensor) -> crate::ops::Result<()> {
        let n = src.elem_count();
        if n > self.host.len() || src.dtype() != candle_core::DType::F32 || !src.is_contiguous() {
            return Err(KernelError::operand(
                "src",
                format!("pinned copy of {:?} {:?} into {} f32", src.dtype(), src.dims(), self.host.len()),
            ));
        }
        let (storage, layout) = src.storage_and_layout();
        let candle_core::Storage::Cuda(s) = &*storage else {
            return Err(KernelError::operand("src", "a host tensor"));
        };
        let slice = s.as_cuda_slice::<f32>()?;
        let start = layout.start_offset();
        let view = slice.slice(start..start + n);
        self.stream.memcpy_dtoh(&view, &mut self.host)?;
        self.copied.record(&self.stream)?;
        Ok(())
    }

    /// Waits for the last copy and returns the buffer.
    pub fn wait(&self) -> crate::ops::Result<&[f32]> {
        self.copied.synchronize()?;
        Ok(self.host.as_slice()?)
    }
}
