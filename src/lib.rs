//! # swm
//!
//! A CUDA-first deployment runtime for checkpoints of the Python library `stable-worldmodel`: load a checkpoint,
//! preprocess observations with fused CUDA kernels, encode them, roll the world model out over candidate action
//! sequences, score and plan — all on one CUDA stream, with the selected action as the only copy back to the host.
//!
//! Linux + NVIDIA CUDA only; there is no CPU inference path.

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!("swm supports Linux + NVIDIA CUDA only");

pub mod artifact;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub(crate) mod files;
pub mod graph;
#[cfg(feature = "hub")]
pub mod hub;
pub mod media;
pub mod models;
pub mod ops;
pub mod planning;
pub mod session;
#[cfg(feature = "tools")]
pub mod tools;
pub mod training;

/// PTX of the custom kernels in `kernels/`, compiled by `build.rs`.
pub mod kernels {
    include!(concat!(env!("OUT_DIR"), "/kernels_ptx.rs"));
}

pub use error::{Error, Result};
