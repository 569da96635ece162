"""Export the media parity fixture (issue 12): a camera JPEG through the official pipeline to LeWM's embedding.

    python -m swm_tools.export_media_parity --config tools/configs/lewm-pusht.json --out DIR [--device cuda]

1. Pillow decodes tests/data/media/baseline_420_640x480.jpg to uint8 RGB (480, 640, 3) (`rgb`).
2. Upstream eval's transform (scripts/plan/eval_wm.py `img_transform`, stable-worldmodel 0.1.1: v2.ToImage,
   ToDtype(float32, scale=True), Normalize(stable_pretraining dataset_stats.ImageNet), Resize(size=img_size)),
   applied by the official `stable_worldmodel.policy.BasePolicy._prepare_info` to an env-shaped (1, 1, H, W, 3) frame,
   as WorldModelPolicy.get_action does, on the CPU -> `pixels` (1, 3, 224, 298) for a 224 encoder.
3. The official LeWM, built exactly as export_lewm.py builds it (same config and seed -> the same weights), in eval
   mode with TF32 off: `model.encode({"pixels": pixels[:, None]})` (the ViT always runs with
   interpolate_pos_encoding=True, bicubic position embeddings for the off-square grid) -> `embedding` (1, D), the
   projected CLS embedding the planner uses.

Writes DIR/media_parity.safetensors (rgb uint8, pixels and embedding float32), DIR/config.json + DIR/weights.pt
(export_lewm.write_checkpoint: the same files export_lewm.py writes for that config and seed, so DIR may be an
export_lewm fixture directory) and DIR/media_parity.json (shapes, pipeline, versions).
"""
import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import official  # noqa: F401  (installs the import stubs first)
from .export_lewm import build_model, write_checkpoint
import PIL
import torch
import torchvision
import transformers
from PIL import Image
from safetensors.torch import save_file
from stable_worldmodel.policy import BasePolicy
from torchvision.transforms import v2

MEDIA = Path(__file__).resolve().parents[2] / "tests" / "data" / "media"
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # stable_pretraining.data.dataset_stats


def img_transform(img_size, dtype=torch.float32):
    """scripts/plan/eval_wm.py of stable-worldmodel 0.1.1 (not in the wheel), verbatim but for the stats import."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(dtype, scale=True), v2.Normalize(**IMAGENET),
                       v2.Resize(size=img_size)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="upstream LeWM config.json")
    ap.add_argument("--weights", help="weights.pt to load instead of random weights")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0, help="export_lewm.py's seed (the same weights for the same seed)")
    ap.add_argument("--image", default=str(MEDIA / "baseline_420_640x480.jpg"))
    ap.add_argument("--img-size", type=int, help="Resize size (upstream eval.img_size; default: encoder image_size)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    with open(args.config) as f:
        config = json.load(f)
    img_size = args.img_size or config["encoder"].get("image_size", 224)
    model = build_model(config, args.seed, args.weights, args.device)

    data = Path(args.image).read_bytes()
    rgb = np.array(Image.open(args.image).convert("RGB"))  # writable, like the World's frames
    policy = BasePolicy(transform={"pixels": img_transform(img_size)})
    info = policy._prepare_info({"pixels": rgb[None, None]})  # (n_envs, T, H, W, 3) uint8, as the World gives
    pixels = info["pixels"]  # (1, 1, 3, h, w) float32 on the CPU
    with torch.inference_mode():
        emb = model.encode({"pixels": pixels.to(args.device)})["emb"]  # (1, 1, D)

    tensors = {"rgb": torch.from_numpy(rgb), "pixels": pixels[:, 0].contiguous(),
               "embedding": emb[:, 0].float().cpu().contiguous()}
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "media_parity.safetensors"))
    write_checkpoint(args.out, config, model)
    meta = {
        "fixture": "media_parity", "upstream": "stable-worldmodel==0.1.1",
        "image": {"file": os.path.basename(args.image), "sha256": hashlib.sha256(data).hexdigest(),
                  "decoded_rgb_sha256": hashlib.sha256(rgb.tobytes()).hexdigest()},
        "pipeline": ["PIL.Image.open(...).convert('RGB') -> uint8 (H, W, 3)",
                     "stable_worldmodel.policy.BasePolicy._prepare_info: (1, 1, H, W, 3) -> CHW per frame",
                     "v2.ToImage()", "v2.ToDtype(torch.float32, scale=True)",
                     f"v2.Normalize(mean={IMAGENET['mean']}, std={IMAGENET['std']})",
                     f"v2.Resize(size={img_size}) (bilinear, antialias=True)",
                     "LeWM.encode: ViT(interpolate_pos_encoding=True) CLS -> projector"],
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                    for k, v in tensors.items()},
        "checkpoint": {"config": "config.json", "weights": "weights.pt", "seed": args.seed,
                       "weights_from": args.weights or "export_lewm.build_model random weights"},
        "torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu", "tf32": False,
    }
    with open(os.path.join(args.out, "media_parity.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"wrote {args.out}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in tensors.items()))


if __name__ == "__main__":
    main()
