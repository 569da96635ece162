"""Export a LeWM parity fixture (docs/spec/fixtures.md, contract 1) from the official stable-worldmodel 0.1.1.

    python -m swm_tools.export_lewm --config configs/lewm-tiny.json --out fixtures/lewm-tiny [--device cuda]

Builds the official LeWM from the config (deterministic random weights, or --weights), runs it in eval mode with
TF32 off and writes config.json, weights.pt, fixture.npz and meta.json.
"""
import argparse
import json
import os

import numpy as np

from . import official  # noqa: F401  (installs the import stubs first)
import torch


def build_model(config, seed, weights=None, device="cpu"):
    """The official LeWM of a fixture: built from `config` after `torch.manual_seed(seed)`, then `weights` loaded
    or the deterministic randomisation of `official.randomize_(model, seed)`; eval mode on `device`, TF32 off.
    The same config and seed give the same weights on any device (they are made on the CPU)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(seed)
    model = official.build_lewm(config)
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu"), strict=True)
    else:
        official.randomize_(model, seed)
    return model.to(device).eval()


def write_checkpoint(out, config, model):
    """`out/config.json` + `out/weights.pt` (a raw `state_dict()`, as the public checkpoints ship)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, os.path.join(out, "weights.pt"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="upstream LeWM config.json")
    ap.add_argument("--weights", help="weights.pt to load instead of random weights")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=16, help="candidates S")
    ap.add_argument("--context", type=int, default=1, help="context frames H")
    ap.add_argument("--steps", type=int, default=5, help="candidate steps Ttot (0.1.1: includes the H context actions)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    with open(args.config) as f:
        config = json.load(f)
    model = build_model(config, args.seed, args.weights, args.device)

    enc = config["encoder"]
    side = enc.get("image_size", 224)
    a_in = config["action_encoder"].get("input_dim", 10)
    B, S, H, T = 1, args.samples, args.context, args.steps
    g = torch.Generator().manual_seed(args.seed + 1)
    dev = args.device
    pixels = torch.randn(B, H, 3, side, side, generator=g).to(dev)
    goal = torch.randn(B, 1, 3, side, side, generator=g).to(dev)
    actions = torch.randn(B, H, a_in, generator=g).to(dev)
    candidates = torch.randn(B, S, T, a_in, generator=g).to(dev)

    with torch.inference_mode():
        out = model.encode({"pixels": pixels, "action": actions})
        emb, act_emb = out["emb"], out["act_emb"]
        pred = model.predict(emb, act_emb)
        info = {"pixels": pixels[:, None].expand(B, S, *pixels.shape[1:]),
                "goal": goal[:, None].expand(B, S, *goal.shape[1:]),
                "action": actions[:, None].expand(B, S, *actions.shape[1:])}
        cost = model.get_cost(info, candidates)
        rollout = info["predicted_emb"]
        goal_emb = info["goal_emb"]

    write_checkpoint(args.out, config, model)
    arrays = dict(pixels=pixels, goal=goal, actions=actions, candidates=candidates, emb=emb, act_emb=act_emb,
                  pred=pred, goal_emb=goal_emb, rollout=rollout, cost=cost)
    arrays = {k: v.detach().float().cpu().numpy() for k, v in arrays.items()}
    arrays["history_size"] = np.array(model.predictor.pos_embedding.shape[1], dtype=np.int64)
    np.savez(os.path.join(args.out, "fixture.npz"), **arrays)
    meta = {"family": "lewm", "contract": 1, "upstream": "stable-worldmodel==0.1.1", "semantics": "0.1.1",
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu",
            "tf32": False, "seed": args.seed}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"wrote {args.out}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
