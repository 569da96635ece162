//! Raw nvJPEG declarations, loaded at run time (the `sys` level of cudarc's layering: C names, C types, no
//! policy).
//!
//! Written from `nvjpeg.h` of CUDA 13.0 (`NVJPEG_VER_MAJOR 13`, `NVJPEG_VER_MINOR 0`, `NVJPEG_VER_PATCH 1`,
//! wheel `nvidia-nvjpeg==13.0.1.86`, installed by `tools/setup-cuda.sh` under
//! `~/.cache/swm-cuda-13.0/py/nvidia/cu13/include/nvjpeg.h`); line numbers below refer to that file. Only the
//! decoder subset swm uses is declared: handle and state lifetime, image info, single-image decode, the batched
//! decode of the hardware backend and the stream parser it needs to ask whether an image is supported.
//!
//! C enums are `#[repr(transparent)]` newtypes over `c_int` with associated constants (bindgen's "newtype enum"
//! style), never Rust enums: a value the library returns that this file does not know (a newer status, say) is
//! then an ordinary value, not undefined behaviour. On x86-64 Linux (System V ABI) a C enum whose values all fit in
//! `int` has the size and alignment of `int`, so passing `c_int` is the same call.
//!
//! [`Library`] dlopens `libnvjpeg.so.13` (then `libnvjpeg.so`) with `libloading` and resolves every symbol once;
//! a missing library or symbol is a typed [`MediaError`].

#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_int, c_uchar, c_uint, c_void};

use crate::media::MediaError;

/// `NVJPEG_MAX_COMPONENT` (nvjpeg.h:67): the number of planes of an [`nvjpegImage_t`] and of the per-component
/// arrays of `nvjpegGetImageInfo`.
pub const NVJPEG_MAX_COMPONENT: usize = 4;

/// `nvjpegStatus_t` (nvjpeg.h:76-89): what every nvJPEG call returns.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct nvjpegStatus_t(pub c_int);

impl nvjpegStatus_t {
    /// The call succeeded.
    pub const NVJPEG_STATUS_SUCCESS: Self = Self(0);
    /// The library handle was not initialised.
    pub const NVJPEG_STATUS_NOT_INITIALIZED: Self = Self(1);
    /// A wrong parameter (null pointer, bad size, bad enum value).
    pub const NVJPEG_STATUS_INVALID_PARAMETER: Self = Self(2);
    /// The bitstream is not a valid JPEG (or is corrupt).
    pub const NVJPEG_STATUS_BAD_JPEG: Self = Self(3);
    /// A JPEG feature the library (or the chosen backend) does not decode.
    pub const NVJPEG_STATUS_JPEG_NOT_SUPPORTED: Self = Self(4);
    /// An allocation failed.
    pub const NVJPEG_STATUS_ALLOCATOR_FAILURE: Self = Self(5);
    /// A CUDA call inside the library failed.
    pub const NVJPEG_STATUS_EXECUTION_FAILED: Self = Self(6);
    /// The GPU (or platform) lacks what the requested backend needs.
    pub const NVJPEG_STATUS_ARCH_MISMATCH: Self = Self(7);
    /// An internal error of the library.
    pub const NVJPEG_STATUS_INTERNAL_ERROR: Self = Self(8);
    /// The combination of parameters is not implemented.
    pub const NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED: Self = Self(9);
    /// The bitstream ended before the image did.
    pub const NVJPEG_STATUS_INCOMPLETE_BITSTREAM: Self = Self(10);

    /// The C name of the status (`"NVJPEG_STATUS_BAD_JPEG"`), or `"NVJPEG_STATUS_<unknown>"` for a value this
    /// header does not list.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "NVJPEG_STATUS_SUCCESS",
            1 => "NVJPEG_STATUS_NOT_INITIALIZED",
            2 => "NVJPEG_STATUS_INVALID_PARAMETER",
            3 => "NVJPEG_STATUS_BAD_JPEG",
            4 => "NVJPEG_STATUS_JPEG_NOT_SUPPORTED",
            5 => "NVJPEG_STATUS_ALLOCATOR_FAILURE",
            6 => "NVJPEG_STATUS_EXECUTION_FAILED",
            7 => "NVJPEG_STATUS_ARCH_MISMATCH",
            8 => "NVJPEG_STATUS_INTERNAL_ERROR",
            9 => "NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED",
            10 => "NVJPEG_STATUS_INCOMPLETE_BITSTREAM",
            _ => "NVJPEG_STATUS_<unknown>",
        }
    }
}

/// `nvjpegChromaSubsampling_t` (nvjpeg.h:109-120): written by `nvjpegGetImageInfo`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct nvjpegChromaSubsampling_t(pub c_int);

impl nvjpegChromaSubsampling_t {
    /// 4:4:4.
    pub const NVJPEG_CSS_444: Self = Self(0);
    /// 4:2:2.
    pub const NVJPEG_CSS_422: Self = Self(1);
    /// 4:2:0.
    pub const NVJPEG_CSS_420: Self = Self(2);
    /// 4:4:0.
    pub const NVJPEG_CSS_440: Self = Self(3);
    /// 4:1:1.
    pub const NVJPEG_CSS_411: Self = Self(4);
    /// 4:1:0.
    pub const NVJPEG_CSS_410: Self = Self(5);
    /// One component (greyscale).
    pub const NVJPEG_CSS_GRAY: Self = Self(6);
    /// 4:1:0 with vertical subsampling.
    pub const NVJPEG_CSS_410V: Self = Self(7);
    /// Not one of the above.
    pub const NVJPEG_CSS_UNKNOWN: Self = Self(-1);
}

/// `nvjpegOutputFormat_t` (nvjpeg.h:123-149): the layout nvJPEG writes into an [`nvjpegImage_t`]. Only the two
/// RGB formats and the two planar YCbCr formats swm uses are listed.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct nvjpegOutputFormat_t(pub c_int);

impl nvjpegOutputFormat_t {
    /// Planar components at their own sampling, as the IDCT leaves them: `channel[c]` with `pitch[c]` at least
    /// the component's width from `nvjpegGetImageInfo` (the planes the fused kernel's JPEG formats read).
    pub const NVJPEG_OUTPUT_YUV: Self = Self(1);
    /// The luma component only, in `channel[0]` (what a greyscale JPEG has).
    pub const NVJPEG_OUTPUT_Y: Self = Self(2);
    /// Planar RGB: `channel[0..3]` are the R, G and B planes, each `pitch[c] >= width`.
    pub const NVJPEG_OUTPUT_RGB: Self = Self(3);
    /// Interleaved RGB: `channel[0]` only, `pitch[0] >= 3 * width`; a greyscale JPEG is written as R = G = B.
    pub const NVJPEG_OUTPUT_RGBI: Self = Self(5);
}

/// `nvjpegBackend_t` (nvjpeg.h:170-179): the decoder implementation a handle (or decoder) uses.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct nvjpegBackend_t(pub c_int);

impl nvjpegBackend_t {
    /// The library's choice.
    pub const NVJPEG_BACKEND_DEFAULT: Self = Self(0);
    /// Huffman decode on the CPU.
    pub const NVJPEG_BACKEND_HYBRID: Self = Self(1);
    /// GPU-assisted Huffman decode (batched decode of large batches).
    pub const NVJPEG_BACKEND_GPU_HYBRID: Self = Self(2);
    /// The NVJPG hardware engines: baseline, single-scan JPEGs; no 4:1:0 / 4:1:1 (nvjpeg.h:167).
    pub const NVJPEG_BACKEND_HARDWARE: Self = Self(3);
}

/// `libraryPropertyType` (`library_types.h`: `MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL`, implicit 0, 1, 2).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct libraryPropertyType(pub c_int);

impl libraryPropertyType {
    /// Major version.
    pub const MAJOR_VERSION: Self = Self(0);
    /// Minor version.
    pub const MINOR_VERSION: Self = Self(1);
    /// Patch level.
    pub const PATCH_LEVEL: Self = Self(2);
}

/// `NVJPEG_FLAGS_DEFAULT` (nvjpeg.h:208).
pub const NVJPEG_FLAGS_DEFAULT: c_uint = 0;
/// `NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE` (nvjpeg.h:209): the hardware backend decodes each batch on its own
/// instead of overlapping it with the next one.
pub const NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE: c_uint = 1;
/// `NVJPEG_FLAGS_BITSTREAM_STRICT` (nvjpeg.h:211, `1<<2`): report bitstream errors instead of decoding around them.
pub const NVJPEG_FLAGS_BITSTREAM_STRICT: c_uint = 1 << 2;

/// `nvjpegImage_t` (nvjpeg.h:219-223): the output planes, device pointers and pitches in bytes. Passed by pointer
/// to `nvjpegDecode` and as an array to `nvjpegDecodeBatched`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nvjpegImage_t {
    /// `unsigned char *channel[NVJPEG_MAX_COMPONENT]`: device address of each plane (null when unused).
    pub channel: [*mut c_uchar; NVJPEG_MAX_COMPONENT],
    /// `size_t pitch[NVJPEG_MAX_COMPONENT]`: bytes from one row of a plane to the next.
    pub pitch: [usize; NVJPEG_MAX_COMPONENT],
}

impl Default for nvjpegImage_t {
    fn default() -> Self {
        Self { channel: [std::ptr::null_mut(); NVJPEG_MAX_COMPONENT], pitch: [0; NVJPEG_MAX_COMPONENT] }
    }
}

/// `tDevMalloc` (nvjpeg.h:226): `int (*)(void**, size_t)`.
pub type tDevMalloc = Option<unsafe extern "C" fn(*mut *mut c_void, usize) -> c_int>;
/// `tDevFree` (nvjpeg.h:228): `int (*)(void*)`.
pub type tDevFree = Option<unsafe extern "C" fn(*mut c_void) -> c_int>;
/// `tPinnedMalloc` (nvjpeg.h:231): `int (*)(void**, size_t, unsigned int flags)`.
pub type tPinnedMalloc = Option<unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> c_int>;
/// `tPinnedFree` (nvjpeg.h:233): `int (*)(void*)`.
pub type tPinnedFree = Option<unsafe extern "C" fn(*mut c_void) -> c_int>;

/// `nvjpegDevAllocator_t` (nvjpeg.h:238-242): a device allocator, passed by pointer to `nvjpegCreateEx` (swm
/// passes null: the library's cudaMalloc/cudaFree).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct nvjpegDevAllocator_t {
    /// Allocates device memory.
    pub dev_malloc: tDevMalloc,
    /// Frees it.
    pub dev_free: tDevFree,
}

/// `nvjpegPinnedAllocator_t` (nvjpeg.h:247-251): a pinned host allocator, passed by pointer to `nvjpegCreateEx`
/// (swm passes null: the library's cudaHostAlloc/cudaFreeHost).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct nvjpegPinnedAllocator_t {
    /// Allocates pinned host memory.
    pub pinned_malloc: tPinnedMalloc,
    /// Frees it.
    pub pinned_free: tPinnedFree,
}

/// The opaque `struct nvjpegHandle` (nvjpeg.h:278).
#[repr(C)]
pub struct nvjpegHandle {
    _opaque: [u8; 0],
}
/// `nvjpegHandle_t` (nvjpeg.h:279): the library handle.
pub type nvjpegHandle_t = *mut nvjpegHandle;

/// The opaque `struct nvjpegJpegState` (nvjpeg.h:282).
#[repr(C)]
pub struct nvjpegJpegState {
    _opaque: [u8; 0],
}
/// `nvjpegJpegState_t` (nvjpeg.h:283): decoding state (one per thread).
pub type nvjpegJpegState_t = *mut nvjpegJpegState;

/// The opaque `struct nvjpegJpegStream` (nvjpeg.h:645).
#[repr(C)]
pub struct nvjpegJpegStream {
    _opaque: [u8; 0],
}
/// `nvjpegJpegStream_t` (nvjpeg.h:646): a parsed bitstream's metadata, host side (one per thread).
pub type nvjpegJpegStream_t = *mut nvjpegJpegStream;

/// `cudaStream_t` from `cuda_runtime_api.h`: the same object as the driver's `CUstream` (a pointer to an opaque
/// `CUstream_st`), so cudarc's `CudaStream::cu_stream()` is passed as is.
pub type cudaStream_t = *mut c_void;

/// `nvjpegGetProperty(libraryPropertyType type, int *value)` (nvjpeg.h:286).
pub type nvjpegGetProperty_t = unsafe extern "C" fn(libraryPropertyType, *mut c_int) -> nvjpegStatus_t;
/// `nvjpegGetCudartProperty(libraryPropertyType type, int *value)` (nvjpeg.h:289): the CUDA runtime version the
/// library was built with.
pub type nvjpegGetCudartProperty_t = unsafe extern "C" fn(libraryPropertyType, *mut c_int) -> nvjpegStatus_t;
/// `nvjpegCreateSimple(nvjpegHandle_t *handle)` (nvjpeg.h:299): default backend, default allocators.
pub type nvjpegCreateSimple_t = unsafe extern "C" fn(*mut nvjpegHandle_t) -> nvjpegStatus_t;
/// `nvjpegCreateEx(backend, nvjpegDevAllocator_t *, nvjpegPinnedAllocator_t *, unsigned int flags,
/// nvjpegHandle_t *handle)` (nvjpeg.h:307-311).
pub type nvjpegCreateEx_t = unsafe extern "C" fn(
    nvjpegBackend_t,
    *mut nvjpegDevAllocator_t,
    *mut nvjpegPinnedAllocator_t,
    c_uint,
    *mut nvjpegHandle_t,
) -> nvjpegStatus_t;
/// `nvjpegDestroy(nvjpegHandle_t handle)` (nvjpeg.h:321).
pub type nvjpegDestroy_t = unsafe extern "C" fn(nvjpegHandle_t) -> nvjpegStatus_t;
/// `nvjpegGetHardwareDecoderInfo(handle, unsigned int *num_engines, unsigned int *num_cores_per_engine)`
/// (nvjpeg.h:346-348).
pub type nvjpegGetHardwareDecoderInfo_t =
    unsafe extern "C" fn(nvjpegHandle_t, *mut c_uint, *mut c_uint) -> nvjpegStatus_t;
/// `nvjpegJpegStateCreate(nvjpegHandle_t handle, nvjpegJpegState_t *jpeg_handle)` (nvjpeg.h:356).
pub type nvjpegJpegStateCreate_t = unsafe extern "C" fn(nvjpegHandle_t, *mut nvjpegJpegState_t) -> nvjpegStatus_t;
/// `nvjpegJpegStateDestroy(nvjpegJpegState_t jpeg_handle)` (nvjpeg.h:360).
pub type nvjpegJpegStateDestroy_t = unsafe extern "C" fn(nvjpegJpegState_t) -> nvjpegStatus_t;
/// `nvjpegGetImageInfo(handle, const unsigned char *data, size_t length, int *nComponents,
/// nvjpegChromaSubsampling_t *subsampling, int *widths, int *heights)` (nvjpeg.h:373-380); `widths` and
/// `heights` point to `NVJPEG_MAX_COMPONENT` ints. Thread safe, host only.
pub type nvjpegGetImageInfo_t = unsafe extern "C" fn(
    nvjpegHandle_t,
    *const c_uchar,
    usize,
    *mut c_int,
    *mut nvjpegChromaSubsampling_t,
    *mut c_int,
    *mut c_int,
) -> nvjpegStatus_t;
/// `nvjpegDecode(handle, state, const unsigned char *data, size_t length, nvjpegOutputFormat_t output_format,
/// nvjpegImage_t *destination, cudaStream_t stream)` (nvjpeg.h:398-405).
pub type nvjpegDecode_t = unsafe extern "C" fn(
    nvjpegHandle_t,
    nvjpegJpegState_t,
    *const c_uchar,
    usize,
    nvjpegOutputFormat_t,
    *mut nvjpegImage_t,
    cudaStream_t,
) -> nvjpegStatus_t;
/// `nvjpegDecodeBatchedInitialize(handle, state, int batch_size, int max_cpu_threads,
/// nvjpegOutputFormat_t output_format)` (nvjpeg.h:421-426): again whenever the batch size changes or a
/// batch failed.
pub type nvjpegDecodeBatchedInitialize_t =
    unsafe extern "C" fn(nvjpegHandle_t, nvjpegJpegState_t, c_int, c_int, nvjpegOutputFormat_t) -> nvjpegStatus_t;
/// `nvjpegDecodeBatched(handle, state, const unsigned char *const *data, const size_t *lengths,
/// nvjpegImage_t *destinations, cudaStream_t stream)` (nvjpeg.h:441-447): `batch_size` entries in each array.
pub type nvjpegDecodeBatched_t = unsafe extern "C" fn(
    nvjpegHandle_t,
    nvjpegJpegState_t,
    *const *const c_uchar,
    *const usize,
    *mut nvjpegImage_t,
    cudaStream_t,
) -> nvjpegStatus_t;
/// `nvjpegJpegStreamCreate(nvjpegHandle_t handle, nvjpegJpegStream_t *jpeg_stream)` (nvjpeg.h:648-650).
pub type nvjpegJpegStreamCreate_t = unsafe extern "C" fn(nvjpegHandle_t, *mut nvjpegJpegStream_t) -> nvjpegStatus_t;
/// `nvjpegJpegStreamDestroy(nvjpegJpegStream_t jpeg_stream)` (nvjpeg.h:652).
pub type nvjpegJpegStreamDestroy_t = unsafe extern "C" fn(nvjpegJpegStream_t) -> nvjpegStatus_t;
/// `nvjpegJpegStreamParseHeader(handle, const unsigned char *data, size_t length, nvjpegJpegStream_t)`
/// (nvjpeg.h:662-666).
pub type nvjpegJpegStreamParseHeader_t =
    unsafe extern "C" fn(nvjpegHandle_t, *const c_uchar, usize, nvjpegJpegStream_t) -> nvjpegStatus_t;
/// `nvjpegDecodeBatchedSupported(handle, nvjpegJpegStream_t, int *is_supported)` (nvjpeg.h:769-771):
/// `*is_supported == 0` when the
/// handle's batched decoder (the hardware engines for the hardware backend) can decode the parsed stream.
pub type nvjpegDecodeBatchedSupported_t =
    unsafe extern "C" fn(nvjpegHandle_t, nvjpegJpegStream_t, *mut c_int) -> nvjpegStatus_t;

/// The file names tried, in order: the CUDA 13 soname, then the unversioned development link.
pub const LIBRARY_NAMES: [&str; 2] = ["libnvjpeg.so.13", "libnvjpeg.so"];

/// The loaded library: its [`Functions`] through `Deref`.
pub type Library = super::super::dl::Loaded<Functions>;

/// The library's functions, resolved at load time ([`Library`] keeps the library loaded while they are used).
pub struct Functions {
    /// See [`nvjpegGetProperty_t`].
    pub nvjpegGetProperty: nvjpegGetProperty_t,
    /// See [`nvjpegGetCudartProperty_t`].
    pub nvjpegGetCudartProperty: nvjpegGetCudartProperty_t,
    /// See [`nvjpegCreateSimple_t`].
    pub nvjpegCreateSimple: nvjpegCreateSimple_t,
    /// See [`nvjpegCreateEx_t`].
    pub nvjpegCreateEx: nvjpegCreateEx_t,
    /// See [`nvjpegDestroy_t`].
    pub nvjpegDestroy: nvjpegDestroy_t,
    /// See [`nvjpegGetHardwareDecoderInfo_t`].
    pub nvjpegGetHardwareDecoderInfo: nvjpegGetHardwareDecoderInfo_t,
    /// See [`nvjpegJpegStateCreate_t`].
    pub nvjpegJpegStateCreate: nvjpegJpegStateCreate_t,
    /// See [`nvjpegJpegStateDestroy_t`].
    pub nvjpegJpegStateDestroy: nvjpegJpegStateDestroy_t,
    /// See [`nvjpegGetImageInfo_t`].
    pub nvjpegGetImageInfo: nvjpegGetImageInfo_t,
    /// See [`nvjpegDecode_t`].
    pub nvjpegDecode: nvjpegDecode_t,
    /// See [`nvjpegDecodeBatchedInitialize_t`].
    pub nvjpegDecodeBatchedInitialize: nvjpegDecodeBatchedInitialize_t,
    /// See [`nvjpegDecodeBatched_t`].
    pub nvjpegDecodeBatched: nvjpegDecodeBatched_t,
    /// See [`nvjpegJpegStreamCreate_t`].
    pub nvjpegJpegStreamCreate: nvjpegJpegStreamCreate_t,
    /// See [`nvjpegJpegStreamDestroy_t`].
    pub nvjpegJpegStreamDestroy: nvjpegJpegStreamDestroy_t,
    /// See [`nvjpegJpegStreamParseHeader_t`].
    pub nvjpegJpegStreamParseHeader: nvjpegJpegStreamParseHeader_t,
    /// See [`nvjpegDecodeBatchedSupported_t`].
    pub nvjpegDecodeBatchedSupported: nvjpegDecodeBatchedSupported_t,
}

impl super::super::dl::Functions for Functions {
    const NAMES: &'static [&'static str] = &LIBRARY_NAMES;

    fn resolve(lib: &libloading::Library, name: &str) -> Result<Self, MediaError> {
        /// Resolves one symbol as the function pointer type of its field.
        macro_rules! sym {
            ($field:ident) => {{
                // SAFETY: the field's type is the function pointer type written above from the symbol's
                // declaration in nvjpeg.h (same parameters, same return type, C calling convention); it is only used
                // while `lib` (kept by the `Library` that holds these functions) is loaded.
                unsafe { super::super::dl::symbol(lib, name, stringify!($field))? }
            }};
        }
        Ok(Self {
            nvjpegGetProperty: sym!(nvjpegGetProperty),
            nvjpegGetCudartProperty: sym!(nvjpegGetCudartProperty),
            nvjpegCreateSimple: sym!(nvjpegCreateSimple),
            nvjpegCreateEx: sym!(nvjpegCreateEx),
            nvjpegDestroy: sym!(nvjpegDestroy),
            nvjpegGetHardwareDecoderInfo: sym!(nvjpegGetHardwareDecoderInfo),
            nvjpegJpegStateCreate: sym!(nvjpegJpegStateCreate),
            nvjpegJpegStateDestroy: sym!(nvjpegJpegStateDestroy),
            nvjpegGetImageInfo: sym!(nvjpegGetImageInfo),
            nvjpegDecode: sym!(nvjpegDecode),
            nvjpegDecodeBatchedInitialize: sym!(nvjpegDecodeBatchedInitialize),
            nvjpegDecodeBatched: sym!(nvjpegDecodeBatched),
            nvjpegJpegStreamCreate: sym!(nvjpegJpegStreamCreate),
            nvjpegJpegStreamDestroy: sym!(nvjpegJpegStreamDestroy),
            nvjpegJpegStreamParseHeader: sym!(nvjpegJpegStreamParseHeader),
            nvjpegDecodeBatchedSupported: sym!(nvjpegDecodeBatchedSupported),
        })
    }
}

impl Functions {
    /// The library's version `(major, minor, patch)` from `nvjpegGetProperty` (needs no GPU).
    pub fn version(&self) -> Result<(i32, i32, i32), MediaError> {
        let get = |p: libraryPropertyType| {
            let mut v: c_int = 0;
            // SAFETY: `nvjpegGetProperty` writes one int through the pointer, which points to a live local.
            let status = unsafe { (self.nvjpegGetProperty)(p, &mut v) };
            MediaError::check("nvjpegGetProperty", status).map(|()| v)
        };
        Ok((
            get(libraryPropertyType::MAJOR_VERSION)?,
            get(libraryPropertyType::MINOR_VERSION)?,
            get(libraryPropertyType::PATCH_LEVEL)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    /// Layouts of every type passed by value or by pointer, against nvjpeg.h on x86-64 Linux (LP64, System V):
    ///
    /// - `nvjpegImage_t` (nvjpeg.h:219-223) is `unsigned char *channel[4]` then `size_t pitch[4]`: four 8-byte
    ///   pointers at offset 0, four 8-byte `size_t` at offset 4 * 8 = 32, no padding (every member 8-aligned),
    ///   size 64, alignment 8. `nvjpegDecodeBatched` strides through an array of them, so the size must be exact.
    /// - `nvjpegDevAllocator_t` (238-242) and `nvjpegPinnedAllocator_t` (247-251) are two function pointers each:
    ///   size 16, alignment 8, second member at 8 (`Option<fn>` is guaranteed pointer-sized, null = `None`).
    /// - The enums (76-89, 109-120, 123-149, 170-179, and `libraryPropertyType`) have values in `int` range, so they
    ///   are `int`-sized and -aligned: 4 and 4.
    /// - The handles are pointers: 8 bytes.
    #[test]
    fn layouts_match_nvjpeg_h_on_x86_64_linux() {
        assert_eq!(size_of::<nvjpegImage_t>(), 64);
        assert_eq!(align_of::<nvjpegImage_t>(), 8);
        assert_eq!(offset_of!(nvjpegImage_t, channel), 0);
        assert_eq!(offset_of!(nvjpegImage_t, pitch), 32);
        assert_eq!(size_of::<[nvjpegImage_t; 3]>(), 3 * 64);

        for (size, align, second) in [
            (
                size_of::<nvjpegDevAllocator_t>(),
                align_of::<nvjpegDevAllocator_t>(),
                offset_of!(nvjpegDevAllocator_t, dev_free),
            ),
            (
                size_of::<nvjpegPinnedAllocator_t>(),
                align_of::<nvjpegPinnedAllocator_t>(),
                offset_of!(nvjpegPinnedAllocator_t, pinned_free),
            ),
        ] {
            assert_eq!((size, align, second), (16, 8, 8));
        }
        assert_eq!(offset_of!(nvjpegDevAllocator_t, dev_malloc), 0);
        assert_eq!(offset_of!(nvjpegPinnedAllocator_t, pinned_malloc), 0);

        for (size, align) in [
            (size_of::<nvjpegStatus_t>(), align_of::<nvjpegStatus_t>()),
            (size_of::<nvjpegChromaSubsampling_t>(), align_of::<nvjpegChromaSubsampling_t>()),
            (size_of::<nvjpegOutputFormat_t>(), align_of::<nvjpegOutputFormat_t>()),
            (size_of::<nvjpegBackend_t>(), align_of::<nvjpegBackend_t>()),
            (size_of::<libraryPropertyType>(), align_of::<libraryPropertyType>()),
        ] {
            assert_eq!((size, align), (4, 4));
        }
        assert_eq!(size_of::<nvjpegHandle_t>(), 8);
        assert_eq!(size_of::<nvjpegJpegState_t>(), 8);
        assert_eq!(size_of::<nvjpegJpegStream_t>(), 8);
        assert_eq!(size_of::<cudaStream_t>(), size_of::<cudarc::driver::sys::CUstream>());
    }

    /// Enum values as nvjpeg.h numbers them.
    #[test]
    fn enum_values_match_nvjpeg_h() {
        assert_eq!(nvjpegStatus_t::NVJPEG_STATUS_INCOMPLETE_BITSTREAM.0, 10);
        assert_eq!(nvjpegStatus_t::NVJPEG_STATUS_BAD_JPEG.name(), "NVJPEG_STATUS_BAD_JPEG");
        assert_eq!(nvjpegStatus_t(42).name(), "NVJPEG_STATUS_<unknown>");
        for code in 0..=10 {
            assert!(nvjpegStatus_t(code).name().starts_with("NVJPEG_STATUS_"));
            assert_ne!(nvjpegStatus_t(code).name(), "NVJPEG_STATUS_<unknown>");
        }
        assert_eq!(nvjpegBackend_t::NVJPEG_BACKEND_HARDWARE.0, 3);
        assert_eq!(nvjpegOutputFormat_t::NVJPEG_OUTPUT_RGBI.0, 5);
        assert_eq!(nvjpegOutputFormat_t::NVJPEG_OUTPUT_YUV.0, 1);
        assert_eq!(nvjpegOutputFormat_t::NVJPEG_OUTPUT_Y.0, 2);
        assert_eq!(nvjpegChromaSubsampling_t::NVJPEG_CSS_GRAY.0, 6);
        assert_eq!(nvjpegChromaSubsampling_t::NVJPEG_CSS_UNKNOWN.0, -1);
        assert_eq!(NVJPEG_FLAGS_BITSTREAM_STRICT, 4);
    }

    /// A library without nvJPEG's symbols is refused with the first missing symbol named; a library that does not
    /// exist is refused with its name and the loader's message.
    #[test]
    fn missing_library_and_symbol_are_typed_errors() {
        let err = Library::load_from("libnvjpeg-does-not-exist.so.13").unwrap_err();
        let MediaError::LibraryMissing { name, reason } = &err else { panic!("{err:?}") };
        assert_eq!(name, "libnvjpeg-does-not-exist.so.13");
        assert!(reason.contains("libnvjpeg-does-not-exist.so.13"), "{reason}");

        let err = Library::load_from("libc.so.6").unwrap_err();
        let MediaError::SymbolMissing { library, symbol, .. } = &err else { panic!("{err:?}") };
        assert_eq!((library.as_str(), *symbol), ("libc.so.6", "nvjpegGetProperty"));
        assert!(err.to_string().contains("libc.so.6 has no symbol `nvjpegGetProperty`"), "{err}");
    }

    /// libnvjpeg is installed wherever swm's tests run (the build machine's and CI's CUDA wheels from
    /// tools/setup-cuda.sh, the GPU hosts): every symbol resolves and the version is 13.x; needs no GPU.
    #[test]
    fn libnvjpeg_resolves() {
        let lib = Library::load().unwrap_or_else(|e| panic!("{e} (source tools/setup-cuda.sh)"));
        let (major, minor, patch) = lib.version().unwrap();
        println!("{}: nvJPEG {major}.{minor}.{patch}", lib.name());
        assert_eq!(major, 13, "{} is not nvJPEG 13", lib.name());
    }
}
