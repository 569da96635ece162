//! Observations as they arrive from controllers, checked against the model's inputs before anything else sees
//! them: a malformed message is rejected with the reason (and counted), never passed on.

use std::time::Instant;

use swm_ipc::{Encoding, Modality, ObservationHeader};

/// One input of the model, from the artifact's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// An image stream of `height × width` RGB frames.
    Frame {
        /// Schema name (`pixels`).
        name: String,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
    /// A state vector of `dim` floats.
    State {
        /// Schema name (`state`, ...).
        name: String,
        /// Elements.
        dim: usize,
    },
}

impl InputSpec {
    /// The schema name.
    pub fn name(&self) -> &str {
        match self {
            Self::Frame { name, .. } | Self::State { name, .. } => name,
        }
    }
}

/// Why an observation message was rejected. Each names what was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The header's name is not valid UTF-8 or not NUL-terminated within its field.
    #[error("observation name is not valid UTF-8")]
    BadName,
    /// No input of the model has this name.
    #[error("unknown observation `{0}` (the model takes {1})")]
    UnknownInput(String, String),
    /// The modality value is unknown, or does not match the input's kind.
    #[error("observation `{name}`: modality {raw} is not what this input takes ({expected})")]
    Modality {
        /// The input.
        name: String,
        /// The raw modality.
        raw: u32,
        /// What the input takes.
        expected: &'static str,
    },
    /// The encoding value is unknown or not usable for this input.
    #[error("observation `{name}`: encoding {raw} is not supported for this input")]
    Encoding {
        /// The input.
        name: String,
        /// The raw encoding.
        raw: u32,
    },
    /// A frame's size is not one the input takes: not the model's (`ipc.frame_sizes = "model"`), or a side beyond
    /// [`MAX_FRAME_SIDE`].
    #[error("observation `{name}`: {width}x{height} frame, the model takes {expected_width}x{expected_height} (other sizes are resized when ipc.frame_sizes = \"any\", up to 16384 a side)")]
    FrameSize {
        /// The input.
        name: String,
        /// Columns received.
        width: u32,
        /// Rows received.
        height: u32,
        /// Columns expected.
        expected_width: usize,
        /// Rows expected.
        expected_height: usize,
    },
    /// A state vector has the wrong number of elements.
    #[error("observation `{name}`: {got} state values, the model takes {expected}")]
    StateSize {
        /// The input.
        name: String,
        /// Elements received.
        got: u32,
        /// Elements expected.
        expected: usize,
    },
    /// The payload length does not match the header (pitch × height, or elements × 4), or the header's geometry
    /// is impossible (a pitch shorter than a row).
    #[error("observation `{name}`: payload of {got} bytes, the header describes {expected:?}")]
    Length {
        /// The input.
        name: String,
        /// Bytes received.
        got: usize,
        /// Bytes the header describes (`None`: an impossible geometry).
        expected: Option<usize>,
    },
    /// The payload is larger than the configured maximum.
    #[error("observation `{name}`: payload of {got} bytes exceeds ipc.max_observation_bytes = {max}")]
    TooLarge {
        /// The input.
        name: String,
        /// Bytes received.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A video payload holds no Annex-B start code.
    #[error("observation `{name}`: the payload is not an Annex-B access unit (no 00 00 01 start code)")]
    NotAnnexB {
        /// The input.
        name: String,
    },
    /// A JPEG payload does not start with the JPEG start-of-image marker.
    #[error("observation `{name}`: the payload is not a JPEG file (no FF D8 start-of-image marker)")]
    NotJpeg {
        /// The input.
        name: String,
    },
    /// A state vector holds NaN or Inf.
    #[error("observation `{name}`: state element {index} is not finite")]
    NonFinite {
        /// The input.
        name: String,
        /// The first such element.
        index: usize,
    },
}

/// Where a checked message's data is: still on the host, or on its way to the GPU.
#[derive(Debug)]
pub enum Payload {
    /// The bytes as sent (a frame's rows with their pitch, or little-endian f32 state values).
    Host(Vec<u8>),
    /// Copied by the ingest thread on its own stream; the inference stream waits for it on the GPU.
    Device(swm::device::Upload),
    /// A frame decoded from a video access unit by the ingest thread (NVDEC): tightly packed NV12, `(3h/2, w)` U8
    /// on the device, written on the engine's stream.
    Decoded {
        /// The NV12 bytes.
        nv12: candle_core::Tensor,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// The stream's colour description (its VUI; BT.601 limited range when it says nothing).
        color: swm::ops::YuvColor,
    },
}

/// A checked observation message: header, payload and the time it was taken from shared memory.
#[derive(Debug)]
pub struct Message {
    /// The header as sent.
    pub header: ObservationHeader,
    /// Index of the input in the model's [`InputSpec`] list.
    pub input: usize,
    /// The payload.
    pub payload: Payload,
    /// When the daemon received it.
    pub received: Instant,
}

impl Message {
    /// The state values of a state message kept on the host (empty for frames and device payloads).
    pub fn state(&self) -> Vec<f32> {
        match (Modality::from_raw(self.header.modality), &self.payload) {
            (Some(Modality::State), Payload::Host(bytes)) => {
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Which frame sizes an image input takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrameSizes {
    /// Any size: frames are resized on the GPU as upstream's `Resize(size)` does (shorter side to the model's
    /// size, aspect ratio kept).
    #[default]
    Any,
    /// Only the model's input size (a camera misconfigured to another size is rejected and counted).
    Model,
}

/// Largest frame side accepted (16K).
pub const MAX_FRAME_SIDE: u32 = swm::ops::resize::MAX_SIDE as u32;

/// Checks a header and its payload against the model's inputs; returns the input's index.
pub fn check(
    header: &ObservationHeader,
    payload: &[u8],
    inputs: &[InputSpec],
    max_bytes: usize,
    sizes: FrameSizes,
) -> Result<usize, Rejection> {
    let name = header.name().ok_or(Rejection::BadName)?;
    let Some(input) = inputs.iter().position(|i| i.name() == name) else {
        let known: Vec<&str> = inputs.iter().map(InputSpec::name).collect();
        return Err(Rejection::UnknownInput(name.to_string(), known.join(", ")));
    };
    let name = name.to_string();
    if payload.len() > max_bytes {
        return Err(Rejection::TooLarge { name, got: payload.len(), max: max_bytes });
    }
    let modality = Modality::from_raw(header.modality);
    let encoding = Encoding::from_raw(header.encoding);
    match &inputs[input] {
        InputSpec::Frame { height, width, .. } => {
            if modality != Some(Modality::Frame) {
                return Err(Rejection::Modality { name, raw: header.modality, expected: "frames" });
            }
            let Some(encoding) = encoding.filter(|e| e.is_frame()) else {
                return Err(Rejection::Encoding { name, raw: header.encoding });
            };
            // A JPEG's size is optional in its header (0: unknown, checked when decoded).
            let unknown = encoding.is_compressed() && header.width == 0 && header.height == 0;
            let wrong = match sizes {
                FrameSizes::Model => header.width as usize != *width || header.height as usize != *height,
                FrameSizes::Any => header.width > MAX_FRAME_SIDE || header.height > MAX_FRAME_SIDE,
            };
            if wrong && !unknown {
                return Err(Rejection::FrameSize {
                    name,
                    width: header.width,
                    height: header.height,
                    expected_width: *width,
                    expected_height: *height,
                });
            }
        }
        InputSpec::State { dim, .. } => {
            if modality != Some(Modality::State) {
                return Err(Rejection::Modality { name, raw: header.modality, expected: "a state vector" });
            }
            if encoding != Some(Encoding::F32) {
                return Err(Rejection::Encoding { name, raw: header.encoding });
            }
            if header.elements as usize != *dim {
                return Err(Rejection::StateSize { name, got: header.elements, expected: *dim });
            }
        }
    }
    if encoding.is_some_and(Encoding::is_video) {
        let start_code = payload.windows(3).take(64).any(|w| w == [0, 0, 1]);
        return if start_code {
            Ok(input)
        } else {
            Err(Rejection::NotAnnexB { name: inputs[input].name().to_string() })
        };
    }
    if encoding == Some(Encoding::Jpeg) {
        return if payload.starts_with(&[0xFF, 0xD8]) {
            Ok(input)
        } else {
            Err(Rejection::NotJpeg { name: inputs[input].name().to_string() })
        };
    }
    let expected = header.expected_payload_len();
    if expected != Some(payload.len()) {
        return Err(Rejection::Length { name, got: payload.len(), expected });
    }
    if modality == Some(Modality::State) {
        let bad = payload.chunks_exact(4).position(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
        if let Some(index) = bad {
            return Err(Rejection::NonFinite { name, index });
        }
    }
    Ok(input)
}
