#!/usr/bin/env python3
"""Generates the test media of the NVIDIA media path (nvJPEG + NVDEC) into tests/data/media/.

    uv run --directory tools python -m media.gen --reference          # (re)write tests/data/media/
    uv run --directory tools python -m media.gen --reference --check  # regenerate into a temp dir and compare
                                                                      # with tests/data/media: exit 1 on change
    python3 tools/media/gen.py [--out DIR] [--reference] [--check]    # in any env with pillow, av and numpy
                                                                      # (and torch + torchvision for --reference)

--reference needs torch and torchvision, which the tools project's env has (as a dependency of the official
stable-worldmodel). Without torch, a light env makes everything else (from tools/):
    uv run --no-project --with pillow==13.0.0 --with av==18.1.0 --with numpy python -m media.gen --out DIR
It refuses to rewrite a directory that holds the reference without --reference (the manifest would drop it).
The committed files were made with Python 3.11, for which tools/uv.lock pins those two versions (it pins another av
for Python 3.10 and for 3.12+, whose bundled x264/x265 may encode different bytes: see Deterministic, below).

Every picture is synthetic: smooth gradients, hard-edged shapes, an 8-pixel checkerboard, 1-pixel lines and
seeded noise, so that chroma upsampling, MCU padding, resize filters and the codecs' prediction all have real work
to do. The scene is drawn per size (not scaled), and for the streams it moves from frame to frame.

Files (all listed, with hashes, in manifest.json):
  baseline_420_640x480.jpg      baseline, 4:2:0: the common camera frame (nvJPEG hardware / batched path)
  baseline_444_640x480.jpg      baseline, 4:4:4 (no chroma subsampling)
  progressive_420_640x480.jpg   progressive (multi-scan) 4:2:0: the hardware backend rejects it, so a decoder must
                                fall back to the hybrid/GPU backend or report it cleanly. Same picture, quality and
                                quantisation as baseline_420_640x480.jpg: both decode to identical pixels
  gray_320x240.jpg              one component (Pillow mode "L"); "subsampling" is "4:0:0"
  baseline_422_320x240.jpg      baseline, 4:2:2 (chroma halved horizontally only)
  odd_420_223x127.jpg           4:2:0 with width and height not multiples of the 16x16 MCU: the padding must be cropped
  odd_420_17x9.jpg              4:2:0, tiny: two MCUs wide, one high
  baseline_420_224x224.jpg      baseline 4:2:0 at LeWM's input size, so preprocessing needs no resize (the jpeg224
                                row of `swm bench media` and tools/swm_tools/bench_media.py)
  corrupt_truncated.jpg         the first 60 % of baseline_420_640x480.jpg: a valid header, the entropy data cut off;
                                Pillow fails to decode it, a decoder must return an error (not crash or hang)
  corrupt_png_bytes.jpg         a 16x12 PNG under a .jpg name: must be rejected as not a JPEG
  h264_res_change.h264          raw H.264 Annex-B: 24 frames 320x240, then 24 frames 256x192 (two independently
                                encoded segments, concatenated; each starts with SPS + PPS + IDR). High profile, 8-bit
                                4:2:0, progressive, no B-frames (decode order = display order), an IDR every 8 frames
                                with SPS/PPS repeated before each, CRF 26, one slice per picture
  h264_res_change_corrupt.h264  the same stream with bytes in the middle of frame 11's slice data overwritten (frame
                                11 is the 4th picture of the 2nd GOP; the same length is kept and no start code is
                                created): frames 11-15 may be damaged, frame 16 (an IDR) must decode cleanly again
  hevc_res_change.h265          raw HEVC Annex-B (libx265, Main profile), built like the H.264 stream: 24 frames
                                320x240, then 24 frames 256x192, an IDR (closed GOP) every 8 frames with VPS/SPS/PPS
                                repeated, CRF 28, no B-frames, one slice per picture
  h264_1080p.h264               raw H.264 Annex-B, 16 frames 1920x1080 (coded 1920x1088: the decoder crops), built
                                like h264_res_change.h264 at CRF 30: the clip of `swm bench media`'s H.264 row
  baseline_420_640x480.ref112.f32
                                written with --reference only (an explicit flag, so that the set of files does not
                                depend on what is installed): the Pillow-decoded RGB of baseline_420_640x480.jpg
                                through LeWM's preprocessing (docs/spec/lewm.md §8: to float / 255, ImageNet
                                normalisation, then torchvision v2 resize of the shorter side, bilinear, antialias)
                                as raw little-endian float32, CHW, shape (3, 112, 149). The shorter side is 112 rather
                                than the model's 224 to keep the fixture small (224 would be 801 KB); the resize code
                                is the same. Compare with a tolerance (torch's float kernels may round differently on
                                another CPU or version): --check accepts a difference up to 1e-5 in this file and
                                ignores its sha256 and torch versions in the manifest
  manifest.json                 what the tests read (below)

manifest.json has "generator" (the script, seed and the library versions the bytes were made with) and "files",
one object per file, in the order above:
  name, kind ("jpeg", "jpeg-corrupt", "h264-annexb", "h265-annexb", "f32-le"), purpose, size, sha256,
  expect ("ok": must decode; "error": must be rejected; "recover": decodes with damage, then recovers),
  width, height (for a stream: its first segment), subsampling ("4:2:0", "4:2:2", "4:4:4", "4:0:0"),
  progressive (JPEG: multi-scan; stream: progressive rather than interlaced frames).
  JPEG: sampling_factors ([h, v] per component), mcu ([w, h] in pixels), quality, and "decoded": Pillow's decode
  converted to RGB (a grey JPEG's value repeated in R, G and B) as shape [h, w, 3], sha256 of the raw bytes and
  the per-channel mean. libjpeg-turbo upsamples chroma with its "fancy" filter, so another decoder (nvJPEG) is
  expected to match the mean closely but not the sha256 for subsampled images.
  Stream: codec, profile, bit_depth, frames, gop, b_frames, idr_frames (frame indices), segments (first_frame,
  frames, width, height), access_units ([byte offset, length] per frame in decode order, each with its parameter
  sets and SEI: one packet per picture for NVDEC), and decoded_nv12_sha256: per frame, the sha256 of the frame
  as FFmpeg decodes it, laid out as tightly packed NV12 (the Y plane, then the U,V-interleaved plane, no pitch).
  H.264 and HEVC decoding is bit-exact, so NVDEC's NV12 output of the valid streams must match these exactly.
  Corrupt stream: corrupted {frame, offset, length} and pyav_decode {frames, differs_from_clean (frame indices)}.

Deterministic: fixed seeds, no timestamps, single-threaded encoders, pixels made with numpy's legacy RandomState
(whose stream numpy keeps fixed) and converted to YUV here rather than by swscale. Two runs give byte-identical
files for the library versions recorded in the manifest (check with --check); another libjpeg-turbo, x264 or x265
build may change the encoded bytes, and then the manifest's hashes change with them. Every run also checks its
output: each valid JPEG decodes in Pillow with the intended size, subsampling and scan type, the corrupt ones do
not decode, and PyAV decodes each stream to the intended frame count, resolutions and IDR positions.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "data" / "media"

SEED = 2026
JPEG_QUALITY = 90
FPS = 30
GOP = 8
CORRUPT_FRAME = 11  # the 4th picture of the 2nd GOP (frames 8..15)
TRUNCATE_FRACTION = 0.6
REFERENCE_SHORTER_SIDE = 112
REFERENCE_TOLERANCE = 1e-5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class JpegCase:
    name: str
    width: int
    height: int
    subsampling: str  # "4:2:0", "4:2:2", "4:4:4", or "4:0:0" for a one-component image
    progressive: bool
    purpose: str


JPEG_CASES = [
    JpegCase("baseline_420_640x480.jpg", 640, 480, "4:2:0", False, "baseline 4:2:0, the common camera frame"),
    JpegCase("baseline_444_640x480.jpg", 640, 480, "4:4:4", False, "baseline 4:4:4, no chroma subsampling"),
    JpegCase("progressive_420_640x480.jpg", 640, 480, "4:2:0", True,
             "progressive 4:2:0: not decodable by the nvJPEG hardware backend (fallback or clean error)"),
    JpegCase("gray_320x240.jpg", 320, 240, "4:0:0", False, "greyscale, one component"),
    JpegCase("baseline_422_320x240.jpg", 320, 240, "4:2:2", False, "baseline 4:2:2"),
    JpegCase("odd_420_223x127.jpg", 223, 127, "4:2:0", False,
             "4:2:0, size not a multiple of the MCU: crop the padding"),
    JpegCase("odd_420_17x9.jpg", 17, 9, "4:2:0", False, "4:2:0, tiny (2x1 MCUs)"),
    JpegCase("baseline_420_224x224.jpg", 224, 224, "4:2:0", False,
             "baseline 4:2:0 at the model's input size: preprocessing without a resize (swm bench media, jpeg224)"),
]


@dataclass(frozen=True)
class StreamCase:
    name: str
    kind: str
    encoder: str  # PyAV encoder name
    demuxer: str  # FFmpeg raw-stream demuxer used to read it back
    segments: tuple[tuple[int, int, int], ...]  # (frames, width, height)
    options: dict
    purpose: str


# Shared by both encoders: closed GOPs of 8 with an IDR each, no scene-cut keyframes, no B-frames, one thread,
# parameter sets before every IDR, BT.601 limited-range colour signalled in the VUI. x265's info SEI is off: it
# records the CPU's feature flags (x264's SEI holds only its version and options).
_X264 = ("keyint=8:min-keyint=4:scenecut=0:bframes=0:open-gop=0:repeat-headers=1:threads=1:lookahead-threads=1:"
         "sliced-threads=0:colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m:range=tv")
_X265 = ("keyint=8:min-keyint=8:scenecut=0:bframes=0:open-gop=0:repeat-headers=1:frame-threads=1:pools=none:"
         "wpp=0:slices=1:info=0:log-level=error:"
         "colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m:range=limited")

STREAM_CASES = [
    StreamCase("h264_res_change.h264", "h264-annexb", "libx264", "h264", ((24, 320, 240), (24, 256, 192)),
               {"preset": "medium", "crf": "26", "x264-params": _X264},
               "H.264 Annex-B, resolution change at frame 24, an IDR every 8 frames"),
    StreamCase("hevc_res_change.h265", "h265-annexb", "libx265", "hevc", ((24, 320, 240), (24, 256, 192)),
               {"preset": "medium", "crf": "28", "x265-params": _X265},
               "HEVC Annex-B, resolution change at frame 24, an IDR every 8 frames"),
    StreamCase("h264_1080p.h264", "h264-annexb", "libx264", "h264", ((16, 1920, 1080),),
               {"preset": "medium", "crf": "30", "x264-params": _X264},
               "H.264 Annex-B 1080p (coded 1088 rows, cropped to 1080), 16 frames, an IDR every 8: the bench clip"),
]


# ---------------------------------------------------------------------------------------------------------------
# Synthetic pictures
# ---------------------------------------------------------------------------------------------------------------


def scene(width: int, height: int, t: float, seed: int) -> np.ndarray:
    """The synthetic picture at time t as uint8 RGB (height, width, 3).

    Smooth gradients plus a sinusoid, hard-edged shapes (rectangle, disc, a dark corner over a diagonal), an
    8-pixel checkerboard, 1-pixel lines and seeded noise (weak everywhere, strong in one patch). Shapes are placed in
    coordinates relative to the size and move with t; the checkerboard and lines stay pixel-sized.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = (x + 0.5) / width, (y + 0.5) / height
    rgb = np.stack([
        40 + 180 * u,
        30 + 190 * v,
        128 + 90 * np.sin(2 * np.pi * (1.5 * u + 0.8 * v) + 0.3 * t),
    ], axis=-1)

    def region(u0, u1, v0, v1):
        return (u >= u0) & (u < u1) & (v >= v0) & (v < v1)

    rgb[region(0.10 + 0.01 * t, 0.35 + 0.01 * t, 0.15, 0.45)] = (230, 40, 40)
    scale = min(width, height)
    cx, cy = (0.70 - 0.008 * t) * width, (0.60 + 0.004 * t) * height
    rgb[(x - cx) ** 2 + (y - cy) ** 2 < (0.18 * scale) ** 2] = (20, 60, 220)
    checker = ((x // 8 + y // 8 + int(t) // 4) % 2) * 255
    board = region(0.45, 0.65, 0.08, 0.30)
    rgb[board] = checker[board][:, None]
    rgb[u + v > 1.55] *= 0.35
    rgb[int(0.85 * height), :] = 255
    rgb[:, int(0.90 * width)] = 255

    noise_gen = np.random.RandomState(seed)
    noise = noise_gen.randint(-4, 5, size=rgb.shape).astype(np.float64)
    patch = region(0.05, 0.30, 0.60, 0.90)
    noise[patch] *= 6
    return np.clip(np.rint(rgb + noise), 0, 255).astype(np.uint8)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB, as uint8 (height, width)."""
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)


def to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 RGB to BT.601 limited-range Y, U, V planes (chroma: the mean of each 2x2 block); even sizes only."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255

    def plane(p):
        return np.clip(np.rint(p), 0, 255).astype(np.uint8)

    def half(p):
        h, w = p.shape
        return plane(p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)))

    return plane(y), half(cb), half(cr)


# ---------------------------------------------------------------------------------------------------------------
# JPEG
# ---------------------------------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_jpeg(case: JpegCase, seed: int) -> bytes:
    rgb = scene(case.width, case.height, 0.0, seed)
    buf = io.BytesIO()
    if case.subsampling == "4:0:0":
        Image.fromarray(to_gray(rgb), "L").save(buf, "JPEG", quality=JPEG_QUALITY)
    else:
        Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=case.subsampling,
                                         progressive=case.progressive, optimize=False)
    return buf.getvalue()


def subsampling_of(factors: list[list[int]]) -> str:
    """J:a:b notation from the SOF sampling factors ([h, v] per component)."""
    if len(factors) == 1:
        return "4:0:0"
    (yh, yv), chroma = factors[0], factors[1:]
    if any(f != [1, 1] for f in chroma):
        return "other"
    return {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0"}.get((yh, yv), "other")


def describe_jpeg(data: bytes) -> dict:
    """What Pillow reads from a JPEG: size, sampling, scan type and the decoded pixels."""
    im = Image.open(io.BytesIO(data))
    if im.format != "JPEG":
        raise ValueError(f"not a JPEG: Pillow reads {im.format}")
    factors = [[h, v] for (_, h, v, _) in im.layer]
    progressive = bool(im.info.get("progressive") or im.info.get("progression"))
    rgb = np.asarray(im.convert("RGB"))
    return {
        "width": im.width,
        "height": im.height,
        "subsampling": subsampling_of(factors),
        "progressive": progressive,
        "sampling_factors": factors,
        "mcu": [8 * max(h for h, _ in factors), 8 * max(v for _, v in factors)],
        "decoded": {
            "shape": list(rgb.shape),
            "sha256": sha256(rgb.tobytes()),
            "mean_rgb": [round(float(m), 4) for m in rgb.reshape(-1, 3).mean(axis=0)],
        },
    }


def make_jpegs(out: Path, seed: int) -> tuple[list[dict], dict[str, bytes]]:
    entries, data = [], {}
    for case in JPEG_CASES:
        jpeg = encode_jpeg(case, seed)
        info = describe_jpeg(jpeg)
        intended = (case.width, case.height, case.subsampling, case.progressive)
        got = (info["width"], info["height"], info["subsampling"], info["progressive"])
        check(got == intended, f"{case.name}: Pillow reads {got}, intended {intended}")
        (out / case.name).write_bytes(jpeg)
        data[case.name] = jpeg
        entries.append({
            "name": case.name, "kind": "jpeg", "purpose": case.purpose, "size": len(jpeg), "sha256": sha256(jpeg),
            "expect": "ok", "width": info["width"], "height": info["height"], "subsampling": info["subsampling"],
            "progressive": info["progressive"], "sampling_factors": info["sampling_factors"], "mcu": info["mcu"],
            "quality": JPEG_QUALITY, "decoded": info["decoded"],
        })
    return entries, data


def pillow_decode_error(data: bytes) -> str | None:
    """None if Pillow decodes the bytes as a JPEG, else the error."""
    try:
        describe_jpeg(data)
    except Exception as e:  # noqa: BLE001 (any failure is the answer)
        return f"{type(e).__name__}: {e}"
    return None


def make_corrupt_jpegs(out: Path, source_name: str, source: bytes, seed: int) -> list[dict]:
    truncated = source[: int(len(source) * TRUNCATE_FRACTION)]
    png = io.BytesIO()
    Image.fromarray(scene(16, 12, 0.0, seed), "RGB").save(png, "PNG", compress_level=0)
    src = describe_jpeg(source)
    cases = [
        ("corrupt_truncated.jpg", truncated, src["width"], src["height"], src["subsampling"],
         f"the first {TRUNCATE_FRACTION:.0%} of {source_name}: valid header, entropy data cut off"),
        ("corrupt_png_bytes.jpg", png.getvalue(), 16, 12, None, "PNG bytes under a .jpg name"),
    ]
    entries = []
    for name, data, width, height, subsampling, purpose in cases:
        error = pillow_decode_error(data)
        check(error is not None, f"{name}: Pillow decodes it, but it must fail")
        (out / name).write_bytes(data)
        entries.append({
            "name": name, "kind": "jpeg-corrupt", "purpose": purpose, "size": len(data), "sha256": sha256(data),
            "expect": "error", "width": width, "height": height, "subsampling": subsampling, "progressive": False,
            "pillow_error": error,
        })
    return entries


# ---------------------------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nal:
    start: int  # first byte of the start code
    payload: int  # first byte of the NAL header
    end: int  # one past the last byte
    type: int


def split_nals(data: bytes, codec: str) -> list[Nal]:
    """The NAL units of an Annex-B stream (3- or 4-byte start codes)."""
    heads = []
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0:
        heads.append(pos)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    starts = [p - 1 if p > 0 and data[p - 1] == 0 else p for p in heads]
    nals = []
    for i, p in enumerate(heads):
        end = starts[i + 1] if i + 1 < len(heads) else len(data)
        header = data[p + 3]
        nal_type = header & 0x1F if codec == "h264" else (header >> 1) & 0x3F
        nals.append(Nal(starts[i], p + 3, end, nal_type))
    return nals


def is_picture(nal: Nal, codec: str) -> bool:
    """A coded slice (VCL NAL unit)."""
    return 1 <= nal.type <= 5 if codec == "h264" else nal.type <= 31


def is_idr(nal: Nal, codec: str) -> bool:
    return nal.type == 5 if codec == "h264" else nal.type in (19, 20)


def encode_segment(case: StreamCase, frames: int, width: int, height: int, first_t: int, seed: int) -> bytes:
    """One independently encoded segment as Annex-B bytes (the encoders emit Annex-B without a container)."""
    import av

    ctx = av.CodecContext.create(case.encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, FPS), Fraction(FPS, 1)
    ctx.gop_size, ctx.max_b_frames, ctx.thread_count = GOP, 0, 1
    ctx.options = dict(case.options)
    out = bytearray()
    for i in range(frames):
        t = first_t + i
        y, u, v = to_yuv420(scene(width, height, float(t), seed * 1000 + t))
        planar = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(height * 3 // 2, width)
        frame = av.VideoFrame.from_ndarray(planar, format="yuv420p")
        frame.pts = i
        for packet in ctx.encode(frame):
            out += bytes(packet)
    for packet in ctx.encode(None):
        out += bytes(packet)
    return bytes(out)


def nv12_bytes(frame) -> bytes:
    """A decoded yuv420p frame as tightly packed NV12: Y, then U and V interleaved."""
    check(frame.format.name == "yuv420p", f"decoded frame is {frame.format.name}, expected yuv420p")
    w, h = frame.width, frame.height
    cw, ch = (w + 1) // 2, (h + 1) // 2
    planes = []
    for plane, (pw, ph) in zip(frame.planes, [(w, h), (cw, ch), (cw, ch)]):
        planes.append(np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:ph, :pw])
    y, u, v = planes
    return y.tobytes() + np.stack([u, v], axis=-1).tobytes()


def decode_stream(data: bytes, demuxer: str) -> tuple[list[tuple[int, int, str]], str, int]:
    """Decodes with PyAV (FFmpeg, one thread): per output frame (width, height, NV12 sha256), the profile, and the
    number of packets the decoder rejected."""
    import av

    frames, errors = [], 0
    with av.open(io.BytesIO(data), format=demuxer) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        for packet in container.demux(stream):  # ends with an empty packet, which flushes the decoder
            try:
                decoded = stream.codec_context.decode(packet)
            except av.FFmpegError:
                errors += 1
                continue
            for frame in decoded:
                frames.append((frame.width, frame.height, sha256(nv12_bytes(frame))))
        profile = stream.codec_context.profile
    return frames, profile, errors


def make_stream(out: Path, case: StreamCase, seed: int) -> tuple[dict, bytes]:
    codec = case.demuxer
    data, segments, first = b"", [], 0
    for frames, width, height in case.segments:
        data += encode_segment(case, frames, width, height, first, seed)
        segments.append({"first_frame": first, "frames": frames, "width": width, "height": height})
        first += frames
    total = first

    nals = split_nals(data, codec)
    pictures = [n for n in nals if is_picture(n, codec)]
    check(len(pictures) == total, f"{case.name}: {len(pictures)} slices for {total} frames (one slice per picture)")
    idr = [i for i, n in enumerate(pictures) if is_idr(n, codec)]
    check(idr == list(range(0, total, GOP)), f"{case.name}: IDR frames {idr}, expected every {GOP}")
    access_units, start = [], 0
    for n in pictures:
        access_units.append([start, n.end - start])
        start = n.end
    access_units[-1][1] = len(data) - access_units[-1][0]

    decoded, profile, errors = decode_stream(data, case.demuxer)
    expected_sizes = [(s["width"], s["height"]) for s in segments for _ in range(s["frames"])]
    check(errors == 0 and [(w, h) for w, h, _ in decoded] == expected_sizes,
          f"{case.name}: PyAV decoded {len(decoded)} frames ({errors} errors), sizes differ from the segments")

    (out / case.name).write_bytes(data)
    entry = {
        "name": case.name, "kind": case.kind, "purpose": case.purpose, "size": len(data), "sha256": sha256(data),
        "expect": "ok", "width": segments[0]["width"], "height": segments[0]["height"], "subsampling": "4:2:0",
        "progressive": True, "codec": codec, "profile": profile, "bit_depth": 8, "frames": total, "gop": GOP,
        "b_frames": 0, "idr_frames": idr, "segments": segments, "access_units": access_units,
        "encoder_options": case.options, "decoded_nv12_sha256": [h for _, _, h in decoded],
    }
    return entry, data


def make_corrupt_stream(out: Path, clean_entry: dict, clean: bytes, seed: int) -> dict:
    """Overwrites the middle of one P-frame's slice data with seeded bytes in 0x04..0xFF (no zero byte, so no
    start code or emulation-prevention pattern can appear), keeping the length."""
    name = clean_entry["name"].replace(".h264", "_corrupt.h264")
    codec = clean_entry["codec"]
    picture = [n for n in split_nals(clean, codec) if is_picture(n, codec)][CORRUPT_FRAME]
    check(not is_idr(picture, codec), f"{name}: frame {CORRUPT_FRAME} must not be an IDR")
    body = picture.end - picture.payload
    offset = picture.payload + max(4, body // 3)
    length = min(body // 3, 256)
    check(length >= 16, f"{name}: frame {CORRUPT_FRAME}'s slice is too small ({body} bytes) to corrupt")
    junk = np.random.RandomState(seed).randint(4, 256, size=length).astype(np.uint8).tobytes()
    data = clean[:offset] + junk + clean[offset + length:]

    decoded, _, errors = decode_stream(data, codec)
    clean_hashes = clean_entry["decoded_nv12_sha256"]
    differs = [i for i, (_, _, h) in enumerate(decoded) if i >= len(clean_hashes) or h != clean_hashes[i]]
    next_idr = (CORRUPT_FRAME // GOP + 1) * GOP
    check(len(decoded) > next_idr and all(i < next_idr for i in differs),
          f"{name}: PyAV does not recover at the IDR at frame {next_idr} (differs: {differs})")

    (out / name).write_bytes(data)
    entry = {k: v for k, v in clean_entry.items() if k != "decoded_nv12_sha256"}
    entry.update({
        "name": name, "purpose": f"{clean_entry['name']} with frame {CORRUPT_FRAME}'s slice data overwritten: "
                                 f"damage may last until the IDR at frame {next_idr}, which must decode cleanly",
        "size": len(data), "sha256": sha256(data), "expect": "recover",
    })
    entry["corrupted"] = {"frame": CORRUPT_FRAME, "offset": offset, "length": length}
    entry["pyav_decode"] = {"frames": len(decoded), "rejected_packets": errors, "differs_from_clean": differs}
    return entry


# ---------------------------------------------------------------------------------------------------------------
# Optional torchvision reference
# ---------------------------------------------------------------------------------------------------------------


def preprocess_reference(rgb: np.ndarray, shorter_side: int) -> np.ndarray:
    """uint8 RGB (h, w, 3) through LeWM's preprocessing (docs/spec/lewm.md §8) as float32 (3, h', w')."""
    import torch
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)  # a writable copy
    x = F.to_dtype(x, torch.float32, scale=True)
    x = F.normalize(x, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    x = F.resize(x, [shorter_side], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return x.contiguous().numpy()


def make_reference(out: Path, source_name: str, source: bytes) -> dict:
    import torch
    import torchvision

    rgb = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    ref = preprocess_reference(rgb, REFERENCE_SHORTER_SIDE)
    data = ref.astype("<f4").tobytes()
    name = source_name.replace(".jpg", f".ref{REFERENCE_SHORTER_SIDE}.f32")
    (out / name).write_bytes(data)
    return {
        "name": name, "kind": "f32-le", "purpose": f"{source_name} decoded by Pillow, then LeWM preprocessing",
        "size": len(data), "sha256": sha256(data), "expect": "ok", "width": ref.shape[2], "height": ref.shape[1],
        "subsampling": None, "progressive": False, "shape": list(ref.shape), "layout": "CHW, RGB",
        "pipeline": f"x/255, normalize(mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)}), "
                    f"torchvision v2 resize(size=[{REFERENCE_SHORTER_SIDE}], bilinear, antialias=True)",
        "torch": torch.__version__, "torchvision": torchvision.__version__,
    }


# ---------------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------------


class CheckFailed(Exception):
    pass


def check(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def library_versions() -> dict:
    import av
    import PIL
    from PIL import features

    return {
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "av": av.__version__,
        "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "numpy": np.__version__,
    }


def generate(out: Path, seed: int, reference: bool) -> list[dict]:
    """Writes every file and manifest.json into out; returns the manifest's file entries."""
    out.mkdir(parents=True, exist_ok=True)
    entries, jpegs = make_jpegs(out, seed)
    source = JPEG_CASES[0].name
    entries += make_corrupt_jpegs(out, source, jpegs[source], seed)
    for case in STREAM_CASES:
        entry, data = make_stream(out, case, seed)
        entries.append(entry)
        if case.name == "h264_res_change.h264":
            entries.append(make_corrupt_stream(out, entry, data, seed))
    if reference:
        entries.append(make_reference(out, source, jpegs[source]))
    manifest = {
        "generator": {"script": "tools/media/gen.py", "seed": seed, **library_versions()},
        "files": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return entries


def without_reference_hashes(manifest: dict) -> dict:
    """The manifest less what may change with torch's rounding: the reference's sha256 and torch versions."""
    for entry in manifest["files"]:
        if entry["kind"] == "f32-le":
            for key in ("sha256", "torch", "torchvision"):
                entry.pop(key, None)
    return manifest


def same_file(a: Path, b: Path) -> bool:
    """Byte equality, except for the float reference (within REFERENCE_TOLERANCE) and its manifest entry."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix == ".f32":
        x, y = np.fromfile(a, "<f4"), np.fromfile(b, "<f4")
        return x.shape == y.shape and bool(np.abs(x - y).max() <= REFERENCE_TOLERANCE)
    if a.name == "manifest.json":
        return (without_reference_hashes(json.loads(a.read_text()))
                == without_reference_hashes(json.loads(b.read_text())))
    return False


def compare_dirs(fresh: Path, committed: Path) -> list[str]:
    """Names of files that differ between the two directories, or exist in one only."""
    committed_files = [p for p in committed.iterdir() if p.is_file()] if committed.is_dir() else []
    names = {p.name for p in fresh.iterdir()} | {p.name for p in committed_files}
    return sorted(n for n in names if not (fresh / n).is_file() or not (committed / n).is_file()
                  or not same_file(fresh / n, committed / n))


def has_reference(out: Path) -> bool:
    """Whether out's manifest lists a torchvision reference."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return any(entry.get("kind") == "f32-le" for entry in manifest.get("files", []))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: tests/data/media)")
    ap.add_argument("--seed", type=int, default=SEED, help=f"picture seed (default {SEED}; another seed changes "
                                                            "every file)")
    ap.add_argument("--reference", action="store_true",
                    help="also write the torchvision preprocessing reference (needs torch and torchvision)")
    ap.add_argument("--check", action="store_true",
                    help="generate into a temporary directory and compare with --out; exit 1 on any difference")
    args = ap.parse_args()

    if args.reference:
        try:
            import torch  # noqa: F401
            import torchvision  # noqa: F401
        except ImportError as e:
            print(f"error: --reference needs torch and torchvision ({e})", file=sys.stderr)
            return 2
    try:
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                generate(Path(tmp), args.seed, args.reference)
                changed = compare_dirs(Path(tmp), args.out)
            for name in changed:
                print(f"differs: {name}")
            print(f"media: {'up to date' if not changed else f'{len(changed)} file(s) differ'} in {args.out}")
            return 1 if changed else 0
        if not args.reference and has_reference(args.out):
            print(f"error: {args.out} holds the torchvision reference: pass --reference (needs torch and "
                  "torchvision) or write elsewhere with --out", file=sys.stderr)
            return 2
        entries = generate(args.out, args.seed, args.reference)
    except CheckFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = sum(e["size"] for e in entries)
    for e in entries:
        print(f"{e['size']:>8}  {e['name']}")
    print(f"{total:>8}  total in {len(entries)} files (+ manifest.json) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
