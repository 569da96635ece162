"""Time the official stable-worldmodel 0.1.1 MPPI solver on TD-MPC2 (the work `swm bench tdmpc2` does): 512
samples x 6 iterations, top-64, temperature 0.5, horizon 3, one env, 6-d actions, fp32 with TF32 off, inference
mode, the model of configs/tdmpc2-bench.json with upstream's init (the official baseline's row); and `get_cost` of
512 candidates alone.

    python -m swm_tools.bench_tdmpc2 --config configs/tdmpc2-bench.json [--iters 20] [--json out.json]
"""
import argparse
import contextlib
import io
import json
import types

import numpy as np

from . import official  # noqa: F401  (installs the import stubs first)
from .timing import bench
import gymnasium as gym
import torch
from omegaconf import OmegaConf
from stable_worldmodel.solver import MPPISolver
from stable_worldmodel.wm.tdmpc2.tdmpc2 import TDMPC2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    cfg = OmegaConf.create(json.load(open(args.config)))
    model = TDMPC2(cfg).cuda().eval()
    a, state_dim = cfg.action_dim, cfg.extra_dims["state"]
    print("official stable-worldmodel 0.1.1, torch", torch.__version__, "on", torch.cuda.get_device_name(0))
    obs = {"state": torch.randn(1, state_dim, device="cuda")}
    rows = []
    with torch.inference_mode():
        solver = MPPISolver(model, num_samples=512, n_steps=6, topk=64, temperature=0.5, device="cuda", seed=1)
        solver.configure(action_space=gym.spaces.Box(-1, 1, shape=(1, a), dtype=np.float32), n_envs=1,
                         config=types.SimpleNamespace(horizon=3, action_block=1))

        def solve():
            with contextlib.redirect_stdout(io.StringIO()):  # the solver prints its solve time
                solver.solve(dict(obs))
        rows.append(bench("official tdmpc2 mppi 512x6 H3 fp32", solve, 2, args.iters, width=56))
        candidates = torch.rand(1, 512, 3, a, device="cuda") * 2 - 1
        info = {"state": obs["state"]}
        rows.append(bench("official tdmpc2 get_cost 512 x H3 fp32", lambda: model.get_cost(dict(info), candidates),
                          5, args.iters, width=56))
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
