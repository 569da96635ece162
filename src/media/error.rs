//! The error of the media layer: what loading a codec library, parsing or decoding an image can fail with.

use crate::ops::DriverFailure;

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

    /// Whether this is a defect of the input image (not a JPEG, truncated, unsupported) rather than of the
    /// library, the device or swm: the next image may decode fine.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::NotJpeg { .. } | Self::Truncated { .. } | Self::Unsupported { .. })
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
}
