"""Import the official stable-worldmodel 0.1.1 model modules without running the package ``__init__``
(which eagerly imports lancedb, cv2, imageio, ...), and build LeWM from an upstream ``config.json``.

See docs/spec/python-env.md §1.3 and §4 for why and how.
"""
import importlib.util
import os
import sys
import types


def _stub(name, path):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module


_spec = importlib.util.find_spec("stable_worldmodel")
if _spec is None or _spec.origin is None:
    raise SystemExit("stable-worldmodel==0.1.1 is not installed (see tools/README.md)")
_root = os.path.dirname(_spec.origin)
if "stable_worldmodel" not in sys.modules:
    _stub("stable_worldmodel", _root)
    _stub("stable_worldmodel.wm", os.path.join(_root, "wm"))

import torch  # noqa: E402
from transformers import ViTConfig, ViTModel  # noqa: E402
from stable_worldmodel.wm.lewm.lewm import LeWM  # noqa: E402
from stable_worldmodel.wm.lewm.module import MLP, Embedder, Predictor  # noqa: E402

VIT_PRESETS = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16),
               "huge": (1280, 32, 16)}


def build_vit(enc):
    """The ``vit_hf`` factory of stable-pretraining: preset + ViTConfig overrides, no pooler."""
    hidden, layers, heads = VIT_PRESETS[enc.get("size", "tiny")]
    params = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=4 * hidden, image_size=enc.get("image_size", 224),
                  patch_size=enc.get("patch_size", 16))
    reserved = {"_target_", "size", "patch_size", "image_size", "pretrained", "use_mask_token"}
    params.update({k: v for k, v in enc.items() if k not in reserved})
    if "hidden_size" in enc and "intermediate_size" not in enc:
        params["intermediate_size"] = 4 * enc["hidden_size"]
    model = ViTModel(ViTConfig(**params), add_pooling_layer=False, use_mask_token=enc.get("use_mask_token", True))
    model.config.interpolate_pos_encoding = True
    return model


def _norm(mlp_cfg):
    if "norm_fn" not in mlp_cfg:
        return torch.nn.LayerNorm
    norm = mlp_cfg["norm_fn"]
    if norm is None:
        return None
    target = norm["_target_"] if isinstance(norm, dict) else norm
    return {"BatchNorm1d": torch.nn.BatchNorm1d, "LayerNorm": torch.nn.LayerNorm}[target.rsplit(".", 1)[-1]]


def _mlp(cfg):
    if cfg is None:
        return None
    return MLP(cfg["input_dim"], cfg["hidden_dim"], cfg.get("output_dim"), norm_fn=_norm(cfg))


def build_lewm(config):
    """LeWM from an upstream config dict (the resolved Hydra ``model:`` node)."""
    p = {k: v for k, v in config["predictor"].items() if k != "_target_"}
    a = {k: v for k, v in config["action_encoder"].items() if k != "_target_"}
    return LeWM(encoder=build_vit(config["encoder"]), predictor=Predictor(**p), action_encoder=Embedder(**a),
                projector=_mlp(config.get("projector")), pred_proj=_mlp(config.get("pred_proj")))


def randomize_(model, seed):
    """Break LeWM's zero inits and trivial BN statistics so every path of a parity fixture is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model
