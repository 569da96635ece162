//! GPU tests of swm-loop's engine backend: what the ingest thread stages on its own stream (pitched, BGR and RGBA
//! frames, state vectors) gives the same step as the same observation uploaded by the inference thread. Ignored
//! without a device (`bash .gpu/run.sh` runs them with `--include-ignored`); without one they fail, never pass.

use std::time::{Duration, Instant};

use swm_ipc::{ActionSlot, ActionStatus, Encoding, Modality, ObservationHeader};
use swm_loop::backend::{Backend, EngineBackend, HostStager, Stager};
use swm_loop::config::LoopConfig;
use swm_loop::message::{InputSpec, Message, Payload};

/// A frame message of the demo artifact's size in `encoding`, rows padded to `pitch`, pixel values from `seed`.
fn frame(spec: &InputSpec, encoding: Encoding, pad: usize, seed: u32, stage: &mut dyn Stager) -> Message {
    let InputSpec::Frame { height, width, .. } = spec else { panic!("the demo artifact takes frames") };
    let channels = if encoding == Encoding::Rgba8 { 4 } else { 3 };
    let pitch = width * channels + pad;
    let mut bytes = vec![0u8; pitch * height];
    for y in 0..*height {
        for x in 0..*width {
            let rgb = [0u32, 1, 2].map(|c| ((x as u32 * 31 + y as u32 * 17 + c * 71 + seed * 13) % 256) as u8);
            let px = match encoding {
                Encoding::Bgr8 => vec![rgb[2], rgb[1], rgb[0]],
                Encoding::Rgba8 => vec![rgb[0], rgb[1], rgb[2], 255],
                _ => rgb.to_vec(),
            };
            bytes[y * pitch + x * channels..][..channels].copy_from_slice(&px);
        }
    }
    let mut header = ObservationHeader {
        sequence: u64::from(seed),
        modality: Modality::Frame as u32,
        encoding: encoding as u32,
        width: *width as u32,
        height: *height as u32,
        pitch: pitch as u32,
        ..ObservationHeader::default()
    };
    header.set_name(spec.name()).unwrap();
    let payload = stage.stage(spec, &bytes).unwrap();
    Message { header, input: 0, payload, received: Instant::now() }
}

/// The repository's test media (`tests/data/media`): cargo sets `CARGO_MANIFEST_DIR` to the crate's directory
/// (loop/), the GPU bundle's run.sh to the repository root.
fn media_dir() -> std::path::PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run.sh sets it)");
    let mut dir = std::path::PathBuf::from(root);
    if !dir.join("tests/data/media").is_dir() {
        dir.pop();
    }
    dir.join("tests/data/media")
}

fn backend(dir: &std::path::Path) -> EngineBackend {
    let mut config = LoopConfig { artifact: Some(dir.to_path_buf()), ..LoopConfig::default() };
    config.planner.samples = Some(64);
    config.planner.iterations = Some(3);
    config.planner.seed = Some(5);
    EngineBackend::open(&config).expect("the demo artifact opens on the GPU")
}

#[test]
#[ignore = "needs a CUDA device"]
fn staged_frames_plan_like_frames_uploaded_by_the_inference_thread() {
    let dir = tempfile::tempdir().unwrap();
    swm::tools::demo::write_artifact(dir.path()).unwrap();
    let mut host = backend(dir.path());
    let mut device = backend(dir.path());
    let spec = host.inputs()[0].clone();
    let mut host_stage = HostStager;
    let mut device_stage: Box<dyn Stager> = device.stage().unwrap();
    // The goal, then three observations: plain RGB on the host path; pitched BGR, RGBA and RGB on the staged one.
    host.set_goal(&[frame(&spec, Encoding::Rgb8, 0, 99, &mut host_stage)]).unwrap();
    device.set_goal(&[frame(&spec, Encoding::Bgr8, 5, 99, device_stage.as_mut())]).unwrap();
    for (seed, encoding, pad) in [(1, Encoding::Bgr8, 3), (2, Encoding::Rgba8, 0), (3, Encoding::Rgb8, 64)] {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut a, mut b) = (ActionSlot::default(), ActionSlot::default());
        let staged = frame(&spec, encoding, pad, seed, device_stage.as_mut());
        assert!(matches!(staged.payload, Payload::Device(_)), "the engine backend stages on the device");
        host.step(&[frame(&spec, Encoding::Rgb8, 0, seed, &mut host_stage)], deadline, &mut a).unwrap();
        device.step(&[staged], deadline, &mut b).unwrap();
        assert!(a.action_dim > 0 && a.action_dim == b.action_dim);
        let diff = a.action().iter().zip(b.action()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-5, "{encoding:?} pitch +{pad}: {:?} vs {:?}", a.action(), b.action());
        assert_eq!(a.status, b.status);
    }
}

/// A message of `bytes` for the first input.
fn message(spec: &InputSpec, encoding: Encoding, (width, height, pitch): (u32, u32, u32), payload: Payload) -> Message {
    let mut header = ObservationHeader {
        sequence: 1,
        modality: Modality::Frame as u32,
        encoding: encoding as u32,
        width,
        height,
        pitch,
        ..ObservationHeader::default()
    };
    header.set_name(spec.name()).unwrap();
    Message { header, input: 0, payload, received: Instant::now() }
}

/// Camera messages as a robot sends them — a JPEG file, a 640×480 RGB frame, an NV12 frame — are planned on: the
/// engine decodes and resizes them on the GPU. The JPEG message plans exactly like the RGB frame of the same
/// decoder's pixels.
#[test]
#[ignore = "needs a CUDA device"]
fn jpeg_nv12_and_camera_sized_frames_are_planned() {
    let dir = tempfile::tempdir().unwrap();
    swm::tools::demo::write_artifact(dir.path()).unwrap();
    let jpeg = std::fs::read(media_dir().join("baseline_420_640x480.jpg")).unwrap();
    let mut a = backend(dir.path());
    let mut b = backend(dir.path());
    let spec = a.inputs()[0].clone();
    let device = swm::device::cuda(0).unwrap();
    let mut decoder = swm::media::nvjpeg::Decoder::new(&device, swm::media::nvjpeg::Backend::Hardware).unwrap();
    // The JPEG path's pixels: nvJPEG's planes finished as libjpeg-turbo does (the kernel's JPEG formats).
    let (planes, layout) = decoder.decode_planar(&jpeg).unwrap();
    let rgb = swm::ops::jpeg_rgb(&planes.to_vec1::<u8>().unwrap(), &layout).unwrap();
    let jpeg_msg = || message(&spec, Encoding::Jpeg, (0, 0, 0), Payload::Host(jpeg.clone()));
    let rgb_msg = || message(&spec, Encoding::Rgb8, (640, 480, 1920), Payload::Host(rgb.clone()));
    a.set_goal(&[jpeg_msg()]).unwrap();
    b.set_goal(&[rgb_msg()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut sa, mut sb) = (ActionSlot::default(), ActionSlot::default());
    a.step(&[jpeg_msg()], deadline, &mut sa).unwrap();
    b.step(&[rgb_msg()], deadline, &mut sb).unwrap();
    assert!(sa.action_dim > 0 && sa.action().iter().all(|v| v.is_finite()));
    let diff = sa.action().iter().zip(sb.action()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-5, "JPEG {:?} vs RGB {:?}", sa.action(), sb.action());
    // NV12 640x480 (limited-range grey ramp) through the staged device path.
    let mut nv12 = vec![128u8; 640 * 480 * 3 / 2];
    for (i, v) in nv12[..640 * 480].iter_mut().enumerate() {
        *v = (16 + (i % 640) * 219 / 640) as u8;
    }
    let mut stage = b.stage().unwrap();
    let staged = stage.stage(&spec, &nv12).unwrap();
    let mut sn = ActionSlot::default();
    b.step(&[message(&spec, Encoding::Nv12, (640, 480, 640), staged)], deadline, &mut sn).unwrap();
    assert!(sn.action_dim > 0 && sn.action().iter().all(|v| v.is_finite()));
    assert_eq!(sn.status, ActionStatus::Solved as u32);
}

/// H.264 access units are decoded by the ingest half (NVDEC, every unit in order) and the decoded frames are
/// planned on.
#[test]
#[ignore = "needs a CUDA device"]
fn h264_access_units_are_decoded_at_ingest_and_planned() {
    let dir = tempfile::tempdir().unwrap();
    swm::tools::demo::write_artifact(dir.path()).unwrap();
    let media = media_dir();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(media.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest["files"].as_array().unwrap().iter().find(|e| e["name"] == "h264_res_change.h264").unwrap();
    let bytes = std::fs::read(media.join("h264_res_change.h264")).unwrap();
    let aus: Vec<&[u8]> = entry["access_units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (o, l) = (r[0].as_u64().unwrap() as usize, r[1].as_u64().unwrap() as usize);
            &bytes[o..o + l]
        })
        .collect();
    let mut backend = backend(dir.path());
    let spec = backend.inputs()[0].clone();
    let mut stage = backend.stage().unwrap();
    let deadline = || Instant::now() + Duration::from_secs(5);
    let goal = stage.decode(0, swm_loop::backend::Codec::H264, aus[0]).unwrap().expect("an IDR gives a frame");
    backend.set_goal(&[message(&spec, Encoding::H264, (0, 0, 0), goal)]).unwrap();
    for (i, au) in aus.iter().enumerate().take(8).skip(1) {
        let payload = stage.decode(0, swm_loop::backend::Codec::H264, au).unwrap().expect("one frame per unit");
        let Payload::Decoded { width, height, .. } = &payload else { panic!("a decoded frame") };
        assert_eq!((*width, *height), (320, 240), "access unit {i}");
        let mut slot = ActionSlot::default();
        backend.step(&[message(&spec, Encoding::H264, (0, 0, 0), payload)], deadline(), &mut slot).unwrap();
        assert_eq!(slot.status, ActionStatus::Solved as u32, "access unit {i}");
        assert!(slot.action().iter().all(|v| v.is_finite()));
    }
}

/// `ipc.warm_jpeg`: the daemon's warm-up decodes the built-in JPEG, so that the first JPEG observation does not
/// create nvJPEG's decoders inside its step (~0.5 s on an H200, measured as deadline misses without it).
#[test]
#[ignore = "needs a CUDA device"]
fn warm_jpeg_creates_the_decoders_before_the_first_observation() {
    let dir = tempfile::tempdir().unwrap();
    swm::tools::demo::write_artifact(dir.path()).unwrap();
    let mut config = LoopConfig { artifact: Some(dir.path().to_path_buf()), ..LoopConfig::default() };
    config.planner.samples = Some(64);
    config.planner.iterations = Some(3);
    config.ipc.warm_jpeg = true;
    let mut warm = EngineBackend::open(&config).expect("opens with a JPEG warm-up");
    let spec = warm.inputs()[0].clone();
    let jpeg = std::fs::read(media_dir().join("baseline_420_640x480.jpg")).unwrap();
    let msg = || message(&spec, Encoding::Jpeg, (0, 0, 0), Payload::Host(jpeg.clone()));
    // The goal is the first JPEG this backend sees after its warm-up.
    let start = Instant::now();
    warm.set_goal(&[msg()]).unwrap();
    let first = start.elapsed();
    let mut slot = ActionSlot::default();
    warm.step(&[msg()], Instant::now() + Duration::from_secs(5), &mut slot).unwrap();
    println!("first JPEG (the goal) after the warm-up: {first:?}");
    assert_eq!(slot.status, ActionStatus::Solved as u32);
    assert!(first < Duration::from_millis(100), "the first JPEG took {first:?}");
}
