//! The header of an observation (or goal) sample: what the payload bytes are.

use std::fmt;

use iceoryx2::prelude::ZeroCopySend;

use crate::text;
use crate::FieldError;

/// What an observation carries.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    /// A packed image: `height` rows of `pitch` bytes, each row starting with `width` pixels.
    Frame = 0,
    /// A state vector of `elements` values.
    State = 1,
}

impl Modality {
    /// Every modality, in raw-value order.
    pub const ALL: [Self; 2] = [Self::Frame, Self::State];

    /// Decodes a raw `ObservationHeader::modality`; `None` for a value this version does not know.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }
}

/// How the payload bytes are encoded. Values 12 and up are reserved.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Frame: 3 bytes per pixel, R G B.
    Rgb8 = 0,
    /// Frame: 3 bytes per pixel, B G R (OpenCV's order).
    Bgr8 = 1,
    /// Frame: 4 bytes per pixel, R G B A (alpha ignored).
    Rgba8 = 2,
    /// State: native-endian (little-endian on every supported host) IEEE-754 `f32` values.
    F32 = 3,
    /// Frame: 4 bytes per pixel, B G R A (alpha ignored).
    Bgra8 = 4,
    /// Frame: NV12 (8-bit 4:2:0: `height` rows of luma, then `height / 2` rows of interleaved U, V, all `pitch`
    /// bytes apart), BT.601 limited range (SD video, most webcams). Even width and height.
    Nv12 = 5,
    /// Frame: NV12, BT.709 limited range (HD video).
    Nv12Bt709 = 6,
    /// Frame: NV12, BT.601 full range.
    Nv12Full = 7,
    /// Frame: NV12, BT.709 full range.
    Nv12Bt709Full = 8,
    /// Frame: a JPEG file (baseline or progressive, colour or greyscale). `width`/`height` state the image size
    /// when known (0: not checked), `pitch` is 0; the payload is the file, of any length.
    Jpeg = 9,
    /// Frame: one H.264 access unit (Annex-B, start codes included) of the input's stream, sent in decode order
    /// (the daemon decodes every access unit; only decoded frames become observations). `width`/`height` as for
    /// `Jpeg`.
    H264 = 10,
    /// Frame: one HEVC access unit, as `H264`.
    Hevc = 11,
}

impl Encoding {
    /// Every encoding, in raw-value order.
    pub const ALL: [Self; 12] = [
        Self::Rgb8,
        Self::Bgr8,
        Self::Rgba8,
        Self::F32,
        Self::Bgra8,
        Self::Nv12,
        Self::Nv12Bt709,
        Self::Nv12Full,
        Self::Nv12Bt709Full,
        Self::Jpeg,
        Self::H264,
        Self::Hevc,
    ];

    /// Decodes a raw `ObservationHeader::encoding`; `None` for a value this version does not know.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }

    /// Bytes per pixel of a packed frame encoding (NV12: 1, its luma plane); `None` for an encoding frames do not
    /// use or a compressed one.
    pub fn bytes_per_pixel(self) -> Option<usize> {
        match self {
            Self::Rgb8 | Self::Bgr8 => Some(3),
            Self::Rgba8 | Self::Bgra8 => Some(4),
            Self::Nv12 | Self::Nv12Bt709 | Self::Nv12Full | Self::Nv12Bt709Full => Some(1),
            Self::F32 | Self::Jpeg | Self::H264 | Self::Hevc => None,
        }
    }

    /// Whether this is one of the NV12 encodings.
    pub fn is_nv12(self) -> bool {
        matches!(self, Self::Nv12 | Self::Nv12Bt709 | Self::Nv12Full | Self::Nv12Bt709Full)
    }

    /// Whether frames of this encoding are compressed (their payload length is not derived from the header).
    pub fn is_compressed(self) -> bool {
        matches!(self, Self::Jpeg | Self::H264 | Self::Hevc)
    }

    /// Whether this is a video access unit (decoded in stream order, every one of them).
    pub fn is_video(self) -> bool {
        matches!(self, Self::H264 | Self::Hevc)
    }

    /// Whether frames may use this encoding.
    pub fn is_frame(self) -> bool {
        self != Self::F32
    }
}

/// The user header of a sample on the observation (and goal) service; the sample's payload is the raw bytes it
/// describes (`[u8]`, [`ObservationHeader::expected_payload_len`] of them).
///
/// One sample carries one named input of the model's schema (a camera frame or a state vector); a controller whose
/// model has several inputs publishes one sample per input with the same `sequence`.
///
/// Layout (C `struct`, 80 bytes, 8-byte aligned, no padding): `sequence` 0, `capture_ns` 8, `modality` 16,
/// `encoding` 20, `width` 24, `height` 28, `pitch` 32, `elements` 36, `name` 40, `episode` 72.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, ZeroCopySend)]
#[type_name("swm::ObservationHeader")]
pub struct ObservationHeader {
    /// The controller's observation number, increasing by one per observation (0 is reserved for "none").
    pub sequence: u64,
    /// CLOCK_MONOTONIC time of capture, in nanoseconds (the daemon measures end-to-end latency from it).
    pub capture_ns: u64,
    /// A [`Modality`] raw value.
    pub modality: u32,
    /// An [`Encoding`] raw value.
    pub encoding: u32,
    /// Frames: pixels per row. Unused (0) for state vectors.
    pub width: u32,
    /// Frames: rows. Unused (0) for state vectors.
    pub height: u32,
    /// Frames: bytes from one row to the next, at least `width` × bytes per pixel. Unused (0) for state vectors.
    pub pitch: u32,
    /// State vectors: number of `f32` values. Unused (0) for frames.
    pub elements: u32,
    /// The observation's name in the artifact's schema (e.g. `pixels`), NUL-padded UTF-8 of at most
    /// [`ObservationHeader::MAX_NAME_LEN`] bytes; see [`ObservationHeader::set_name`] and
    /// [`ObservationHeader::name`].
    pub name: [u8; 32],
    /// The controller's episode number; the daemon treats a change as the start of a new episode.
    pub episode: u64,
}

/// A goal is an observation: the goal service carries the same header and payload.
pub type GoalHeader = ObservationHeader;

impl ObservationHeader {
    /// Longest name in bytes (the array keeps one NUL).
    pub const MAX_NAME_LEN: usize = 31;

    /// An all-zero header (sequence 0, an unnamed RGB8 frame of size 0).
    pub const EMPTY: Self = Self {
        sequence: 0,
        capture_ns: 0,
        modality: 0,
        encoding: 0,
        width: 0,
        height: 0,
        pitch: 0,
        elements: 0,
        name: [0; 32],
        episode: 0,
    };

    /// The header of a packed frame (`name` and `episode` left empty).
    pub fn frame(sequence: u64, capture_ns: u64, encoding: Encoding, width: u32, height: u32, pitch: u32) -> Self {
        Self {
            sequence,
            capture_ns,
            modality: Modality::Frame as u32,
            encoding: encoding as u32,
            width,
            height,
            pitch,
            ..Self::EMPTY
        }
    }

    /// The header of a state vector of `elements` `f32` values (`name` and `episode` left empty).
    pub fn state(sequence: u64, capture_ns: u64, elements: u32) -> Self {
        Self {
            sequence,
            capture_ns,
            modality: Modality::State as u32,
            encoding: Encoding::F32 as u32,
            elements,
            ..Self::EMPTY
        }
    }

    /// The decoded modality; `None` for an unknown value.
    pub fn modality(&self) -> Option<Modality> {
        Modality::from_raw(self.modality)
    }

    /// The decoded encoding; `None` for an unknown value.
    pub fn encoding(&self) -> Option<Encoding> {
        Encoding::from_raw(self.encoding)
    }

    /// The name, `None` when the field has no NUL or is not UTF-8 (a malformed header).
    pub fn name(&self) -> Option<&str> {
        text::read(&self.name)
    }

    /// Sets the name; refuses (leaving the header unchanged) a name longer than [`Self::MAX_NAME_LEN`] bytes or
    /// containing a NUL.
    pub fn set_name(&mut self, name: &str) -> Result<(), FieldError> {
        text::write(&mut self.name, name)
    }

    /// This header with the name set (see [`Self::set_name`]).
    pub fn with_name(mut self, name: &str) -> Result<Self, FieldError> {
        self.set_name(name)?;
        Ok(self)
    }

    /// The payload length in bytes this header describes: `pitch × height` for a frame (with
    /// `pitch ≥ width × bytes per pixel`), `elements × 4` for a state vector. `None` when the header describes no
    /// valid payload: unknown modality or encoding, an encoding the modality does not take (frames: RGB8, BGR8,
    /// RGBA8; state: F32), a zero dimension, a pitch shorter than a row, or a length beyond `isize::MAX` (the
    /// largest slice).
    pub fn expected_payload_len(&self) -> Option<usize> {
        let len = match (self.modality()?, self.encoding()?) {
            (Modality::Frame, encoding) => {
                let bytes_per_pixel = encoding.bytes_per_pixel()? as u64;
                if self.width == 0 || self.height == 0 {
                    return None;
                }
                let row = u64::from(self.width).checked_mul(bytes_per_pixel)?;
                if u64::from(self.pitch) < row {
                    return None;
                }
                let plane = u64::from(self.pitch).checked_mul(u64::from(self.height))?;
                if encoding.is_nv12() {
                    if !self.width.is_multiple_of(2) || !self.height.is_multiple_of(2) {
                        return None;
                    }
                    plane.checked_add(plane / 2)?
                } else {
                    plane
                }
            }
            (Modality::State, Encoding::F32) => {
                if self.elements == 0 {
                    return None;
                }
                u64::from(self.elements).checked_mul(4)?
            }
            (Modality::State, _) => return None,
        };
        if len > isize::MAX as u64 {
            return None;
        }
        usize::try_from(len).ok()
    }
}

impl Default for ObservationHeader {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Debug for ObservationHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservationHeader")
            .field("sequence", &self.sequence)
            .field("capture_ns", &self.capture_ns)
            .field("modality", &self.modality)
            .field("encoding", &self.encoding)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("pitch", &self.pitch)
            .field("elements", &self.elements)
            .field("name", &self.name())
            .field("episode", &self.episode)
            .finish()
    }
}

const _: () = assert!(std::mem::size_of::<ObservationHeader>() == 80 && std::mem::align_of::<ObservationHeader>() == 8);

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn layout_is_fixed_for_c_readers() {
        assert_eq!(size_of::<ObservationHeader>(), 80);
        assert_eq!(align_of::<ObservationHeader>(), 8);
        assert_eq!(offset_of!(ObservationHeader, sequence), 0);
        assert_eq!(offset_of!(ObservationHeader, capture_ns), 8);
        assert_eq!(offset_of!(ObservationHeader, modality), 16);
        assert_eq!(offset_of!(ObservationHeader, encoding), 20);
        assert_eq!(offset_of!(ObservationHeader, width), 24);
        assert_eq!(offset_of!(ObservationHeader, height), 28);
        assert_eq!(offset_of!(ObservationHeader, pitch), 32);
        assert_eq!(offset_of!(ObservationHeader, elements), 36);
        assert_eq!(offset_of!(ObservationHeader, name), 40);
        assert_eq!(offset_of!(ObservationHeader, episode), 72);
        // No implicit padding: the fields add up to the size.
        assert_eq!(8 + 8 + 6 * 4 + 32 + 8, size_of::<ObservationHeader>());
        assert_eq!(unsafe { <ObservationHeader as ZeroCopySend>::type_name() }, "swm::ObservationHeader");
        assert_eq!(unsafe { <GoalHeader as ZeroCopySend>::type_name() }, "swm::ObservationHeader");
    }

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for (raw, m) in Modality::ALL.into_iter().enumerate() {
            assert_eq!(m as u32, raw as u32);
            assert_eq!(Modality::from_raw(raw as u32), Some(m));
        }
        assert_eq!(Modality::from_raw(2), None);
        assert_eq!(Modality::from_raw(u32::MAX), None);
        for (raw, e) in Encoding::ALL.into_iter().enumerate() {
            assert_eq!(e as u32, raw as u32);
            assert_eq!(Encoding::from_raw(raw as u32), Some(e));
        }
        for reserved in [12, 13, 255, u32::MAX] {
            assert_eq!(Encoding::from_raw(reserved), None);
        }
    }

    #[test]
    fn default_is_empty_and_named_headers_round_trip() {
        assert_eq!(ObservationHeader::default(), ObservationHeader::EMPTY);
        assert_eq!(ObservationHeader::EMPTY.name(), Some(""));
        let mut h = ObservationHeader::frame(7, 11, Encoding::Bgr8, 4, 2, 12).with_name("pixels").unwrap();
        assert_eq!(h.name(), Some("pixels"));
        assert_eq!(h.modality(), Some(Modality::Frame));
        assert_eq!(h.encoding(), Some(Encoding::Bgr8));
        let longest = "n".repeat(ObservationHeader::MAX_NAME_LEN);
        h.set_name(&longest).unwrap();
        assert_eq!(h.name(), Some(longest.as_str()));
        let too_long = "n".repeat(ObservationHeader::MAX_NAME_LEN + 1);
        assert_eq!(h.set_name(&too_long), Err(FieldError::TooLong { len: 32, capacity: 31 }));
        assert_eq!(h.name(), Some(longest.as_str()), "a refused name leaves the header unchanged");
        assert_eq!(h.set_name("a\0b"), Err(FieldError::InteriorNul));
        h.set_name("état").unwrap(); // UTF-8
        assert_eq!(h.name(), Some("état"));
        h.name = [b'x'; 32]; // a C writer that forgot the NUL
        assert_eq!(h.name(), None);
        h.name = [0; 32];
        h.name[..2].copy_from_slice(&[0xc3, 0x28]); // invalid UTF-8
        assert_eq!(h.name(), None);
        assert!(format!("{h:?}").contains("name: None"));
    }

    #[test]
    fn expected_payload_len_covers_frames_states_and_malformed_headers() {
        let frame = |encoding, width, height, pitch| ObservationHeader::frame(1, 0, encoding, width, height, pitch);
        assert_eq!(frame(Encoding::Rgb8, 64, 48, 192).expected_payload_len(), Some(192 * 48));
        assert_eq!(frame(Encoding::Bgr8, 64, 48, 256).expected_payload_len(), Some(256 * 48), "padded rows");
        assert_eq!(frame(Encoding::Rgba8, 64, 48, 256).expected_payload_len(), Some(256 * 48));
        assert_eq!(frame(Encoding::Rgb8, 64, 48, 191).expected_payload_len(), None, "pitch < width * 3");
        assert_eq!(frame(Encoding::Rgba8, 64, 48, 192).expected_payload_len(), None, "pitch < width * 4");
        assert_eq!(frame(Encoding::F32, 64, 48, 256).expected_payload_len(), None, "frames are 8-bit");
        assert_eq!(frame(Encoding::Bgra8, 64, 48, 256).expected_payload_len(), Some(256 * 48));
        assert_eq!(
            frame(Encoding::Nv12, 64, 48, 64).expected_payload_len(),
            Some(64 * 72),
            "luma + half-height chroma"
        );
        assert_eq!(frame(Encoding::Nv12Bt709Full, 64, 48, 128).expected_payload_len(), Some(128 * 72), "padded");
        assert_eq!(frame(Encoding::Nv12, 63, 48, 64).expected_payload_len(), None, "odd width");
        assert_eq!(frame(Encoding::Nv12, 64, 47, 64).expected_payload_len(), None, "odd height");
        assert_eq!(frame(Encoding::Jpeg, 64, 48, 0).expected_payload_len(), None, "compressed: any length");
        assert!(Encoding::Jpeg.is_compressed() && Encoding::Jpeg.is_frame() && !Encoding::F32.is_frame());
        assert!(Encoding::H264.is_video() && Encoding::Hevc.is_compressed() && !Encoding::Jpeg.is_video());
        assert_eq!(frame(Encoding::H264, 0, 0, 0).expected_payload_len(), None, "an access unit: any length");
        assert!(Encoding::Nv12Full.is_nv12() && !Encoding::Bgra8.is_nv12());
        assert_eq!(frame(Encoding::Rgb8, 0, 48, 192).expected_payload_len(), None);
        assert_eq!(frame(Encoding::Rgb8, 64, 0, 192).expected_payload_len(), None);
        // Overflow: a row of u32::MAX RGBA pixels does not fit any pitch; u32::MAX² bytes exceed isize::MAX.
        assert_eq!(frame(Encoding::Rgba8, u32::MAX, 1, u32::MAX).expected_payload_len(), None);
        assert_eq!(frame(Encoding::Rgb8, 1, u32::MAX, u32::MAX).expected_payload_len(), None);
        assert_eq!(
            frame(Encoding::Rgb8, 1, 1 << 16, u32::MAX).expected_payload_len(),
            Some(u32::MAX as usize * (1 << 16)),
            "large but addressable"
        );
        assert_eq!(frame(Encoding::Rgb8, u32::MAX / 3, 1, u32::MAX).expected_payload_len(), Some(u32::MAX as usize));

        assert_eq!(ObservationHeader::state(1, 0, 10).expected_payload_len(), Some(40));
        assert_eq!(ObservationHeader::state(1, 0, u32::MAX).expected_payload_len(), Some(u32::MAX as usize * 4));
        assert_eq!(ObservationHeader::state(1, 0, 0).expected_payload_len(), None);
        let state_u8 = ObservationHeader { encoding: Encoding::Rgb8 as u32, ..ObservationHeader::state(1, 0, 10) };
        assert_eq!(state_u8.expected_payload_len(), None, "state vectors are F32");
        let unknown_modality = ObservationHeader { modality: 2, ..ObservationHeader::state(1, 0, 10) };
        assert_eq!(unknown_modality.expected_payload_len(), None);
        let unknown_encoding = ObservationHeader { encoding: 4, ..frame(Encoding::Rgb8, 2, 2, 6) };
        assert_eq!(unknown_encoding.expected_payload_len(), None);
    }
}
