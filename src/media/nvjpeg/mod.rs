//! JPEG decoding with nvJPEG: owned handles over [`sys`] and a [`Decoder`] that writes interleaved RGB into a
//! Candle CUDA tensor on the device's stream.
//!
//! ```no_run
//! # fn main() -> Result<(), swm::media::MediaError> {
//! use swm::media::nvjpeg::{Backend, Decoder};
//! let device = swm::device::cuda(0).expect("a CUDA device");
//! let mut decoder = Decoder::new(&device, Backend::Hardware)?;
//! let bytes = std::fs::read("frame.jpg").expect("a JPEG");
//! let rgb = decoder.decode_rgb(&bytes)?; // U8 (H, W, 3) on `device`, ordered on its stream
//! # Ok(()) }
//! ```
//!
//! **Backends.** [`Backend::Hardware`] decodes on the NVJPG engines (Ampere A100/A30, Hopper, Ada, Blackwell)
//! through nvJPEG's batched API (a batch of one); it takes baseline, single-scan JPEGs only, and anything else is
//! refused with [`MediaError::Unsupported`] before any GPU work (decode those with a [`Backend::Default`]
//! decoder). Where the GPU has no NVJPG engine, the handle falls back to [`Backend::Default`]; [`Decoder::backend`]
//! says which one was obtained. The other backends go through `nvjpegDecode` (Huffman decoding on the CPU, the
//! rest on the GPU). Every handle is created with `NVJPEG_FLAGS_BITSTREAM_STRICT`, so damaged bitstreams are
//! errors rather than partially grey images; the hardware handle also with `NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE`
//! (one image at a time, no pipelining across calls: the lowest latency per frame).
//!
//! **Synchronisation.** swm adds none: [`Decoder::decode_rgb`] enqueues the device work on the Candle stream of
//! the decoder's device and returns the tensor, ordered before any later work on that stream. nvJPEG itself does
//! host work inside the call: it parses the bitstream (and, on the hybrid backends, Huffman-decodes it) on the
//! calling thread, and may wait inside the call for its own earlier work on the state's staging buffers before
//! reusing them. The input bytes are taken to be consumed by the time the call returns (our reading of the API;
//! the GPU test `decode_needs_the_input_only_during_the_call` overwrites them right after the call to check it). [`Decoder::image_info`] is host-only.
//!
//! **Threads.** A [`Handle`] may be shared between threads (nvJPEG documents the library handle as thread safe);
//! a [`JpegState`] — and so a [`Decoder`] — may move to another thread but is used by one at a time (`&mut`).
//! Handles are bound to the device whose context is current at creation; every call binds that context first.

pub mod sys;

use std::ffi::c_int;
use std::sync::{Arc, OnceLock};

use candle_core::{CudaStorage, Device, Shape, Storage, Tensor};
use cudarc::driver::{CudaContext, DevicePtrMut};

use super::MediaError;
use crate::ops::{FrameLayout, JpegSampling, PixelFormat};
use sys::{nvjpegBackend_t, nvjpegChromaSubsampling_t, nvjpegOutputFormat_t, nvjpegStatus_t, Library};

/// The process-wide libnvjpeg, loaded on first use (a failed load is retried on the next call).
pub fn library() -> Result<Arc<Library>, MediaError> {
    static LIBRARY: OnceLock<Arc<Library>> = OnceLock::new();
    super::dl::cached(&LIBRARY)
}

/// Which nvJPEG decoder implementation a handle uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// nvJPEG's own choice (`NVJPEG_BACKEND_DEFAULT`); decodes every JPEG nvJPEG supports.
    Default,
    /// Huffman decoding on the CPU (`NVJPEG_BACKEND_HYBRID`).
    Hybrid,
    /// GPU-assisted Huffman decoding (`NVJPEG_BACKEND_GPU_HYBRID`).
    GpuHybrid,
    /// The NVJPG hardware engines (`NVJPEG_BACKEND_HARDWARE`): baseline single-scan JPEGs only.
    Hardware,
}

impl Backend {
    /// The C value.
    pub fn raw(self) -> nvjpegBackend_t {
        match self {
            Self::Default => nvjpegBackend_t::NVJPEG_BACKEND_DEFAULT,
            Self::Hybrid => nvjpegBackend_t::NVJPEG_BACKEND_HYBRID,
            Self::GpuHybrid => nvjpegBackend_t::NVJPEG_BACKEND_GPU_HYBRID,
            Self::Hardware => nvjpegBackend_t::NVJPEG_BACKEND_HARDWARE,
        }
    }

    /// The handle flags swm creates this backend with (see the module docs).
    fn flags(self) -> std::ffi::c_uint {
        let strict = sys::NVJPEG_FLAGS_BITSTREAM_STRICT;
        match self {
            Self::Hardware => strict | sys::NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE,
            _ => strict,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::Hybrid => "hybrid",
            Self::GpuHybrid => "GPU-hybrid",
            Self::Hardware => "hardware",
        })
    }
}

/// Chroma subsampling of a JPEG, as nvJPEG classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChromaSubsampling {
    /// 4:4:4 (no subsampling).
    Css444,
    /// 4:2:2 (half horizontal chroma resolution).
    Css422,
    /// 4:2:0 (half horizontal and vertical).
    Css420,
    /// 4:4:0 (half vertical).
    Css440,
    /// 4:1:1.
    Css411,
    /// 4:1:0.
    Css410,
    /// 4:1:0 with vertical subsampling (nvJPEG's `410V`).
    Css410V,
    /// One component: greyscale (4:0:0).
    Gray,
    /// Sampling factors nvJPEG does not name (or a component count other than 1 and 3).
    Unknown,
}

impl ChromaSubsampling {
    fn from_raw(raw: nvjpegChromaSubsampling_t) -> Self {
        match raw {
            nvjpegChromaSubsampling_t::NVJPEG_CSS_444 => Self::Css444,
            nvjpegChromaSubsampling_t::NVJPEG_CSS_422 => Self::Css422,
            nvjpegChromaSubsampling_t::NVJPEG_CSS_420 => Self::Css420,
            nvjpegChromaSubsampling_t::NVJPEG_CSS_440 => Self::Css440,
            nvjpegChromaSubsampling_t::NVJPEG_CSS_411 => Self::Css411,
            nvjpegChromaSubsampling_t::NVJPEG_CSS_410 => Self::Css410,
            nvjpegChromaSubsampling_t::NVJPEG_CSS_410V => Self::Css410V,
            nvjpegChromaSubsampling_t::NVJPEG_CSS_GRAY => Self::Gray,
            _ => Self::Unknown,
        }
    }

    /// The usual `J:a:b` name (`"4:2:0"`, `"4:0:0"` for greyscale, `"unknown"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Css444 => "4:4:4",
            Self::Css422 => "4:2:2",
            Self::Css420 => "4:2:0",
            Self::Css440 => "4:4:0",
            Self::Css411 => "4:1:1",
            Self::Css410 => "4:1:0",
            Self::Css410V => "4:1:0V",
            Self::Gray => "4:0:0",
            Self::Unknown => "unknown",
        }
    }
}

/// What a JPEG's header says, read on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Width in pixels (of the full-resolution component).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Number of colour components (1: greyscale, 3: YCbCr).
    pub components: u32,
    /// Chroma subsampling.
    pub subsampling: ChromaSubsampling,
    /// Width and height of the second component (a chroma plane), when there is one.
    pub chroma: Option<(u32, u32)>,
}

/// The start-of-image marker every JPEG begins with (`FF D8`, then the next marker's `FF`); checked on the host
/// before nvJPEG sees the bytes, so that empty input or another format is refused the same way everywhere.
fn check_soi(bytes: &[u8]) -> Result<(), MediaError> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Ok(()),
        [] => Err(MediaError::NotJpeg { reason: "no bytes".into() }),
        _ => Err(MediaError::NotJpeg {
            reason: format!(
                "{} bytes that do not start with the JPEG start-of-image marker FF D8 FF (they start {:02X?})",
                bytes.len(),
                &bytes[..bytes.len().min(4)]
            ),
        }),
    }
}

/// The most pixels a JPEG may claim per byte of the file. Huffman-coded JPEGs (the ones nvJPEG decodes) spend at
/// least one bit on every 8×8 luma block — baseline a DC and an end-of-block code, progressive its DC scan — so a
/// valid file carries at most 512 pixels per byte; eight times that leaves room for any encoder while a header
/// that claims a huge image in a small file (a decompression bomb) is refused before anything is allocated for it.
const MAX_PIXELS_PER_BYTE: u64 = 4096;

/// Refuses a header whose `width × height` is more than [`MAX_PIXELS_PER_BYTE`] per byte of the `len`-byte file.
fn check_plausible_size(width: u32, height: u32, len: usize) -> Result<(), MediaError> {
    let pixels = u64::from(width) * u64::from(height);
    let most = (len as u64).saturating_mul(MAX_PIXELS_PER_BYTE);
    if pixels > most {
        return Err(MediaError::NotJpeg {
            reason: format!(
                "the header claims {width}x{height} pixels in {len} bytes, more than a JPEG can encode in that \
                 size ({MAX_PIXELS_PER_BYTE} pixels per byte at most)"
            ),
        });
    }
    Ok(())
}

/// An nvJPEG library handle (`nvjpegHandle_t`), destroyed on drop.
pub struct Handle {
    raw: sys::nvjpegHandle_t,
    requested: Backend,
    backend: Backend,
    ctx: Arc<CudaContext>,
    lib: Arc<Library>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("requested", &self.requested).field("backend", &self.backend).finish()
    }
}

// SAFETY: nvJPEG documents the library handle as thread safe (only JPEG streams, states and buffers must be
// per thread, nvJPEG docs §1.3 "Thread Safety"); the context and library are `Send + Sync` themselves.
unsafe impl Send for Handle {}
// SAFETY: as above; `&Handle` only gives access to the thread-safe calls (`image_info`) and to the raw handle.
unsafe impl Sync for Handle {}

impl Handle {
    /// Creates a handle for `backend` on the device of `ctx` (bound to this thread first), with the library's
    /// default allocators. [`Backend::Hardware`] on a GPU without NVJPG engines (`NVJPEG_STATUS_ARCH_MISMATCH` or
    /// `NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED`) falls back to [`Backend::Default`]; [`Handle::backend`] says
    /// which one was obtained.
    pub fn new(lib: Arc<Library>, ctx: &Arc<CudaContext>, backend: Backend) -> Result<Self, MediaError> {
        ctx.bind_to_thread()?;
        let create = |b: Backend| {
            let mut raw: sys::nvjpegHandle_t = std::ptr::null_mut();
            // SAFETY: null allocators select nvJPEG's defaults (nvjpeg.h:303-304); `raw` is a live local the call
            // writes the new handle to; the flags are values nvjpeg.h defines.
            let status = unsafe {
                (lib.nvjpegCreateEx)(b.raw(), std::ptr::null_mut(), std::ptr::null_mut(), b.flags(), &mut raw)
            };
            (status, raw)
        };
        let (mut status, mut raw) = create(backend);
        let mut obtained = backend;
        let no_hardware =
            [nvjpegStatus_t::NVJPEG_STATUS_ARCH_MISMATCH, nvjpegStatus_t::NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED];
        if backend == Backend::Hardware && no_hardware.contains(&status) {
            obtained = Backend::Default;
            (status, raw) = create(obtained);
        }
        MediaError::check("nvjpegCreateEx", status)?;
        Ok(Self { raw, requested: backend, backend: obtained, ctx: ctx.clone(), lib })
    }

    /// The backend the handle was created with (the requested one, or [`Backend::Default`] after a fallback).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The backend that was asked for.
    pub fn requested_backend(&self) -> Backend {
        self.requested
    }

    /// The raw handle, valid while `self` lives.
    pub fn as_raw(&self) -> sys::nvjpegHandle_t {
        self.raw
    }

    /// The library the handle came from.
    pub fn library(&self) -> &Arc<Library> {
        &self.lib
    }

    /// The CUDA context the handle belongs to.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Reads the JPEG header of `bytes` on the host (`nvjpegGetImageInfo`; thread safe, no GPU work).
    pub fn image_info(&self, bytes: &[u8]) -> Result<ImageInfo, MediaError> {
        check_soi(bytes)?;
        let mut components: c_int = 0;
        let mut subsampling = nvjpegChromaSubsampling_t::NVJPEG_CSS_UNKNOWN;
        let mut widths = [0 as c_int; sys::NVJPEG_MAX_COMPONENT];
        let mut heights = [0 as c_int; sys::NVJPEG_MAX_COMPONENT];
        // SAFETY: `bytes` is a live slice of `bytes.len()` bytes, only read; the outputs are live locals, and
        // `widths`/`heights` hold the NVJPEG_MAX_COMPONENT ints the call writes (nvjpeg.h:371-372).
        let status = unsafe {
            (self.lib.nvjpegGetImageInfo)(
                self.raw,
                bytes.as_ptr(),
                bytes.len(),
                &mut components,
                &mut subsampling,
                widths.as_mut_ptr(),
                heights.as_mut_ptr(),
            )
        };
        MediaError::check("nvjpegGetImageInfo", status)?;
        if widths[0] <= 0 || heights[0] <= 0 || components <= 0 {
            return Err(MediaError::NotJpeg {
                reason: format!("header gives a {}x{} image of {components} components", widths[0], heights[0]),
            });
        }
        Ok(ImageInfo {
            width: widths[0] as u32,
            height: heights[0] as u32,
            components: components as u32,
            subsampling: ChromaSubsampling::from_raw(subsampling),
            chroma: (components > 1 && widths[1] > 0 && heights[1] > 0).then(|| (widths[1] as u32, heights[1] as u32)),
        })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // A context that cannot be bound is a failing context; nvJPEG's destroy then reports the same failure.
        let _ = self.ctx.bind_to_thread();
        // SAFETY: `raw` came from a successful nvjpegCreateEx and is destroyed once; every state and stream made
        // from it holds an `Arc<Handle>` and so was destroyed before.
        let _ = unsafe { (self.lib.nvjpegDestroy)(self.raw) };
    }
}

/// Decoding state (`nvjpegJpegState_t`) of one handle, destroyed on drop. One per thread at a time.
pub struct JpegState {
    raw: sys::nvjpegJpegState_t,
    handle: Arc<Handle>,
}

impl std::fmt::Debug for JpegState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JpegState").field("backend", &self.handle.backend).finish()
    }
}

// SAFETY: nvJPEG requires a state to be used by one thread at a time, not to stay on the thread that made it;
// every use goes through `&mut` (or the owning `Decoder`'s `&mut self`), and the handle it holds is `Send + Sync`.
unsafe impl Send for JpegState {}

impl JpegState {
    /// A new state for `handle`.
    pub fn new(handle: &Arc<Handle>) -> Result<Self, MediaError> {
        handle.ctx.bind_to_thread()?;
        let mut raw: sys::nvjpegJpegState_t = std::ptr::null_mut();
        // SAFETY: `handle.raw` is a live handle (kept alive by the `Arc` stored below); `raw` is a live local.
        let status = unsafe { (handle.lib.nvjpegJpegStateCreate)(handle.raw, &mut raw) };
        MediaError::check("nvjpegJpegStateCreate", status)?;
        Ok(Self { raw, handle: handle.clone() })
    }

    /// The raw state, valid while `self` lives.
    pub fn as_raw(&self) -> sys::nvjpegJpegState_t {
        self.raw
    }
}

impl Drop for JpegState {
    fn drop(&mut self) {
        let _ = self.handle.ctx.bind_to_thread();
        // SAFETY: `raw` came from a successful nvjpegJpegStateCreate on `handle`, which is still alive, and is
        // destroyed once.
        let _ = unsafe { (self.handle.lib.nvjpegJpegStateDestroy)(self.raw) };
    }
}

/// A parsed-bitstream handle (`nvjpegJpegStream_t`), destroyed on drop; used to ask the hardware backend whether
/// it can decode an image.
struct JpegStream {
    raw: sys::nvjpegJpegStream_t,
    handle: Arc<Handle>,
}

// SAFETY: as `JpegState`: one thread at a time (owned by a `Decoder`, used through `&mut self`).
unsafe impl Send for JpegStream {}

impl JpegStream {
    fn new(handle: &Arc<Handle>) -> Result<Self, MediaError> {
        let mut raw: sys::nvjpegJpegStream_t = std::ptr::null_mut();
        // SAFETY: `handle.raw` is a live handle (kept alive by the `Arc` stored below); `raw` is a live local.
        let status = unsafe { (handle.lib.nvjpegJpegStreamCreate)(handle.raw, &mut raw) };
        MediaError::check("nvjpegJpegStreamCreate", status)?;
        Ok(Self { raw, handle: handle.clone() })
    }
}

impl Drop for JpegStream {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a successful nvjpegJpegStreamCreate on `handle`, still alive; destroyed once.
        let _ = unsafe { (self.handle.lib.nvjpegJpegStreamDestroy)(self.raw) };
    }
}

/// Decodes JPEGs into interleaved RGB CUDA tensors on one device's Candle stream (see the module docs).
pub struct Decoder {
    // Field order is drop order: the state and stream go before the handle they were made from (they also hold
    // it, so this only keeps the order obvious).
    state: JpegState,
    /// One parsed-bitstream handle per image of the largest batch so far (hardware backend).
    jpeg_streams: Vec<JpegStream>,
    /// The output format and batch size `nvjpegDecodeBatchedInitialize` has set `state` up for (hardware
    /// backend); reset after a failed batch, which nvJPEG requires to be re-initialised.
    batched_for: Option<(nvjpegOutputFormat_t, usize)>,
    handle: Arc<Handle>,
    device: Device,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("handle", &self.handle).field("device", &self.device).finish()
    }
}

impl Decoder {
    /// A decoder for `device` (a CUDA device) with `backend` (see [`Handle::new`] for the hardware fallback).
    pub fn new(device: &Device, backend: Backend) -> Result<Self, MediaError> {
        let Device::Cuda(cuda) = device else {
            return Err(MediaError::NotCuda(format!("{:?}", device.location())));
        };
        let ctx = cuda.cuda_stream().context().clone();
        let handle = Arc::new(Handle::new(library()?, &ctx, backend)?);
        let state = JpegState::new(&handle)?;
        Ok(Self { state, jpeg_streams: Vec::new(), batched_for: None, handle, device: device.clone() })
    }

    /// The backend obtained (see [`Handle::backend`]).
    pub fn backend(&self) -> Backend {
        self.handle.backend
    }

    /// The library handle.
    pub fn handle(&self) -> &Arc<Handle> {
        &self.handle
    }

    /// The device decoded images land on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Width, height, components and chroma subsampling from the JPEG header (host only).
    pub fn image_info(&self, bytes: &[u8]) -> Result<ImageInfo, MediaError> {
        self.handle.image_info(bytes)
    }

    /// Decodes `bytes` into a new U8 `(H, W, 3)` interleaved RGB tensor on the decoder's device, enqueued on the
    /// device's Candle stream (no host synchronisation by swm; see the module docs). Greyscale JPEGs come out
    /// with R = G = B. A bad image is a typed error ([`MediaError::is_bad_input`]) and leaves the decoder usable.
    ///
    /// This is nvJPEG's own colour conversion, which replicates subsampled chroma; [`Decoder::decode_planar`]
    /// leaves upsampling and conversion to the fused kernel, which does them as libjpeg-turbo (and so Pillow) does.
    pub fn decode_rgb(&mut self, bytes: &[u8]) -> Result<Tensor, MediaError> {
        let info = self.checked_info(bytes)?;
        let (h, w) = (info.height as usize, info.width as usize);
        self.decode_to(bytes, nvjpegOutputFormat_t::NVJPEG_OUTPUT_RGBI, (h, w, 3).into(), &[(0, 3 * w)])
    }

    /// Decodes `bytes` into the JPEG's planar components (luma, then Cb and Cr at their own sampling) in a new
    /// U8 tensor on the decoder's device, with the [`FrameLayout`] of [`PixelFormat::Jpeg`] that says where they
    /// are: what [`crate::ops::frame_into`] turns into the model's input, upsampling chroma and converting to
    /// RGB exactly as libjpeg-turbo's default decode does (upstream decodes with Pillow, i.e. libjpeg-turbo).
    /// JPEGs at a sampling the kernel does not finish (4:1:1, 4:1:0) are decoded to interleaved RGB by nvJPEG
    /// instead ([`PixelFormat::Rgb`]). Ordered on the device's stream like [`Decoder::decode_rgb`].
    pub fn decode_planar(&mut self, bytes: &[u8]) -> Result<(Tensor, FrameLayout), MediaError> {
        let info = self.checked_info(bytes)?;
        let (h, w) = (info.height as usize, info.width as usize);
        let sampling = match (info.components, info.subsampling) {
            (1, _) => Some(JpegSampling::Gray),
            (3, ChromaSubsampling::Css444) => Some(JpegSampling::S444),
            (3, ChromaSubsampling::Css422) => Some(JpegSampling::S422),
            (3, ChromaSubsampling::Css420) => Some(JpegSampling::S420),
            (3, ChromaSubsampling::Css440) => Some(JpegSampling::S440),
            _ => None,
        };
        // The planes must be the size the kernel derives from the sampling (they are for these samplings).
        let chroma = |s: JpegSampling| s.chroma_size(w, h).map(|(cw, ch)| (cw as u32, ch as u32));
        let Some(sampling) = sampling.filter(|s| chroma(*s) == info.chroma || *s == JpegSampling::Gray) else {
            let rgb =
                self.decode_to(bytes, nvjpegOutputFormat_t::NVJPEG_OUTPUT_RGBI, (h * w * 3).into(), &[(0, 3 * w)])?;
            return Ok((rgb, FrameLayout::packed(PixelFormat::Rgb, w, h)));
        };
        let layout = FrameLayout::packed(PixelFormat::Jpeg(sampling), w, h);
        let flat = match sampling.chroma_size(w, h) {
            None => self.decode_to(bytes, nvjpegOutputFormat_t::NVJPEG_OUTPUT_Y, (h * w).into(), &[(0, w)])?,
            Some((cw, ch)) => {
                let planes = [(0, w), (layout.uv_offset, cw), (layout.uv_offset + cw * ch, cw)];
                let len = layout.required_bytes();
                self.decode_to(bytes, nvjpegOutputFormat_t::NVJPEG_OUTPUT_YUV, len.into(), &planes)?
            }
        };
        Ok((flat, layout))
    }

    /// [`Decoder::decode_planar`] for the frames of one observation (a history, a batch): on the hardware backend
    /// the colour JPEGs go to the engines as **one** batch (`nvjpegDecodeBatched`), which costs about what one image
    /// does; other backends, greyscale files and samplings the kernel does not finish are decoded one by one.
    /// An image the engines refuse fails the call with [`MediaError::Unsupported`], as for one image.
    pub fn decode_planar_batch(&mut self, files: &[&[u8]]) -> Result<Vec<(Tensor, FrameLayout)>, MediaError> {
        if files.len() < 2 || self.handle.backend != Backend::Hardware {
            return files.iter().map(|f| self.decode_planar(f)).collect();
        }
        let mut targets = Vec::with_capacity(files.len());
        let mut layouts = Vec::with_capacity(files.len());
        for bytes in files {
            let info = self.checked_info(bytes)?;
            let (h, w) = (info.height as usize, info.width as usize);
            let sampling = match (info.components, info.subsampling) {
                (3, ChromaSubsampling::Css444) => Some(JpegSampling::S444),
                (3, ChromaSubsampling::Css422) => Some(JpegSampling::S422),
                (3, ChromaSubsampling::Css420) => Some(JpegSampling::S420),
                (3, ChromaSubsampling::Css440) => Some(JpegSampling::S440),
                _ => None,
            };
            let planes = sampling.and_then(|s| {
                let (cw, ch) = s.chroma_size(w, h)?;
                (info.chroma == Some((cw as u32, ch as u32))).then_some((s, cw, ch))
            });
            let Some((sampling, cw, ch)) = planes else {
                return files.iter().map(|f| self.decode_planar(f)).collect();
            };
            let layout = FrameLayout::packed(PixelFormat::Jpeg(sampling), w, h);
            let planes = vec![(0, w), (layout.uv_offset, cw), (layout.uv_offset + cw * ch, cw)];
            targets.push((Shape::from(layout.required_bytes()), planes));
            layouts.push(layout);
        }
        let tensors = self.decode_many(files, nvjpegOutputFormat_t::NVJPEG_OUTPUT_YUV, &targets)?;
        Ok(tensors.into_iter().zip(layouts).collect())
    }

    /// The header of `bytes`, refused when it is not an image swm decodes.
    fn checked_info(&self, bytes: &[u8]) -> Result<ImageInfo, MediaError> {
        let info = self.image_info(bytes)?;
        // The header states the size: refuse what no camera frame is, or what the file is too small to hold,
        // before allocating for it.
        check_plausible_size(info.width, info.height, bytes.len())?;
        let max = crate::ops::resize::MAX_SIDE as u32;
        if info.width > max || info.height > max {
            return Err(MediaError::Unsupported {
                backend: self.backend(),
                reason: format!("{}x{} is larger than {max} a side", info.width, info.height),
            });
        }
        if info.components != 1 && info.components != 3 {
            return Err(MediaError::Unsupported {
                backend: self.backend(),
                reason: format!("{} colour components (swm decodes greyscale and YCbCr JPEGs)", info.components),
            });
        }
        Ok(info)
    }

    /// Decodes `bytes` as `format` into a new U8 tensor of `shape` whose planes are at `planes` (byte offset,
    /// pitch), one per channel `format` writes; every byte of the planes is written by nvJPEG.
    fn decode_to(
        &mut self,
        bytes: &[u8],
        format: nvjpegOutputFormat_t,
        shape: Shape,
        planes: &[(usize, usize)],
    ) -> Result<Tensor, MediaError> {
        let mut out = self.decode_many(&[bytes], format, &[(shape, planes.to_vec())])?;
        out.pop().ok_or_else(|| MediaError::Unsupported { backend: self.backend(), reason: "no image".into() })
    }

    /// [`Decoder::decode_to`] for several files in one call: on the hardware backend one batch
    /// (`nvjpegDecodeBatched` with a batch of `files.len()`), otherwise one `nvjpegDecode` each.
    fn decode_many(
        &mut self,
        files: &[&[u8]],
        format: nvjpegOutputFormat_t,
        targets: &[(Shape, Vec<(usize, usize)>)],
    ) -> Result<Vec<Tensor>, MediaError> {
        if files.len() != targets.len() || files.is_empty() {
            return Err(MediaError::Unsupported {
                backend: self.backend(),
                reason: format!("{} files for {} output images", files.len(), targets.len()),
            });
        }
        let device = self.device.clone();
        let Device::Cuda(cuda) = &device else {
            return Err(MediaError::NotCuda(format!("{:?}", device.location())));
        };
        let stream = cuda.cuda_stream();
        stream.context().bind_to_thread()?;
        let mut slices = Vec::with_capacity(targets.len());
        for (shape, _) in targets {
            // SAFETY: uninitialised device memory; the callers size `shape` and the planes so that nvJPEG writes
            // every byte a reader of the returned tensor (under its layout) reads, before the tensor is handed
            // out; on failure the memory is freed unread.
            slices.push(unsafe { cuda.alloc::<u8>(shape.elem_count()) }?);
        }
        {
            // Held across the decode: with event tracking on, dropping them records the writes after nvJPEG's work.
            let mut guards = Vec::with_capacity(slices.len());
            let mut images = vec![sys::nvjpegImage_t::default(); slices.len()];
            for ((slice, image), (_, planes)) in slices.iter_mut().zip(images.iter_mut()).zip(targets) {
                let (ptr, guard) = slice.device_ptr_mut(&stream);
                guards.push(guard);
                for (c, &(offset, pitch)) in planes.iter().enumerate().take(sys::NVJPEG_MAX_COMPONENT) {
                    image.channel[c] = (ptr as usize + offset) as *mut u8;
                    image.pitch[c] = pitch;
                }
            }
            let cu_stream = stream.cu_stream() as sys::cudaStream_t;
            if self.handle.backend == Backend::Hardware {
                self.decode_hardware(files, format, &mut images, cu_stream)?;
            } else {
                for (bytes, image) in files.iter().zip(images.iter_mut()) {
                    self.decode_single(bytes, format, image, cu_stream)?;
                }
            }
        }
        Ok(slices
            .into_iter()
            .zip(targets)
            .map(|(slice, (shape, _))| {
                let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, cuda.clone()));
                Tensor::from_storage(storage, shape.clone(), candle_core::op::BackpropOp::none(), false)
            })
            .collect())
    }

    /// `nvjpegDecode` (every backend but the hardware one).
    fn decode_single(
        &mut self,
        bytes: &[u8],
        format: nvjpegOutputFormat_t,
        image: &mut sys::nvjpegImage_t,
        stream: sys::cudaStream_t,
    ) -> Result<(), MediaError> {
        let h = &self.handle;
        // SAFETY: handle and state are live and belong together; `bytes` is a live host slice of `bytes.len()`
        // bytes, read during the call; each channel of `image` that `format` writes is the device address of a
        // plane the caller allocated for the sizes `nvjpegGetImageInfo` gave for these bytes, with its pitch
        // (`decode_to`; RGBI: one plane of pitch `3 * width`, nvjpeg.h:385-387; Y: the luma plane; YUV: luma and
        // the two chroma planes at their own sizes); `stream` is the Candle stream of the context bound to this
        // thread, on which the allocation was made.
        let status =
            unsafe { (h.lib.nvjpegDecode)(h.raw, self.state.raw, bytes.as_ptr(), bytes.len(), format, image, stream) };
        self.status("nvjpegDecode", status)
    }

    /// The hardware backend: ask whether the engines take each image, then one batch of all of them.
    fn decode_hardware(
        &mut self,
        files: &[&[u8]],
        format: nvjpegOutputFormat_t,
        images: &mut [sys::nvjpegImage_t],
        stream: sys::cudaStream_t,
    ) -> Result<(), MediaError> {
        let n = files.len();
        if n == 0 || images.len() != n {
            return Err(MediaError::Unsupported {
                backend: Backend::Hardware,
                reason: format!("{n} files for {} output images", images.len()),
            });
        }
        while self.jpeg_streams.len() < n {
            self.jpeg_streams.push(JpegStream::new(&self.handle)?);
        }
        for (bytes, js) in files.iter().zip(&self.jpeg_streams) {
            let h = &self.handle;
            // SAFETY: `js.raw` is a live stream created from this handle; `bytes` is a live host slice of
            // `bytes.len()` bytes, only read during the call.
            let status = unsafe { (h.lib.nvjpegJpegStreamParseHeader)(h.raw, bytes.as_ptr(), bytes.len(), js.raw) };
            self.status("nvjpegJpegStreamParseHeader", status)?;
            let mut unsupported: c_int = 0;
            // SAFETY: handle and stream are live (the stream holds the parsed header); `unsupported` is a live
            // local.
            let status = unsafe { (h.lib.nvjpegDecodeBatchedSupported)(h.raw, js.raw, &mut unsupported) };
            self.status("nvjpegDecodeBatchedSupported", status)?;
            if unsupported != 0 {
                return Err(MediaError::Unsupported {
                    backend: Backend::Hardware,
                    reason: "nvjpegDecodeBatchedSupported refuses this image (the NVJPG engines take baseline, \
                             single-scan JPEGs without 4:1:0/4:1:1 subsampling; a progressive JPEG is not one)"
                        .into(),
                });
            }
        }
        let h = &self.handle;
        if self.batched_for != Some((format, n)) {
            let batch = c_int::try_from(n).map_err(|_| MediaError::Unsupported {
                backend: Backend::Hardware,
                reason: format!("a batch of {n} images"),
            })?;
            // SAFETY: handle and state are live and belong together; a batch of `n`, one CPU thread, `format`.
            let status = unsafe { (h.lib.nvjpegDecodeBatchedInitialize)(h.raw, self.state.raw, batch, 1, format) };
            self.batched_for = None;
            self.status("nvjpegDecodeBatchedInitialize", status)?;
            self.batched_for = Some((format, n));
        }
        let data: Vec<*const u8> = files.iter().map(|f| f.as_ptr()).collect();
        let lengths: Vec<usize> = files.iter().map(|f| f.len()).collect();
        // SAFETY: the state was initialised for batches of `n` images of `format`; `data`/`lengths` are live
        // arrays of `n` entries describing the live host slices `files`; `images` holds `n` nvjpegImage_t whose
        // channels are device planes of the sizes `format` writes for each file (see `decode_single`); `stream`
        // is the Candle stream of the context bound to this thread.
        let status = unsafe {
            (h.lib.nvjpegDecodeBatched)(
                h.raw,
                self.state.raw,
                data.as_ptr(),
                lengths.as_ptr(),
                images.as_mut_ptr(),
                stream,
            )
        };
        if status != nvjpegStatus_t::NVJPEG_STATUS_SUCCESS {
            // nvjpeg.h:413: initialisation is also how a failed batch is reset.
            self.batched_for = None;
        }
        self.status("nvjpegDecodeBatched", status)
    }

    /// [`MediaError::check`], with the "not supported" statuses as [`MediaError::Unsupported`] of this backend.
    fn status(&self, call: &'static str, status: nvjpegStatus_t) -> Result<(), MediaError> {
        match status {
            nvjpegStatus_t::NVJPEG_STATUS_JPEG_NOT_SUPPORTED
            | nvjpegStatus_t::NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED => Err(MediaError::Unsupported {
                backend: self.backend(),
                reason: format!("{call} returned {}", status.name()),
            }),
            other => MediaError::check(call, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_without_the_soi_marker_are_refused_on_the_host() {
        assert!(check_soi(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).is_ok());
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A];
        let err = check_soi(&png).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a JPEG: 6 bytes that do not start with the JPEG start-of-image marker FF D8 FF (they start \
             [89, 50, 4E, 47])"
        );
        assert_eq!(check_soi(&[]).unwrap_err().to_string(), "not a JPEG: no bytes");
        assert!(check_soi(&[0xFF, 0xD8]).unwrap_err().is_bad_input());
    }

    #[test]
    fn a_header_claiming_more_pixels_than_the_file_can_hold_is_refused() {
        // A 1 KB file can hold at most 4 M pixels; a 640×480 frame of 30 KB passes with room to spare.
        assert!(check_plausible_size(640, 480, 30_000).is_ok());
        assert!(check_plausible_size(2048, 2048, 1024).is_ok());
        let err = check_plausible_size(16_384, 16_384, 1024).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        assert!(err.to_string().contains("16384x16384 pixels in 1024 bytes"), "{err}");
        assert!(check_plausible_size(u32::MAX, u32::MAX, usize::MAX).is_ok(), "no overflow");
    }

    #[test]
    fn backend_and_subsampling_names() {
        assert_eq!(Backend::Hardware.raw().0, 3);
        assert_eq!(Backend::GpuHybrid.to_string(), "GPU-hybrid");
        assert_eq!(Backend::Hardware.flags(), 5);
        assert_eq!(Backend::Default.flags(), 4);
        assert_eq!(ChromaSubsampling::from_raw(nvjpegChromaSubsampling_t(2)).name(), "4:2:0");
        assert_eq!(ChromaSubsampling::from_raw(nvjpegChromaSubsampling_t(6)), ChromaSubsampling::Gray);
        assert_eq!(ChromaSubsampling::from_raw(nvjpegChromaSubsampling_t(-1)), ChromaSubsampling::Unknown);
        assert_eq!(ChromaSubsampling::from_raw(nvjpegChromaSubsampling_t(77)), ChromaSubsampling::Unknown);
    }

    #[test]
    fn a_decoder_needs_a_cuda_device() {
        let err = Decoder::new(&Device::Cpu, Backend::Default).unwrap_err();
        assert!(matches!(err, MediaError::NotCuda(_)), "{err}");
    }
}
