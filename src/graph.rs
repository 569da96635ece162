//! CUDA graphs over Candle work: capture a closure once, replay it with one launch.
//!
//! A LeWM encode is ~200 small kernels and a scoring rollout ~800; issued one by one they are bound by launch
//! latency (and by Candle's per-op upload of layout parameters for strided ops). A [`CapturedGraph`] records the
//! whole sequence once and replays it as a single graph launch on the same stream.
//!
//! Contract for captured work: it reads its inputs from, and writes its outputs into, *persistent* device
//! tensors that outlive the graph (copy new data into them before [`CapturedGraph::launch`]); every temporary it
//! allocates is freed inside the capture (stream-ordered alloc/free nodes), so the graph can be relaunched.
//!
//! The capturing thread must outlive the graph: the layout parameters of Candle's strided ops are copied, inside
//! the graph, from device buffers that Candle 0.11 keeps in a cache per capturing thread (thread-local; freed when
//! that thread exits). Capture and launch on one long-lived thread, as the engine's owners do. A thread that only
//! replays — a caller running an engine's steady-state steps itself — holds a [`NoCapture`]: captures are refused
//! there, and the places that capture lazily ([`may_capture`]) run eagerly instead.

use candle_core::Device;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};

use crate::ops::{KernelError, Result};

thread_local! {
    /// Captures are refused on this thread ([`NoCapture`]).
    static REFUSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Lazy captures this thread skipped (ran eagerly) under a [`NoCapture`].
    static SKIPPED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// While alive, CUDA graph captures on the current thread are refused: [`CapturedGraph::capture`] fails with a
/// typed error, and [`may_capture`] is false (its callers run their work eagerly). For threads that may exit
/// before the graphs they would capture are dropped (see the module docs).
#[derive(Debug)]
pub struct NoCapture {
    previous: bool,
    skipped_before: u64,
}

impl NoCapture {
    /// Refuses captures on this thread until dropped.
    #[must_use]
    pub fn new() -> Self {
        Self { previous: REFUSE.replace(true), skipped_before: SKIPPED.get() }
    }

    /// Lazy captures skipped on this thread since this guard was made (their work ran eagerly).
    pub fn skipped(&self) -> u64 {
        SKIPPED.get() - self.skipped_before
    }
}

impl Default for NoCapture {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoCapture {
    fn drop(&mut self) {
        REFUSE.set(self.previous);
    }
}

/// Whether this thread may capture a graph now. A lazy capture site asks first and runs its work eagerly when
/// not (counted in [`NoCapture::skipped`]).
pub fn may_capture() -> bool {
    let refused = REFUSE.get();
    if refused {
        SKIPPED.set(SKIPPED.get() + 1);
    }
    !refused
}

/// A captured, instantiated CUDA graph bound to the stream of a Candle CUDA device.
pub struct CapturedGraph {
    graph: cudarc::driver::CudaGraph,
}

impl std::fmt::Debug for CapturedGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CapturedGraph")
    }
}

impl CapturedGraph {
    /// Runs `work` once eagerly (loads kernels, fills Candle's cache of strided-op parameters so that capture
    /// issues no host-to-device copy), then captures a second run into a graph and uploads it.
    ///
    /// The parameter cache stays enabled for the calling thread only while capturing; capture and launches must
    /// come from one thread (the inference thread of the daemon).
    pub fn capture<E: From<KernelError>>(
        device: &Device,
        mut work: impl FnMut() -> std::result::Result<(), E>,
    ) -> std::result::Result<Self, E> {
        if REFUSE.get() {
            return Err(KernelError::Internal(
                "a CUDA graph capture on a thread that may not capture (NoCapture): capture on the engine's own thread"
                    .into(),
            )
            .into());
        }
        let Device::Cuda(cuda) = device else {
            return Err(KernelError::operand("device", "CUDA graphs need a CUDA device").into());
        };
        let stream = cuda.cuda_stream();
        let driver = |e: cudarc::driver::DriverError| E::from(KernelError::from(e));
        let _cache = cuda.enable_cuda_graph_htod_cache();
        work()?;
        stream.synchronize().map_err(driver)?;
        stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).map_err(driver)?;
        let captured = work();
        // End the capture even when `work` failed, so that the stream leaves capture mode.
        let graph = stream.end_capture(CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH);
        captured?;
        let graph = graph
            .map_err(driver)?
            .ok_or_else(|| E::from(KernelError::Internal("the graph capture recorded no work".into())))?;
        graph.upload().map_err(driver)?;
        Ok(Self { graph })
    }

    /// Replays the captured work on its stream (asynchronous, like any kernel launch).
    pub fn launch(&self) -> Result<()> {
        Ok(self.graph.launch()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_capture_refuses_captures_on_its_thread_only_while_alive() {
        assert!(may_capture());
        let outer = NoCapture::new();
        assert!(!may_capture() && !may_capture(), "refused while the guard lives");
        assert_eq!(outer.skipped(), 2, "each refused lazy capture is counted");
        let err = CapturedGraph::capture::<KernelError>(&Device::Cpu, || Ok(())).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("NoCapture")), "a capture is a typed error, before anything runs");
        {
            let inner = NoCapture::new();
            assert!(!may_capture());
            assert_eq!(inner.skipped(), 1);
        }
        assert!(!may_capture(), "the inner guard restores the outer refusal");
        // Another thread is not affected.
        assert!(std::thread::spawn(may_capture).join().unwrap_or(false));
        drop(outer);
        assert!(may_capture(), "allowed again once the guard is dropped");
    }
}
