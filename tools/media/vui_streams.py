#!/usr/bin/env python3
"""Writes tests/data/media/vui/: tiny H.264 and HEVC Annex-B streams whose VUI signals a colour description other
than the default, for the GPU test that NVDEC frames carry it (`Frame::color`): BT.709 full range, and BT.2020
limited range. 2 frames each (H.264 64x48; HEVC 192x144, NVDEC's HEVC minimum being 144x144), a grey gradient
(the pixels do not matter, the sequence header does).

    uv run --directory tools python -m media.vui_streams

Files: h264_bt709_full.h264, hevc_bt2020_limited.h265; versions.txt records PyAV and libavcodec.
"""
import pathlib

import av
import numpy as np

FRAMES = 2
CASES = [
    ("h264_bt709_full.h264", "libx264", "h264", (64, 48),
     {"x264-params": "keyint=8:bframes=0:threads=1:colorprim=bt709:transfer=bt709:colormatrix=bt709:range=pc"}),
    ("hevc_bt2020_limited.h265", "libx265", "hevc", (192, 144),
     {"x265-params": "keyint=8:bframes=0:frame-threads=1:pools=none:info=0:log-level=error:colorprim=bt2020:"
                     "transfer=bt709:colormatrix=bt2020nc:range=limited"}),
]


def main() -> None:
    out = pathlib.Path(__file__).resolve().parents[2] / "tests/data/media/vui"
    out.mkdir(parents=True, exist_ok=True)
    for name, encoder, fmt, (W, H), options in CASES:
        ramp = np.tile(np.linspace(16, 235, W, dtype=np.uint8), (H, 1))
        with av.open(str(out / name), "w", format=fmt) as container:
            stream = container.add_stream(encoder, rate=30, options=options)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            # libx264/libx265 take the range from the codec context (AVCOL_RANGE_JPEG = 2 is full range).
            stream.codec_context.color_range = 2 if "range=pc" in next(iter(options.values())) else 1
            for i in range(FRAMES):
                frame = av.VideoFrame(W, H, "yuv420p")
                frame.planes[0].update((ramp + i).tobytes())
                for p in (1, 2):
                    frame.planes[p].update(np.full((H // 2, W // 2), 128, np.uint8).tobytes())
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    libavcodec = ".".join(map(str, av.library_versions["libavcodec"]))
    (out / "versions.txt").write_text(f"av {av.__version__}\nlibavcodec {libavcodec}\n")


if __name__ == "__main__":
    main()
