//! Raw NVDECODE declarations (`libnvcuvid.so.1`), loaded at run time (the `sys` level of cudarc's layering: C
//! names, C types, no policy).
//!
//! Written from the Video Codec SDK 13.0 headers as FFmpeg's `nv-codec-headers` carries them for dlopen use
//! (`include/ffnvcodec/dynlink_cuviddec.h` = `cuviddec.h`, `dynlink_nvcuvid.h` = `nvcuvid.h`, commit `f2fb9b3`,
//! "Bump for (in-dev) 13.0.19.1", `NVDECAPI_MAJOR_VERSION 13`); line numbers below refer to those two files. The
//! layouts used here have not changed since SDK 11.1. Only what swm uses is declared: decoder capabilities, the
//! parser (create, parse, destroy) and its three callbacks, the decoder (create, reconfigure, decode, status,
//! destroy) and 64-bit frame mapping. Fields swm never reads or writes are kept as named reserved arrays so that
//! every size and offset matches the header (checked by the host tests at the bottom).
//!
//! `tcu_ulong` is `unsigned long` on Linux (cuviddec.h:52-56): 8 bytes on x86-64 ([`tcu_ulong`] = `c_ulong`).
//! C enums are `#[repr(transparent)]` newtypes over `c_int` with associated constants (as in
//! [`crate::media::nvjpeg::sys`]): a value the driver returns that this file does not know is an ordinary value.
//! Every entry point returns a driver `CUresult`, declared here as the newtype [`CUresult`] for the same reason.
//!
//! [`Library`] dlopens `libnvcuvid.so.1` (the driver's soname, which NVIDIA's own loader uses; then
//! `libnvcuvid.so`) with `libloading` and resolves every symbol once; a missing library or symbol is a typed
//! [`MediaError`].

#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]

use std::ffi::{c_int, c_long, c_longlong, c_short, c_uchar, c_uint, c_ulong, c_ulonglong, c_ushort, c_void};

use crate::media::MediaError;

/// `tcu_ulong` (cuviddec.h:52-56): `unsigned long` outside Cygwin.
pub type tcu_ulong = c_ulong;
/// `CUvideodecoder` (cuviddec.h:58): an opaque decoder handle.
pub type CUvideodecoder = *mut c_void;
/// The opaque `struct _CUcontextlock_st` (cuviddec.h:59).
#[repr(C)]
pub struct CUcontextlock_st {
    _opaque: [u8; 0],
}
/// `CUvideoctxlock` (cuviddec.h:59): a context lock (swm passes null: the decoder uses the current context).
pub type CUvideoctxlock = *mut CUcontextlock_st;
/// `CUvideoparser` (nvcuvid.h:53): an opaque parser handle.
pub type CUvideoparser = *mut c_void;
/// `CUvideotimestamp` (nvcuvid.h:54): `long long`, in the parser's clock units (10 MHz unless set otherwise).
pub type CUvideotimestamp = c_longlong;
/// `CUstream` (cuda.h): the driver's stream, the same object as cudarc's `CudaStream::cu_stream()`.
pub type CUstream = cudarc::driver::sys::CUstream;
/// `CUcontext` (cuda.h).
pub type CUcontext = cudarc::driver::sys::CUcontext;

/// `CUresult` (cuda.h): what every NVDECODE entry point returns. A newtype rather than cudarc's Rust enum, so
/// that a code this file does not list is a value, not undefined behaviour.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CUresult(pub c_int);

impl CUresult {
    /// `CUDA_SUCCESS`.
    pub const CUDA_SUCCESS: Self = Self(0);
    /// `CUDA_ERROR_INVALID_VALUE`.
    pub const CUDA_ERROR_INVALID_VALUE: Self = Self(1);
    /// `CUDA_ERROR_NOT_SUPPORTED`: e.g. `cuvidGetDecodeStatus` for a codec or GPU without status reporting.
    pub const CUDA_ERROR_NOT_SUPPORTED: Self = Self(801);

    /// The C name of the code (`"CUDA_ERROR_INVALID_VALUE"`), or `"CUDA_ERROR_<unknown>"` for a code this file
    /// does not list.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "CUDA_SUCCESS",
            1 => "CUDA_ERROR_INVALID_VALUE",
            2 => "CUDA_ERROR_OUT_OF_MEMORY",
            3 => "CUDA_ERROR_NOT_INITIALIZED",
            4 => "CUDA_ERROR_DEINITIALIZED",
            100 => "CUDA_ERROR_NO_DEVICE",
            101 => "CUDA_ERROR_INVALID_DEVICE",
            200 => "CUDA_ERROR_INVALID_IMAGE",
            201 => "CUDA_ERROR_INVALID_CONTEXT",
            205 => "CUDA_ERROR_MAP_FAILED",
            206 => "CUDA_ERROR_UNMAP_FAILED",
            300 => "CUDA_ERROR_INVALID_SOURCE",
            400 => "CUDA_ERROR_INVALID_HANDLE",
            500 => "CUDA_ERROR_NOT_FOUND",
            700 => "CUDA_ERROR_ILLEGAL_ADDRESS",
            719 => "CUDA_ERROR_LAUNCH_FAILED",
            801 => "CUDA_ERROR_NOT_SUPPORTED",
            999 => "CUDA_ERROR_UNKNOWN",
            _ => "CUDA_ERROR_<unknown>",
        }
    }
}

/// `cudaVideoCodec` (cuviddec.h:66-86). Only the codecs swm decodes (and the one the caps probe reports as absent)
/// are listed.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct cudaVideoCodec(pub c_int);

impl cudaVideoCodec {
    /// H.264 / AVC.
    pub const cudaVideoCodec_H264: Self = Self(4);
    /// HEVC / H.265.
    pub const cudaVideoCodec_HEVC: Self = Self(8);
    /// VP9.
    pub const cudaVideoCodec_VP9: Self = Self(10);
    /// AV1.
    pub const cudaVideoCodec_AV1: Self = Self(11);
}

/// `cudaVideoSurfaceFormat` (cuviddec.h:93-103): the layout of mapped output frames.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct cudaVideoSurfaceFormat(pub c_int);

impl cudaVideoSurfaceFormat {
    /// 8-bit semi-planar 4:2:0: the Y plane, then one plane of interleaved U,V.
    pub const cudaVideoSurfaceFormat_NV12: Self = Self(0);
    /// 16-bit semi-planar 4:2:0 (10/12-bit content in the high bits).
    pub const cudaVideoSurfaceFormat_P016: Self = Self(1);
    /// 8-bit planar 4:4:4.
    pub const cudaVideoSurfaceFormat_YUV444: Self = Self(2);
    /// 16-bit planar 4:4:4.
    pub const cudaVideoSurfaceFormat_YUV444_16Bit: Self = Self(3);
    /// 8-bit semi-planar 4:2:2.
    pub const cudaVideoSurfaceFormat_NV16: Self = Self(4);
    /// 16-bit semi-planar 4:2:2.
    pub const cudaVideoSurfaceFormat_P216: Self = Self(5);
}

/// `cudaVideoDeinterlaceMode` (cuviddec.h:112-116).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct cudaVideoDeinterlaceMode(pub c_int);

impl cudaVideoDeinterlaceMode {
    /// Both fields woven together (no deinterlacing): for progressive content.
    pub const cudaVideoDeinterlaceMode_Weave: Self = Self(0);
    /// One field dropped.
    pub const cudaVideoDeinterlaceMode_Bob: Self = Self(1);
    /// Adaptive deinterlacing.
    pub const cudaVideoDeinterlaceMode_Adaptive: Self = Self(2);
}

/// `cudaVideoChromaFormat` (cuviddec.h:123-128).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct cudaVideoChromaFormat(pub c_int);

impl cudaVideoChromaFormat {
    /// Luma only.
    pub const cudaVideoChromaFormat_Monochrome: Self = Self(0);
    /// 4:2:0.
    pub const cudaVideoChromaFormat_420: Self = Self(1);
    /// 4:2:2.
    pub const cudaVideoChromaFormat_422: Self = Self(2);
    /// 4:4:4.
    pub const cudaVideoChromaFormat_444: Self = Self(3);
}

/// `cudaVideoCreate_PreferCUVID` (cuviddec.h:139, `cudaVideoCreateFlags`): decode on the NVDEC engines directly.
pub const cudaVideoCreate_PreferCUVID: tcu_ulong = 0x04;

/// `cuvidDecodeStatus` (cuviddec.h:148-156), in [`CUVIDGETDECODESTATUS::decodeStatus`].
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct cuvidDecodeStatus(pub c_int);

impl cuvidDecodeStatus {
    /// The status is not valid.
    pub const cuvidDecodeStatus_Invalid: Self = Self(0);
    /// The picture is still being decoded.
    pub const cuvidDecodeStatus_InProgress: Self = Self(1);
    /// Decoded without errors.
    pub const cuvidDecodeStatus_Success: Self = Self(2);
    /// Decoded with an error that was not concealed.
    pub const cuvidDecodeStatus_Error: Self = Self(8);
    /// Decoded with an error that the decoder concealed.
    pub const cuvidDecodeStatus_Error_Concealed: Self = Self(9);
}

/// `CUVIDDECODECAPS` (cuviddec.h:162-184): `cuvidGetDecoderCaps`'s in/out argument. Fill the three IN fields,
/// zero the rest; the driver zeroes every OUT field when the combination is unsupported.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDDECODECAPS {
    /// IN: the codec.
    pub eCodecType: cudaVideoCodec,
    /// IN: the chroma format.
    pub eChromaFormat: cudaVideoChromaFormat,
    /// IN: bit depth minus 8.
    pub nBitDepthMinus8: c_uint,
    /// Reserved, zero.
    pub reserved1: [c_uint; 3],
    /// OUT: 1 when supported.
    pub bIsSupported: c_uchar,
    /// OUT: how many NVDEC engines support the IN parameters.
    pub nNumNVDECs: c_uchar,
    /// OUT: bit `i` set = output [`cudaVideoSurfaceFormat`] `i` supported.
    pub nOutputFormatMask: c_ushort,
    /// OUT: maximum coded width.
    pub nMaxWidth: c_uint,
    /// OUT: maximum coded height.
    pub nMaxHeight: c_uint,
    /// OUT: maximum `coded_width * coded_height / 256`.
    pub nMaxMBCount: c_uint,
    /// OUT: minimum coded width.
    pub nMinWidth: c_ushort,
    /// OUT: minimum coded height.
    pub nMinHeight: c_ushort,
    /// OUT: luma histogram support, counter bit depth and bins (unused by swm).
    pub bIsHistogramSupported: c_uchar,
    /// OUT: histogram counter bit depth.
    pub nCounterBitDepth: c_uchar,
    /// OUT: histogram bins.
    pub nMaxHistogramBins: c_ushort,
    /// Reserved, zero.
    pub reserved3: [c_uint; 10],
}

impl CUVIDDECODECAPS {
    /// The query for `codec`, `chroma` and `bit_depth_minus8`, every other field zero.
    pub fn query(codec: cudaVideoCodec, chroma: cudaVideoChromaFormat, bit_depth_minus8: c_uint) -> Self {
        Self {
            eCodecType: codec,
            eChromaFormat: chroma,
            nBitDepthMinus8: bit_depth_minus8,
            reserved1: [0; 3],
            bIsSupported: 0,
            nNumNVDECs: 0,
            nOutputFormatMask: 0,
            nMaxWidth: 0,
            nMaxHeight: 0,
            nMaxMBCount: 0,
            nMinWidth: 0,
            nMinHeight: 0,
            bIsHistogramSupported: 0,
            nCounterBitDepth: 0,
            nMaxHistogramBins: 0,
            reserved3: [0; 10],
        }
    }
}

/// A rectangle of `short`s (the anonymous `display_area` / `target_rect` structs of cuviddec.h:207-212, 225-230,
/// 1027-1038).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CUVIDRECT_SHORT {
    /// Left edge.
    pub left: c_short,
    /// Top edge.
    pub top: c_short,
    /// Right edge (exclusive).
    pub right: c_short,
    /// Bottom edge (exclusive).
    pub bottom: c_short,
}

/// `CUVIDDECODECREATEINFO` (cuviddec.h:190-237): `cuvidCreateDecoder`'s argument.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDDECODECREATEINFO {
    /// Coded width.
    pub ulWidth: tcu_ulong,
    /// Coded height.
    pub ulHeight: tcu_ulong,
    /// Number of decode (DPB) surfaces.
    pub ulNumDecodeSurfaces: tcu_ulong,
    /// The codec.
    pub CodecType: cudaVideoCodec,
    /// The chroma format.
    pub ChromaFormat: cudaVideoChromaFormat,
    /// `cudaVideoCreateFlags` bits.
    pub ulCreationFlags: tcu_ulong,
    /// Bit depth minus 8.
    pub bitDepthMinus8: tcu_ulong,
    /// 1 for all-intra streams only.
    pub ulIntraDecodeOnly: tcu_ulong,
    /// Largest coded width `cuvidReconfigureDecoder` may switch to.
    pub ulMaxWidth: tcu_ulong,
    /// Largest coded height `cuvidReconfigureDecoder` may switch to.
    pub ulMaxHeight: tcu_ulong,
    /// Reserved, zero.
    pub Reserved1: tcu_ulong,
    /// The displayed part of the coded frame (the crop applied before output).
    pub display_area: CUVIDRECT_SHORT,
    /// Output surface format.
    pub OutputFormat: cudaVideoSurfaceFormat,
    /// Deinterlacing.
    pub DeinterlaceMode: cudaVideoDeinterlaceMode,
    /// Output (post-processed) width.
    pub ulTargetWidth: tcu_ulong,
    /// Output (post-processed) height.
    pub ulTargetHeight: tcu_ulong,
    /// How many output surfaces may be mapped at once.
    pub ulNumOutputSurfaces: tcu_ulong,
    /// Context lock (null: none).
    pub vidLock: CUvideoctxlock,
    /// Where the display area lands in the output (zero: the whole target).
    pub target_rect: CUVIDRECT_SHORT,
    /// Histogram output (0: off).
    pub enableHistogram: tcu_ulong,
    /// Reserved, zero.
    pub Reserved2: [tcu_ulong; 4],
}

impl Default for CUVIDDECODECREATEINFO {
    fn default() -> Self {
        Self {
            ulWidth: 0,
            ulHeight: 0,
            ulNumDecodeSurfaces: 0,
            CodecType: cudaVideoCodec(0),
            ChromaFormat: cudaVideoChromaFormat(0),
            ulCreationFlags: 0,
            bitDepthMinus8: 0,
            ulIntraDecodeOnly: 0,
            ulMaxWidth: 0,
            ulMaxHeight: 0,
            Reserved1: 0,
            display_area: CUVIDRECT_SHORT::default(),
            OutputFormat: cudaVideoSurfaceFormat(0),
            DeinterlaceMode: cudaVideoDeinterlaceMode(0),
            ulTargetWidth: 0,
            ulTargetHeight: 0,
            ulNumOutputSurfaces: 0,
            vidLock: std::ptr::null_mut(),
            target_rect: CUVIDRECT_SHORT::default(),
            enableHistogram: 0,
            Reserved2: [0; 4],
        }
    }
}

/// `CUVIDPICPARAMS` (cuviddec.h:937-967): what the parser hands the decode callback for `cuvidDecodePicture`.
///
/// swm never builds one: it only reads the leading fields of the parser's value and passes the pointer on. The
/// codec-specific union that follows `Reserved` (at offset 184, at least 4096 bytes) is therefore left out, so
/// this type must only ever be used behind a pointer the parser gave.
#[repr(C)]
#[derive(Debug)]
pub struct CUVIDPICPARAMS {
    /// Coded width in macroblocks.
    pub PicWidthInMbs: c_int,
    /// Coded height in macroblocks.
    pub FrameHeightInMbs: c_int,
    /// The decode surface the picture is decoded into (the display callback's `picture_index`).
    pub CurrPicIdx: c_int,
    /// 1 for a field picture.
    pub field_pic_flag: c_int,
    /// 1 for the bottom field.
    pub bottom_field_flag: c_int,
    /// 1 for the second field of a pair.
    pub second_field: c_int,
    /// Bytes of slice data.
    pub nBitstreamDataLen: c_uint,
    /// The slice data.
    pub pBitstreamData: *const c_uchar,
    /// Number of slices.
    pub nNumSlices: c_uint,
    /// Offset of each slice in the slice data.
    pub pSliceDataOffsets: *const c_uint,
    /// 1 when the picture is a reference.
    pub ref_pic_flag: c_int,
    /// 1 when the picture is entirely intra coded.
    pub intra_pic_flag: c_int,
    /// Reserved.
    pub Reserved: [c_uint; 30],
    /// The codec-specific union (not declared; see the type's docs).
    _codec_specific: [u64; 0],
}

/// `CUVIDPROCPARAMS` (cuviddec.h:975-994): `cuvidMapVideoFrame64`'s post-processing parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDPROCPARAMS {
    /// 1 for a progressive frame.
    pub progressive_frame: c_int,
    /// Output the second field (deinterlacing modes other than weave).
    pub second_field: c_int,
    /// 1 when the top field is first.
    pub top_field_first: c_int,
    /// 1 when only one field is present.
    pub unpaired_field: c_int,
    /// Reserved, zero.
    pub reserved_flags: c_uint,
    /// Reserved, zero.
    pub reserved_zero: c_uint,
    /// Raw-YUV input extension (unused, zero).
    pub raw_input_dptr: c_ulonglong,
    /// Raw-YUV input pitch (unused, zero).
    pub raw_input_pitch: c_uint,
    /// Raw-YUV input format (unused, zero).
    pub raw_input_format: c_uint,
    /// Raw-YUV output extension (unused, zero).
    pub raw_output_dptr: c_ulonglong,
    /// Raw-YUV output pitch (unused, zero).
    pub raw_output_pitch: c_uint,
    /// Reserved, zero.
    pub Reserved1: c_uint,
    /// The stream the mapping's post-processing runs on.
    pub output_stream: CUstream,
    /// Reserved, zero.
    pub Reserved: [c_uint; 46],
    /// OUT: histogram (unused).
    pub histogram_dptr: *mut c_ulonglong,
    /// Reserved, null.
    pub Reserved2: [*mut c_void; 1],
}

impl Default for CUVIDPROCPARAMS {
    fn default() -> Self {
        Self {
            progressive_frame: 0,
            second_field: 0,
            top_field_first: 0,
            unpaired_field: 0,
            reserved_flags: 0,
            reserved_zero: 0,
            raw_input_dptr: 0,
            raw_input_pitch: 0,
            raw_input_format: 0,
            raw_output_dptr: 0,
            raw_output_pitch: 0,
            Reserved1: 0,
            output_stream: std::ptr::null_mut(),
            Reserved: [0; 46],
            histogram_dptr: std::ptr::null_mut(),
            Reserved2: [std::ptr::null_mut(); 1],
        }
    }
}

/// `CUVIDGETDECODESTATUS` (cuviddec.h:1001-1006): `cuvidGetDecodeStatus`'s output.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDGETDECODESTATUS {
    /// The status.
    pub decodeStatus: cuvidDecodeStatus,
    /// Reserved.
    pub reserved: [c_uint; 31],
    /// Reserved.
    pub pReserved: [*mut c_void; 8],
}

impl Default for CUVIDGETDECODESTATUS {
    fn default() -> Self {
        Self {
            decodeStatus: cuvidDecodeStatus::cuvidDecodeStatus_Invalid,
            reserved: [0; 31],
            pReserved: [std::ptr::null_mut(); 8],
        }
    }
}

/// `CUVIDRECONFIGUREDECODERINFO` (cuviddec.h:1013-1040): `cuvidReconfigureDecoder`'s argument (called from the
/// sequence callback only; the new coded size must fit the decoder's `ulMaxWidth`/`ulMaxHeight`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDRECONFIGUREDECODERINFO {
    /// Coded width.
    pub ulWidth: c_uint,
    /// Coded height.
    pub ulHeight: c_uint,
    /// Output width.
    pub ulTargetWidth: c_uint,
    /// Output height.
    pub ulTargetHeight: c_uint,
    /// Number of decode surfaces.
    pub ulNumDecodeSurfaces: c_uint,
    /// Reserved, zero.
    pub reserved1: [c_uint; 12],
    /// The displayed part of the coded frame.
    pub display_area: CUVIDRECT_SHORT,
    /// Where it lands in the output.
    pub target_rect: CUVIDRECT_SHORT,
    /// Reserved, zero.
    pub reserved2: [c_uint; 11],
}

/// A rectangle of `int`s (`CUVIDEOFORMAT::display_area`, nvcuvid.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CUVIDRECT_INT {
    /// Left edge.
    pub left: c_int,
    /// Top edge.
    pub top: c_int,
    /// Right edge (exclusive).
    pub right: c_int,
    /// Bottom edge (exclusive).
    pub bottom: c_int,
}

/// `CUVIDEOFORMAT` (nvcuvid.h:185-250): what the parser hands the sequence callback.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDEOFORMAT {
    /// The codec.
    pub codec: cudaVideoCodec,
    /// Frame rate numerator (0: unspecified).
    pub frame_rate_numerator: c_uint,
    /// Frame rate denominator (0: unspecified).
    pub frame_rate_denominator: c_uint,
    /// 1 progressive, 0 interlaced.
    pub progressive_sequence: c_uchar,
    /// Luma bit depth minus 8.
    pub bit_depth_luma_minus8: c_uchar,
    /// Chroma bit depth minus 8.
    pub bit_depth_chroma_minus8: c_uchar,
    /// The fewest decode surfaces that decode this sequence correctly.
    pub min_num_decode_surfaces: c_uchar,
    /// Coded width.
    pub coded_width: c_uint,
    /// Coded height.
    pub coded_height: c_uint,
    /// The displayed part of the coded frame.
    pub display_area: CUVIDRECT_INT,
    /// The chroma format.
    pub chroma_format: cudaVideoChromaFormat,
    /// Bit rate (0: unknown).
    pub bitrate: c_uint,
    /// Display aspect ratio x.
    pub display_aspect_ratio_x: c_int,
    /// Display aspect ratio y.
    pub display_aspect_ratio_y: c_int,
    /// `video_signal_description`: bits 0-2 video_format, bit 3 video_full_range_flag (C bitfields of one byte,
    /// allocated from the low bit on x86-64 System V).
    pub video_signal_flags: c_uchar,
    /// Colour primaries (H.264/HEVC VUI).
    pub color_primaries: c_uchar,
    /// Transfer characteristics.
    pub transfer_characteristics: c_uchar,
    /// Matrix coefficients.
    pub matrix_coefficients: c_uchar,
    /// Bytes of sequence header following in a `CUVIDEOFORMATEX` (not used by swm).
    pub seqhdr_data_length: c_uint,
}

/// `CUvideopacketflags` (nvcuvid.h:333-341): [`CUVIDSOURCEDATAPACKET::flags`] bits.
pub const CUVID_PKT_ENDOFSTREAM: tcu_ulong = 0x01;
/// The packet's timestamp is valid.
pub const CUVID_PKT_TIMESTAMP: tcu_ulong = 0x02;
/// A discontinuity.
pub const CUVID_PKT_DISCONTINUITY: tcu_ulong = 0x04;
/// The packet holds exactly one frame (or field): the parser need not wait for the next one to finish it.
pub const CUVID_PKT_ENDOFPICTURE: tcu_ulong = 0x08;
/// With `ENDOFSTREAM`: one more display callback with a null `CUVIDPARSERDISPINFO`.
pub const CUVID_PKT_NOTIFY_EOS: tcu_ulong = 0x10;

/// `CUVIDSOURCEDATAPACKET` (nvcuvid.h:350-357): one `cuvidParseVideoData` input.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDSOURCEDATAPACKET {
    /// `CUVID_PKT_*` bits.
    pub flags: tcu_ulong,
    /// Bytes at `payload`.
    pub payload_size: tcu_ulong,
    /// The bytes (may be null with `ENDOFSTREAM`).
    pub payload: *const c_uchar,
    /// Presentation timestamp, valid with `CUVID_PKT_TIMESTAMP`.
    pub timestamp: CUvideotimestamp,
}

/// `CUVIDPARSERDISPINFO` (nvcuvid.h:460-468): what the parser hands the display callback.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDPARSERDISPINFO {
    /// The decode surface to map.
    pub picture_index: c_int,
    /// 1 for a progressive frame.
    pub progressive_frame: c_int,
    /// 1 when the top field is displayed first.
    pub top_field_first: c_int,
    /// Additional fields to display (-1: an unpaired field).
    pub repeat_first_field: c_int,
    /// The timestamp of the packet that carried the picture.
    pub timestamp: CUvideotimestamp,
}

/// `PFNVIDSEQUENCECALLBACK` (nvcuvid.h:485): 0 fails, 1 succeeds, > 1 also sets the parser's DPB size
/// (nvcuvid.h:474-484).
pub type PFNVIDSEQUENCECALLBACK = Option<unsafe extern "C" fn(*mut c_void, *mut CUVIDEOFORMAT) -> c_int>;
/// `PFNVIDDECODECALLBACK` (nvcuvid.h:486): 0 fails, >= 1 succeeds.
pub type PFNVIDDECODECALLBACK = Option<unsafe extern "C" fn(*mut c_void, *mut CUVIDPICPARAMS) -> c_int>;
/// `PFNVIDDISPLAYCALLBACK` (nvcuvid.h:487): 0 fails, >= 1 succeeds.
pub type PFNVIDDISPLAYCALLBACK = Option<unsafe extern "C" fn(*mut c_void, *mut CUVIDPARSERDISPINFO) -> c_int>;
/// `PFNVIDOPPOINTCALLBACK` / `PFNVIDSEIMSGCALLBACK` (nvcuvid.h:488-489): not used by swm (null); declared as
/// untyped function pointers of the same size.
pub type PFNVIDUNUSEDCALLBACK = Option<unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int>;

/// `CUVIDPARSERPARAMS` (nvcuvid.h:496-520): `cuvidCreateVideoParser`'s argument.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDPARSERPARAMS {
    /// The codec.
    pub CodecType: cudaVideoCodec,
    /// Decode surfaces the parser cycles through (the sequence callback may override it).
    pub ulMaxNumDecodeSurfaces: c_uint,
    /// Timestamp clock in Hz (0: 10 MHz).
    pub ulClockRate: c_uint,
    /// Error threshold in % for calling the decode callback on a damaged picture (100: always).
    pub ulErrorThreshold: c_uint,
    /// Display queue delay in pictures (0: display as soon as possible).
    pub ulMaxDisplayDelay: c_uint,
    /// `bMemoryOptimize : 1` and `uReserved : 30` (bit 0 is `bMemoryOptimize`); swm writes 0.
    pub bitfields: c_uint,
    /// Reserved, zero.
    pub uReserved1: [c_uint; 4],
    /// Passed to every callback.
    pub pUserData: *mut c_void,
    /// Sequence (format) callback.
    pub pfnSequenceCallback: PFNVIDSEQUENCECALLBACK,
    /// Decode callback (decode order).
    pub pfnDecodePicture: PFNVIDDECODECALLBACK,
    /// Display callback (display order).
    pub pfnDisplayPicture: PFNVIDDISPLAYCALLBACK,
    /// AV1 operating point callback (null).
    pub pfnGetOperatingPoint: PFNVIDUNUSEDCALLBACK,
    /// SEI message callback (null).
    pub pfnGetSEIMsg: PFNVIDUNUSEDCALLBACK,
    /// Reserved, null.
    pub pvReserved2: [*mut c_void; 5],
    /// Optional sequence header from a container (null).
    pub pExtVideoInfo: *mut c_void,
}

impl Default for CUVIDPARSERPARAMS {
    fn default() -> Self {
        Self {
            CodecType: cudaVideoCodec(0),
            ulMaxNumDecodeSurfaces: 0,
            ulClockRate: 0,
            ulErrorThreshold: 0,
            ulMaxDisplayDelay: 0,
            bitfields: 0,
            uReserved1: [0; 4],
            pUserData: std::ptr::null_mut(),
            pfnSequenceCallback: None,
            pfnDecodePicture: None,
            pfnDisplayPicture: None,
            pfnGetOperatingPoint: None,
            pfnGetSEIMsg: None,
            pvReserved2: [std::ptr::null_mut(); 5],
            pExtVideoInfo: std::ptr::null_mut(),
        }
    }
}

/// `cuvidGetDecoderCaps(CUVIDDECODECAPS *pdc)` (cuviddec.h:1083).
pub type cuvidGetDecoderCaps_t = unsafe extern "C" fn(*mut CUVIDDECODECAPS) -> CUresult;
/// `cuvidCreateDecoder(CUvideodecoder *phDecoder, CUVIDDECODECREATEINFO *pdci)` (cuviddec.h:1089).
pub type cuvidCreateDecoder_t = unsafe extern "C" fn(*mut CUvideodecoder, *mut CUVIDDECODECREATEINFO) -> CUresult;
/// `cuvidDestroyDecoder(CUvideodecoder hDecoder)` (cuviddec.h:1095).
pub type cuvidDestroyDecoder_t = unsafe extern "C" fn(CUvideodecoder) -> CUresult;
/// `cuvidDecodePicture(CUvideodecoder hDecoder, CUVIDPICPARAMS *pPicParams)` (cuviddec.h:1102).
pub type cuvidDecodePicture_t = unsafe extern "C" fn(CUvideodecoder, *mut CUVIDPICPARAMS) -> CUresult;
/// `cuvidGetDecodeStatus(CUvideodecoder hDecoder, int nPicIdx, CUVIDGETDECODESTATUS *)` (cuviddec.h:1111).
pub type cuvidGetDecodeStatus_t = unsafe extern "C" fn(CUvideodecoder, c_int, *mut CUVIDGETDECODESTATUS) -> CUresult;
/// `cuvidReconfigureDecoder(CUvideodecoder hDecoder, CUVIDRECONFIGUREDECODERINFO *)` (cuviddec.h:1118).
pub type cuvidReconfigureDecoder_t = unsafe extern "C" fn(CUvideodecoder, *mut CUVIDRECONFIGUREDECODERINFO) -> CUresult;
/// `cuvidMapVideoFrame64(CUvideodecoder hDecoder, int nPicIdx, unsigned long long *pDevPtr, unsigned int *pPitch,
/// CUVIDPROCPARAMS *pVPP)` (cuviddec.h:1145-1146).
pub type cuvidMapVideoFrame64_t =
    unsafe extern "C" fn(CUvideodecoder, c_int, *mut c_ulonglong, *mut c_uint, *mut CUVIDPROCPARAMS) -> CUresult;
/// `cuvidUnmapVideoFrame64(CUvideodecoder hDecoder, unsigned long long DevPtr)` (cuviddec.h:1152).
pub type cuvidUnmapVideoFrame64_t = unsafe extern "C" fn(CUvideodecoder, c_ulonglong) -> CUresult;
/// `cuvidCreateVideoParser(CUvideoparser *pObj, CUVIDPARSERPARAMS *pParams)` (nvcuvid.h:527).
pub type cuvidCreateVideoParser_t = unsafe extern "C" fn(*mut CUvideoparser, *mut CUVIDPARSERPARAMS) -> CUresult;
/// `cuvidParseVideoData(CUvideoparser obj, CUVIDSOURCEDATAPACKET *pPacket)` (nvcuvid.h:539): runs the callbacks
/// synchronously on the calling thread; a callback's failure is returned.
pub type cuvidParseVideoData_t = unsafe extern "C" fn(CUvideoparser, *mut CUVIDSOURCEDATAPACKET) -> CUresult;
/// `cuvidDestroyVideoParser(CUvideoparser obj)` (nvcuvid.h:546).
pub type cuvidDestroyVideoParser_t = unsafe extern "C" fn(CUvideoparser) -> CUresult;

/// The file names tried, in order: the driver's soname, then an unversioned development link.
pub const LIBRARY_NAMES: [&str; 2] = ["libnvcuvid.so.1", "libnvcuvid.so"];

/// The loaded library: its [`Functions`] through `Deref`.
pub type Library = super::super::dl::Loaded<Functions>;

/// The library's functions, resolved at load time ([`Library`] keeps the library loaded while they are used).
pub struct Functions {
    /// See [`cuvidGetDecoderCaps_t`].
    pub cuvidGetDecoderCaps: cuvidGetDecoderCaps_t,
    /// See [`cuvidCreateDecoder_t`].
    pub cuvidCreateDecoder: cuvidCreateDecoder_t,
    /// See [`cuvidDestroyDecoder_t`].
    pub cuvidDestroyDecoder: cuvidDestroyDecoder_t,
    /// See [`cuvidDecodePicture_t`].
    pub cuvidDecodePicture: cuvidDecodePicture_t,
    /// See [`cuvidGetDecodeStatus_t`].
    pub cuvidGetDecodeStatus: cuvidGetDecodeStatus_t,
    /// See [`cuvidReconfigureDecoder_t`].
    pub cuvidReconfigureDecoder: cuvidReconfigureDecoder_t,
    /// See [`cuvidMapVideoFrame64_t`].
    pub cuvidMapVideoFrame64: cuvidMapVideoFrame64_t,
    /// See [`cuvidUnmapVideoFrame64_t`].
    pub cuvidUnmapVideoFrame64: cuvidUnmapVideoFrame64_t,
    /// See [`cuvidCreateVideoParser_t`].
    pub cuvidCreateVideoParser: cuvidCreateVideoParser_t,
    /// See [`cuvidParseVideoData_t`].
    pub cuvidParseVideoData: cuvidParseVideoData_t,
    /// See [`cuvidDestroyVideoParser_t`].
    pub cuvidDestroyVideoParser: cuvidDestroyVideoParser_t,
}

impl super::super::dl::Functions for Functions {
    const NAMES: &'static [&'static str] = &LIBRARY_NAMES;

    fn resolve(lib: &libloading::Library, name: &str) -> Result<Self, MediaError> {
        /// Resolves one symbol as the function pointer type of its field.
        macro_rules! sym {
            ($field:ident) => {{
                // SAFETY: the field's type is the function pointer type written above from the symbol's
                // declaration in cuviddec.h / nvcuvid.h (same parameters, same return type, C calling convention); it is only used
                // while `lib` (kept by the `Library` that holds these functions) is loaded.
                unsafe { super::super::dl::symbol(lib, name, stringify!($field))? }
            }};
        }
        Ok(Self {
            cuvidGetDecoderCaps: sym!(cuvidGetDecoderCaps),
            cuvidCreateDecoder: sym!(cuvidCreateDecoder),
            cuvidDestroyDecoder: sym!(cuvidDestroyDecoder),
            cuvidDecodePicture: sym!(cuvidDecodePicture),
            cuvidGetDecodeStatus: sym!(cuvidGetDecodeStatus),
            cuvidReconfigureDecoder: sym!(cuvidReconfigureDecoder),
            cuvidMapVideoFrame64: sym!(cuvidMapVideoFrame64),
            cuvidUnmapVideoFrame64: sym!(cuvidUnmapVideoFrame64),
            cuvidCreateVideoParser: sym!(cuvidCreateVideoParser),
            cuvidParseVideoData: sym!(cuvidParseVideoData),
            cuvidDestroyVideoParser: sym!(cuvidDestroyVideoParser),
        })
    }
}

/// `long` is 8 bytes on LP64 Linux; kept as a named check of the `tcu_ulong` assumption.
const _: () = assert!(std::mem::size_of::<c_long>() == 8 && std::mem::size_of::<tcu_ulong>() == 8);

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    /// Layouts against cuviddec.h / nvcuvid.h on x86-64 Linux (LP64, System V: `int` 4, `long`/`tcu_ulong`,
    /// `long long` and pointers 8, `short` 2; each member at the next multiple of its alignment; the size rounded
    /// up to the largest alignment):
    ///
    /// - `CUVIDDECODECAPS`: three 4-byte INs and `reserved1[3]` (0..24), two bytes and a `short` (24, 25, 26),
    ///   three `unsigned int` (28, 32, 36), two `short` (40, 42), two bytes and a `short` (44, 45, 46),
    ///   `reserved3[10]` (48..88): size 88, alignment 4.
    /// - `CUVIDDECODECREATEINFO`: three `tcu_ulong` (0, 8, 16), two enums (24, 28), six `tcu_ulong` (32..80),
    ///   `display_area` of four shorts (80..88), two enums (88, 92), three `tcu_ulong` (96, 104, 112), `vidLock`
    ///   (120), `target_rect` (128..136), `enableHistogram` (136), `Reserved2[4]` (144..176): size 176.
    /// - `CUVIDPICPARAMS` (leading part): six ints (0..24), `nBitstreamDataLen` 24, the data pointer at 32 (padded),
    ///   `nNumSlices` 40, the offsets pointer 48, two ints (56, 60), `Reserved[30]` 64..184; the codec union starts
    ///   at 184 (8-aligned: it holds pointers).
    /// - `CUVIDPROCPARAMS`: four ints and two uints (0..24), `raw_input_dptr` 24, two uints (32, 36),
    ///   `raw_output_dptr` 40, two uints (48, 52), `output_stream` 56, `Reserved[46]` 64..248, `histogram_dptr`
    ///   248, `Reserved2[1]` 256: size 264.
    /// - `CUVIDGETDECODESTATUS`: the enum, `reserved[31]` (4..128), `pReserved[8]` (128..192): size 192.
    /// - `CUVIDRECONFIGUREDECODERINFO`: five uints (0..20), `reserved1[12]` (20..68), two rects of four shorts
    ///   (68, 76), `reserved2[11]` (84..128): size 128, alignment 4.
    /// - `CUVIDEOFORMAT`: codec 0, frame rate 4 and 8, four bytes 12..16, coded size 16 and 20, `display_area` of
    ///   four ints 24..40, `chroma_format` 40, `bitrate` 44, aspect ratio 48 and 52, the four-byte
    ///   `video_signal_description` 56..60 (one bitfield byte, three bytes), `seqhdr_data_length` 60: size 64.
    /// - `CUVIDSOURCEDATAPACKET`: two `tcu_ulong` (0, 8), the payload pointer 16, the timestamp 24: size 32.
    /// - `CUVIDPARSERDISPINFO`: four ints (0..16), the timestamp 16: size 24.
    /// - `CUVIDPARSERPARAMS`: the enum and four uints (0..20), the bitfield word 20, `uReserved1[4]` (24..40),
    ///   `pUserData` 40, five function pointers (48, 56, 64, 72, 80), `pvReserved2[5]` (88..128), `pExtVideoInfo`
    ///   128: size 136.
    #[test]
    fn layouts_match_the_nvdecode_headers_on_x86_64_linux() {
        assert_eq!((size_of::<CUVIDDECODECAPS>(), align_of::<CUVIDDECODECAPS>()), (88, 4));
        assert_eq!(offset_of!(CUVIDDECODECAPS, nBitDepthMinus8), 8);
        assert_eq!(offset_of!(CUVIDDECODECAPS, bIsSupported), 24);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nNumNVDECs), 25);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nOutputFormatMask), 26);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMaxWidth), 28);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMaxHeight), 32);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMaxMBCount), 36);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMinWidth), 40);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMinHeight), 42);
        assert_eq!(offset_of!(CUVIDDECODECAPS, bIsHistogramSupported), 44);
        assert_eq!(offset_of!(CUVIDDECODECAPS, nMaxHistogramBins), 46);
        assert_eq!(offset_of!(CUVIDDECODECAPS, reserved3), 48);

        assert_eq!((size_of::<CUVIDDECODECREATEINFO>(), align_of::<CUVIDDECODECREATEINFO>()), (176, 8));
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulHeight), 8);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulNumDecodeSurfaces), 16);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, CodecType), 24);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ChromaFormat), 28);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulCreationFlags), 32);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, bitDepthMinus8), 40);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulIntraDecodeOnly), 48);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulMaxWidth), 56);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulMaxHeight), 64);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, Reserved1), 72);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, display_area), 80);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, OutputFormat), 88);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, DeinterlaceMode), 92);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulTargetWidth), 96);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulTargetHeight), 104);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, ulNumOutputSurfaces), 112);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, vidLock), 120);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, target_rect), 128);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, enableHistogram), 136);
        assert_eq!(offset_of!(CUVIDDECODECREATEINFO, Reserved2), 144);
        assert_eq!((size_of::<CUVIDRECT_SHORT>(), align_of::<CUVIDRECT_SHORT>()), (8, 2));
        assert_eq!(offset_of!(CUVIDRECT_SHORT, bottom), 6);

        assert_eq!(offset_of!(CUVIDPICPARAMS, CurrPicIdx), 8);
        assert_eq!(offset_of!(CUVIDPICPARAMS, second_field), 20);
        assert_eq!(offset_of!(CUVIDPICPARAMS, nBitstreamDataLen), 24);
        assert_eq!(offset_of!(CUVIDPICPARAMS, pBitstreamData), 32);
        assert_eq!(offset_of!(CUVIDPICPARAMS, nNumSlices), 40);
        assert_eq!(offset_of!(CUVIDPICPARAMS, pSliceDataOffsets), 48);
        assert_eq!(offset_of!(CUVIDPICPARAMS, ref_pic_flag), 56);
        assert_eq!(offset_of!(CUVIDPICPARAMS, intra_pic_flag), 60);
        assert_eq!(offset_of!(CUVIDPICPARAMS, Reserved), 64);
        assert_eq!(offset_of!(CUVIDPICPARAMS, _codec_specific), 184);
        assert_eq!((size_of::<CUVIDPICPARAMS>(), align_of::<CUVIDPICPARAMS>()), (184, 8));

        assert_eq!((size_of::<CUVIDPROCPARAMS>(), align_of::<CUVIDPROCPARAMS>()), (264, 8));
        assert_eq!(offset_of!(CUVIDPROCPARAMS, unpaired_field), 12);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, raw_input_dptr), 24);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, raw_input_format), 36);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, raw_output_dptr), 40);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, Reserved1), 52);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, output_stream), 56);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, Reserved), 64);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, histogram_dptr), 248);
        assert_eq!(offset_of!(CUVIDPROCPARAMS, Reserved2), 256);

        assert_eq!((size_of::<CUVIDGETDECODESTATUS>(), align_of::<CUVIDGETDECODESTATUS>()), (192, 8));
        assert_eq!(offset_of!(CUVIDGETDECODESTATUS, reserved), 4);
        assert_eq!(offset_of!(CUVIDGETDECODESTATUS, pReserved), 128);

        assert_eq!((size_of::<CUVIDRECONFIGUREDECODERINFO>(), align_of::<CUVIDRECONFIGUREDECODERINFO>()), (128, 4));
        assert_eq!(offset_of!(CUVIDRECONFIGUREDECODERINFO, ulNumDecodeSurfaces), 16);
        assert_eq!(offset_of!(CUVIDRECONFIGUREDECODERINFO, reserved1), 20);
        assert_eq!(offset_of!(CUVIDRECONFIGUREDECODERINFO, display_area), 68);
        assert_eq!(offset_of!(CUVIDRECONFIGUREDECODERINFO, target_rect), 76);
        assert_eq!(offset_of!(CUVIDRECONFIGUREDECODERINFO, reserved2), 84);

        assert_eq!((size_of::<CUVIDEOFORMAT>(), align_of::<CUVIDEOFORMAT>()), (64, 4));
        assert_eq!(offset_of!(CUVIDEOFORMAT, frame_rate_numerator), 4);
        assert_eq!(offset_of!(CUVIDEOFORMAT, frame_rate_denominator), 8);
        assert_eq!(offset_of!(CUVIDEOFORMAT, progressive_sequence), 12);
        assert_eq!(offset_of!(CUVIDEOFORMAT, bit_depth_luma_minus8), 13);
        assert_eq!(offset_of!(CUVIDEOFORMAT, bit_depth_chroma_minus8), 14);
        assert_eq!(offset_of!(CUVIDEOFORMAT, min_num_decode_surfaces), 15);
        assert_eq!(offset_of!(CUVIDEOFORMAT, coded_width), 16);
        assert_eq!(offset_of!(CUVIDEOFORMAT, coded_height), 20);
        assert_eq!(offset_of!(CUVIDEOFORMAT, display_area), 24);
        assert_eq!(offset_of!(CUVIDEOFORMAT, chroma_format), 40);
        assert_eq!(offset_of!(CUVIDEOFORMAT, bitrate), 44);
        assert_eq!(offset_of!(CUVIDEOFORMAT, display_aspect_ratio_x), 48);
        assert_eq!(offset_of!(CUVIDEOFORMAT, display_aspect_ratio_y), 52);
        assert_eq!(offset_of!(CUVIDEOFORMAT, video_signal_flags), 56);
        assert_eq!(offset_of!(CUVIDEOFORMAT, matrix_coefficients), 59);
        assert_eq!(offset_of!(CUVIDEOFORMAT, seqhdr_data_length), 60);

        assert_eq!((size_of::<CUVIDSOURCEDATAPACKET>(), align_of::<CUVIDSOURCEDATAPACKET>()), (32, 8));
        assert_eq!(offset_of!(CUVIDSOURCEDATAPACKET, payload_size), 8);
        assert_eq!(offset_of!(CUVIDSOURCEDATAPACKET, payload), 16);
        assert_eq!(offset_of!(CUVIDSOURCEDATAPACKET, timestamp), 24);

        assert_eq!((size_of::<CUVIDPARSERDISPINFO>(), align_of::<CUVIDPARSERDISPINFO>()), (24, 8));
        assert_eq!(offset_of!(CUVIDPARSERDISPINFO, repeat_first_field), 12);
        assert_eq!(offset_of!(CUVIDPARSERDISPINFO, timestamp), 16);

        assert_eq!((size_of::<CUVIDPARSERPARAMS>(), align_of::<CUVIDPARSERPARAMS>()), (136, 8));
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, ulMaxNumDecodeSurfaces), 4);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, ulErrorThreshold), 12);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, ulMaxDisplayDelay), 16);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, bitfields), 20);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, uReserved1), 24);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pUserData), 40);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnSequenceCallback), 48);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnDecodePicture), 56);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnDisplayPicture), 64);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnGetOperatingPoint), 72);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pfnGetSEIMsg), 80);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pvReserved2), 88);
        assert_eq!(offset_of!(CUVIDPARSERPARAMS, pExtVideoInfo), 128);

        for (size, align) in [
            (size_of::<CUresult>(), align_of::<CUresult>()),
            (size_of::<cudaVideoCodec>(), align_of::<cudaVideoCodec>()),
            (size_of::<cudaVideoSurfaceFormat>(), align_of::<cudaVideoSurfaceFormat>()),
            (size_of::<cudaVideoDeinterlaceMode>(), align_of::<cudaVideoDeinterlaceMode>()),
            (size_of::<cudaVideoChromaFormat>(), align_of::<cudaVideoChromaFormat>()),
            (size_of::<cuvidDecodeStatus>(), align_of::<cuvidDecodeStatus>()),
        ] {
            assert_eq!((size, align), (4, 4));
        }
        assert_eq!(size_of::<tcu_ulong>(), 8);
        assert_eq!(size_of::<CUvideotimestamp>(), 8);
        assert_eq!(size_of::<PFNVIDSEQUENCECALLBACK>(), 8);
        assert_eq!(size_of::<CUstream>(), 8);
    }

    /// Enum values as the headers number them (the H.264 = 4 / HEVC = 8 pair is also in the H200 probe of
    /// shared/design/ipc-media-cabi.md §4.3).
    #[test]
    fn enum_values_match_the_headers() {
        assert_eq!(cudaVideoCodec::cudaVideoCodec_H264.0, 4);
        assert_eq!(cudaVideoCodec::cudaVideoCodec_HEVC.0, 8);
        assert_eq!(cudaVideoCodec::cudaVideoCodec_AV1.0, 11);
        assert_eq!(cudaVideoChromaFormat::cudaVideoChromaFormat_420.0, 1);
        assert_eq!(cudaVideoSurfaceFormat::cudaVideoSurfaceFormat_NV12.0, 0);
        assert_eq!(cudaVideoSurfaceFormat::cudaVideoSurfaceFormat_P216.0, 5);
        assert_eq!(cuvidDecodeStatus::cuvidDecodeStatus_Error.0, 8);
        assert_eq!(cuvidDecodeStatus::cuvidDecodeStatus_Error_Concealed.0, 9);
        assert_eq!(cudaVideoCreate_PreferCUVID, 4);
        assert_eq!(CUVID_PKT_ENDOFPICTURE | CUVID_PKT_TIMESTAMP, 0x0A);
        assert_eq!(CUresult(801).name(), "CUDA_ERROR_NOT_SUPPORTED");
        assert_eq!(CUresult(12345).name(), "CUDA_ERROR_<unknown>");
    }

    /// A library that does not exist is refused with its name and the loader's message; a library without the
    /// NVDECODE symbols with the first missing symbol named.
    #[test]
    fn missing_library_and_symbol_are_typed_errors() {
        let err = Library::load_from("libnvcuvid-does-not-exist.so.1").unwrap_err();
        let MediaError::LibraryMissing { name, reason } = &err else { panic!("{err:?}") };
        assert_eq!(name, "libnvcuvid-does-not-exist.so.1");
        assert!(reason.contains("libnvcuvid-does-not-exist.so.1"), "{reason}");

        let err = Library::load_from("libc.so.6").unwrap_err();
        let MediaError::SymbolMissing { library, symbol, .. } = &err else { panic!("{err:?}") };
        assert_eq!((library.as_str(), *symbol), ("libc.so.6", "cuvidGetDecoderCaps"));
    }

    /// libnvcuvid ships with the NVIDIA driver, not with the CUDA toolkit: on a build machine without a driver
    /// the load fails with a typed error naming `libnvcuvid.so.1`; on a GPU host it loads and every symbol
    /// resolves.
    #[test]
    fn load_names_libnvcuvid_so_1_or_resolves() {
        match Library::load() {
            Ok(lib) => println!("{} loaded, all 11 symbols resolved", lib.name()),
            Err(err) => {
                let MediaError::LibraryMissing { name, .. } = &err else { panic!("{err:?}") };
                assert_eq!(name, "libnvcuvid.so.1 or libnvcuvid.so");
                assert!(err.to_string().starts_with("libnvcuvid.so.1 or libnvcuvid.so could not be loaded: "), "{err}");
            }
        }
    }
}
