"""Time one training step of the official stable-worldmodel 0.1.1 LeWM on a PushT-sized batch (issue 15; spec:
shared/spec/losses.md §2): zero_grad, upstream's `lejepa_forward` objective (`export_train.lejepa_loss`, a fresh
SIGReg draw of 1024 directions), backward, global gradient-norm clipping at 1.0 and a `torch.optim.AdamW` step
(lr 5e-5, weight decay 1e-3), on one fixed random batch of B clips of num_frames + 1 frames (pixels (B, 4, 3, 224,
224), actions (B, 4, 10) for configs/lewm-pusht.json). The model of the config with random weights, in train mode
(BatchNorm on batch statistics, the predictor's dropout as configured). One row per mode, each on a freshly built
model and optimizer: `bf16-autocast`, upstream's recipe (Lightning `precision: bf16`: bf16 autocast around forward
and loss, fp32 weights and optimizer); `fp32`, TF32 off (the row swm's f32 step compares with); `tf32`, fp32 with
TF32 on. Timed like timing.py (warm-up, then wall time per step ending with a device synchronisation); the peak GPU
memory of each mode is printed after its row and kept in its JSON row (`peak_mem_mib`).

    python -m swm_tools.bench_train --config configs/lewm-pusht.json [--batch 128] [--iters 20] [--json out.json]

`--device cpu` is a smoke run of the script only (its times mean nothing).
"""
# ruff: noqa: I001  (the official package's import stubs must be installed before its modules are imported)
import argparse
import json
import pathlib
from unittest import mock

from . import official  # noqa: F401  (installs the import stubs first)
import torch
from stable_worldmodel.wm.loss import SIGReg

from .export_lewm import build_model
from .export_train import lejepa_loss
from .timing import bench

MODES = (("bf16-autocast", True, False), ("fp32", False, False), ("tf32", False, True))  # name, autocast, TF32


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json")
    args = ap.parse_args()

    config = json.loads(pathlib.Path(args.config).read_text())
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    history = config["predictor"]["num_frames"]
    side = config["encoder"].get("image_size", 224)
    a_in = config["action_encoder"].get("input_dim", 10)
    B, T = args.batch, history + 1
    g = torch.Generator().manual_seed(11)
    batch = {"pixels": torch.randn(B, T, 3, side, side, generator=g).to(dev),
             "actions": torch.randn(B, T, a_in, generator=g).to(dev)}
    print("official stable-worldmodel 0.1.1, torch", torch.__version__, "on",
          torch.cuda.get_device_name(dev) if cuda else dev.type)

    rows = []
    for mode, amp, tf32 in MODES:
        model = build_model(config, 0, device=dev).train()  # sets TF32 off
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        sigreg = SIGReg(knots=17, num_proj=1024).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=1e-3)

        def step(model=model, sigreg=sigreg, opt=opt, amp=amp):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = lejepa_loss(model, batch, sigreg, history)[0]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        label = f"official lewm train step B{B} {mode}"
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            row = bench(label, step, args.warmup, args.iters)
            row["peak_mem_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
            print(f"  peak GPU memory {row['peak_mem_mib']:.0f} MiB allocated, "
                  f"{torch.cuda.max_memory_reserved(dev) / 2**20:.0f} MiB reserved", flush=True)
        else:
            try:
                with mock.patch.object(torch.cuda, "synchronize", lambda: None):  # nothing to wait for on the CPU
                    row = bench(label, step, args.warmup, args.iters)
            except RuntimeError as e:
                if not amp:
                    raise
                print(f"{label}: skipped, bf16 autocast fails on {dev.type}: {e}", flush=True)
                continue
            row["peak_mem_mib"] = None
        rows.append(row)
        del model, sigreg, opt, step
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
