//! H.264 and HEVC decoding on the NVDEC engines: Annex-B access units in, NV12 frames out as Candle CUDA
//! tensors on the device's stream.
//!
//! ```no_run
//! # fn main() -> Result<(), swm::media::MediaError> {
//! use swm::media::nvdec::{Codec, Decoder};
//! let device = swm::device::cuda(0).expect("a CUDA device");
//! let mut decoder = Decoder::new(&device, Codec::H264)?;
//! # let access_units: Vec<(Vec<u8>, i64)> = Vec::new();
//! for (au, pts) in access_units {
//!     for frame in decoder.decode(&au, pts)? {
//!         // frame.nv12: U8 (3H/2, W) on `device`: H rows of Y, then H/2 rows of interleaved U,V.
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! **API.** One [`Decoder`] per stream owns an NVDECODE parser and decoder (`libnvcuvid.so.1`, loaded at run
//! time). [`Decoder::decode`] takes exactly one access unit (the bytes of one picture with the parameter sets and
//! SEI in front of it, Annex-B start codes) and returns the frames that became displayable: with the parser's
//! display delay at 0, a stream without B-frames gives the frame of the access unit that carries it, in the same
//! call. Each [`Frame`] is a new U8 CUDA tensor, tightly packed NV12 (pitch = width), copied out of the mapped
//! NVDEC surface with two asynchronous device-to-device 2D copies on Candle's stream; the surface is unmapped
//! right after, no stream is synchronised, nothing is compiled at run time. [`caps`] asks the driver what the
//! engines decode.
//!
//! **Resolution changes.** The parser calls the sequence callback on every new sequence header that changes the
//! format. A coded size that fits the decoder's maximum (the first sequence's, or [`DecoderOptions::max_width`] /
//! `max_height`) with an output no larger than the first one is a `cuvidReconfigureDecoder` (with the new
//! sequence's decode surface count, as NVIDIA's samples do); anything else destroys and recreates the decoder
//! (inside the callback).
//!
//! **Errors and recovery.** A picture that NVDEC reports as decoded with an error (`cuvidGetDecodeStatus`:
//! `Error` or `Error_Concealed`), a picture the parser drops, or a parser failure makes that `decode` call return
//! [`MediaError::CorruptStream`] ([`MediaError::is_bad_input`]); frames of that call are dropped. Pictures that
//! follow keep being decoded (the reference state stays consistent), but with
//! [`DecoderOptions::skip_until_idr`] (the default) their frames are **not returned** until an access unit with an
//! IDR arrives (H.264 NAL type 5; HEVC IRAP types 16-21, i.e. IDR, BLA and CRA — RASL pictures of a CRA may still
//! carry damage): a P-frame after a damaged reference is damaged too. Such calls return `Ok` with no frame;
//! [`Decoder::stats`] counts them and [`Decoder::awaiting_idr`] says that the decoder is waiting. H.264 streams
//! that never send an IDR (open GOPs, intra refresh) do not recover under this policy; turn it off for them.
//!
//! **Callbacks.** The three parser callbacks run synchronously inside `cuvidParseVideoData` on the calling
//! thread. They are `extern "C"` trampolines over a heap-pinned state that never unwind: a panic is caught and
//! becomes [`MediaError::CallbackPanicked`], an error is stashed in the state, and both make the callback return
//! 0 (failure), which the parser passes back out of `cuvidParseVideoData`.
//!
//! **Context and threads.** Everything runs in the Candle device's CUDA context (its primary context), bound to
//! the calling thread before each call into libnvcuvid; the decoder is created without a context lock
//! (`cudaVideoCreate_PreferCUVID`). A [`Decoder`] may move between threads and is used by one at a time.
//!
//! **Drop order.** No frame stays mapped across calls. Dropping a [`Decoder`] destroys the parser first, then the
//! NVDEC decoder (the order of NVIDIA's samples: no callback can run against a destroyed decoder).
//!
//! Verified on the host only (no GPU on the build machines): the declarations' layouts, library loading, the
//! access-unit scan and the error mapping. The GPU tests in `tests/gpu/nvdec.rs` check the rest against
//! `tests/data/media/manifest.json`.

pub mod sys;

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use candle_core::{CudaDevice, CudaStorage, Device, Storage, Tensor};
use cudarc::driver::{CudaContext, CudaStream, DevicePtrMut};

use super::MediaError;
use crate::ops::{YuvColor, YuvMatrix, YuvRange};
use sys::{
    cudaVideoChromaFormat, cudaVideoCodec, cudaVideoDeinterlaceMode, cudaVideoSurfaceFormat, cuvidDecodeStatus,
    tcu_ulong, CUresult, Library, CUVIDDECODECAPS, CUVIDDECODECREATEINFO, CUVIDEOFORMAT, CUVIDPARSERDISPINFO,
    CUVIDPICPARAMS, CUVIDRECT_INT, CUVIDRECT_SHORT,
};

/// The process-wide libnvcuvid, loaded on first use (a failed load is retried on the next call).
pub fn library() -> Result<Arc<Library>, MediaError> {
    static LIBRARY: OnceLock<Arc<Library>> = OnceLock::new();
    super::dl::cached(&LIBRARY)
}

/// A video codec swm decodes with NVDEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC, Annex-B byte stream.
    H264,
    /// HEVC / H.265, Annex-B byte stream.
    Hevc,
}

impl Codec {
    /// The C value.
    pub fn raw(self) -> cudaVideoCodec {
        match self {
            Self::H264 => cudaVideoCodec::cudaVideoCodec_H264,
            Self::Hevc => cudaVideoCodec::cudaVideoCodec_HEVC,
        }
    }

    /// `"H.264"` or `"HEVC"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::H264 => "H.264",
            Self::Hevc => "HEVC",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Chroma sampling of a video stream (NVDECODE's `cudaVideoChromaFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChromaFormat {
    /// Luma only (4:0:0).
    Monochrome,
    /// 4:2:0.
    Yuv420,
    /// 4:2:2.
    Yuv422,
    /// 4:4:4.
    Yuv444,
}

impl ChromaFormat {
    /// The C value.
    pub fn raw(self) -> cudaVideoChromaFormat {
        match self {
            Self::Monochrome => cudaVideoChromaFormat::cudaVideoChromaFormat_Monochrome,
            Self::Yuv420 => cudaVideoChromaFormat::cudaVideoChromaFormat_420,
            Self::Yuv422 => cudaVideoChromaFormat::cudaVideoChromaFormat_422,
            Self::Yuv444 => cudaVideoChromaFormat::cudaVideoChromaFormat_444,
        }
    }

    /// The value of `raw`, or `None` for a value the header does not list.
    pub fn from_raw(raw: cudaVideoChromaFormat) -> Option<Self> {
        [Self::Monochrome, Self::Yuv420, Self::Yuv422, Self::Yuv444].into_iter().find(|c| c.raw() == raw)
    }

    /// `"4:2:0"` and so on.
    pub fn name(self) -> &'static str {
        match self {
            Self::Monochrome => "4:0:0",
            Self::Yuv420 => "4:2:0",
            Self::Yuv422 => "4:2:2",
            Self::Yuv444 => "4:4:4",
        }
    }
}

/// An output surface format of NVDEC (`cudaVideoSurfaceFormat`); swm maps NV12 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SurfaceFormat {
    /// 8-bit 4:2:0, Y plane then interleaved UV.
    Nv12,
    /// 16-bit 4:2:0 (high bit depths).
    P016,
    /// 8-bit planar 4:4:4.
    Yuv444,
    /// 16-bit planar 4:4:4.
    Yuv444_16Bit,
    /// 8-bit 4:2:2, Y plane then interleaved UV.
    Nv16,
    /// 16-bit 4:2:2.
    P216,
}

impl SurfaceFormat {
    const ALL: [Self; 6] = [Self::Nv12, Self::P016, Self::Yuv444, Self::Yuv444_16Bit, Self::Nv16, Self::P216];

    /// The C value.
    pub fn raw(self) -> cudaVideoSurfaceFormat {
        cudaVideoSurfaceFormat(match self {
            Self::Nv12 => 0,
            Self::P016 => 1,
            Self::Yuv444 => 2,
            Self::Yuv444_16Bit => 3,
            Self::Nv16 => 4,
            Self::P216 => 5,
        })
    }

    /// The formats whose bits are set in `CUVIDDECODECAPS::nOutputFormatMask` (bit `i` = format `i`).
    pub fn from_mask(mask: u16) -> Vec<Self> {
        Self::ALL.into_iter().filter(|f| mask & (1 << f.raw().0) != 0).collect()
    }
}

/// What NVDEC decodes for one codec, chroma format and bit depth (`cuvidGetDecoderCaps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderCaps {
    /// The codec asked about.
    pub codec: Codec,
    /// The chroma format asked about.
    pub chroma: ChromaFormat,
    /// The bit depth asked about.
    pub bit_depth: u32,
    /// Whether the engines decode it (every other field is 0 when not).
    pub supported: bool,
    /// How many NVDEC engines do.
    pub nvdecs: u32,
    /// Largest coded width.
    pub max_width: u32,
    /// Largest coded height.
    pub max_height: u32,
    /// Largest `coded_width * coded_height / 256`.
    pub max_mb_count: u32,
    /// Smallest coded width.
    pub min_width: u32,
    /// Smallest coded height.
    pub min_height: u32,
    /// The output surface formats offered.
    pub output_formats: Vec<SurfaceFormat>,
}

impl DecoderCaps {
    fn from_raw(codec: Codec, chroma: ChromaFormat, bit_depth: u32, raw: &CUVIDDECODECAPS) -> Self {
        Self {
            codec,
            chroma,
            bit_depth,
            supported: raw.bIsSupported != 0,
            nvdecs: u32::from(raw.nNumNVDECs),
            max_width: raw.nMaxWidth,
            max_height: raw.nMaxHeight,
            max_mb_count: raw.nMaxMBCount,
            min_width: u32::from(raw.nMinWidth),
            min_height: u32::from(raw.nMinHeight),
            output_formats: SurfaceFormat::from_mask(raw.nOutputFormatMask),
        }
    }

    /// Why a sequence of `coded_width` x `coded_height` cannot be decoded, or `None` when it can.
    pub fn size_refusal(&self, coded_width: u32, coded_height: u32) -> Option<String> {
        let mbs = u64::from(coded_width.div_ceil(16)) * u64::from(coded_height.div_ceil(16));
        if coded_width > self.max_width || coded_height > self.max_height {
            Some(format!(
                "coded size {coded_width}x{coded_height} exceeds NVDEC's maximum {}x{}",
                self.max_width, self.max_height
            ))
        } else if coded_width < self.min_width || coded_height < self.min_height {
            Some(format!(
                "coded size {coded_width}x{coded_height} is below NVDEC's minimum {}x{}",
                self.min_width, self.min_height
            ))
        } else if self.max_mb_count > 0 && mbs > u64::from(self.max_mb_count) {
            Some(format!("{mbs} macroblocks exceed NVDEC's maximum of {}", self.max_mb_count))
        } else {
            None
        }
    }
}

/// The CUDA side of a Candle device, or [`MediaError::NvdecNotCuda`].
fn cuda_of(device: &Device) -> Result<CudaDevice, MediaError> {
    match device {
        Device::Cuda(cuda) => Ok(cuda.clone()),
        other => Err(MediaError::NvdecNotCuda(format!("{:?}", other.location()))),
    }
}

/// What NVDEC on `device` decodes for `codec` in 8-bit 4:2:0 (the only format swm's decoder outputs).
pub fn caps(device: &Device, codec: Codec) -> Result<DecoderCaps, MediaError> {
    caps_for(device, codec, ChromaFormat::Yuv420, 8)
}

/// What NVDEC on `device` decodes for `codec`, `chroma` and `bit_depth` (8, 10, 12).
pub fn caps_for(
    device: &Device,
    codec: Codec,
    chroma: ChromaFormat,
    bit_depth: u32,
) -> Result<DecoderCaps, MediaError> {
    let cuda = cuda_of(device)?;
    cuda.cuda_stream().context().bind_to_thread()?;
    query_caps(library()?.as_ref(), codec, chroma, bit_depth)
}

/// `cuvidGetDecoderCaps`, with the device's context already bound to this thread.
fn query_caps(lib: &Library, codec: Codec, chroma: ChromaFormat, bit_depth: u32) -> Result<DecoderCaps, MediaError> {
    let minus8 = bit_depth.checked_sub(8).ok_or_else(|| MediaError::StreamUnsupported {
        codec: codec.name(),
        reason: format!("bit depth {bit_depth} (8 or more)"),
    })?;
    let mut raw = CUVIDDECODECAPS::query(codec.raw(), chroma.raw(), minus8);
    // SAFETY: `raw` is a live, fully initialised CUVIDDECODECAPS (IN fields set, the rest zero) that the call
    // reads and writes in place; a CUDA context is current on this thread (the callers bind it).
    let status = unsafe { (lib.cuvidGetDecoderCaps)(&mut raw) };
    MediaError::check_cuvid("cuvidGetDecoderCaps", status)?;
    Ok(DecoderCaps::from_raw(codec, chroma, bit_depth, &raw))
}

/// How a [`Decoder`] sizes itself and handles damaged streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Largest coded width a resolution change may switch to without recreating the decoder (0: the first
    /// sequence's width). Larger values reserve more video memory.
    pub max_width: u32,
    /// Largest coded height, as `max_width`.
    pub max_height: u32,
    /// After a damaged picture, return no frames until an access unit with an IDR (see the module docs).
    pub skip_until_idr: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        Self { max_width: 0, max_height: 0, skip_until_idr: true }
    }
}

/// One decoded picture: tightly packed NV12 in a new Candle-owned U8 CUDA tensor.
#[derive(Debug, Clone)]
pub struct Frame {
    /// U8 `(3 * height / 2, width)`: `height` rows of Y, then `height / 2` rows of interleaved U,V (`width / 2`
    /// pairs each); pitch = width. Written on the decoder device's Candle stream.
    pub nv12: Tensor,
    /// Width in pixels (the stream's display width; even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// The timestamp passed with the access unit that carried the picture.
    pub timestamp: i64,
    /// Display-order number of the picture since the decoder was created (skipped pictures count too).
    pub index: u64,
    /// How to convert the frame to RGB: the sequence's colour description (H.264/HEVC VUI `matrix_coefficients`
    /// and `video_full_range_flag`; BT.601 limited range when the stream does not say, as FFmpeg assumes).
    pub color: YuvColor,
}

impl Frame {
    /// The Y plane, U8 `(height, width)` (a view of [`Frame::nv12`]).
    pub fn y(&self) -> Result<Tensor, MediaError> {
        Ok(self.nv12.narrow(0, 0, self.height as usize)?)
    }

    /// The interleaved chroma plane, U8 `(height / 2, width / 2, 2)` with U at `[.., .., 0]`.
    pub fn uv(&self) -> Result<Tensor, MediaError> {
        let (w, h) = (self.width as usize, self.height as usize);
        Ok(self.nv12.narrow(0, h, h / 2)?.reshape((h / 2, w / 2, 2))?)
    }
}

/// Counters of a [`Decoder`] since its creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Pictures handed to NVDEC (`cuvidDecodePicture`).
    pub decoded: u64,
    /// Frames returned.
    pub returned: u64,
    /// Displayable pictures not returned while waiting for an IDR.
    pub skipped: u64,
    /// Pictures reported damaged (decode status or parser).
    pub corrupt: u64,
    /// Pictures whose decode status could not be read (`cuvidGetDecodeStatus` failed or still in progress).
    pub status_unknown: u64,
    /// NVDEC decoders created (the first one and every recreation).
    pub decoders_created: u32,
    /// `cuvidReconfigureDecoder` calls.
    pub reconfigured: u32,
}

/// What the host sees in one access unit: its coded pictures and whether it starts a clean decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccessUnitInfo {
    /// VCL NAL units (coded slices); one per picture in swm's test streams.
    pub slices: usize,
    /// Whether it holds an IDR (H.264 NAL type 5) or an HEVC IRAP picture (NAL types 16-21).
    pub recovery_point: bool,
}

/// Scans the Annex-B NAL unit headers of `bytes` (3- or 4-byte start codes; no emulation-prevention decoding is
/// needed for the header byte).
pub fn scan_access_unit(codec: Codec, bytes: &[u8]) -> AccessUnitInfo {
    let mut info = AccessUnitInfo::default();
    let mut i = 0;
    while i + 3 < bytes.len() {
        if bytes[i] == 0 && bytes[i + 1] == 0 && bytes[i + 2] == 1 {
            let header = bytes[i + 3];
            let (vcl, recovery) = match codec {
                Codec::H264 => {
                    let t = header & 0x1F;
                    ((1..=5).contains(&t), t == 5)
                }
                Codec::Hevc => {
                    let t = (header >> 1) & 0x3F;
                    (t <= 31, (16..=21).contains(&t))
                }
            };
            info.slices += usize::from(vcl);
            info.recovery_point |= recovery;
            i += 3;
        } else {
            i += 1;
        }
    }
    info
}

/// Byte offset of the interleaved UV plane in a mapped NV12 surface of `pitch` bytes per row whose output height
/// is `height`: the chroma rows start after the luma rows rounded up to even, as NVIDIA's samples compute it
/// (`pitch * ((height + 1) & ~1)`). **To be confirmed on the device** by the NV12 hash tests.
pub fn uv_plane_offset(pitch: usize, height: usize) -> usize {
    pitch * (height + (height & 1))
}

/// Where stashed callback errors go; implemented by the decoder's state (and by test doubles).
trait ErrorSlot {
    fn stash(&mut self, error: MediaError);
}

/// Runs a parser callback on the state behind `user`, never unwinding: a returned error or a panic is stashed
/// and the callback reports failure (0) to the parser.
fn run_callback<S: ErrorSlot>(
    user: *mut c_void,
    callback: &'static str,
    f: impl FnOnce(&mut S) -> Result<c_int, MediaError>,
) -> c_int {
    let state = user as *mut S;
    if state.is_null() {
        return 0;
    }
    // SAFETY: `user` is the `pUserData` the parser was created with: a live, uniquely owned `S` (see
    // `Decoder::with_options`); the parser calls back only from inside `cuvidParseVideoData`, during which the
    // `Decoder` holds no reference to it, and never from two threads at once.
    let outcome = catch_unwind(AssertUnwindSafe(|| f(unsafe { &mut *state })));
    // SAFETY: as above; the closure's borrow has ended.
    let state = unsafe { &mut *state };
    match outcome {
        Ok(Ok(rc)) => rc,
        Ok(Err(e)) => {
            state.stash(e);
            0
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".into());
            // A payload whose destructor panics would unwind from here: leak it instead (one box per bug).
            std::mem::forget(payload);
            state.stash(MediaError::CallbackPanicked { callback, message });
            0
        }
    }
}

extern "C" fn sequence_trampoline(user: *mut c_void, format: *mut CUVIDEOFORMAT) -> c_int {
    run_callback::<State>(user, "sequence callback", |state| {
        // SAFETY: the parser passes a valid CUVIDEOFORMAT for the duration of the callback (or null, refused).
        let format = unsafe { format.as_ref() }.ok_or_else(|| state.corrupt("a null CUVIDEOFORMAT".into()))?;
        state.on_sequence(format)
    })
}

extern "C" fn decode_trampoline(user: *mut c_void, params: *mut CUVIDPICPARAMS) -> c_int {
    run_callback::<State>(user, "decode callback", |state| {
        if params.is_null() {
            return Err(state.corrupt("a null CUVIDPICPARAMS".into()));
        }
        state.on_decode(params)
    })
}

extern "C" fn display_trampoline(user: *mut c_void, info: *mut CUVIDPARSERDISPINFO) -> c_int {
    run_callback::<State>(user, "display callback", |state| {
        // SAFETY: the parser passes a valid CUVIDPARSERDISPINFO for the duration of the callback, or null at the
        // end of the stream (CUVID_PKT_NOTIFY_EOS), which is nothing to display.
        match unsafe { info.as_ref() } {
            Some(info) => state.on_display(*info),
            None => Ok(1),
        }
    })
}

/// An NVDEC decoder (`CUvideodecoder`) and what it was created for; destroyed on drop.
struct VideoDecoder {
    raw: sys::CUvideodecoder,
    /// Coded size of the current sequence.
    coded: (u32, u32),
    /// Largest coded size a reconfigure may switch to.
    max: (u32, u32),
    /// Output size of the current sequence (the display area).
    target: (u32, u32),
    /// Output size the decoder was created with (its output surfaces).
    created_target: (u32, u32),
    display: CUVIDRECT_INT,
    surfaces: u32,
    lib: Arc<Library>,
    ctx: Arc<CudaContext>,
}

impl Drop for VideoDecoder {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: `raw` came from a successful cuvidCreateDecoder and is destroyed once; no frame of it is mapped
        // (every mapping is undone inside the display callback that made it).
        let _ = unsafe { (self.lib.cuvidDestroyDecoder)(self.raw) };
    }
}

/// A mapped output surface, unmapped on drop (also on the error paths of the copy).
struct Mapped<'a> {
    lib: &'a Library,
    decoder: sys::CUvideodecoder,
    ptr: u64,
}

impl Drop for Mapped<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by a successful cuvidMapVideoFrame64 on `decoder`, which is alive (the
        // mapping never outlives the display callback), and is unmapped once. The copies out of it were enqueued
        // on the stream given as `output_stream`; the post-processing that may reuse the surface for a later
        // picture is enqueued on that same stream, so it runs after them.
        let _ = unsafe { (self.lib.cuvidUnmapVideoFrame64)(self.decoder, self.ptr) };
    }
}

/// The colour description of a sequence from its VUI (`CUVIDEOFORMAT::video_signal_description`): the matrix from
/// `matrix_coefficients` (H.264/HEVC table E-5: 1 BT.709; 4, 5, 6 BT.601; 9, 10 BT.2020; 7, SMPTE 240M, as
/// BT.709, its nearest; anything else — 2 "unspecified" included — BT.601, FFmpeg's default) and the range from
/// `video_full_range_flag` (bit 3 of the first byte).
fn vui_color(f: &CUVIDEOFORMAT) -> YuvColor {
    let matrix = match f.matrix_coefficients {
        1 | 7 => YuvMatrix::Bt709,
        9 | 10 => YuvMatrix::Bt2020,
        _ => YuvMatrix::Bt601,
    };
    let range = if f.video_signal_flags & 0b1000 != 0 { YuvRange::Full } else { YuvRange::Limited };
    YuvColor { matrix, range }
}

/// The parser callbacks' state: heap-pinned (its address is the parser's `pUserData`), owned by a [`Decoder`].
struct State {
    lib: Arc<Library>,
    codec: Codec,
    caps: DecoderCaps,
    options: DecoderOptions,
    cuda: CudaDevice,
    stream: Arc<CudaStream>,
    decoder: Option<VideoDecoder>,
    /// Frames of the current `decode` call.
    frames: Vec<Frame>,
    /// The first error of the current call.
    error: Option<MediaError>,
    /// Waiting for a recovery point after a damaged picture.
    awaiting_idr: bool,
    /// Whether the access unit being parsed holds a recovery point.
    au_recovers: bool,
    /// Decode callbacks during the current call.
    decoded_this_call: u32,
    /// Per decode surface: decoded while waiting for a recovery point (its frame is not returned).
    tainted: Vec<bool>,
    next_index: u64,
    stats: DecodeStats,
    /// The current sequence's colour description (from its VUI).
    color: YuvColor,
}

impl ErrorSlot for State {
    fn stash(&mut self, error: MediaError) {
        self.error.get_or_insert(error);
    }
}

impl State {
    fn corrupt(&self, reason: String) -> MediaError {
        MediaError::CorruptStream { codec: self.codec.name(), reason }
    }

    fn unsupported(&self, reason: String) -> MediaError {
        MediaError::StreamUnsupported { codec: self.codec.name(), reason }
    }

    /// The sequence callback: create, reconfigure or recreate the decoder; returns the decode surface count
    /// (> 1 sets the parser's DPB size, nvcuvid.h:480).
    fn on_sequence(&mut self, f: &CUVIDEOFORMAT) -> Result<c_int, MediaError> {
        if f.codec != self.codec.raw() {
            return Err(self.corrupt(format!("the parser reports codec {} in a {} stream", f.codec.0, self.codec)));
        }
        let chroma = ChromaFormat::from_raw(f.chroma_format);
        if chroma != Some(ChromaFormat::Yuv420) {
            let name = chroma.map_or("an unknown chroma format", ChromaFormat::name);
            return Err(self.unsupported(format!("{name} (swm decodes 4:2:0 into NV12 only)")));
        }
        if f.bit_depth_luma_minus8 != 0 || f.bit_depth_chroma_minus8 != 0 {
            return Err(self.unsupported(format!(
                "{}-bit luma / {}-bit chroma (swm decodes 8-bit into NV12 only)",
                8 + u32::from(f.bit_depth_luma_minus8),
                8 + u32::from(f.bit_depth_chroma_minus8)
            )));
        }
        let coded = (f.coded_width, f.coded_height);
        if let Some(reason) = self.caps.size_refusal(coded.0, coded.1) {
            return Err(self.unsupported(reason));
        }
        let area = f.display_area;
        let (w, h) = (i64::from(area.right) - i64::from(area.left), i64::from(area.bottom) - i64::from(area.top));
        let in_coded = area.left >= 0 && area.top >= 0 && w > 0 && h > 0;
        if !in_coded || area.right as u32 > coded.0 || area.bottom as u32 > coded.1 {
            return Err(self.corrupt(format!(
                "display area ({}, {})-({}, {}) outside the coded {}x{} frame",
                area.left, area.top, area.right, area.bottom, coded.0, coded.1
            )));
        }
        let target = (w as u32, h as u32);
        if !target.0.is_multiple_of(2) || !target.1.is_multiple_of(2) {
            return Err(self.unsupported(format!("odd output size {}x{} (NV12 needs even sizes)", target.0, target.1)));
        }
        let surfaces = u32::from(f.min_num_decode_surfaces).max(1);
        self.color = vui_color(f);

        if let Some(d) = &mut self.decoder {
            if d.coded == coded && d.display == area {
                return Ok(d.surfaces as c_int);
            }
            let fits = coded.0 <= d.max.0
                && coded.1 <= d.max.1
                && target.0 <= d.created_target.0
                && target.1 <= d.created_target.1;
            if fits {
                let mut info = sys::CUVIDRECONFIGUREDECODERINFO {
                    ulWidth: coded.0,
                    ulHeight: coded.1,
                    ulTargetWidth: target.0,
                    ulTargetHeight: target.1,
                    ulNumDecodeSurfaces: surfaces,
                    display_area: short_rect(area),
                    ..Default::default()
                };
                // SAFETY: `d.raw` is a live decoder; `info` is a live, initialised struct the call reads; we are
                // inside the sequence callback, where NVDECODE requires reconfiguration to happen (cuviddec.h:1114).
                let status = unsafe { (self.lib.cuvidReconfigureDecoder)(d.raw, &mut info) };
                MediaError::check_cuvid("cuvidReconfigureDecoder", status)?;
                d.coded = coded;
                d.target = target;
                d.display = area;
                d.surfaces = surfaces;
                self.stats.reconfigured += 1;
                return Ok(d.surfaces as c_int);
            }
        }
        // First sequence, or one the decoder cannot be reconfigured to: free the old decoder's memory first.
        self.decoder = None;
        let max = (
            coded.0.max(self.options.max_width).min(self.caps.max_width),
            coded.1.max(self.options.max_height).min(self.caps.max_height),
        );
        let progressive = f.progressive_sequence != 0;
        let mut info = CUVIDDECODECREATEINFO {
            ulWidth: tcu_ulong::from(coded.0),
            ulHeight: tcu_ulong::from(coded.1),
            ulNumDecodeSurfaces: tcu_ulong::from(surfaces),
            CodecType: self.codec.raw(),
            ChromaFormat: cudaVideoChromaFormat::cudaVideoChromaFormat_420,
            ulCreationFlags: sys::cudaVideoCreate_PreferCUVID,
            bitDepthMinus8: 0,
            ulMaxWidth: tcu_ulong::from(max.0),
            ulMaxHeight: tcu_ulong::from(max.1),
            display_area: short_rect(area),
            OutputFormat: cudaVideoSurfaceFormat::cudaVideoSurfaceFormat_NV12,
            DeinterlaceMode: if progressive {
                cudaVideoDeinterlaceMode::cudaVideoDeinterlaceMode_Weave
            } else {
                cudaVideoDeinterlaceMode::cudaVideoDeinterlaceMode_Adaptive
            },
            ulTargetWidth: tcu_ulong::from(target.0),
            ulTargetHeight: tcu_ulong::from(target.1),
            ulNumOutputSurfaces: 2,
            ..Default::default()
        };
        let mut raw: sys::CUvideodecoder = std::ptr::null_mut();
        // SAFETY: `info` is a live, fully initialised CUVIDDECODECREATEINFO (reserved fields zero, no context
        // lock); `raw` is a live local the call writes the new handle to; the device's context is current (bound
        // by `Decoder::decode` before parsing).
        let status = unsafe { (self.lib.cuvidCreateDecoder)(&mut raw, &mut info) };
        MediaError::check_cuvid("cuvidCreateDecoder", status)?;
        self.decoder = Some(VideoDecoder {
            raw,
            coded,
            max,
            target,
            created_target: target,
            display: area,
            surfaces,
            lib: self.lib.clone(),
            ctx: self.stream.context().clone(),
        });
        self.stats.decoders_created += 1;
        Ok(surfaces as c_int)
    }

    /// The decode callback: hand the picture to NVDEC and note whether its frame will be returned.
    fn on_decode(&mut self, params: *mut CUVIDPICPARAMS) -> Result<c_int, MediaError> {
        let Some(d) = &self.decoder else {
            return Err(self.corrupt("a picture before any usable sequence header".into()));
        };
        // SAFETY: `params` is the parser's non-null CUVIDPICPARAMS, valid during the callback; only the leading
        // field declared in `sys` is read.
        let index = unsafe { (*params).CurrPicIdx };
        let slot = usize::try_from(index).map_err(|_| MediaError::CorruptStream {
            codec: self.codec.name(),
            reason: format!("picture index {index}"),
        })?;
        if self.awaiting_idr && self.au_recovers {
            self.awaiting_idr = false;
        }
        // SAFETY: `d.raw` is a live decoder created for this parser's sequence; `params` is passed on unchanged,
        // as NVDECODE intends (the full structure, owned by the parser, valid during the callback).
        let status = unsafe { (self.lib.cuvidDecodePicture)(d.raw, params) };
        MediaError::check_cuvid("cuvidDecodePicture", status)?;
        if self.tainted.len() <= slot {
            self.tainted.resize(slot + 1, false);
        }
        self.tainted[slot] = self.awaiting_idr;
        self.stats.decoded += 1;
        self.decoded_this_call += 1;
        Ok(1)
    }

    /// The display callback: map the surface on Candle's stream, check its decode status, copy it into a new
    /// tensor, unmap.
    fn on_display(&mut self, info: CUVIDPARSERDISPINFO) -> Result<c_int, MediaError> {
        let index = self.next_index;
        self.next_index += 1;
        let pic = info.picture_index;
        let slot = usize::try_from(pic).map_err(|_| MediaError::CorruptStream {
            codec: self.codec.name(),
            reason: format!("picture index {pic}"),
        })?;
        if self.tainted.get(slot).copied().unwrap_or(false) {
            self.stats.skipped += 1;
            return Ok(1);
        }
        let Some(d) = &self.decoder else {
            return Err(self.corrupt("a picture to display without a decoder".into()));
        };
        let (decoder, (w, h)) = (d.raw, d.target);
        let lib = self.lib.clone();
        let mut proc = sys::CUVIDPROCPARAMS {
            progressive_frame: info.progressive_frame,
            top_field_first: info.top_field_first,
            unpaired_field: c_int::from(info.repeat_first_field < 0),
            output_stream: self.stream.cu_stream(),
            ..Default::default()
        };
        let (mut ptr, mut pitch) = (0u64, 0u32);
        // SAFETY: `decoder` is live; `pic` is the index the parser gave for a decoded picture; `ptr`, `pitch` and
        // `proc` are live locals (reserved fields zero); the output stream is Candle's stream of the current
        // context.
        let status = unsafe { (lib.cuvidMapVideoFrame64)(decoder, pic, &mut ptr, &mut pitch, &mut proc) };
        MediaError::check_cuvid("cuvidMapVideoFrame64", status)?;
        let mapped = Mapped { lib: &lib, decoder, ptr };

        let mut decode_status = sys::CUVIDGETDECODESTATUS::default();
        // SAFETY: `decoder` is live, `pic` a decoded picture's index, `decode_status` a live zeroed local.
        let status = unsafe { (lib.cuvidGetDecodeStatus)(decoder, pic, &mut decode_status) };
        let damaged =
            [cuvidDecodeStatus::cuvidDecodeStatus_Error, cuvidDecodeStatus::cuvidDecodeStatus_Error_Concealed];
        if status != CUresult::CUDA_SUCCESS
            || decode_status.decodeStatus != cuvidDecodeStatus::cuvidDecodeStatus_Success
        {
            if status == CUresult::CUDA_SUCCESS && damaged.contains(&decode_status.decodeStatus) {
                drop(mapped);
                self.stats.corrupt += 1;
                if self.options.skip_until_idr {
                    self.awaiting_idr = true;
                }
                let name = if decode_status.decodeStatus.0 == 8 { "Error" } else { "Error_Concealed" };
                self.stash(self.corrupt(format!(
                    "NVDEC reports cuvidDecodeStatus_{name} for the picture displayed as frame {index} (timestamp {})",
                    info.timestamp
                )));
                return Ok(1);
            }
            self.stats.status_unknown += 1;
        }

        let (wu, hu, pitch) = (w as usize, h as usize, pitch as usize);
        if pitch < wu {
            return Err(MediaError::Nvdec { call: "cuvidMapVideoFrame64", status: "a pitch below the width", code: 0 });
        }
        // SAFETY: uninitialised device memory; the two copies below write every byte (wu * hu luma bytes, then
        // wu * hu / 2 chroma bytes) before the tensor is handed out; on failure it is freed unread.
        let mut slice = unsafe { self.cuda.alloc::<u8>(wu * hu * 3 / 2) }?;
        {
            // Held across the copies: with event tracking on, dropping it records the write after them.
            let (dst, _written) = slice.device_ptr_mut(&self.stream);
            let stream = self.stream.cu_stream();
            copy_plane(ptr, pitch, dst, wu, hu, stream)?;
            copy_plane(ptr + uv_plane_offset(pitch, hu) as u64, pitch, dst + (wu * hu) as u64, wu, hu / 2, stream)?;
        }
        drop(mapped);
        let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, self.cuda.clone()));
        let nv12 = Tensor::from_storage(storage, (hu * 3 / 2, wu), candle_core::op::BackpropOp::none(), false);
        self.frames.push(Frame { nv12, width: w, height: h, timestamp: info.timestamp, index, color: self.color });
        self.stats.returned += 1;
        Ok(1)
    }
}

/// `CUVIDEOFORMAT`'s int rectangle as the short one of the create/reconfigure structures (sizes are bounded by the
/// engine's maximum, 8192, checked before).
fn short_rect(r: CUVIDRECT_INT) -> CUVIDRECT_SHORT {
    let s = |v: c_int| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
    CUVIDRECT_SHORT { left: s(r.left), top: s(r.top), right: s(r.right), bottom: s(r.bottom) }
}

/// One asynchronous 2D device-to-device copy of `rows` rows of `width` bytes from pitch `src_pitch` to a packed
/// destination (pitch `width`), on `stream`.
fn copy_plane(
    src: u64,
    src_pitch: usize,
    dst: u64,
    width: usize,
    rows: usize,
    stream: sys::CUstream,
) -> Result<(), MediaError> {
    use cudarc::driver::sys as cu;
    let copy = cu::CUDA_MEMCPY2D {
        srcXInBytes: 0,
        srcY: 0,
        srcMemoryType: cu::CUmemorytype::CU_MEMORYTYPE_DEVICE,
        srcHost: std::ptr::null(),
        srcDevice: src,
        srcArray: std::ptr::null_mut(),
        srcPitch: src_pitch,
        dstXInBytes: 0,
        dstY: 0,
        dstMemoryType: cu::CUmemorytype::CU_MEMORYTYPE_DEVICE,
        dstHost: std::ptr::null_mut(),
        dstDevice: dst,
        dstArray: std::ptr::null_mut(),
        dstPitch: width,
        WidthInBytes: width,
        Height: rows,
    };
    // SAFETY: both addresses are device memory of the current context: `src` a mapped NVDEC surface of at least
    // `rows` rows of `src_pitch >= width` bytes from that point (the luma plane, or the chroma plane at
    // `uv_plane_offset`), `dst` a live allocation with room for `rows * width` bytes; `copy` is a live struct;
    // `stream` is Candle's stream, on which the destination was allocated and the mapping was made.
    unsafe { cu::cuMemcpy2DAsync_v2(&copy, stream) }.result()?;
    Ok(())
}

/// Decodes one H.264 or HEVC Annex-B stream with NVDEC into NV12 frames (see the module docs).
pub struct Decoder {
    parser: sys::CUvideoparser,
    /// The callbacks' state, `Box::into_raw`'d; freed in `Drop` after the parser.
    state: NonNull<State>,
    codec: Codec,
    device: Device,
    ctx: Arc<CudaContext>,
    lib: Arc<Library>,
}

// SAFETY: the parser, the decoder and the state are used by one thread at a time (`&mut self` for every call into
// libnvcuvid), with the context bound to that thread first; NVDECODE handles are not tied to the creating thread.
// The state's Candle/cudarc members are `Send` themselves.
unsafe impl Send for Decoder {}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("codec", &self.codec).field("device", &self.device).finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder of `codec` on `device` (a CUDA device) with the default [`DecoderOptions`].
    pub fn new(device: &Device, codec: Codec) -> Result<Self, MediaError> {
        Self::with_options(device, codec, DecoderOptions::default())
    }

    /// A decoder of `codec` on `device` with `options`. Fails with [`MediaError::CodecUnavailable`] when the
    /// GPU's NVDEC does not decode 8-bit 4:2:0 `codec`. The NVDEC decoder itself is created at the first sequence
    /// header.
    pub fn with_options(device: &Device, codec: Codec, options: DecoderOptions) -> Result<Self, MediaError> {
        let cuda = cuda_of(device)?;
        let stream = cuda.cuda_stream();
        let ctx = stream.context().clone();
        ctx.bind_to_thread()?;
        let lib = library()?;
        let caps = query_caps(&lib, codec, ChromaFormat::Yuv420, 8)?;
        if !caps.supported {
            return Err(MediaError::CodecUnavailable {
                codec: codec.name(),
                reason: "cuvidGetDecoderCaps reports 8-bit 4:2:0 unsupported".into(),
            });
        }
        let state = Box::new(State {
            lib: lib.clone(),
            codec,
            caps,
            options,
            cuda,
            stream,
            decoder: None,
            frames: Vec::new(),
            error: None,
            awaiting_idr: false,
            au_recovers: false,
            decoded_this_call: 0,
            tainted: Vec::new(),
            next_index: 0,
            stats: DecodeStats::default(),
            color: YuvColor::default(),
        });
        let state = NonNull::from(Box::leak(state));
        let mut params = sys::CUVIDPARSERPARAMS {
            CodecType: codec.raw(),
            // The sequence callback's return value sets the real count.
            ulMaxNumDecodeSurfaces: 1,
            ulClockRate: 0,
            ulErrorThreshold: 0,
            ulMaxDisplayDelay: 0,
            pUserData: state.as_ptr().cast(),
            pfnSequenceCallback: Some(sequence_trampoline),
            pfnDecodePicture: Some(decode_trampoline),
            pfnDisplayPicture: Some(display_trampoline),
            ..Default::default()
        };
        let mut parser: sys::CUvideoparser = std::ptr::null_mut();
        // SAFETY: `params` is a live, fully initialised CUVIDPARSERPARAMS (reserved fields zero/null) whose
        // callbacks match the declared signatures and never unwind; `pUserData` points to the leaked `State`, which
        // stays alive until `Drop` has destroyed the parser; `parser` is a live local.
        let status = unsafe { (lib.cuvidCreateVideoParser)(&mut parser, &mut params) };
        if let Err(e) = MediaError::check_cuvid("cuvidCreateVideoParser", status) {
            // SAFETY: no parser was created, so nothing else holds the pointer; it came from `Box::leak` above.
            drop(unsafe { Box::from_raw(state.as_ptr()) });
            return Err(e);
        }
        Ok(Self { parser, state, codec, device: device.clone(), ctx, lib })
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The device frames land on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn state(&self) -> &State {
        // SAFETY: the state lives until `Drop`; callbacks (the only other users) run only inside `&mut self`
        // methods, so no mutable reference exists while `&self` is held.
        unsafe { self.state.as_ref() }
    }

    /// What NVDEC decodes for this codec in 8-bit 4:2:0 (queried at creation).
    pub fn caps(&self) -> &DecoderCaps {
        &self.state().caps
    }

    /// The counters since creation.
    pub fn stats(&self) -> DecodeStats {
        self.state().stats
    }

    /// Whether frames are being withheld until the next IDR (after a damaged picture).
    pub fn awaiting_idr(&self) -> bool {
        self.state().awaiting_idr
    }

    /// The output size of the current sequence, once a sequence header has been seen.
    pub fn size(&self) -> Option<(u32, u32)> {
        self.state().decoder.as_ref().map(|d| d.target)
    }

    /// Decodes one access unit (one picture with the NAL units in front of it, Annex-B) carrying `timestamp`,
    /// and returns the frames that became displayable, in display order (see the module docs). Empty input
    /// returns no frame. A damaged picture or stream is [`MediaError::CorruptStream`] and leaves the decoder
    /// usable.
    pub fn decode(&mut self, access_unit: &[u8], timestamp: i64) -> Result<Vec<Frame>, MediaError> {
        if access_unit.is_empty() {
            return Ok(Vec::new());
        }
        let info = scan_access_unit(self.codec, access_unit);
        {
            // SAFETY: no other reference to the state exists outside a parse (`&mut self`).
            let state = unsafe { self.state.as_mut() };
            state.au_recovers = info.recovery_point;
            state.decoded_this_call = 0;
        }
        let mut packet = sys::CUVIDSOURCEDATAPACKET {
            flags: sys::CUVID_PKT_ENDOFPICTURE | sys::CUVID_PKT_TIMESTAMP,
            payload_size: access_unit.len() as tcu_ulong,
            payload: access_unit.as_ptr(),
            timestamp,
        };
        let frames = self.parse(&mut packet)?;
        // SAFETY: as above (the parse has returned).
        let state = unsafe { self.state.as_mut() };
        if info.slices > 0 && state.decoded_this_call == 0 {
            // The parser dropped the picture (ulErrorThreshold 0: a picture it found damaged is not decoded).
            state.stats.corrupt += 1;
            if state.options.skip_until_idr {
                state.awaiting_idr = true;
            }
            return Err(state.corrupt(format!(
                "the parser decoded no picture from an access unit of {} bytes with {} slice(s)",
                access_unit.len(),
                info.slices
            )));
        }
        Ok(frames)
    }

    /// Signals the end of the stream and returns the frames still queued for display (none for streams without
    /// reordering). The parser accepts a new stream afterwards.
    pub fn flush(&mut self) -> Result<Vec<Frame>, MediaError> {
        let mut packet = sys::CUVIDSOURCEDATAPACKET {
            flags: sys::CUVID_PKT_ENDOFSTREAM | sys::CUVID_PKT_NOTIFY_EOS,
            payload_size: 0,
            payload: std::ptr::null(),
            timestamp: 0,
        };
        self.parse(&mut packet)
    }

    /// One `cuvidParseVideoData` call: the callbacks run inside it; their first error wins over the parser's
    /// status.
    fn parse(&mut self, packet: &mut sys::CUVIDSOURCEDATAPACKET) -> Result<Vec<Frame>, MediaError> {
        self.ctx.bind_to_thread()?;
        // SAFETY: `parser` is live; `packet` is a live struct whose payload (if any) is a live host slice of
        // `payload_size` bytes, only read during the call. The callbacks reach the state through `pUserData`;
        // no Rust reference to it is held across this call.
        let status = unsafe { (self.lib.cuvidParseVideoData)(self.parser, packet) };
        // SAFETY: the parse has returned: no callback holds the state.
        let state = unsafe { self.state.as_mut() };
        let frames = std::mem::take(&mut state.frames);
        if let Some(e) = state.error.take() {
            return Err(e);
        }
        if status != CUresult::CUDA_SUCCESS {
            state.stats.corrupt += 1;
            if state.options.skip_until_idr {
                state.awaiting_idr = true;
            }
            return Err(state.corrupt(format!("cuvidParseVideoData returned {} ({})", status.name(), status.0)));
        }
        Ok(frames)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: `parser` came from a successful cuvidCreateVideoParser and is destroyed once, before the state
        // its callbacks use and before the NVDEC decoder (NVIDIA's samples destroy the parser first).
        let _ = unsafe { (self.lib.cuvidDestroyVideoParser)(self.parser) };
        // SAFETY: the pointer came from `Box::leak` in `with_options`; the parser that held it is gone, so this is
        // the only owner. Dropping the state destroys the NVDEC decoder (`VideoDecoder::drop`).
        drop(unsafe { Box::from_raw(self.state.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vui_colour_descriptions_map_to_the_kernel_s_colours() {
        let format = |matrix: u8, flags: u8| CUVIDEOFORMAT {
            matrix_coefficients: matrix,
            video_signal_flags: flags,
            ..CUVIDEOFORMAT::default()
        };
        let color = |matrix, range| YuvColor { matrix, range };
        assert_eq!(vui_color(&format(2, 0b0101)), color(YuvMatrix::Bt601, YuvRange::Limited), "unspecified");
        assert_eq!(vui_color(&format(1, 0)), color(YuvMatrix::Bt709, YuvRange::Limited));
        assert_eq!(vui_color(&format(1, 0b1000)), color(YuvMatrix::Bt709, YuvRange::Full), "video_full_range_flag");
        assert_eq!(vui_color(&format(6, 0b1101)), color(YuvMatrix::Bt601, YuvRange::Full));
        assert_eq!(vui_color(&format(5, 0)).matrix, YuvMatrix::Bt601);
        assert_eq!(vui_color(&format(9, 0)).matrix, YuvMatrix::Bt2020);
        assert_eq!(vui_color(&format(0, 0)).matrix, YuvMatrix::Bt601, "identity (GBR) is not decoded as such");
    }

    fn media(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every access unit of the committed streams (byte ranges from manifest.json) holds exactly one coded
    /// picture, and the recovery points are exactly the manifest's IDR frames.
    #[test]
    fn access_units_of_the_test_streams_scan_as_one_picture_each() {
        let manifest: serde_json::Value = serde_json::from_slice(&media("manifest.json")).unwrap();
        let mut streams = 0;
        for entry in manifest["files"].as_array().unwrap() {
            let codec = match entry["kind"].as_str() {
                Some("h264-annexb") => Codec::H264,
                Some("h265-annexb") => Codec::Hevc,
                _ => continue,
            };
            streams += 1;
            let name = entry["name"].as_str().unwrap();
            let bytes = media(name);
            let idr: Vec<u64> = entry["idr_frames"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let aus = entry["access_units"].as_array().unwrap();
            assert_eq!(aus.len() as u64, entry["frames"].as_u64().unwrap(), "{name}");
            for (i, au) in aus.iter().enumerate() {
                let (offset, len) = (au[0].as_u64().unwrap() as usize, au[1].as_u64().unwrap() as usize);
                let info = scan_access_unit(codec, &bytes[offset..offset + len]);
                assert_eq!(info.slices, 1, "{name} access unit {i}");
                assert_eq!(info.recovery_point, idr.contains(&(i as u64)), "{name} access unit {i}");
            }
        }
        assert_eq!(streams, 4);
    }

    #[test]
    fn nal_scan_handles_short_and_odd_input() {
        assert_eq!(scan_access_unit(Codec::H264, &[]), AccessUnitInfo::default());
        assert_eq!(scan_access_unit(Codec::H264, &[0, 0, 1]), AccessUnitInfo::default());
        // 4-byte start code, IDR slice; then a non-IDR slice with a 3-byte start code.
        let au = [0, 0, 0, 1, 0x65, 0x88, 0, 0, 1, 0x41, 0x9a];
        assert_eq!(scan_access_unit(Codec::H264, &au), AccessUnitInfo { slices: 2, recovery_point: true });
        // HEVC: VPS (32), SPS (33), PPS (34), IDR_W_RADL (19); TRAIL_R (1) alone.
        let hevc = [0, 0, 1, 0x40, 1, 0, 0, 1, 0x42, 1, 0, 0, 1, 0x44, 1, 0, 0, 1, 0x26, 1];
        assert_eq!(scan_access_unit(Codec::Hevc, &hevc), AccessUnitInfo { slices: 1, recovery_point: true });
        assert_eq!(
            scan_access_unit(Codec::Hevc, &[0, 0, 1, 0x02, 1]),
            AccessUnitInfo { slices: 1, recovery_point: false }
        );
    }

    #[test]
    fn uv_plane_follows_the_luma_rows_rounded_to_even() {
        assert_eq!(uv_plane_offset(512, 240), 512 * 240);
        assert_eq!(uv_plane_offset(512, 1080), 512 * 1080);
        assert_eq!(uv_plane_offset(512, 9), 512 * 10);
    }

    #[test]
    fn names_masks_and_size_limits() {
        assert_eq!(Codec::H264.raw().0, 4);
        assert_eq!(Codec::Hevc.raw().0, 8);
        assert_eq!(Codec::Hevc.to_string(), "HEVC");
        assert_eq!(SurfaceFormat::from_mask(0x1), vec![SurfaceFormat::Nv12]);
        assert_eq!(SurfaceFormat::from_mask(0x3), vec![SurfaceFormat::Nv12, SurfaceFormat::P016]);
        assert_eq!(SurfaceFormat::from_mask(0), vec![]);
        assert_eq!(ChromaFormat::from_raw(cudaVideoChromaFormat(1)), Some(ChromaFormat::Yuv420));
        assert_eq!(ChromaFormat::from_raw(cudaVideoChromaFormat(7)), None);
        // The H200 probe's H.264 numbers (shared/design/ipc-media-cabi.md §4.1).
        let mut raw = CUVIDDECODECAPS::query(Codec::H264.raw(), ChromaFormat::Yuv420.raw(), 0);
        (raw.bIsSupported, raw.nNumNVDECs, raw.nOutputFormatMask) = (1, 7, 1);
        (raw.nMaxWidth, raw.nMaxHeight, raw.nMaxMBCount, raw.nMinWidth, raw.nMinHeight) = (4096, 4096, 65536, 48, 16);
        let caps = DecoderCaps::from_raw(Codec::H264, ChromaFormat::Yuv420, 8, &raw);
        assert!(caps.supported && caps.nvdecs == 7 && caps.output_formats == [SurfaceFormat::Nv12]);
        assert_eq!(caps.size_refusal(320, 240), None);
        assert_eq!(caps.size_refusal(4096, 4096), None);
        assert!(caps.size_refusal(4112, 16).unwrap().contains("exceeds NVDEC's maximum 4096x4096"));
        assert!(caps.size_refusal(32, 16).unwrap().contains("below NVDEC's minimum 48x16"));
        assert_eq!(DecoderOptions::default(), DecoderOptions { max_width: 0, max_height: 0, skip_until_idr: true });
    }

    #[test]
    fn rectangles_convert_to_shorts() {
        let r = CUVIDRECT_INT { left: 0, top: 0, right: 1920, bottom: 1080 };
        assert_eq!(short_rect(r), CUVIDRECT_SHORT { left: 0, top: 0, right: 1920, bottom: 1080 });
        assert_eq!(short_rect(CUVIDRECT_INT { right: 70000, ..r }).right, i16::MAX);
    }

    #[test]
    fn decoding_needs_a_cuda_device() {
        let err = Decoder::new(&Device::Cpu, Codec::H264).unwrap_err();
        assert!(matches!(err, MediaError::NvdecNotCuda(_)), "{err}");
        let err = caps(&Device::Cpu, Codec::Hevc).unwrap_err();
        assert_eq!(err.to_string(), "NVDEC decodes on a CUDA device, not on Cpu");
    }

    #[derive(Default)]
    struct Slot(Option<MediaError>);

    impl ErrorSlot for Slot {
        fn stash(&mut self, error: MediaError) {
            self.0.get_or_insert(error);
        }
    }

    /// The callbacks' wrapper never unwinds: a panic becomes a stashed `CallbackPanicked` and a 0 (failure) for
    /// the parser; an error is stashed (the first one wins); success passes the value through; a null user
    /// pointer is a failure.
    #[test]
    fn callbacks_catch_panics_and_stash_errors() {
        let mut slot = Slot::default();
        let user = (&mut slot as *mut Slot).cast::<c_void>();
        assert_eq!(run_callback::<Slot>(user, "sequence callback", |_| Ok(5)), 5);
        assert!(slot.0.is_none());
        let rc = run_callback::<Slot>(user, "decode callback", |_| panic!("boom {}", 7));
        assert_eq!(rc, 0);
        let Some(MediaError::CallbackPanicked { callback, message }) = &slot.0 else { panic!("{:?}", slot.0) };
        assert_eq!((*callback, message.as_str()), ("decode callback", "boom 7"));
        let rc = run_callback::<Slot>(user, "display callback", |_| {
            Err(MediaError::CorruptStream { codec: "H.264", reason: "x".into() })
        });
        assert_eq!(rc, 0);
        assert!(matches!(slot.0, Some(MediaError::CallbackPanicked { .. })), "the first error is kept");
        let mut fresh = Slot::default();
        let user = (&mut fresh as *mut Slot).cast::<c_void>();
        let rc = run_callback::<Slot>(user, "display callback", |_| std::panic::panic_any(42u8));
        assert_eq!(rc, 0);
        assert!(
            matches!(&fresh.0, Some(MediaError::CallbackPanicked { message, .. }) if message.contains("non-string"))
        );
        assert_eq!(run_callback::<Slot>(std::ptr::null_mut(), "sequence callback", |_| Ok(1)), 0);
    }
}
