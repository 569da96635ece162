//! Benchmark harness: warm-up, then per-iteration wall-clock latency (enqueue to result ready, as a control loop
//! sees it) and GPU time between CUDA events on the work's stream; p50/p99 over the iterations.

use std::time::Instant;

use candle_core::Device;
use cudarc::driver::sys::CUevent_flags;
use serde::Serialize;

use crate::tools::{Result, ToolError as Error};

/// Timings of one benchmark row, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// What was measured.
    pub name: String,
    /// Timed iterations.
    pub iters: usize,
    /// Median wall-clock latency.
    pub p50_ms: f64,
    /// 99th-percentile wall-clock latency.
    pub p99_ms: f64,
    /// Fastest iteration.
    pub min_ms: f64,
    /// Median GPU time between events.
    pub gpu_p50_ms: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Times `work` on `device`: `warmup` untimed runs, then `iters` timed ones, each ending with a stream sync.
pub fn time<E: Into<Error>, F: FnMut() -> std::result::Result<(), E>>(
    device: &Device,
    name: &str,
    warmup: usize,
    iters: usize,
    mut work: F,
) -> Result<BenchRow> {
    let Device::Cuda(cuda) = device else {
        return Err(Error::invalid_input("device", "benchmarks run on a CUDA device"));
    };
    let stream = cuda.cuda_stream();
    for _ in 0..warmup {
        work().map_err(Into::into)?;
    }
    stream.synchronize()?;
    let mut wall = Vec::with_capacity(iters);
    let mut gpu = Vec::with_capacity(iters);
    // Events are created once, so that the timed window holds only the work and two event records.
    let start = stream.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let end = stream.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    for _ in 0..iters {
        let t0 = Instant::now();
        start.record(&stream)?;
        work().map_err(Into::into)?;
        end.record(&stream)?;
        end.synchronize()?;
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        gpu.push(start.elapsed_ms(&end)? as f64);
    }
    wall.sort_by(f64::total_cmp);
    gpu.sort_by(f64::total_cmp);
    Ok(BenchRow {
        name: name.into(),
        iters,
        p50_ms: percentile(&wall, 0.5),
        p99_ms: percentile(&wall, 0.99),
        min_ms: wall.first().copied().unwrap_or(f64::NAN),
        gpu_p50_ms: percentile(&gpu, 0.5),
    })
}

impl std::fmt::Display for BenchRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<44} p50 {:>8.3} ms  p99 {:>8.3} ms  min {:>8.3} ms  gpu p50 {:>8.3} ms  (n={})",
            self.name, self.p50_ms, self.p99_ms, self.min_ms, self.gpu_p50_ms, self.iters
        )
    }
}
