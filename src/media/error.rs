//! The error of the media layer: what loading a codec library, parsing or decoding an image or a video stream
//! can fail with.

use crate::ops::DriverFailure;

use super::nvdec::sys::CUresult;
use super::nvjpeg::sys::nvjpegStatus_t;
use super::nvjpeg::Backend;

/// Why a codec library could not be used or an image not decoded.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The shared library could not be loaded (not installed, not on the loader's path, wrong architecture).
    #[error("{name} could not be loaded: {reason}")]
    LibraryMissing {
        /// The file name(s) tried.
        name: String,
        /// The dynamic loader's message (`dlerror`).
        reason: String,
    },
    /// The library loaded but lacks an entry point swm needs (an older or foreign library).
    #[error("{library} has no symbol `{symbol}`: {reason}")]
    SymbolMissing {
        /// The file that was loaded.
        library: String,
        /// The missing symbol.
        symbol: &'static str,
        /// The dynamic loader's message.
        reason: String,
    },
    /// The bytes are not a JPEG, or so damaged that the decoder rejected them (`NVJPEG_STATUS_BAD_JPEG`).
    #[error("not a JPEG: {reason}")]
    NotJpeg {
        /// What was wrong (a missing start-of-image marker, or the nvJPEG call and its status).
        reason: String,
    },
    /// The JPEG ends before its image data does (`NVJPEG_STATUS_INCOMPLETE_BITSTREAM`).
    #[error("truncated JPEG: {call} returned NVJPEG_STATUS_INCOMPLETE_BITSTREAM")]
    Truncated {
        /// The nvJPEG call that noticed.
        call: &'static str,
    },
    /// A valid JPEG that this decoder cannot decode (e.g. a progressive JPEG on the hardware backend, four
    /// components); another backend may.
    #[error("unsupported by the nvJPEG {backend} backend: {reason}")]
    Unsupported {
        /// The backend of the handle that refused it.
        backend: Backend,
        /// Why.
        reason: String,
    },
    /// Any other failed nvJPEG call.
    #[error("{call} failed: {status} ({code})")]
    Nvjpeg {
        /// The nvJPEG function.
        call: &'static str,
        /// The status name, e.g. `NVJPEG_STATUS_EXECUTION_FAILED`.
        status: &'static str,
        /// The status code.
        code: i32,
    },
    /// Decoding needs a CUDA device.
    #[error("nvJPEG decodes on a CUDA device, not on {0}")]
    NotCuda(String),
    /// NVDEC decoding needs a CUDA device.
    #[error("NVDEC decodes on a CUDA device, not on {0}")]
    NvdecNotCuda(String),
    /// A video stream is damaged: NVDEC reported a decode error for a picture (`cuvidGetDecodeStatus`), or the
    /// parser refused or dropped the access unit. The decoder stays usable; see `nvdec::Decoder` for what is
    /// skipped until the next IDR.
    #[error("corrupt {codec} stream: {reason}")]
    CorruptStream {
        /// The codec (`"H.264"`, `"HEVC"`).
        codec: &'static str,
        /// What was wrong (the picture, the status or the call).
        reason: String,
    },
    /// A valid video stream that swm's NVDEC path does not decode (not 8-bit 4:2:0, larger or smaller than the
    /// engine's limits, odd output size).
    #[error("unsupported {codec} stream: {reason}")]
    StreamUnsupported {
        /// The codec.
        codec: &'static str,
        /// Why.
        reason: String,
    },
    /// The GPU's NVDEC engines do not decode this codec at all (`cuvidGetDecoderCaps` says unsupported).
    #[error("NVDEC on this GPU does not decode {codec}: {reason}")]
    CodecUnavailable {
        /// The codec.
        codec: &'static str,
        /// The capability that was asked for.
        reason: String,
    },
    /// Any other failed NVDECODE call (`cuvid*`), with its CUDA driver status.
    #[error("{call} failed: {status} ({code})")]
    Nvdec {
        /// The NVDECODE function.
        call: &'static str,
        /// The `CUresult` name, e.g. `CUDA_ERROR_INVALID_VALUE`.
        status: &'static str,
        /// The `CUresult` code.
        code: i32,
    },
    /// A parser callback of swm panicked; the panic was caught at the FFI boundary (it never unwinds into
    /// libnvcuvid) and the access unit failed. A bug of swm.
    #[error("the NVDEC {callback} panicked: {message}")]
    CallbackPanicked {
        /// The callback (`"sequence callback"`, `"decode callback"`, `"display callback"`).
        callback: &'static str,
        /// The panic message.
        message: String,
    },
    /// A CUDA driver call (binding the context, allocating) failed.
    #[error("CUDA driver: {0}")]
    Driver(DriverFailure),
    /// A Candle op failed (allocation, shape). Type-erased (a `candle_core::Error` inside), as
    /// [`crate::Error::Candle`].
    #[error("candle: {0}")]
    Candle(Box<dyn std::error::Error + Send + Sync>),
}

impl MediaError {
    /// `Ok(())` for `NVJPEG_STATUS_SUCCESS`, else the typed error of `status` returned by `call`:
    /// `BAD_JPEG` → [`MediaError::NotJpeg`], `INCOMPLETE_BITSTREAM` → [`MediaError::Truncated`], anything else →
    /// [`MediaError::Nvjpeg`] (callers that know the backend map `JPEG_NOT_SUPPORTED` to
    /// [`MediaError::Unsupported`] themselves).
    pub fn check(call: &'static str, status: nvjpegStatus_t) -> Result<(), Self> {
        match status {
            nvjpegStatus_t::NVJPEG_STATUS_SUCCESS => Ok(()),
            nvjpegStatus_t::NVJPEG_STATUS_BAD_JPEG => {
                Err(Self::NotJpeg { reason: format!("{call} returned NVJPEG_STATUS_BAD_JPEG") })
            }
            nvjpegStatus_t::NVJPEG_STATUS_INCOMPLETE_BITSTREAM => Err(Self::Truncated { call }),
            other => Err(Self::Nvjpeg { call, status: other.name(), code: other.0 }),
        }
    }

    /// `Ok(())` for `CUDA_SUCCESS`, else [`MediaError::Nvdec`] naming `call` and the status.
    pub fn check_cuvid(call: &'static str, status: CUresult) -> Result<(), Self> {
        if status == CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(Self::Nvdec { call, status: status.name(), code: status.0 })
        }
    }

    /// Whether this is a defect of the input (an image that is not a JPEG, truncated or unsupported; a corrupt
    /// or unsupported video stream) rather than of the library, the device or swm: the next image, or the video
    /// stream from its next IDR, may decode fine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::NotJpeg { .. }
                | Self::Truncated { .. }
                | Self::Unsupported { .. }
                | Self::CorruptStream { .. }
                | Self::StreamUnsupported { .. }
        )
    }
}

impl From<candle_core::Error> for MediaError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

impl From<cudarc::driver::DriverError> for MediaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Self::Driver(DriverFailure { code: e.0, message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_typed_errors() {
        assert!(MediaError::check("nvjpegDecode", nvjpegStatus_t::NVJPEG_STATUS_SUCCESS).is_ok());
        let bad = MediaError::check("nvjpegGetImageInfo", nvjpegStatus_t(3)).unwrap_err();
        assert!(matches!(bad, MediaError::NotJpeg { .. }) && bad.is_bad_input());
        let cut = MediaError::check("nvjpegDecode", nvjpegStatus_t(10)).unwrap_err();
        assert!(matches!(cut, MediaError::Truncated { call: "nvjpegDecode" }) && cut.is_bad_input());
        let other = MediaError::check("nvjpegCreateEx", nvjpegStatus_t::NVJPEG_STATUS_ARCH_MISMATCH).unwrap_err();
        assert!(matches!(other, MediaError::Nvjpeg { code: 7, .. }) && !other.is_bad_input());
    }

    #[test]
    fn display_names_the_call_and_the_status() {
        let text = |r: Result<(), MediaError>| r.unwrap_err().to_string();
        assert_eq!(
            text(MediaError::check("nvjpegGetImageInfo", nvjpegStatus_t(3))),
            "not a JPEG: nvjpegGetImageInfo returned NVJPEG_STATUS_BAD_JPEG"
        );
        assert_eq!(
            text(MediaError::check("nvjpegDecode", nvjpegStatus_t(10))),
            "truncated JPEG: nvjpegDecode returned NVJPEG_STATUS_INCOMPLETE_BITSTREAM"
        );
        assert_eq!(
            text(MediaError::check("nvjpegDecodeBatched", nvjpegStatus_t(6))),
            "nvjpegDecodeBatched failed: NVJPEG_STATUS_EXECUTION_FAILED (6)"
        );
        assert_eq!(
            text(MediaError::check("nvjpegDecode", nvjpegStatus_t(99))),
            "nvjpegDecode failed: NVJPEG_STATUS_<unknown> (99)"
        );
        let missing = MediaError::LibraryMissing {
            name: "libnvjpeg.so.13 or libnvjpeg.so".into(),
            reason: "libnvjpeg.so.13: cannot open shared object file: No such file or directory".into(),
        };
        assert_eq!(
            missing.to_string(),
            "libnvjpeg.so.13 or libnvjpeg.so could not be loaded: libnvjpeg.so.13: cannot open shared object file: \
             No such file or directory"
        );
        let unsupported = MediaError::Unsupported { backend: Backend::Hardware, reason: "a progressive JPEG".into() };
        assert_eq!(unsupported.to_string(), "unsupported by the nvJPEG hardware backend: a progressive JPEG");
        // Through the crate error, unchanged.
        let top: crate::Error = unsupported.into();
        assert_eq!(top.to_string(), "unsupported by the nvJPEG hardware backend: a progressive JPEG");
    }

    #[test]
    fn nvdec_errors_name_the_call_and_say_whether_the_input_is_at_fault() {
        assert!(MediaError::check_cuvid("cuvidCreateDecoder", CUresult(0)).is_ok());
        let err = MediaError::check_cuvid("cuvidCreateDecoder", CUresult(2)).unwrap_err();
        assert_eq!(err.to_string(), "cuvidCreateDecoder failed: CUDA_ERROR_OUT_OF_MEMORY (2)");
        assert!(!err.is_bad_input());
        let corrupt = MediaError::CorruptStream {
            codec: "H.264",
            reason: "picture 11: cuvidGetDecodeStatus reports cuvidDecodeStatus_Error_Concealed".into(),
        };
        assert!(corrupt.is_bad_input());
        assert_eq!(
            corrupt.to_string(),
            "corrupt H.264 stream: picture 11: cuvidGetDecodeStatus reports cuvidDecodeStatus_Error_Concealed"
        );
        assert!(MediaError::StreamUnsupported { codec: "HEVC", reason: "10-bit".into() }.is_bad_input());
        assert!(!MediaError::CodecUnavailable { codec: "HEVC", reason: String::new() }.is_bad_input());
        assert!(!MediaError::CallbackPanicked { callback: "display callback", message: String::new() }.is_bad_input());
    }
}
