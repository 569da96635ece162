//! Fault injection (`kernels/fault.cu`): a kernel that keeps a device's stream busy for a given time, so that
//! deadline handling (the planner's early stop, swm-loop's watchdog) can be tested against a real GPU stall.

use std::time::Duration;

use candle_core::Device;
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::launch::{cuda, launched};
use super::{KernelError, Result};
use crate::kernels;

const MODULE: &str = "swm_fault";

/// Longest stall accepted (a longer one is a mistake, not a test).
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// Enqueues a kernel on `device`'s stream that occupies it for `delay` (work issued after it waits); returns at
/// once. The first call on a device also loads the kernel's module (milliseconds on the host): call it once with
/// `Duration::ZERO` to prepare, outside the timed path.
pub fn gpu_delay(device: &Device, delay: Duration) -> Result<()> {
    if delay > MAX_DELAY {
        return Err(KernelError::operand("delay", format!("{delay:?} > {MAX_DELAY:?}")));
    }
    let dev = cuda(device)?;
    let ns = delay.as_nanos() as u64;
    let f = dev.get_or_load_custom_func("swm_gpu_delay", MODULE, kernels::FAULT)?;
    let mut b = f.builder();
    b.arg(&ns);
    let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: matches swm_gpu_delay(unsigned long long ns); the kernel reads no memory.
    launched(unsafe { b.launch(one) })
}
