"""Export planner parity fixtures (docs/spec/fixtures.md "Planner fixtures") from the official solvers of
stable-worldmodel 0.1.1, beside a LeWM model fixture:

    python -m swm_tools.export_planner --fixture ../tests/fixtures/lewm-tiny [--device cuda]

For each of CEM, MPPI and iCEM it runs the official solver on the fixture's model (B envs, solver batch_size 1,
so every env is its own chunk), records through the solver's callbacks (CEM, iCEM) or a cost-recording wrapper
(MPPI) every iteration's candidates, costs, elites and updated mean/std, re-draws the exact noise with a twin
generator (docs/spec/planners.md §8) and writes planner_<solver>.npz:

  solver_config  the JSON string as UTF-8 bytes (uint8 array, so that any npz reader takes it): solver, constructor arguments, configure values (horizon, action_block, action_dim
                 = env action dims, low/high for the Box)
  pixels (B, Hc, 3, S, S), goal (B, 1, 3, S, S), action (B, Hc, A_in)   the info dict given to solve()
  noise          (n_steps, B, N, H, Da) — iCEM: the white noise (n_steps, B, N, Da, H), time axis last
  candidates     (n_steps, B, N, H, Da) as scored;   costs (n_steps, B, N)
  elite_index    (n_steps, B, K) int64, best first;  elite_cost (n_steps, B, K)
  mean, var      (n_steps, B, H, Da) after each iteration ("var" is a std, as upstream)
  actions        (B, H, Da) returned;  final_var (B, H, Da);  final_cost (B,)
"""
import argparse
import json
import os
import types

import numpy as np

from . import official  # noqa: F401  (installs the import stubs first)
import gymnasium as gym
import torch
from stable_worldmodel.solver import CEMSolver, ICEMSolver, MPPISolver
from stable_worldmodel.solver.callbacks import Callback


class Record(Callback):
    """Keeps a host copy of every iteration's solver state (CEM and iCEM pass it to callbacks)."""

    keys = ("candidates", "costs", "topk_vals", "topk_inds", "mean", "var")

    @property
    def output_key(self):
        return "record"

    def compute(self, **state):
        return {k: state[k].detach().float().cpu().clone() for k in self.keys}


class CostRecorder(torch.nn.Module):
    """Wraps the model: records every (candidates, costs) pair the solver asks for (MPPI has no callbacks)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = []

    def get_cost(self, info, candidates):
        costs = self.model.get_cost(info, candidates)
        self.calls.append((candidates.detach().float().cpu().clone(), costs.detach().float().cpu().clone()))
        return costs


SOLVERS = {
    "cem": dict(cls=CEMSolver, args=dict(num_samples=24, var_scale=1.0, n_steps=3, topk=6)),
    "mppi": dict(cls=MPPISolver, args=dict(num_samples=24, var_scale=0.8, n_steps=3, topk=8, temperature=0.5)),
    "icem": dict(cls=ICEMSolver, args=dict(num_samples=24, var_scale=1.0, n_steps=3, topk=6, noise_beta=2.0,
                                           alpha=0.1, n_elite_keep=3, return_mean=True)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixture", required=True, help="LeWM model fixture dir (config.json, weights.pt)")
    ap.add_argument("--envs", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=4)
    ap.add_argument("--action-block", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = json.load(open(os.path.join(args.fixture, "config.json")))
    model = official.build_lewm(config)
    model.load_state_dict(torch.load(os.path.join(args.fixture, "weights.pt"), map_location="cpu"), strict=True)
    model = model.to(args.device).eval()
    dev = args.device

    side = config["encoder"].get("image_size", 224)
    a_in = config["action_encoder"].get("input_dim", 10)
    if a_in % args.action_block:
        raise SystemExit(f"action block {args.action_block} does not divide the model's action dim {a_in}")
    a_env = a_in // args.action_block
    hc = 2  # context frames: 0.1.1 pairs the first Hc candidate steps with them (docs/spec/lewm.md §6.2)
    B, H = args.envs, args.horizon
    g = torch.Generator().manual_seed(args.seed)
    pixels = torch.randn(B, hc, 3, side, side, generator=g)
    goal = torch.randn(B, 1, 3, side, side, generator=g)
    action = torch.zeros(B, hc, a_in)
    low = np.array([-0.9, -0.7] + [-1.0] * (a_env - 2), dtype=np.float32)[:a_env]
    high = np.array([0.8, 0.95] + [1.0] * (a_env - 2), dtype=np.float32)[:a_env]

    for name, spec in SOLVERS.items():
        sargs = dict(spec["args"])
        recorder = Record(reduction="none")
        wrapped = CostRecorder(model)
        kwargs = dict(batch_size=1, device=dev, seed=args.seed, **sargs)
        if name != "mppi":
            kwargs["callbacks"] = [recorder]
        solver = spec["cls"](wrapped, **kwargs)
        solver.configure(action_space=gym.spaces.Box(np.tile(low, (B, 1)), np.tile(high, (B, 1)), dtype=np.float32),
                         n_envs=B, config=types.SimpleNamespace(horizon=H, action_block=args.action_block))
        info = {"pixels": pixels.to(dev), "goal": goal.to(dev), "action": action.to(dev)}
        out = solver.solve(info)

        n_steps, N, Da = sargs["n_steps"], sargs["num_samples"], a_in
        # Twin generator: one randn per (chunk, iteration), chunk-major (batch_size 1: chunk = env).
        twin = torch.Generator(device=dev).manual_seed(args.seed)
        shape = (1, N, Da, H) if name == "icem" else (1, N, H, Da)
        draws = [[torch.randn(shape, generator=twin, device=dev, dtype=torch.float32).cpu() for _ in range(n_steps)]
                 for _ in range(B)]
        noise = torch.stack([torch.cat([draws[b][i] for b in range(B)]) for i in range(n_steps)])

        if name == "mppi":
            calls = wrapped.calls  # env-major: env 0's iterations, then env 1's
            cand = torch.stack([torch.cat([calls[b * n_steps + i][0] for b in range(B)]) for i in range(n_steps)])
            costs = torch.stack([torch.cat([calls[b * n_steps + i][1] for b in range(B)]) for i in range(n_steps)])
            k = sargs["topk"] if sargs["topk"] is not None and sargs["topk"] < N else N
            vals, inds = torch.topk(costs, k, dim=-1, largest=False)
            # mean after iteration i = candidate 0 of iteration i + 1 (MPPI never clamps); the last is returned.
            mean = torch.cat([cand[1:, :, 0], out["actions"][None].float()])
            var = torch.full_like(mean, sargs["var_scale"])
        else:
            hist = recorder.history  # batches x steps
            stack = lambda key: torch.stack([torch.cat([hist[b][i][key] for b in range(B)]) for i in range(n_steps)])
            cand, costs, vals, inds = stack("candidates"), stack("costs"), stack("topk_vals"), stack("topk_inds")
            mean, var = stack("mean"), stack("var")
        # Self-check: the twin noise reproduces the official first-iteration candidates (mean 0, std var_scale).
        first = noise[0].transpose(-1, -2) if name == "icem" else noise[0]
        if name != "icem":
            err = (first[:, 1:] * sargs["var_scale"] - cand[0][:, 1:]).abs().max().item()
            assert err < 1e-5, f"{name}: twin noise does not reproduce the solver's candidates ({err})"

        solver_config = {"solver": name, "batch_size": 1, "seed": args.seed, **sargs, "horizon": H,
                         "action_block": args.action_block, "action_dim": a_env,
                         "low": low.tolist(), "high": high.tolist(), "device": dev,
                         "upstream": "stable-worldmodel==0.1.1", "torch": torch.__version__}
        arrays = dict(pixels=pixels, goal=goal, action=action, noise=noise, candidates=cand, costs=costs,
                      elite_index=inds.long(), elite_cost=vals, mean=mean, var=var, actions=out["actions"],
                      final_var=out["var"][0], final_cost=torch.tensor(out["costs"]))
        arrays = {k: v.detach().cpu().numpy() for k, v in arrays.items()}
        arrays = {k: (v if v.dtype == np.int64 else v.astype(np.float32)) for k, v in arrays.items()}
        arrays["solver_config"] = np.frombuffer(json.dumps(solver_config).encode(), dtype=np.uint8).copy()
        path = os.path.join(args.fixture, f"planner_{name}.npz")
        np.savez(path, **arrays)
        print(f"wrote {path}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in arrays.items() if k != "solver_config"))


if __name__ == "__main__":
    main()
