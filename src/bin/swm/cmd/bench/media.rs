//! `swm bench media`: camera bytes to the model's input on the GPU, per frame kind. The rows match
//! `tools/swm_tools/bench_media.py` (torchvision's `decode_jpeg(device="cuda")` + v2 transforms, and Pillow), which
//! times the same inputs: the committed test JPEGs and the same synthetic 1080p frames.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use swm::device;
use swm::media::nvdec::{self, Codec};
use swm::media::nvjpeg::{Backend, Decoder};
use swm::ops::{frame_into, FrameLayout, ImageNormalization, PixelFormat, ResizeTable, YuvColor, YuvMatrix, YuvRange};
use swm::tools::bench::{self, BenchRow};

use super::keep;
use crate::cli::BenchMediaArgs;
use crate::error::CliError;

/// The model input size (LeWM's ViT: the shorter side to 224).
const SIZE: usize = 224;
const WARMUP: usize = 10;

fn media_dir(args: &BenchMediaArgs) -> PathBuf {
    args.media.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_default().join("tests/data/media")
    })
}

fn read(dir: &std::path::Path, name: &str) -> Result<Vec<u8>, CliError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| CliError::Usage(format!("{}: {e} (pass --media DIR)", path.display())))
}

/// The synthetic 1080p RGB frame of bench_media.py: R = 255x // 1919, G = 255y // 1079, B = (x ^ y) & 255.
fn rgb1080() -> Vec<u8> {
    let (w, h) = (1920usize, 1080usize);
    let mut v = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            v.extend([(255 * x / 1919) as u8, (255 * y / 1079) as u8, ((x ^ y) & 255) as u8]);
        }
    }
    v
}

/// The synthetic 1080p NV12 frame of bench_media.py (pitch 1920): Y = 16 + 219(x + y) // 2998; chroma row j,
/// pair i: U = 16 + 224i // 959, V = 16 + 224j // 539.
fn nv12_1080() -> Vec<u8> {
    let (w, h) = (1920usize, 1080usize);
    let mut v = Vec::with_capacity(w * h * 3 / 2);
    for y in 0..h {
        v.extend((0..w).map(|x| (16 + 219 * (x + y) / 2998) as u8));
    }
    for j in 0..h / 2 {
        for i in 0..w / 2 {
            v.extend([(16 + 224 * i / 959) as u8, (16 + 224 * j / 539) as u8]);
        }
    }
    v
}

/// The first `n` access units of a manifest stream.
fn access_units(dir: &std::path::Path, name: &str, n: usize) -> Result<Vec<Vec<u8>>, CliError> {
    let manifest: serde_json::Value = serde_json::from_slice(&read(dir, "manifest.json")?)
        .map_err(|e| CliError::Usage(format!("manifest.json: {e}")))?;
    let entry = manifest["files"]
        .as_array()
        .and_then(|f| f.iter().find(|e| e["name"] == name))
        .ok_or_else(|| CliError::Usage(format!("manifest.json has no {name}")))?;
    let bytes = read(dir, name)?;
    let ranges = entry["access_units"].as_array().cloned().unwrap_or_default();
    let mut aus = Vec::new();
    for r in ranges.iter().take(n) {
        let (start, len) = (r[0].as_u64().unwrap_or(0) as usize, r[1].as_u64().unwrap_or(0) as usize);
        let au = bytes.get(start..start + len).ok_or_else(|| CliError::Usage(format!("{name}: bad AU range")))?;
        aus.push(au.to_vec());
    }
    Ok(aus)
}

/// JPEGs to model tensors: nvJPEG's planar components (hardware engines) + the fused kernel (libjpeg's chroma
/// upsampling and colour conversion, resize, normalisation).
fn jpeg_row(
    device: &Device,
    decoder: &mut Decoder,
    bytes: &[u8],
    count: usize,
    name: &str,
    iters: usize,
) -> Result<BenchRow, CliError> {
    let info = decoder.image_info(bytes).map_err(swm::Error::from)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let table = ResizeTable::shorter_side(h, w, SIZE, device).map_err(swm::Error::from)?;
    let (oh, ow) = table.output();
    let norm = ImageNormalization::IMAGENET;
    let out = Tensor::zeros((count, 3, oh, ow), DType::F32, device)?;
    Ok(bench::time(device, name, WARMUP, iters, || -> Result<(), swm::Error> {
        // The frames of one observation are decoded as one hardware batch.
        let files = vec![bytes; count];
        for (slot, (planes, layout)) in decoder.decode_planar_batch(&files)?.iter().enumerate() {
            frame_into(planes, layout, &table, &norm, &out, slot)?;
        }
        Ok(())
    })?)
}

/// A frame already on the device to a model tensor.
fn device_row(
    device: &Device,
    bytes: &[u8],
    layout: FrameLayout,
    name: &str,
    iters: usize,
) -> Result<BenchRow, CliError> {
    let frame = Tensor::from_slice(bytes, bytes.len(), device)?;
    let table = ResizeTable::shorter_side(layout.height, layout.width, SIZE, device).map_err(swm::Error::from)?;
    let (oh, ow) = table.output();
    let out = Tensor::zeros((1, 3, oh, ow), DType::F32, device)?;
    let norm = ImageNormalization::IMAGENET;
    Ok(bench::time(device, name, WARMUP, iters, || frame_into(&frame, &layout, &table, &norm, &out, 0))?)
}

/// Every row, printed as it finishes.
pub fn run(args: &BenchMediaArgs) -> Result<Vec<BenchRow>, CliError> {
    args.report.check()?;
    let dir = media_dir(args);
    let device = device::cuda(args.device.gpu)?;
    outln!("device: {}", device::name(&device).unwrap_or_default());
    let mut rows = Vec::new();
    let mut decoder = Decoder::new(&device, Backend::Hardware).map_err(swm::Error::from)?;
    outln!("nvJPEG backend: {:?}", decoder.backend());
    let j224 = read(&dir, "baseline_420_224x224.jpg")?;
    let j640 = read(&dir, "baseline_420_640x480.jpg")?;
    let iters = args.iters;
    keep(
        &mut rows,
        jpeg_row(&device, &mut decoder, &j224, 1, "media jpeg224 -> 1x3x224x224 (nvJPEG + fused)", iters)?,
    )?;
    keep(
        &mut rows,
        jpeg_row(&device, &mut decoder, &j640, 1, "media jpeg640 -> 1x3x224x298 (nvJPEG + fused)", iters)?,
    )?;
    keep(
        &mut rows,
        jpeg_row(&device, &mut decoder, &j640, 4, "media jpeg640x4 -> 4x3x224x298 (nvJPEG + fused)", iters)?,
    )?;
    let rgb = FrameLayout::packed(PixelFormat::Rgb, 1920, 1080);
    keep(&mut rows, device_row(&device, &rgb1080(), rgb, "media rgb1080 on device -> 1x3x224x398 (fused)", iters)?)?;
    let color = YuvColor { matrix: YuvMatrix::Bt601, range: YuvRange::Limited };
    let nv12 = FrameLayout::packed(PixelFormat::Nv12(color), 1920, 1080);
    keep(
        &mut rows,
        device_row(&device, &nv12_1080(), nv12, "media nv12_1080 on device -> 1x3x224x398 (fused)", iters)?,
    )?;
    // H.264 through NVDEC: the committed 1080p clip (16 frames, an IDR every 8), one access unit per iteration in
    // decode order, wrapping round to its first IDR; each frame preprocessed.
    let aus = access_units(&dir, "h264_1080p.h264", 16)?;
    let mut nvdec = nvdec::Decoder::new(&device, Codec::H264).map_err(swm::Error::from)?;
    let table = ResizeTable::shorter_side(1080, 1920, SIZE, &device).map_err(swm::Error::from)?;
    let (oh, ow) = table.output();
    let out = Tensor::zeros((1, 3, oh, ow), DType::F32, &device)?;
    let norm = ImageNormalization::IMAGENET;
    let mut next = 0usize;
    let name = "media h264_1080 AU -> 1x3x224x398 (NVDEC + fused)";
    let row = bench::time(&device, name, WARMUP, iters, || -> Result<(), swm::Error> {
        let frames = nvdec.decode(&aus[next % aus.len()], next as i64)?;
        next += 1;
        for f in &frames {
            // Converted as the stream's VUI says.
            let layout = FrameLayout::packed(PixelFormat::Nv12(f.color), 1920, 1080);
            frame_into(&f.nv12.flatten_all()?, &layout, &table, &norm, &out, 0)?;
        }
        Ok(())
    })?;
    keep(&mut rows, row)?;
    Ok(rows)
}
