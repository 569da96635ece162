"""Exports a LeWM training fixture from the official stable-worldmodel 0.1.1 (issue 15; spec: shared/spec/losses.md
§2): the official model in train mode (BatchNorm on batch statistics), upstream's `lejepa_forward` objective
(`pred_loss + 0.09 * sigreg_loss`), global gradient-norm clipping at 1.0 and `torch.optim.AdamW`, stepped N times on
one fixed batch.

    python -m swm_tools.export_train --config configs/lewm-tiny.json --out tests/fixtures/train-tiny [--device cpu]

Dropout is set to 0 (the predictor's 0.1 draws random masks no other implementation can replay); everything else is
upstream's step. SIGReg's directions are recorded per step by replaying the official module's RNG draw.

Writes `model.safetensors` (the initial state dict, BatchNorm buffers included) and `config.json` (the config with
dropout 0), together a checkpoint that `swm convert` takes; `batch.safetensors` (`pixels` float32 (B, T, 3, H, W),
already normalised, `actions` (B, T, A)); and `steps.safetensors`: per step k `proj_matrix.{k}` (D, P), `loss.{k}`, `pred_loss.{k}`, `sigreg_loss.{k}`,
`grad_norm.{k}` (before clipping); the step-0 gradients `grad.<name>` of a few parameters; and `final.<name>`, the
whole state dict after the last step (buffers included). `meta.json` holds the hyper-parameters and
`gradient_free`, the parameters whose step-0 gradient is rounding noise (zero in exact arithmetic).
"""
# ruff: noqa: I001  (the official package's import stubs must be installed before its modules are imported)
import argparse
import json
import pathlib

from . import official  # noqa: F401  (installs the import stubs first)
import torch
from safetensors.torch import save_file
from stable_worldmodel.wm.loss import SIGReg

from .export_lewm import build_model

SIGREG_WEIGHT = 0.09  # scripts/train/config/lewm.yaml
GRAD_PARAMS = (
    "encoder.embeddings.patch_embeddings.projection.weight",
    "encoder.encoder.layer.0.attention.attention.query.weight",
    "encoder.layernorm.weight",
    "projector.net.1.weight",
    "predictor.pos_embedding",
    "predictor.transformer.layers.0.adaLN_modulation.1.weight",
    "predictor.transformer.layers.1.mlp.net.1.weight",
    "action_encoder.patch_embed.weight",
    "pred_proj.net.3.bias",
    "encoder.encoder.layer.1.layernorm_after.bias",
    "encoder.encoder.layer.0.intermediate.dense.bias",
    "predictor.transformer.layers.1.mlp.net.0.bias",
    "predictor.transformer.layers.0.attn.norm.weight",
)


def lejepa_loss(model, batch, sigreg, history):
    """upstream `scripts/train/lewm.py`'s `lejepa_forward` (num_preds 1)."""
    info = model.encode({"pixels": batch["pixels"], "action": torch.nan_to_num(batch["actions"], 0.0)})
    emb, act_emb = info["emb"], info["act_emb"]
    pred = model.predict(emb[:, :history], act_emb[:, :history])
    pred_loss = ((pred - emb[:, 1:]) ** 2).mean()
    sigreg_loss = sigreg(emb.transpose(0, 1))
    return pred_loss + SIGREG_WEIGHT * sigreg_loss, pred_loss, sigreg_loss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--num-proj", type=int, default=256)
    ap.add_argument("--cpu-directions", action="store_true",
                    help="draw SIGReg's directions from the CPU generator on any device (a GPU export then "
                         "replays a CPU export's run: their difference is the official step's own CPU-GPU spread)")
    args = ap.parse_args()
    if args.cpu_directions:
        randn = torch.randn

        def randn_on_cpu(*size, device=None, **kw):
            return randn(*size, device="cpu", **kw).to(device) if device is not None else randn(*size, **kw)

        torch.randn = randn_on_cpu

    config = json.loads(pathlib.Path(args.config).read_text())
    config["predictor"]["dropout"] = 0.0
    config["predictor"]["emb_dropout"] = 0.0
    dev = args.device
    model = build_model(config, args.seed, device=dev).train()
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}

    history = config["predictor"]["num_frames"]
    side = config["encoder"].get("image_size", 224)
    a_in = config["action_encoder"].get("input_dim", 10)
    B, T = args.batch, history + 1
    g = torch.Generator().manual_seed(args.seed + 11)
    batch = {"pixels": torch.randn(B, T, 3, side, side, generator=g).to(dev),
             "actions": torch.randn(B, T, a_in, generator=g).to(dev)}
    batch["actions"][0, -1, 0] = float("nan")  # upstream zeroes NaN actions (nan_to_num)

    sigreg = SIGReg(knots=17, num_proj=args.num_proj).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    d = config["projector"]["output_dim"] if config.get("projector") else config["encoder"]["hidden_size"]
    steps = {}
    for k in range(args.steps):
        seed = 1000 + k
        torch.manual_seed(seed)
        steps[f"proj_matrix.{k}"] = torch.randn(d, args.num_proj, device=dev)
        torch.manual_seed(seed)  # SIGReg draws its directions as its first random op
        opt.zero_grad(set_to_none=True)
        loss, pred_loss, sigreg_loss = lejepa_loss(model, batch, sigreg, history)
        loss.backward()
        if k == 0:
            params = dict(model.named_parameters())
            for name in GRAD_PARAMS:
                steps[f"grad.{name}"] = params[name].grad.detach().clone()
            # Parameters whose gradient is zero in exact arithmetic (a key bias; a bias, or the LayerNorm bias,
            # before train-mode BatchNorm): rounding noise only, which Adam normalises into ±lr steps, so their
            # trained values (and the running means after them) are not comparable between implementations.
            largest = max(p.grad.abs().max().item() for p in model.parameters())
            gradient_free = [n for n, p in model.named_parameters() if p.grad.abs().max().item() <= 1e-5 * largest]
            gradient_free += [n.replace(".net.0.bias", ".net.1.running_mean") for n in gradient_free
                              if n.endswith(".net.0.bias")]
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        steps[f"loss.{k}"], steps[f"pred_loss.{k}"] = loss.detach(), pred_loss.detach()
        steps[f"sigreg_loss.{k}"], steps[f"grad_norm.{k}"] = sigreg_loss.detach(), norm.detach()
        print(f"step {k}: loss {loss.item():.7f} pred {pred_loss.item():.7f} sigreg {sigreg_loss.item():.7f} "
              f"|g| {norm.item():.5f}")
    steps.update({f"final.{k}": v for k, v in model.state_dict().items()})

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def host(tensors):
        # Floats as float32; BatchNorm's `num_batches_tracked` counters stay integers, as in a state dict.
        return {k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous().cpu()
                for k, v in tensors.items()}

    save_file(host(init), str(out / "model.safetensors"))
    save_file(host(batch), str(out / "batch.safetensors"))
    save_file(host(steps), str(out / "steps.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    meta = {"batch": B, "frames": T, "steps": args.steps, "lr": args.lr, "weight_decay": args.weight_decay,
            "betas": [0.9, 0.999], "eps": 1e-8, "clip": args.clip, "num_proj": args.num_proj, "knots": 17,
            "sigreg_weight": SIGREG_WEIGHT, "dropout": 0.0, "seed": args.seed, "device": dev,
            "torch": torch.__version__, "grad_params": list(GRAD_PARAMS), "gradient_free": gradient_free,
            "loss": [float(steps[f"loss.{k}"]) for k in range(args.steps)]}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
