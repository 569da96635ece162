//! The clap types of `swm media`.

use clap::Subcommand;

use super::{DeviceArgs, ReportArgs};

/// `swm media <command>`.
#[derive(Subcommand)]
pub enum MediaCommand {
    /// What the GPU's media engines decode: nvJPEG's version and backend, and NVDEC's capabilities (engines,
    /// sizes, output formats) for H.264 and HEVC at 8 and 10 bits.
    Caps {
        /// The capabilities as JSON.
        #[command(flatten)]
        report: ReportArgs,
        /// The GPU.
        #[command(flatten)]
        device: DeviceArgs,
    },
}
