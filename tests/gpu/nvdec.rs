//! `swm::media::nvdec` on the device: the committed H.264 and HEVC streams of `tests/data/media`, checked against
//! the manifest written by `tools/media/gen.py`.
//!
//! H.264 and HEVC decoding is bit-exact by the standards, so each frame's tightly packed NV12 bytes (the Y plane,
//! then the U,V-interleaved plane, no pitch: the layout of `Frame::nv12`) must have the sha256 that FFmpeg's decode
//! has in `decoded_nv12_sha256`. A wrong chroma-plane offset in the mapped surface, a wrong pitch, a missed
//! resolution change or a frame out of order all change the hashes.

use std::path::PathBuf;

use candle_core::Device;
use serde_json::Value;
use swm::media::nvdec::{self, Codec, Decoder, Frame};
use swm::media::MediaError;

use super::gpu;

fn media_dir() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| panic!("set CARGO_MANIFEST_DIR to the repository root (the media files live there)"));
    PathBuf::from(root).join("tests/data/media")
}

/// The manifest entry of `name`.
fn entry(name: &str) -> Value {
    let text = std::fs::read_to_string(media_dir().join("manifest.json")).expect("tests/data/media/manifest.json");
    let manifest: Value = serde_json::from_str(&text).expect("manifest.json parses");
    manifest["files"]
        .as_array()
        .expect("manifest.files")
        .iter()
        .find(|f| f["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not in manifest.json"))
}

/// The stream's bytes and its access units (one picture each, decode order), as the manifest's byte ranges.
fn access_units(name: &str) -> (Vec<u8>, Vec<(usize, usize)>) {
    let bytes = std::fs::read(media_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ranges = entry(name)["access_units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap() as usize, r[1].as_u64().unwrap() as usize))
        .collect();
    (bytes, ranges)
}

/// Per frame (decode order = display order: no B-frames): the (width, height) of its segment.
fn frame_sizes(e: &Value) -> Vec<(u32, u32)> {
    let mut sizes = Vec::new();
    for s in e["segments"].as_array().unwrap() {
        let n = s["frames"].as_u64().unwrap() as usize;
        sizes.extend(std::iter::repeat_n(
            (s["width"].as_u64().unwrap() as u32, s["height"].as_u64().unwrap() as u32),
            n,
        ));
    }
    sizes
}

fn hashes(name: &str) -> Vec<String> {
    entry(name)["decoded_nv12_sha256"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect()
}

/// The frame's bytes on the host (this synchronises with the stream; the decoder itself never does).
fn host_nv12(frame: &Frame) -> Vec<u8> {
    frame.nv12.flatten_all().unwrap().to_vec1::<u8>().unwrap()
}

fn check_frame(what: &str, frame: &Frame, (w, h): (u32, u32), timestamp: i64) {
    assert_eq!((frame.width, frame.height), (w, h), "{what}: size");
    assert_eq!(frame.nv12.dims(), &[(h * 3 / 2) as usize, w as usize], "{what}: NV12 tensor shape");
    assert_eq!(frame.nv12.dtype(), candle_core::DType::U8, "{what}: dtype");
    assert_eq!(frame.timestamp, timestamp, "{what}: timestamp");
    assert_eq!(frame.y().unwrap().dims(), &[h as usize, w as usize]);
    assert_eq!(frame.uv().unwrap().dims(), &[(h / 2) as usize, (w / 2) as usize, 2]);
}

/// Decodes the access units `order` of `name` one call each (timestamp = the access unit's index), from a scratch
/// buffer that is overwritten right after each call (the input is needed only during the call), and checks that
/// each call returns exactly its own frame (display delay 0), with the manifest's size and NV12 hash. The caller
/// holds the GPU lock for as long as the decoder lives: dropping it frees device memory, which would invalidate
/// another test's graph capture (it did: a decoder dropped after its test released the lock broke a planner
/// test's capture, and every later test of the run with it).
fn decode_bit_exact(device: &Device, name: &str, codec: Codec, order: &[usize]) -> Decoder {
    let e = entry(name);
    let (bytes, aus) = access_units(name);
    let (sizes, want) = (frame_sizes(&e), hashes(name));
    let n = e["frames"].as_u64().unwrap() as usize;
    assert_eq!((aus.len(), sizes.len(), want.len()), (n, n, n), "{name}: manifest");
    let mut decoder = Decoder::new(device, codec).unwrap();
    let mut frames = Vec::new();
    let mut scratch = Vec::new();
    for &i in order {
        let (offset, len) = aus[i];
        scratch.clear();
        scratch.extend_from_slice(&bytes[offset..offset + len]);
        let out = decoder.decode(&scratch, i as i64).unwrap_or_else(|err| panic!("{name} access unit {i}: {err}"));
        scratch.fill(0);
        assert_eq!(
            out.len(),
            1,
            "{name} access unit {i}: {} frames, expected its own frame in the same call",
            out.len()
        );
        frames.extend(out.into_iter().map(|f| (i, f)));
    }
    assert!(decoder.flush().unwrap().is_empty(), "{name}: frames left at the end of the stream");
    let mut mismatches = Vec::new();
    for (i, frame) in &frames {
        check_frame(&format!("{name} frame {i}"), frame, sizes[*i], *i as i64);
        let got = sha256_hex(&host_nv12(frame));
        if got != want[*i] {
            mismatches.push(format!("frame {i} ({}x{}): {got}, FFmpeg {}", frame.width, frame.height, want[*i]));
        }
    }
    assert!(mismatches.is_empty(), "{name}: NV12 differs from FFmpeg's decode:\n{}", mismatches.join("\n"));
    let stats = decoder.stats();
    println!("{name}: {} frames bit-exact, {stats:?}, colour {:?}", frames.len(), frames.first().map(|(_, f)| f.color));
    let n = n as u64;
    assert_eq!((stats.decoded, stats.returned, stats.skipped, stats.corrupt), (n, n, 0, 0), "{name}");
    decoder
}

#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_caps_report_h264_and_hevc() {
    let (_gpu, device) = gpu();
    for codec in [Codec::H264, Codec::Hevc] {
        let caps = nvdec::caps(&device, codec).unwrap();
        println!("{codec} 8-bit 4:2:0: {caps:?}");
        assert!(caps.supported, "{codec}: {caps:?}");
        assert!(caps.nvdecs >= 1 && caps.output_formats.contains(&nvdec::SurfaceFormat::Nv12), "{codec}: {caps:?}");
        assert!(caps.max_width >= 320 && caps.max_height >= 240 && caps.min_width <= 256, "{codec}: {caps:?}");
        let hevc10 = nvdec::caps_for(&device, codec, nvdec::ChromaFormat::Yuv420, 10).unwrap();
        println!("{codec} 10-bit 4:2:0: supported {}, formats {:?}", hevc10.supported, hevc10.output_formats);
    }
}

/// H.264: 24 frames 320x240 then 24 frames 256x192, every frame bit-exact; the smaller second sequence is a
/// reconfiguration of the first decoder.
#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_h264_decodes_every_frame_bit_exact_across_the_resolution_change() {
    let order: Vec<usize> = (0..48).collect();
    let (_gpu, device) = gpu();
    let decoder = decode_bit_exact(&device, "h264_res_change.h264", Codec::H264, &order);
    let stats = decoder.stats();
    assert_eq!((stats.decoders_created, stats.reconfigured), (1, 1), "{stats:?}");
    assert_eq!(decoder.size(), Some((256, 192)));
}

/// H.264 1080p: coded 1920x1088, displayed 1920x1080 — the decoder crops the bottom rows and the chroma plane
/// starts after the coded (not the displayed) luma height; every frame bit-exact.
#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_h264_1080p_crops_the_coded_height_bit_exact() {
    let order: Vec<usize> = (0..16).collect();
    let (_gpu, device) = gpu();
    let decoder = decode_bit_exact(&device, "h264_1080p.h264", Codec::H264, &order);
    assert_eq!(decoder.size(), Some((1920, 1080)));
}

/// HEVC, as the H.264 test.
#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_hevc_decodes_every_frame_bit_exact_across_the_resolution_change() {
    let order: Vec<usize> = (0..48).collect();
    let (_gpu, device) = gpu();
    let decoder = decode_bit_exact(&device, "hevc_res_change.h265", Codec::Hevc, &order);
    let stats = decoder.stats();
    assert_eq!((stats.decoders_created, stats.reconfigured), (1, 1), "{stats:?}");
}

/// The second segment first, then the first one: growing from 256x192 to 320x240 exceeds the first decoder's
/// maximum, so the decoder is recreated inside the sequence callback; frames stay bit-exact.
#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_h264_recreates_the_decoder_when_the_size_grows() {
    let order: Vec<usize> = (24..48).chain(0..24).collect();
    let (_gpu, device) = gpu();
    let decoder = decode_bit_exact(&device, "h264_res_change.h264", Codec::H264, &order);
    let stats = decoder.stats();
    assert_eq!((stats.decoders_created, stats.reconfigured), (2, 0), "{stats:?}");
    assert_eq!(decoder.size(), Some((320, 240)));
}

/// Frame 11's slice data is overwritten. Frames 0-10 are bit-exact; a typed, bad-input error is reported for a
/// picture of the damaged GOP (frame 11, or a later one of frames 12-15 that references it); no frame is returned
/// after the error until the IDR at frame 16; frames 16-47 are bit-exact again.
#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_corrupt_access_unit_is_a_typed_error_and_the_next_idr_decodes() {
    let (_gpu, device) = gpu();
    let name = "h264_res_change_corrupt.h264";
    let e = entry(name);
    assert_eq!(e["corrupted"]["frame"], 11);
    let (bytes, aus) = access_units(name);
    let (sizes, want) = (frame_sizes(&e), hashes("h264_res_change.h264"));
    let mut decoder = Decoder::new(&device, Codec::H264).unwrap();
    let mut first_error = None;
    for (i, &(offset, len)) in aus.iter().enumerate() {
        match decoder.decode(&bytes[offset..offset + len], i as i64) {
            Ok(frames) => {
                let damaged_gop = (11..16).contains(&i);
                if first_error.is_some() && damaged_gop {
                    assert!(
                        frames.is_empty() && decoder.awaiting_idr(),
                        "frame {i}: returned while waiting for the IDR"
                    );
                    continue;
                }
                assert_eq!(frames.len(), 1, "frame {i}: {} frames", frames.len());
                check_frame(&format!("frame {i}"), &frames[0], sizes[i], i as i64);
                let got = sha256_hex(&host_nv12(&frames[0]));
                if !damaged_gop {
                    assert_eq!(got, want[i], "frame {i} differs from the clean stream's decode");
                }
            }
            Err(err) => {
                println!("access unit {i}: {err}");
                assert!((11..16).contains(&i), "access unit {i}: unexpected error {err}");
                assert!(
                    matches!(err, MediaError::CorruptStream { codec: "H.264", .. }) && err.is_bad_input(),
                    "{err:?}"
                );
                first_error.get_or_insert(i);
            }
        }
    }
    let stats = decoder.stats();
    println!("{name}: first error at access unit {first_error:?}, {stats:?}");
    assert!(first_error.is_some(), "NVDEC reported no error for the damaged GOP (frames 11-15): {stats:?}");
    assert!(!decoder.awaiting_idr());
    assert_eq!(stats.decoded, 48, "every picture is still decoded (references stay consistent)");
    assert!(stats.corrupt >= 1 && stats.returned + stats.skipped + stats.corrupt >= 48, "{stats:?}");
}

/// Dropping a decoder in the middle of a stream (after pictures were decoded and mapped) and starting a new one
/// works; bytes without a start code are ignored by the parser (no frame, no error); an HEVC decoder refuses to
/// produce frames from H.264 bytes without crashing.
#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_decoders_drop_mid_stream_and_ignore_noise() {
    let (_gpu, device) = gpu();
    let (bytes, aus) = access_units("h264_res_change.h264");
    let want = hashes("h264_res_change.h264");
    for round in 0..3 {
        let mut decoder = Decoder::new(&device, Codec::H264).unwrap();
        assert!(decoder.decode(&[0xAB; 64], 0).unwrap().is_empty());
        assert!(decoder.decode(&[], 0).unwrap().is_empty());
        for (i, &(offset, len)) in aus.iter().enumerate().take(3 + round) {
            let frames = decoder.decode(&bytes[offset..offset + len], i as i64).unwrap();
            assert_eq!(frames.len(), 1);
            assert_eq!(sha256_hex(&host_nv12(&frames[0])), want[i], "round {round} frame {i}");
        }
    }
    let mut hevc = Decoder::new(&device, Codec::Hevc).unwrap();
    for (i, &(offset, len)) in aus.iter().enumerate().take(4) {
        match hevc.decode(&bytes[offset..offset + len], i as i64) {
            Ok(frames) => assert!(frames.is_empty(), "an HEVC decoder made a frame of H.264 bytes"),
            Err(err) => println!("H.264 bytes into the HEVC decoder: {err}"),
        }
    }
}

/// SHA-256 (FIPS 180-4), enough for comparing frame hashes with the manifest without another dependency.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (t, word) in block.chunks_exact(4).enumerate() {
            w[t] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for t in 16..64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16].wrapping_add(s0).wrapping_add(w[t - 7]).wrapping_add(s1);
        }
        let mut v = h;
        for t in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7].wrapping_add(s1).wrapping_add(ch).wrapping_add(K[t]).wrapping_add(w[t]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [t1.wrapping_add(t2), v[0], v[1], v[2], v[3].wrapping_add(t1), v[4], v[5], v[6]];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// The hash itself, against FIPS 180-4's examples and the manifest's hash of a committed file (runs on the GPU
/// host with the other tests; needs no device).
#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_test_sha256_matches_known_digests() {
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(sha256_hex(long), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    let name = "h264_res_change.h264";
    let bytes = std::fs::read(media_dir().join(name)).unwrap();
    assert_eq!(sha256_hex(&bytes), entry(name)["sha256"].as_str().unwrap());
}

/// NVDEC frames carry the stream's colour description (its VUI), which the fused kernel then converts with:
/// `tests/data/media/vui/` (tools/media/vui_streams.py) holds an H.264 stream signalling BT.709 full range and an
/// HEVC stream signalling BT.2020 limited range; the committed clips signal BT.601 limited range.
#[test]
#[ignore = "needs a CUDA device"]
fn nvdec_frames_carry_the_stream_s_colour_description() {
    use swm::ops::{YuvColor, YuvMatrix, YuvRange};
    let (_gpu, device) = gpu();
    let cases = [
        ("vui/h264_bt709_full.h264", Codec::H264, YuvColor { matrix: YuvMatrix::Bt709, range: YuvRange::Full }),
        ("vui/hevc_bt2020_limited.h265", Codec::Hevc, YuvColor { matrix: YuvMatrix::Bt2020, range: YuvRange::Limited }),
        ("h264_1080p.h264", Codec::H264, YuvColor { matrix: YuvMatrix::Bt601, range: YuvRange::Limited }),
    ];
    for (name, codec, want) in cases {
        let mut decoder = Decoder::new(&device, codec).unwrap();
        let mut frames = if name.starts_with("vui/") {
            // Two pictures, not in the manifest: the whole stream in one packet (the parser finds the pictures).
            let bytes = std::fs::read(media_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            decoder.decode(&bytes, 0).unwrap_or_else(|e| panic!("{name}: {e}"))
        } else {
            // The clip's first access unit (its IDR), by the manifest's byte ranges.
            let (bytes, aus) = access_units(name);
            let (offset, len) = aus[0];
            decoder.decode(&bytes[offset..offset + len], 0).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        frames.extend(decoder.flush().unwrap());
        assert!(!frames.is_empty(), "{name}: no frame");
        for f in &frames {
            assert_eq!(f.color, want, "{name}: frame {}", f.index);
        }
    }
}
