//! Opening the CUDA device swm runs on.
//!
//! swm has no CPU inference path: every model, planner and preprocessing kernel runs on one CUDA stream of one
//! device. [`cuda`] opens that device with its own stream (not the legacy per-thread default stream), so all
//! work of a session is ordered on one queue.

use candle_core::Device;

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

/// Opens CUDA device `ordinal` with a dedicated stream.
pub fn cuda(ordinal: usize) -> Result<Device, DeviceError> {
    let device = Device::new_cuda_with_stream(ordinal)
        .map_err(|e| DeviceError::Unavailable { ordinal, reason: first_line(&e.to_string()) })?;
    if let Device::Cuda(cuda) = &device {
        // SAFETY: every tensor of this device is created and used on its one stream (created just above), so the
        // cross-stream event tracking that this turns off has nothing to order; it only adds an event record per
        // kernel argument on the hot path.
        unsafe { cuda.disable_event_tracking() };
    }
    Ok(device)
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
