//! Media parity: the official pipeline on a camera JPEG (Pillow decode, upstream's transforms with
//! `Resize(224)`, LeWM `encode` with interpolated position embeddings; `tools/swm_tools/export_media_parity.py`)
//! against swm's — the fused kernel on Pillow's exact pixels (isolates preprocessing and the ViT's position
//! interpolation), and the whole GPU path of a session fed the JPEG bytes (nvJPEG + kernel + encoder).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device};

use super::{compare, fixture_file, load_lewm, FixturePaths, ParityError, ParityReport};
use crate::artifact::{Preprocess, Schema};
use crate::ops::{frame_to_model, FrameLayout, ImageNormalization, PixelFormat, ResizeTable};
use crate::session::{Observation, Session, SessionOptions};
use crate::tools::ToolError;

/// How far (levels of 255) a decoded value may be from Pillow's: IDCT rounding (±1 in Y, Cb or Cr) moves an RGB
/// value by up to about 3 levels.
const DECODE_LEVELS: f32 = 4.0;

/// Default media tolerances (absolute): `pixels` 1e-4 (the same arithmetic on the same pixels; FMA contraction
/// and a multiply by 1/std differ in the last bits), `emb` the LeWM parity tolerance; the `jpeg_*` rows start from
/// nvJPEG's planes, finished by the kernel as libjpeg-turbo does (chroma interpolation, integer colour
/// conversion), so they differ from Pillow's only where the IDCTs round differently: `jpeg_pixels` 0.05 (≈ 3
/// levels after normalisation), `jpeg_emb` the LeWM tolerance.
pub fn media_tolerances() -> BTreeMap<String, f64> {
    [("pixels", 1e-4), ("emb", 1e-3), ("jpeg_pixels", 0.05), ("jpeg_emb", 1e-3)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Runs the media parity check: `paths.dir` holds `config.json`, `weights.pt` and `media_parity.safetensors`
/// (`rgb`, `pixels`, `embedding`); `jpeg` is the file the official pipeline decoded.
pub fn media(
    paths: &FixturePaths,
    jpeg: &Path,
    tolerances: &BTreeMap<String, f64>,
    device: &Device,
) -> Result<ParityReport, ToolError> {
    let model = load_lewm(paths, device)?;
    let fixture = fixture_file(&paths.dir, "media_parity.safetensors")?;
    let arrays = candle_core::safetensors::load(&fixture, device)?;
    let get =
        |key: &str| arrays.get(key).ok_or_else(|| ParityError::MissingKey { path: fixture.clone(), key: key.into() });
    let tol = |key: &str| tolerances.get(key).copied().unwrap_or(1e-3);
    let (rgb, pixels, embedding) = (get("rgb")?, get("pixels")?, get("embedding")?);
    let (h, w, _) = rgb.dims3()?;
    // Upstream's Resize size (eval's img_size, not necessarily the encoder's training size): the shorter side of
    // the official pixels.
    let size = pixels.dim(2)?.min(pixels.dim(3)?);
    let mut rows = Vec::new();

    // Pillow's pixels through swm's kernel and encoder.
    let table = ResizeTable::shorter_side(h, w, size, device)?;
    let ours = frame_to_model(
        &rgb.flatten_all()?,
        &FrameLayout::packed(PixelFormat::Rgb, w, h),
        &table,
        &ImageNormalization::IMAGENET,
    )?;
    rows.push(compare("pixels", &ours, pixels, tol("pixels"))?);
    let emb = model.encode(&ours.unsqueeze(1)?)?.reshape(embedding.dims())?;
    rows.push(compare("emb", &emb, embedding, tol("emb"))?);

    // The JPEG bytes through a session: nvJPEG, the kernel, the encoder.
    let bytes = std::fs::read(jpeg).map_err(|source| crate::Error::Io { path: jpeg.to_path_buf(), source })?;
    let config = model.config().clone();
    let preprocess = Preprocess { image_size: [size, size], ..Preprocess::for_lewm(&config) };
    let mut schema = Schema::for_lewm(&config);
    for spec in schema.observations.iter_mut().filter(|s| s.name == "pixels") {
        spec.shape = vec![3, size, size];
    }
    let mut session = Session::lewm(model, schema, preprocess, &SessionOptions::default())?;
    let files = [bytes.as_slice()];
    session.set_observation(&Observation::new().jpeg("pixels", &files))?;
    let media = |e: crate::media::MediaError| ToolError::from(crate::Error::from(e));
    let mut decoder =
        crate::media::nvjpeg::Decoder::new(device, crate::media::nvjpeg::Backend::Hardware).map_err(media)?;
    let (planes, layout) = decoder.decode_planar(&bytes).map_err(media)?;
    let jpeg_pixels = frame_to_model(&planes, &layout, &table, &ImageNormalization::IMAGENET)?;
    rows.push(compare("jpeg_pixels", &jpeg_pixels, pixels, tol("jpeg_pixels"))?);
    let encoded = session
        .encoded_observation()
        .ok_or_else(|| ToolError::invalid_input("session", "no encoded observation"))?
        .to_dtype(DType::F32)?
        .reshape(embedding.dims())?;
    rows.push(compare("jpeg_emb", &encoded, embedding, tol("jpeg_emb"))?);
    // The decode itself: nvJPEG's planes finished by the kernel at the frame's own size (an identity resize; a
    // normalisation that leaves 0..255 levels) against Pillow's pixels.
    let identity = ResizeTable::shorter_side(h, w, h.min(w), device)?;
    let levels = ImageNormalization { mean: [0.0; 3], std: [1.0 / 255.0; 3] };
    let ours = frame_to_model(&planes, &layout, &identity, &levels)?.squeeze(0)?.permute((1, 2, 0))?;
    let diff = (ours.round()? - rgb.to_dtype(DType::F32)?)?.abs()?;
    let decode_diff = diff.max_all()?.to_scalar::<f32>()?;
    let exact = diff.eq(0f32)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()?;
    Ok(ParityReport {
        fixture: paths.dir.clone(),
        device: crate::device::name(device).unwrap_or_else(|| format!("{device:?}")),
        rows,
        decisions: vec![(
            format!(
                "nvJPEG + kernel within {DECODE_LEVELS} levels of Pillow's decode (max {decode_diff}, {:.2}% of \
                 values equal, layout {:?})",
                100.0 * exact,
                layout.format
            ),
            decode_diff <= DECODE_LEVELS,
        )],
    })
}
