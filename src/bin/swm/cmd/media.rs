//! `swm media caps`: the GPU's media engines, as swm's decoders see them.

use std::process::ExitCode;

use serde::Serialize;
use swm::device;
use swm::media::nvdec::{self, ChromaFormat, Codec};
use swm::media::nvjpeg::{self, Backend, Decoder};

use crate::cli::MediaCommand;
use crate::error::CliError;

/// One NVDEC capability row.
#[derive(Serialize)]
struct CodecCaps {
    codec: String,
    bit_depth: u32,
    supported: bool,
    engines: u32,
    max: [u32; 2],
    min: [u32; 2],
    outputs: Vec<String>,
}

/// The report.
#[derive(Serialize)]
struct Caps {
    device: String,
    nvjpeg_version: Option<String>,
    nvjpeg_backend: Option<String>,
    nvjpeg_error: Option<String>,
    nvdec: Vec<CodecCaps>,
    nvdec_error: Option<String>,
}

/// Runs a media command.
pub fn run(command: MediaCommand) -> Result<ExitCode, CliError> {
    let MediaCommand::Caps { report, device: gpu } = command;
    report.check()?;
    let device = device::cuda(gpu.gpu)?;
    let mut caps = Caps {
        device: device::name(&device).unwrap_or_default(),
        nvjpeg_version: None,
        nvjpeg_backend: None,
        nvjpeg_error: None,
        nvdec: Vec::new(),
        nvdec_error: None,
    };
    match nvjpeg::library().and_then(|lib| lib.version()) {
        Ok((major, minor, patch)) => caps.nvjpeg_version = Some(format!("{major}.{minor}.{patch}")),
        Err(e) => caps.nvjpeg_error = Some(e.to_string()),
    }
    if caps.nvjpeg_error.is_none() {
        match Decoder::new(&device, Backend::Hardware) {
            Ok(d) => caps.nvjpeg_backend = Some(format!("{:?}", d.backend())),
            Err(e) => caps.nvjpeg_error = Some(e.to_string()),
        }
    }
    'codecs: for codec in [Codec::H264, Codec::Hevc] {
        for bit_depth in [8, 10] {
            match nvdec::caps_for(&device, codec, ChromaFormat::Yuv420, bit_depth) {
                Ok(c) => caps.nvdec.push(CodecCaps {
                    codec: format!("{codec} 4:2:0"),
                    bit_depth,
                    supported: c.supported,
                    engines: c.nvdecs,
                    max: [c.max_width, c.max_height],
                    min: [c.min_width, c.min_height],
                    outputs: c.output_formats.iter().map(|f| format!("{f:?}")).collect(),
                }),
                Err(e) => {
                    caps.nvdec_error = Some(e.to_string());
                    break 'codecs;
                }
            }
        }
    }
    outln!("device: {}", caps.device);
    match (&caps.nvjpeg_version, &caps.nvjpeg_backend, &caps.nvjpeg_error) {
        (_, _, Some(e)) => outln!("nvJPEG: unavailable ({e})"),
        (v, b, None) => outln!(
            "nvJPEG {}: a hardware decoder opens on the {} backend",
            v.as_deref().unwrap_or("?"),
            b.as_deref().unwrap_or("?")
        ),
    }
    for c in &caps.nvdec {
        if c.supported {
            outln!(
                "NVDEC {} {}-bit: {} engines, {}x{} .. {}x{}, outputs {}",
                c.codec,
                c.bit_depth,
                c.engines,
                c.min[0],
                c.min[1],
                c.max[0],
                c.max[1],
                c.outputs.join(", ")
            );
        } else {
            outln!("NVDEC {} {}-bit: not supported", c.codec, c.bit_depth);
        }
    }
    if let Some(e) = &caps.nvdec_error {
        outln!("NVDEC: unavailable ({e})");
    }
    report.write(&caps)?;
    Ok(ExitCode::SUCCESS)
}
