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
//! that thread exits). Capture and launch on one long-lived thread, as the engine's owners do.

use candle_core::Device;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};

use crate::ops::{KernelError, Result};

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
