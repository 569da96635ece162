"""Time the official stable-worldmodel 0.1.1 LeWM on the same work as `swm bench lewm`: encode one frame
(ViT + projector) and score S candidates x H steps with `get_cost` (context and goal embeddings cached in `info`,
as during a solver's iterations). fp32, TF32 off, torch.inference_mode(), random weights.

    python -m swm_tools.bench_lewm --config configs/lewm-pusht.json [--iters 100] [--peers] [--json out.json]
    python -m swm_tools.bench_lewm --config configs/lewm-tiny.json --check [--device cpu]

`--peers` adds issue 14's best-PyTorch rows for the encode: the official encoder and projector on one frame as
one function (what `LeWM.encode` computes, without its dict and rearranges), eager, captured in a
`torch.cuda.CUDAGraph` and under `torch.compile(mode="reduce-overhead")`, in fp32 and with TF32 — the rows swm's
graph-replayed encode must beat. `--check` only verifies that this function gives `LeWM.encode`'s embedding.
"""
# ruff: noqa: I001  (the official package's import stubs must be installed before its modules are imported)
import argparse
import json

from . import official  # noqa: F401
from .timing import bench, peer_rows
import torch


def encode_fn(model):
    """One frame (N, 3, H, W) to its embedding (N, D): the official encoder's CLS token through the projector."""

    def encode(pixels):
        cls = model.encoder(pixels, interpolate_pos_encoding=True).last_hidden_state[:, 0]
        return model.projector(cls)

    return encode


def check(model, pixels):
    """Fails unless `encode_fn` gives what `LeWM.encode` writes into `info['emb']`."""
    with torch.inference_mode():
        want = model.encode({"pixels": pixels[:, None]})["emb"][:, 0]
        got = encode_fn(model)(pixels)
    err = (got - want).abs().max().item()
    print(f"peer encode vs LeWM.encode: max abs diff {err:.3g}")
    if err > 1e-5:
        raise SystemExit("peer encode check FAILED")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--peers", action="store_true", help="add the best-PyTorch encode rows (fp32 and TF32)")
    ap.add_argument("--check", action="store_true", help="only check the peer encode against LeWM.encode")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    config = json.load(open(args.config))
    model = official.randomize_(official.build_lewm(config), 0).to(args.device).eval()
    side = config["encoder"].get("image_size", 224)
    a_in = config["action_encoder"].get("input_dim", 10)
    if args.check:
        check(model, torch.randn(2, 3, side, side, device=args.device))
        return
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
    if args.peers:
        check(model, px[:, 0])
        for mode in ("fp32", "tf32"):
            torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
            torch.backends.cudnn.allow_tf32 = mode == "tf32"
            rows += peer_rows(f"peer lewm encode 1x{side}x{side}", mode, encode_fn(model), (px[:, 0],), args.iters,
                              warmup=10)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
