//! The media layer: camera frames in their compressed forms, decoded on the GPU into Candle tensors on the
//! device's stream, so that a frame reaches preprocessing without a trip through host RGB buffers.
//!
//! Each codec follows cudarc's three levels: raw declarations of the NVIDIA library, loaded at run time with
//! `libloading` (`sys`: C names, `#[repr(C)]` types with host-checked layouts, no policy); owned handles that
//! destroy themselves on drop; and a small Candle-facing API. Nothing is linked at build time: a machine without
//! the library builds, runs the host-only commands and reports a typed [`MediaError`] naming the missing library
//! or symbol when decoding is asked for.
//!
//! What exists now:
//! - [`nvjpeg`]: JPEG decoding with nvJPEG (CUDA 13, `libnvjpeg.so.13`) — image info on the host,
//!   [`nvjpeg::Decoder::decode_rgb`] into a U8 `(H, W, 3)` interleaved RGB CUDA tensor on Candle's stream, with the
//!   backend chosen at creation (the NVJPG hardware engines through the batched API, or the hybrid CPU/GPU
//!   decoders through the single-image API).
//! - [`nvdec`]: H.264/HEVC Annex-B streams through NVDEC (`libnvcuvid.so.1`, the driver's library, also loaded at
//!   run time) — [`nvdec::caps`] of the engines, and [`nvdec::Decoder::decode`] of one access unit into NV12
//!   frames (U8 `(3H/2, W)` CUDA tensors on Candle's stream), following resolution changes and recovering at the
//!   next IDR after a damaged picture.
//!
//! What comes next (issue 12):
//! - Fused preprocessing: decoded frames (interleaved RGB from nvJPEG, NV12 from NVDEC) converted, resized and
//!   normalised by one kernel of `ops` straight into the model's input layout, replacing the separate
//!   `normalize_rgb_frames` pass.
//!
//! Layering: media uses `ops` and `device` (never the reverse); `session`/`engine` and the daemon's ingest thread
//! use media. Errors are [`MediaError`], carried into [`crate::Error::Media`].

mod dl;
mod error;
pub mod nvdec;
pub mod nvjpeg;

pub use dl::{Functions, Loaded};
pub use error::MediaError;
