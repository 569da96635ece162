"""Decision-parity inputs for `swm parity decision`: the official CEM (0.1.1) planned on many random starts/goals
of a LeWM model, twice with different seeds (to measure the official run-to-run spread).

    python -m swm_tools.decision_parity --config configs/lewm-pusht.json --out /tmp/decision [--starts 20]

Writes config.json and weights.pt (random weights, seed 0) and decision.npz:
  pixels, goal (starts, 1, 3, S, S); official_actions, official_rerun_actions (starts, H, Da);
  official_cost (starts,) = the official model's cost of official_actions; solver_config (UTF-8 JSON bytes).
"""
import argparse
import json
import os
import time
import types

import numpy as np

from . import official
import gymnasium as gym
import torch
from stable_worldmodel.solver import CEMSolver


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--topk", type=int, default=30)
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--action-block", type=int, default=5)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    torch.manual_seed(0)  # the module initialisers draw from the global generator
    config = json.load(open(args.config))
    model = official.randomize_(official.build_lewm(config), 0).to(dev).eval()
    os.makedirs(args.out, exist_ok=True)
    json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, os.path.join(args.out, "weights.pt"))
    side = config["encoder"].get("image_size", 224)
    a_in = config["action_encoder"].get("input_dim", 10)
    a_env = a_in // args.action_block
    sargs = dict(num_samples=args.samples, var_scale=1.0, n_steps=args.iterations, topk=args.topk)
    g = torch.Generator().manual_seed(1234)
    pixels = torch.randn(args.starts, 1, 3, side, side, generator=g)
    goal = torch.randn(args.starts, 1, 3, side, side, generator=g)

    def solve(s, seed):
        solver = CEMSolver(model, batch_size=1, device=dev, seed=seed, **sargs)
        solver.configure(action_space=gym.spaces.Box(-1, 1, shape=(1, a_env), dtype=np.float32), n_envs=1,
                         config=types.SimpleNamespace(horizon=args.horizon, action_block=args.action_block))
        info = {"pixels": pixels[s:s + 1].to(dev), "goal": goal[s:s + 1].to(dev),
                "action": torch.zeros(1, 1, a_in, device=dev)}
        return solver.solve(info)["actions"].float()

    actions, rerun, cost = [], [], []
    t0 = time.time()
    with torch.inference_mode():
        for s in range(args.starts):
            a = solve(s, seed=s)
            actions.append(a[0])
            rerun.append(solve(s, seed=10_000 + s)[0])
            info = {"pixels": pixels[s:s + 1, None].to(dev), "goal": goal[s:s + 1, None].to(dev),
                    "action": torch.zeros(1, 1, 1, a_in, device=dev)}
            cost.append(model.get_cost(info, a[:, None].to(dev)).flatten()[0].item())
    print(f"official CEM on {args.starts} starts x 2 seeds in {time.time() - t0:.1f} s")
    solver_config = {"solver": "cem", "batch_size": 1, "seed": 0, **sargs, "horizon": args.horizon,
                     "action_block": args.action_block, "action_dim": a_env, "low": [-1.0] * a_env,
                     "high": [1.0] * a_env, "device": dev, "upstream": "stable-worldmodel==0.1.1",
                     "torch": torch.__version__}
    np.savez(os.path.join(args.out, "decision.npz"), pixels=pixels.numpy(), goal=goal.numpy(),
             official_actions=torch.stack(actions).cpu().numpy(), official_rerun_actions=torch.stack(rerun).cpu().numpy(),
             official_cost=np.array(cost, dtype=np.float32),
             solver_config=np.frombuffer(json.dumps(solver_config).encode(), dtype=np.uint8).copy())
    print("wrote", os.path.join(args.out, "decision.npz"))


if __name__ == "__main__":
    main()
