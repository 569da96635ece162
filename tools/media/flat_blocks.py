#!/usr/bin/env python3
"""Writes tests/data/media/flat_blocks/: JPEGs whose decoded components are known exactly, with Pillow's RGB decode.

Each image (48x32, quality 100, 4:4:4 / 4:2:2 / 4:2:0) is flat over every 8x8 block of every component (luma
blocks of 8x8 pixels, chroma blocks of 8x8 chroma samples), so the IDCT of each block is its DC value in every
decoder: the components after the IDCT are exactly the planes drawn here. Pillow's decode of the file then differs
from those planes only by libjpeg-turbo's chroma upsampling and colour conversion, which `swm::ops::jpeg_rgb` (and
the fused kernel's JPEG formats) must reproduce bit for bit (tests/host/preprocess_reference.rs).

    uv run --directory tools python -m media.flat_blocks          # rewrite tests/data/media/flat_blocks/

Files per sampling S in 444, 422, 420: S.jpg; S.planes (luma, then Cb and Cr planes, unpadded rows); S.rgb
(Pillow's decode, H x W x 3 bytes). versions.txt records Pillow and libjpeg-turbo.
"""
import pathlib

import numpy as np
from PIL import Image, features

W, H = 48, 32
SAMPLINGS = {"444": (0, 1, 1), "422": (1, 2, 1), "420": (2, 2, 2)}  # Pillow's subsampling, h and v factors


def main() -> None:
    out = pathlib.Path(__file__).resolve().parents[2] / "tests/data/media/flat_blocks"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    for name, (sub, hs, vs) in SAMPLINGS.items():
        cw, ch = W // hs, H // vs
        block = lambda h, w: np.kron(rng.integers(0, 256, (h // 8, w // 8)), np.ones((8, 8))).astype(np.uint8)
        y, cb, cr = block(H, W), block(ch, cw), block(ch, cw)
        # The encoder gets full-resolution chroma, each sample repeated over the pixels it covers: its averaging
        # downsampler gives back exactly the planes above.
        full = lambda c, vs=vs, hs=hs: Image.fromarray(np.repeat(np.repeat(c, vs, 0), hs, 1))
        image = Image.merge("YCbCr", [Image.fromarray(y), full(cb), full(cr)])
        image.save(out / f"{name}.jpg", quality=100, subsampling=sub)
        np.concatenate([y.ravel(), cb.ravel(), cr.ravel()]).tofile(out / f"{name}.planes")
        np.asarray(Image.open(out / f"{name}.jpg").convert("RGB")).tofile(out / f"{name}.rgb")
    (out / "versions.txt").write_text(
        f"pillow {Image.__version__}\nlibjpeg-turbo {features.version('libjpeg_turbo')} (libjpeg API {features.version('jpg')})\nsize {W}x{H}\n"
    )


if __name__ == "__main__":
    main()
