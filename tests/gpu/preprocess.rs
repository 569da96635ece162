//! The fused frame-preprocessing kernel (`swm::ops::frame_into`) against the host reference of upstream's
//! pipeline (`swm::tools::reference`, itself checked against torchvision's output in tests/host): every pixel
//! format, pitches, NV12 colour, slots of a history tensor, bf16, and the session paths (frames of any size,
//! packed layouts, JPEG bytes).
//!
//! Tolerance 2e-4 on normalised values (~0.01 of a level): the kernel multiplies by 1/std where the reference
//! divides, and nvcc contracts multiply-adds into FMAs; a wrong tap, weight or channel is off by orders more.

use candle_core::{DType, Device, Tensor};
use swm::ops::{
    frame_into, frame_to_model, FrameLayout, ImageNormalization, PixelFormat, ResizeTable, YuvColor, YuvMatrix,
    YuvRange,
};
use swm::tools::reference::{normalize_hwc_u8, resize_shorter_side, IMAGENET_MEAN, IMAGENET_STD};

use super::gpu;

const TOL: f32 = 2e-4;

/// A deterministic RGB test image with edges, gradients and every channel distinct.
fn image(w: usize, h: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let checker = if (x / 23 + y / 17) % 2 == 0 { 60 } else { 0 };
            px.push(((x * 255) / w.max(1)) as u8 / 2 + checker);
            px.push(((y * 255) / h.max(1)) as u8 / 2 + ((x * 7 + y * 13) % 61) as u8);
            px.push((((x ^ y) * 3) % 256) as u8 / 2 + 40);
        }
    }
    px
}

fn reference(rgb: &[u8], w: usize, h: usize, size: usize) -> (Vec<f32>, usize, usize) {
    let x = normalize_hwc_u8(rgb, h, w, IMAGENET_MEAN, IMAGENET_STD);
    resize_shorter_side(&x, 3, h, w, size)
}

fn run(device: &Device, bytes: &[u8], layout: &FrameLayout, size: usize) -> Tensor {
    let frame = Tensor::from_slice(bytes, bytes.len(), device).unwrap();
    let table = ResizeTable::shorter_side(layout.height, layout.width, size, device).unwrap();
    frame_to_model(&frame, layout, &table, &ImageNormalization::IMAGENET).unwrap()
}

/// Re-packs RGB pixels into `format` with `pitch` bytes per row (padding bytes set to 0xAB).
fn pack(rgb: &[u8], w: usize, h: usize, format: PixelFormat, pitch: usize) -> Vec<u8> {
    let bpp = format.bytes_per_pixel();
    let mut out = vec![0xABu8; pitch * h];
    for y in 0..h {
        for x in 0..w {
            let p = &rgb[(y * w + x) * 3..][..3];
            let o = &mut out[y * pitch + x * bpp..][..bpp];
            match format {
                PixelFormat::Rgb | PixelFormat::Rgba => o[..3].copy_from_slice(p),
                _ => o[..3].copy_from_slice(&[p[2], p[1], p[0]]),
            }
            if bpp == 4 {
                o[3] = 7;
            }
        }
    }
    out
}

#[test]
#[ignore = "needs a CUDA device"]
fn packed_frames_match_the_host_reference_in_every_format_and_pitch() {
    let (_gpu, device) = gpu();
    for (w, h, size) in [(640, 480, 224), (224, 224, 224), (1920, 1080, 224), (17, 9, 8), (100, 60, 112)] {
        let rgb = image(w, h);
        let (want, oh, ow) = reference(&rgb, w, h, size);
        let got = run(&device, &rgb, &FrameLayout::packed(PixelFormat::Rgb, w, h), size);
        assert_eq!(got.dims(), &[1, 3, oh, ow], "{w}x{h}");
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = super::max_diff(&got, &want);
        println!("{w}x{h} -> {ow}x{oh}: max |diff| {d:e}");
        assert!(d < TOL, "{w}x{h}: {d}");
        for format in [PixelFormat::Bgr, PixelFormat::Rgba, PixelFormat::Bgra] {
            let pitch = w * format.bytes_per_pixel() + 64;
            let bytes = pack(&rgb, w, h, format, pitch);
            let layout = FrameLayout { pitch, ..FrameLayout::packed(format, w, h) };
            let other = run(&device, &bytes, &layout, size).flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(super::max_diff(&other, &got) < 1e-6, "{format:?} {w}x{h}");
        }
    }
}

/// NV12 with replicated chroma, converted on the host with the same matrices, then the reference pipeline.
fn nv12_reference(y: &[u8], uv: &[u8], w: usize, h: usize, color: YuvColor, size: usize) -> (Vec<f32>, usize, usize) {
    let (kr, kb) = match color.matrix {
        YuvMatrix::Bt601 => (0.299f64, 0.114f64),
        YuvMatrix::Bt709 => (0.2126, 0.0722),
        YuvMatrix::Bt2020 => (0.2627, 0.0593),
    };
    let kg = 1.0 - kr - kb;
    let (yo, ys, cs) = match color.range {
        YuvRange::Limited => (16.0, 255.0 / 219.0, 255.0 / 224.0),
        YuvRange::Full => (0.0, 1.0, 1.0),
    };
    let plane = w * h;
    let mut chw = vec![0f32; 3 * plane];
    for py in 0..h {
        for px in 0..w {
            let l = (f64::from(y[py * w + px]) - yo) * ys;
            let c = (py / 2) * w + (px & !1);
            let (u, v) = ((f64::from(uv[c]) - 128.0) * cs, (f64::from(uv[c + 1]) - 128.0) * cs);
            let rgb = [
                l + 2.0 * (1.0 - kr) * v,
                l - 2.0 * kb * (1.0 - kb) / kg * u - 2.0 * kr * (1.0 - kr) / kg * v,
                l + 2.0 * (1.0 - kb) * u,
            ];
            for c in 0..3 {
                let x = rgb[c].clamp(0.0, 255.0) as f32;
                chw[c * plane + py * w + px] = (x * (1.0f32 / 255.0) - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
    }
    resize_shorter_side(&chw, 3, h, w, size)
}

#[test]
#[ignore = "needs a CUDA device"]
fn nv12_frames_match_the_host_conversion_for_each_matrix_and_range() {
    let (_gpu, device) = gpu();
    let (w, h) = (1920, 1080);
    let y: Vec<u8> = (0..w * h).map(|i| (16 + (i % w) * 219 / w + (i / w) % 7) as u8).collect();
    let uv: Vec<u8> = (0..w * h / 2).map(|i| (40 + (i * 37) % 180) as u8).collect();
    // A decoder's surface: luma rows padded to a pitch of 2048, the UV plane after a padded luma height of 1088.
    let pitch = 2048;
    let uv_offset = pitch * 1088;
    let mut buf = vec![0u8; uv_offset + pitch * h / 2];
    for r in 0..h {
        buf[r * pitch..][..w].copy_from_slice(&y[r * w..][..w]);
    }
    for r in 0..h / 2 {
        buf[uv_offset + r * pitch..][..w].copy_from_slice(&uv[r * w..][..w]);
    }
    for matrix in [YuvMatrix::Bt601, YuvMatrix::Bt709, YuvMatrix::Bt2020] {
        for range in [YuvRange::Limited, YuvRange::Full] {
            let color = YuvColor { matrix, range };
            let layout = FrameLayout { pitch, uv_offset, ..FrameLayout::packed(PixelFormat::Nv12(color), w, h) };
            let got = run(&device, &buf, &layout, 224);
            let (want, oh, ow) = nv12_reference(&y, &uv, w, h, color, 224);
            assert_eq!(got.dims(), &[1, 3, oh, ow]);
            let d = super::max_diff(&got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &want);
            println!("NV12 {matrix:?} {range:?}: max |diff| {d:e}");
            assert!(d < TOL, "{color:?}: {d}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn slots_of_a_history_tensor_are_written_alone_and_bf16_rounds_the_f32_result() {
    let (_gpu, device) = gpu();
    let (w, h) = (640, 480);
    let rgb = image(w, h);
    let frame = Tensor::from_slice(&rgb, rgb.len(), &device).unwrap();
    let layout = FrameLayout::packed(PixelFormat::Rgb, w, h);
    let table = ResizeTable::shorter_side(h, w, 224, &device).unwrap();
    let norm = ImageNormalization::IMAGENET;
    let single = frame_to_model(&frame, &layout, &table, &norm).unwrap();
    // (batch 2, time 3) history; slot b·3 + t = 4 is (1, 1).
    let history = Tensor::zeros((2, 3, 3, 224, 298), DType::F32, &device).unwrap();
    frame_into(&frame, &layout, &table, &norm, &history, 4).unwrap();
    let flat = history.reshape((6, 3 * 224 * 298)).unwrap();
    for s in 0..6 {
        let v = flat.get(s).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(v > 0.0, s == 4, "slot {s}");
    }
    let written = history.get(1).unwrap().get(1).unwrap().unsqueeze(0).unwrap();
    assert_eq!(
        super::max_diff(
            &written.flatten_all().unwrap().to_vec1().unwrap(),
            &single.flatten_all().unwrap().to_vec1().unwrap()
        ),
        0.0
    );
    assert!(frame_into(&frame, &layout, &table, &norm, &history, 6).is_err(), "slot out of range");
    let half = Tensor::zeros((1, 3, 224, 298), DType::BF16, &device).unwrap();
    frame_into(&frame, &layout, &table, &norm, &half, 0).unwrap();
    let half = half.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let full = single.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(half.iter().zip(&full).all(|(a, b)| (a - b).abs() <= b.abs() / 128.0 + 1e-6), "bf16 rounding");
    // Typed errors: a short buffer, a table of another geometry, a wrong destination shape.
    let short = Tensor::from_slice(&rgb[..1000], 1000, &device).unwrap();
    assert!(frame_into(&short, &layout, &table, &norm, &history, 0).is_err());
    let other = ResizeTable::shorter_side(240, 320, 224, &device).unwrap();
    assert!(frame_into(&frame, &layout, &other, &norm, &history, 0).is_err());
    let wrong = Tensor::zeros((1, 3, 224, 224), DType::F32, &device).unwrap();
    assert!(frame_into(&frame, &layout, &table, &norm, &wrong, 0).is_err());
}

/// The session takes camera frames as they come: RGB frames of another size (resized by the fused kernel, the ViT
/// position table interpolated for the non-square grid), packed layouts and JPEG bytes; the same picture through
/// each path encodes to the same embedding.
#[test]
#[ignore = "needs a CUDA device"]
fn sessions_encode_camera_frames_of_any_size_and_format() {
    use swm::session::{Observation, Session, SessionOptions};
    let (_gpu, device) = gpu();
    let dir = tempfile::tempdir().unwrap();
    let artifact = swm::tools::demo::write_artifact(dir.path()).unwrap();
    let mut session = Session::open(&artifact, &device, &SessionOptions::default()).unwrap();
    let jpeg = std::fs::read(super::media_file("baseline_420_640x480.jpg")).unwrap();
    // The JPEG path's pixels: nvJPEG's planes finished as libjpeg-turbo does (the host twin of the kernel).
    let mut decoder = swm::media::nvjpeg::Decoder::new(&device, swm::media::nvjpeg::Backend::Default).unwrap();
    let (planes, layout) = decoder.decode_planar(&jpeg).unwrap();
    let host = swm::ops::jpeg_rgb(&planes.to_vec1::<u8>().unwrap(), &layout).unwrap();
    let rgb = Tensor::from_vec(host, (480, 640, 3), &device).unwrap();
    let embed = |session: &mut Session, obs: &Observation<'_>| {
        session.set_observation(obs).unwrap();
        session.encoded_observation().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let frames = rgb.unsqueeze(0).unwrap();
    let a = embed(&mut session, &Observation::new().frames("pixels", &frames));
    assert!(a.iter().all(|v| v.is_finite()));
    let bytes = rgb.flatten_all().unwrap().unsqueeze(0).unwrap();
    let b = embed(
        &mut session,
        &Observation::new().image("pixels", &bytes, FrameLayout::packed(PixelFormat::Rgb, 640, 480)),
    );
    assert_eq!(super::max_diff(&a, &b), 0.0, "frames vs packed layout");
    let files = [jpeg.as_slice()];
    let c = embed(&mut session, &Observation::new().jpeg("pixels", &files));
    // The JPEG path prefers the hardware decoder, which may round differently from the default backend.
    let d = super::max_diff(&a, &c);
    println!("embedding: default-backend decode vs JPEG path max |diff| {d:e}");
    assert!(d < 0.05, "{d}");
    let bad = [&b"not a jpeg"[..]];
    assert!(session.set_observation(&Observation::new().jpeg("pixels", &bad)).is_err());
    let again = embed(&mut session, &Observation::new().jpeg("pixels", &files));
    assert_eq!(super::max_diff(&c, &again), 0.0, "the session decodes again after a bad file");
}
