//! Host-to-device uploads on a stream of their own, handed to the consumer's stream with a CUDA event.
//!
//! A real-time loop receives observations on one thread and plans on another. [`Uploader`] (owned by the
//! receiving thread) copies each message's bytes once into page-locked memory and enqueues an asynchronous copy
//! into a device buffer on its own stream, recording an event after it; the planning thread gets an [`Upload`]
//! and makes its stream wait for that event ([`Upload::tensor`]: a GPU-side wait, the host never blocks), enqueues
//! its reads, and drops the upload, which marks the buffer released on its stream. Neither thread waits for the
//! other.
//!
//! Buffers come from a small pool: a buffer is reused only when no [`Upload`] of it is alive and the
//! consumer's release event (if it read it) is ordered before the next copy, again on the GPU. The pinned staging
//! memory is rewritten only after the copy that read it has finished (normally long before).

use std::sync::{Arc, OnceLock};

use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Device, Storage, Tensor};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaStream, DevicePtr, PinnedHostSlice};

use crate::ops::KernelError;

/// Most device buffers an [`Uploader`] keeps (a message for which none is free is refused).
pub const MAX_BUFFERS: usize = 32;

/// The element type of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// Bytes (frames).
    U8,
    /// f32 values (state vectors).
    F32,
}

/// One device buffer, its staging memory and its events; shared by the uploader and the uploads of it.
struct Buffer {
    kind: UploadKind,
    /// Capacity in elements.
    len: usize,
    device: Tensor,
    /// Recorded on the upload stream after each copy into `device`.
    copied: CudaEvent,
    /// Recorded on the consumer's stream after its last read of `device`.
    released: CudaEvent,
}

/// Staging memory of one buffer (owned by the uploader only: the host writes it).
struct Staging {
    host: PinnedHostSlice<u8>,
    shared: Arc<Buffer>,
}

/// Uploads host bytes on its own stream (see the module docs). Owned by one thread; `Send`.
pub struct Uploader {
    stream: Arc<CudaStream>,
    device: Device,
    buffers: Vec<Staging>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader").field("buffers", &self.buffers.len()).finish()
    }
}

/// Data on its way to the device: the consumer waits for it on its own stream. Dropping it releases the buffer
/// after the work enqueued on the consumer's stream until then, so every read of [`Upload::tensor`]'s data must be
/// enqueued before the drop.
pub struct Upload {
    buffer: Arc<Buffer>,
    len: usize,
    /// The stream that reads it (set by [`Upload::tensor`]).
    consumer: OnceLock<Arc<CudaStream>>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("kind", &self.buffer.kind).field("len", &self.len).finish()
    }
}

impl Uploader {
    /// An uploader for `device` (the consumer's Candle device) with a new non-blocking stream of its own.
    pub fn new(device: &Device) -> crate::ops::Result<Self> {
        let Device::Cuda(cuda) = device else {
            return Err(KernelError::operand("device", "uploads need a CUDA device"));
        };
        let stream = cuda.cuda_stream().context().new_stream()?;
        Ok(Self { stream, device: device.clone(), buffers: Vec::new() })
    }

    /// Copies `bytes` (for [`UploadKind::F32`], little-endian f32 values) to the device: once into pinned memory,
    /// then asynchronously on the uploader's stream. Returns at once; the data is ready when the consumer's stream
    /// has waited for it ([`Upload::tensor`]).
    pub fn upload(&mut self, kind: UploadKind, bytes: &[u8]) -> crate::ops::Result<Upload> {
        let size = match kind {
            UploadKind::U8 => 1,
            UploadKind::F32 => 4,
        };
        if bytes.is_empty() || !bytes.len().is_multiple_of(size) {
            return Err(KernelError::operand("bytes", format!("{} bytes of {kind:?}", bytes.len())));
        }
        let len = bytes.len() / size;
        // The calling thread (the uploader moves between threads) needs the context current for the raw copy.
        self.stream.context().bind_to_thread()?;
        let index = self.free_buffer(kind, len)?;
        let staging = &mut self.buffers[index];
        // The previous copy out of this staging memory must have finished before the host rewrites it.
        staging.shared.copied.synchronize()?;
        let host = staging.host.as_mut_slice()?;
        host[..bytes.len()].copy_from_slice(bytes);
        // The consumer's last read of the device buffer comes before this copy (a GPU-side wait).
        self.stream.wait(&staging.shared.released)?;
        let dst = device_address(&staging.shared.device, &self.stream)?;
        // SAFETY: `dst` is the start of the buffer's device tensor, which holds `staging.shared.len` elements of
        // `kind` (at least `bytes.len()` bytes, checked by `free_buffer`); the source is the first `bytes.len()`
        // bytes of pinned memory owned by `staging`, which is not written again before `copied` (recorded
        // below) has completed; the tensor stays alive while any `Upload` of it or the uploader exists.
        unsafe {
            cudarc::driver::result::memcpy_htod_async(dst, &host[..bytes.len()], self.stream.cu_stream())?;
        }
        staging.shared.copied.record(&self.stream)?;
        Ok(Upload { buffer: staging.shared.clone(), len, consumer: OnceLock::new() })
    }

    /// A buffer of `kind` with room for `len` elements that no [`Upload`] holds: a free one of that kind that fits,
    /// else a new one while the pool has room, else a free one (too small or of the other kind), replaced.
    ///
    /// New device memory comes from the upload stream (stream-ordered, no zero-fill on the consumer's stream that
    /// the copy could race with); allocating pinned memory may wait for the device, so buffers are allocated once
    /// per pool slot (the first messages, a larger message), never in the steady state.
    fn free_buffer(&mut self, kind: UploadKind, len: usize) -> crate::ops::Result<usize> {
        let free = |s: &Staging| Arc::strong_count(&s.shared) == 1;
        if let Some(i) = self.buffers.iter().position(|s| free(s) && s.shared.kind == kind && s.shared.len >= len) {
            return Ok(i);
        }
        // Any free buffer can be replaced, whatever its kind (a pool full of frame buffers still takes a state
        // vector; found by the GPU test).
        let index = match self.buffers.iter().position(free) {
            _ if self.buffers.len() < MAX_BUFFERS => self.buffers.len(),
            Some(i) => {
                // The old device memory is freed on the upload stream: after the consumer's last read of it.
                self.stream.wait(&self.buffers[i].shared.released)?;
                i
            }
            None => {
                return Err(KernelError::operand(
                    "upload",
                    format!("all {MAX_BUFFERS} upload buffers are still held by their consumers"),
                ))
            }
        };
        let Device::Cuda(cuda) = &self.device else {
            return Err(KernelError::operand("device", "uploads need a CUDA device"));
        };
        let storage = match kind {
            UploadKind::U8 => CudaStorage::wrap_cuda_slice(self.stream.alloc_zeros::<u8>(len)?, cuda.clone()),
            UploadKind::F32 => CudaStorage::wrap_cuda_slice(self.stream.alloc_zeros::<f32>(len)?, cuda.clone()),
        };
        let device = Tensor::from_storage(Storage::Cuda(storage), len, BackpropOp::none(), false);
        let bytes = len * if kind == UploadKind::F32 { 4 } else { 1 };
        let ctx = self.stream.context();
        // SAFETY: the staging memory is only read by a copy after the host wrote the bytes it copies (`upload`);
        // flags 0: ordinary (not write-combined) page-locked memory.
        let host = unsafe { ctx.alloc_pinned_with_flags::<u8>(bytes, 0) }?;
        let event = || ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING));
        let shared = Arc::new(Buffer { kind, len, device, copied: event()?, released: event()? });
        let staging = Staging { host, shared };
        if index == self.buffers.len() {
            self.buffers.push(staging);
        } else {
            self.buffers[index] = staging;
        }
        Ok(index)
    }
}

impl Upload {
    /// Elements uploaded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (an upload holds at least one element).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Makes `device`'s stream wait (on the GPU) for the copy, and returns the data as a 1-D tensor (U8 or F32)
    /// on that device. Enqueue every read of it on that stream before dropping the upload. One consumer stream per
    /// upload: the first device it is read on is the one its release is ordered after.
    pub fn tensor(&self, device: &Device) -> crate::ops::Result<Tensor> {
        let stream = consumer_stream(device)?;
        stream.wait(&self.buffer.copied)?;
        let _ = self.consumer.set(stream);
        Ok(self.buffer.device.narrow(0, 0, self.len)?)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(stream) = self.consumer.get() {
            // A failure here is a failing context: the next copy into this buffer then fails with the same error.
            let _ = self.buffer.released.record(stream);
        }
    }
}

fn consumer_stream(device: &Device) -> crate::ops::Result<Arc<CudaStream>> {
    match device {
        Device::Cuda(cuda) => Ok(cuda.cuda_stream()),
        _ => Err(KernelError::operand("device", "uploads need a CUDA device")),
    }
}

/// The device address of a contiguous U8 or F32 CUDA tensor's first element.
fn device_address(t: &Tensor, stream: &Arc<CudaStream>) -> crate::ops::Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cuda(s) = &*storage else {
        return Err(KernelError::operand("buffer", "a host tensor"));
    };
    let (base, size) = match t.dtype() {
        DType::U8 => (s.as_cuda_slice::<u8>()?.device_ptr(stream).0, 1),
        DType::F32 => (s.as_cuda_slice::<f32>()?.device_ptr(stream).0, 4),
        other => return Err(KernelError::operand("buffer", format!("unsupported dtype {other:?}"))),
    };
    Ok(base + (layout.start_offset() * size) as u64)
}
