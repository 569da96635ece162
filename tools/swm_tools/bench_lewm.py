"""Time the official stable-worldmodel 0.1.1 LeWM on the same work as `swm bench lewm`: encode one frame
(ViT + projector) and score S candidates x H steps with `get_cost` (context and goal embeddings cached in `info`,
as during a solver's iterations). fp32, TF32 off, torch.inference_mode(), random weights.

    python -m swm_tools.bench_lewm --config configs/lewm-pusht.json [--iters 100] [--json out.json]
"""
import argparse
import json

from . import official  # noqa: F401
from .timing import bench
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    config = json.load(open(args.config))
    model = official.randomize_(official.build_lewm(config), 0).cuda().eval()
    side = config["encoder"].get("image_size", 224)
    a_in = config["action_encoder"].get("input_dim", 10)
    print("official stable-worldmodel 0.1.1, torch", torch.__version__, "on", torch.cuda.get_device_name(0))
    px = torch.randn(1, 1, 3, side, side, device="cuda")
    goal = torch.randn(1, 1, 3, side, side, device="cuda")
    rows = []
    with torch.inference_mode():
        rows.append(bench(f"official lewm encode 1x{side}x{side} fp32", lambda: model.encode({"pixels": px}),
                          10, args.iters))
        S, T = args.samples, args.horizon
        info = {"pixels": px[:, None].expand(1, S, 1, 3, side, side), "goal": goal[:, None].expand(1, S, 1, 3, side, side),
                "action": torch.zeros(1, S, 1, a_in, device="cuda")}
        cand = torch.randn(1, S, T, a_in, device="cuda")
        model.get_cost(info, cand)  # caches info['emb'] and info['goal_emb'] as a solve() does
        rows.append(bench(f"official lewm score {S}x H{T} fp32 (get_cost)", lambda: model.get_cost(info, cand),
                          10, args.iters))
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
