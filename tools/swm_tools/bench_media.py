"""The peer side of `swm bench media` (issue 12): camera frame -> LeWM's model input on the GPU, done the way a
PyTorch user would, on the GPU and the PIL/CPU way. Every row ends at a float32 ImageNet-normalised (N, 3, 224, W')
CUDA tensor: to float x/255, Normalize(ImageNet), then torchvision v2 Resize(224, bilinear, antialias) of the shorter
side (upstream's order, docs/spec/lewm.md §8). Timed like timing.py: warm-up, then CUDA-synchronised wall time per call.

    python -m swm_tools.bench_media --json OUT [--iters 200]

Rows (inputs already in memory: the JPEG bytes in host memory, the raw frames where the row says):
  jpeg224    tests/data/media/baseline_420_224x224.jpg -> (1, 3, 224, 224)
  jpeg640    tests/data/media/baseline_420_640x480.jpg -> (1, 3, 224, 298)
  jpeg640x4  four copies of that JPEG (a history of 4 frames) -> (4, 3, 224, 298)
  rgb1080    packed uint8 RGB 1920x1080 (HWC) -> (1, 3, 224, 398)
  nv12_1080  NV12 1920x1080 (Y plane, then interleaved U,V), BT.601 limited range -> (1, 3, 224, 398)
  h264_1080  a 1080p H.264 frame -> (1, 3, 224, 398): needs a decoder (PyAV on the CPU; no GPU decoder is reachable
             from PyTorch here: torchvision has no video decoding and torchcodec is not installed), else skipped
GPU peer: torchvision.io.decode_jpeg(device="cuda") (nvJPEG, the list form for the batch) or the frame already on the
GPU, then v2.ToDtype(float32, scale=True) / Normalize / Resize on the GPU. CPU peer: Pillow decode (or the frame in host
memory), then upstream eval's transform (scripts/plan/eval_wm.py: ToImage, ToDtype, Normalize, Resize; per frame) on
the CPU, then .cuda().

Synthetic 1080p frames (integer arithmetic, x in [0, 1920), y in [0, 1080); the JSON records their sha256):
  rgb1080   HWC, R = 255*x // 1919, G = 255*y // 1079, B = (x XOR y) & 255
  nv12_1080 one (1620, 1920) uint8 buffer, pitch 1920: rows 0..1079 are Y = 16 + 219*(x + y) // 2998; rows
            1080..1619 are the chroma plane, row j (0..539) holding U,V pairs for i in 0..959: byte 2i is
            U = 16 + 224*i // 959, byte 2i+1 is V = 16 + 224*j // 539
NV12 -> RGB (torch ops): chroma upsampled 2x bilinear (align_corners=False, edges clamped), BT.601 limited range
(Kr 0.299, Kb 0.114): y' = (Y-16)*255/219, u' = (U-128)*255/224, v' = (V-128)*255/224; R = y' + 1.402 v',
G = y' - (0.114*1.772/0.587) u' - (0.299*1.402/0.587) v', B = y' + 1.772 u'; clamp to [0, 255], /255.
The H.264 clip (PyAV only): 60 frames of rgb1080 rolled right by 4*t pixels, libx264 through PyAV, written next to
the JSON as h264_1080.h264 so that `swm bench media` can decode the same bytes.
"""
import argparse
import hashlib
import importlib.util
import io
import json
import platform
import subprocess
from fractions import Fraction
from pathlib import Path

import PIL
import torch
import torchvision
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

from .timing import bench

MEDIA = Path(__file__).resolve().parents[2] / "tests" / "data" / "media"
JPEG224, JPEG640 = "baseline_420_224x224.jpg", "baseline_420_640x480.jpg"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # stable_pretraining dataset_stats.ImageNet
SIZE = 224
W, H = 1920, 1080
KR, KB = 0.299, 0.114
H264_FRAMES = 60
WARMUP = 10
DEVICE = "cuda"  # the GPU peers' device and where every row must end (a CPU smoke test may set "cpu")

# The model-input transform of a decoded uint8 CHW (or NCHW) tensor, on whatever device the tensor is.
to_model = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD),
                       v2.Resize(SIZE, antialias=True)])
# scripts/plan/eval_wm.py img_transform: what upstream applies to each frame (a PIL image or tv_tensors.Image).
upstream = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD),
                       v2.Resize(SIZE, antialias=True)])


def synthetic_rgb():
    """uint8 (1080, 1920, 3), see the module doc."""
    y = torch.arange(H, dtype=torch.int64)[:, None].expand(H, W)
    x = torch.arange(W, dtype=torch.int64)[None, :].expand(H, W)
    return torch.stack([255 * x // (W - 1), 255 * y // (H - 1), (x ^ y) & 255], dim=-1).to(torch.uint8)


def synthetic_nv12():
    """uint8 (1620, 1920): the Y plane, then the interleaved U,V plane; see the module doc."""
    y = torch.arange(H, dtype=torch.int64)[:, None]
    x = torch.arange(W, dtype=torch.int64)[None, :]
    luma = 16 + 219 * (x + y) // (W + H - 2)
    j = torch.arange(H // 2, dtype=torch.int64)[:, None].expand(H // 2, W // 2)
    i = torch.arange(W // 2, dtype=torch.int64)[None, :].expand(H // 2, W // 2)
    uv = torch.stack([16 + 224 * i // (W // 2 - 1), 16 + 224 * j // (H // 2 - 1)], dim=-1).reshape(H // 2, W)
    return torch.cat([luma, uv]).to(torch.uint8)


def nv12_to_rgb(nv12):
    """(1620, 1920) uint8 NV12 -> float32 (3, 1080, 1920) RGB in [0, 1] (BT.601 limited range)."""
    luma = (nv12[:H].float() - 16) * (255 / 219)
    uv = nv12[H:].view(H // 2, W // 2, 2).permute(2, 0, 1).float()
    uv = torch.nn.functional.interpolate(uv[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    u, v = (uv - 128) * (255 / 224)
    kg = 1 - KR - KB
    r = luma + 2 * (1 - KR) * v
    g = luma - (2 * (1 - KB) * KB / kg) * u - (2 * (1 - KR) * KR / kg) * v
    b = luma + 2 * (1 - KB) * u
    return torch.stack([r, g, b]).clamp_(0, 255).div_(255)


def sha256(t):
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()


def timed(name, fn, iters, path):
    """timing.bench's row less its name, plus what the peer does."""
    row = bench(name, fn, WARMUP, iters, width=24)
    row.pop("name")
    return {"path": path, **row}


def measure(name, shape, gpu, cpu, iters, gpu_path, cpu_path):
    """One row: both peers' outputs checked (shape, dtype, device) and compared, then both timed."""
    a, b = gpu(), cpu()
    for out in (a, b):
        assert out.dtype == torch.float32 and out.device.type == DEVICE and list(out.shape) == shape, \
            (name, out.shape, out.dtype, out.device)
    return {"name": name, "output_shape": shape, "gpu_vs_cpu_max_abs": float((a - b).abs().max()),
            "gpu": timed(f"{name} gpu", gpu, iters, gpu_path), "cpu": timed(f"{name} cpu", cpu, iters, cpu_path)}


def jpeg_rows(iters):
    data = {n: (MEDIA / n).read_bytes() for n in (JPEG224, JPEG640)}
    tensors = {n: torch.frombuffer(bytearray(d), dtype=torch.uint8) for n, d in data.items()}

    def gpu(name):
        return lambda: to_model(decode_jpeg(tensors[name], mode=ImageReadMode.RGB, device=DEVICE))[None]

    def cpu(name):
        return lambda: upstream(Image.open(io.BytesIO(data[name])).convert("RGB"))[None].to(DEVICE)

    batch = [tensors[JPEG640].clone() for _ in range(4)]

    def gpu4():
        return to_model(torch.stack(decode_jpeg(batch, mode=ImageReadMode.RGB, device=DEVICE)))

    def cpu4():
        frames = [Image.open(io.BytesIO(data[JPEG640])).convert("RGB") for _ in range(4)]
        return torch.stack([upstream(f) for f in frames]).to(DEVICE)

    gpu_path = "torchvision.io.decode_jpeg(device='cuda'), then ToDtype, Normalize, Resize on the GPU"
    cpu_path = "Pillow decode, upstream eval transform on the CPU, then .cuda()"
    rows = [measure("jpeg224", [1, 3, SIZE, SIZE], gpu(JPEG224), cpu(JPEG224), iters, gpu_path, cpu_path),
            measure("jpeg640", [1, 3, SIZE, 298], gpu(JPEG640), cpu(JPEG640), iters, gpu_path, cpu_path),
            measure("jpeg640x4", [4, 3, SIZE, 298], gpu4, cpu4, iters,
                    "decode_jpeg of the list of 4 (one batched call), stack, the transform on the batch",
                    "4 Pillow decodes, upstream eval transform per frame (as policy._prepare_info), stack, .cuda()")]
    inputs = {n: {"file": f"tests/data/media/{n}", "sha256": hashlib.sha256(d).hexdigest()} for n, d in data.items()}
    return rows, inputs


def raw_rows(iters):
    rgb_host, nv12_host = synthetic_rgb(), synthetic_nv12()
    rgb_dev, nv12_dev = rgb_host.to(DEVICE), nv12_host.to(DEVICE)
    norm_resize = v2.Compose([v2.Normalize(MEAN, STD), v2.Resize(SIZE, antialias=True)])
    shape = [1, 3, SIZE, 398]
    rows = [
        measure("rgb1080", shape, lambda: to_model(rgb_dev.permute(2, 0, 1))[None],
                lambda: upstream(rgb_host.permute(2, 0, 1))[None].to(DEVICE), iters,
                "frame on the GPU: permute, ToDtype, Normalize, Resize",
                "frame in host memory: upstream eval transform on the CPU, then .cuda()"),
        measure("nv12_1080", shape, lambda: norm_resize(nv12_to_rgb(nv12_dev))[None],
                lambda: norm_resize(nv12_to_rgb(nv12_host))[None].to(DEVICE), iters,
                "frame on the GPU: NV12 -> RGB (torch ops), Normalize, Resize",
                "frame in host memory: the same torch ops on the CPU, then .cuda()"),
    ]
    inputs = {"rgb1080": {"shape": [H, W, 3], "sha256": sha256(rgb_host)},
              "nv12_1080": {"shape": [H * 3 // 2, W], "sha256": sha256(nv12_host)}}
    return rows, inputs


def h264_stream():
    """60 frames 1080p, libx264 via PyAV: Annex-B bytes; one IDR (frame 0, with SPS/PPS), no B-frames."""
    import av

    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 30), Fraction(30, 1)
    enc.gop_size, enc.max_b_frames, enc.thread_count = H264_FRAMES, 0, 1
    enc.options = {"preset": "veryfast", "crf": "23", "x264-params":
                   f"keyint={H264_FRAMES}:min-keyint={H264_FRAMES}:scenecut=0:bframes=0:threads=1:"
                   "lookahead-threads=1:sliced-threads=0:repeat-headers=1:colormatrix=smpte170m:range=tv"}
    base, out = synthetic_rgb(), bytearray()
    for t in range(H264_FRAMES):
        frame = av.VideoFrame.from_ndarray(torch.roll(base, 4 * t, dims=1).numpy(), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = t
        for packet in enc.encode(frame):
            out += bytes(packet)
    for packet in enc.encode(None):
        out += bytes(packet)
    return bytes(out)


def h264_row(iters, out_dir):
    if importlib.util.find_spec("av") is None:
        return {"name": "h264_1080", "skipped": "no H.264 decoder reachable from Python on this host: PyAV and "
                f"torchcodec are not installed, torchvision {torchvision.__version__} has no video decoding"}, {}
    import av

    data = h264_stream()
    (out_dir / "h264_1080.h264").write_bytes(data)
    dec = av.CodecContext.create("h264", "r")
    dec.thread_type = "NONE"  # one frame out per packet in (no frame-threading delay)
    packets = dec.parse(data) + dec.parse(None)
    assert len(packets) == H264_FRAMES, f"parsed {len(packets)} packets, expected {H264_FRAMES}"
    state = {"i": 0}

    def cpu():
        frames = dec.decode(packets[state["i"] % H264_FRAMES])
        state["i"] += 1
        assert len(frames) == 1, f"packet {state['i'] - 1}: {len(frames)} frames"
        rgb = torch.from_numpy(frames[0].to_ndarray(format="rgb24"))
        return upstream(rgb.permute(2, 0, 1))[None].to(DEVICE)

    out = cpu()
    assert list(out.shape) == [1, 3, SIZE, 398] and out.device.type == DEVICE, out.shape
    row = {"name": "h264_1080", "output_shape": list(out.shape),
           "gpu": {"skipped": "no GPU H.264 decoder reachable from PyTorch here (torchcodec not installed, "
                              f"torchvision {torchvision.__version__} has no video decoding)"},
           "cpu": timed("h264_1080 cpu", cpu, iters,
                        "PyAV (libavcodec h264, one thread) decodes the next packet of the 60-frame loop, "
                        "to_ndarray(rgb24), upstream eval transform on the CPU, then .cuda()")}
    return row, {"h264_1080": {"file": "h264_1080.h264 (beside the JSON)", "frames": H264_FRAMES,
                               "sha256": hashlib.sha256(data).hexdigest()}}


def av_version():
    if importlib.util.find_spec("av") is None:
        return None
    import av

    return av.__version__


def driver_version():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                              capture_output=True, text=True, timeout=30, check=False).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, help="output JSON (h264_1080.h264 is written beside it)")
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import features

    meta = {
        "tool": "swm_tools.bench_media", "iters": args.iters, "warmup": WARMUP,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                     "torchvision": torchvision.__version__, "pillow": PIL.__version__,
                     "libjpeg_turbo": features.version("libjpeg_turbo"),
                     "av": av_version()},
        "device": {"name": torch.cuda.get_device_name(0), "driver": driver_version(),
                   "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))},
        "cpu_threads": torch.get_num_threads(),
    }
    print("bench media: torch", torch.__version__, "torchvision", torchvision.__version__, "Pillow", PIL.__version__,
          "on", meta["device"]["name"], "driver", meta["device"]["driver"], flush=True)
    rows, inputs = [], {}
    with torch.inference_mode():
        for part in (jpeg_rows(args.iters), raw_rows(args.iters), h264_row(args.iters, out.parent)):
            rows += part[0] if isinstance(part[0], list) else [part[0]]
            inputs.update(part[1])
    if "skipped" in rows[-1]:
        print(f"h264_1080 skipped: {rows[-1]['skipped']}")
    out.write_text(json.dumps({**meta, "inputs": inputs, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
