"""Time the official stable-worldmodel 0.1.1 solvers on LeWM (the work `swm bench plan` does): CEM 300x30, MPPI
300x30 and iCEM 1024x5, horizon 5, PushT action blocks (5 x 2), one env, fp32 with TF32 off, inference mode,
random weights; optionally the CEM and iCEM rows again with upstream's speed knob (torch.compile of encoder and predictor,
TF32 on, as scripts/plan/eval_wm.py `compile`).

    python -m swm_tools.bench_planner --config configs/lewm-pusht.json [--iters 10] [--compile] [--json out.json]
"""
import argparse
import contextlib
import io
import json
import types

import numpy as np

from . import official
from .timing import bench
import gymnasium as gym
import torch
from stable_worldmodel.solver import CEMSolver, ICEMSolver, MPPISolver


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = json.load(open(args.config))
    model = official.randomize_(official.build_lewm(config), 0).cuda().eval()
    side = config["encoder"].get("image_size", 224)
    a_in = config["action_encoder"].get("input_dim", 10)
    block, horizon = 5, 5
    print("official stable-worldmodel 0.1.1, torch", torch.__version__, "on", torch.cuda.get_device_name(0))
    px = torch.randn(1, 1, 3, side, side, device="cuda")
    goal = torch.randn(1, 1, 3, side, side, device="cuda")
    specs = [("cem 300x30", CEMSolver, dict(num_samples=300, n_steps=30, topk=30)),
             ("mppi 300x30", MPPISolver, dict(num_samples=300, n_steps=30, topk=30, temperature=0.5)),
             ("icem 1024x5", ICEMSolver, dict(num_samples=1024, n_steps=5, topk=30))]
    rows = []

    def row(name, cls, kw, label):
        solver = cls(model, var_scale=1.0, device="cuda", seed=1, **kw)
        solver.configure(action_space=gym.spaces.Box(-1, 1, shape=(1, a_in // block), dtype=np.float32), n_envs=1,
                         config=types.SimpleNamespace(horizon=horizon, action_block=block))

        def run():
            info = {"pixels": px.clone(), "goal": goal.clone(), "action": torch.zeros(1, 1, a_in, device="cuda")}
            with contextlib.redirect_stdout(io.StringIO()):  # the solvers print their solve time
                solver.solve(info)
        rows.append(bench(f"official lewm {name} H{horizon} {label}", run, 2, args.iters, width=56))

    with torch.inference_mode():
        for name, cls, kw in specs:
            row(name, cls, kw, "fp32")
        # The control step `swm bench plan`'s engine row times: a host u8 RGB frame in, ImageNet normalisation on
        # the GPU, the CEM 300x30 solve (which encodes the frame), the first actions back on the host.
        solver = CEMSolver(model, var_scale=1.0, device="cuda", seed=1, num_samples=300, n_steps=30, topk=30)
        solver.configure(action_space=gym.spaces.Box(-1, 1, shape=(1, a_in // block), dtype=np.float32), n_envs=1,
                         config=types.SimpleNamespace(horizon=horizon, action_block=block))
        frame = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        mean = torch.tensor([0.485, 0.456, 0.406], device="cuda").view(1, 1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device="cuda").view(1, 1, 3, 1, 1)

        def step():
            x = torch.from_numpy(frame).cuda().permute(2, 0, 1).float().div(255).view(1, 1, 3, side, side)
            info = {"pixels": (x - mean) / std, "goal": goal.clone(), "action": torch.zeros(1, 1, a_in, device="cuda")}
            with contextlib.redirect_stdout(io.StringIO()):
                out = solver.solve(info)
            out["actions"][:, :1].cpu()
        rows.append(bench(f"official lewm step u8 frame -> cem 300x30 H{horizon} fp32", step, 2, args.iters, width=56))
    if args.compile:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        model.encoder = torch.compile(model.encoder)
        model.predictor = torch.compile(model.predictor)
        with torch.inference_mode():
            for name, cls, kw in (specs[0], specs[2]):
                row(name, cls, kw, "torch.compile + TF32")
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
