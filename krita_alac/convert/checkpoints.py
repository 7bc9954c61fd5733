"""Load AlacGAN weights from the files people actually have.

Generator: a training checkpoint of the original code
(`{'state_dictG': {'module.<key>': tensor}, ...}`), a plain state dict with or
without the `module.` prefix, or a .safetensors file.  Local features: the
full Illustration2Vec sequential `i2v.pth` (24 tensors `0.weight` ...
`28.bias`), of which the first six convolutions are kept.

Checkpoints are pickles: they are only ever read with `weights_only=True`.
"""
from __future__ import annotations

import os
import re
import zipfile

from ..engine.errors import UserError

MAX_LISTED = 3


def _describe(path):
    return os.path.basename(path)


def read_tensors(path: str) -> dict:
    """A flat {name: tensor} from a .pth/.pt/.ckpt pickle or a .safetensors file."""
    import torch
    if not os.path.isfile(path):
        raise UserError(f"model file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.endswith(".safetensors") or (len(head) >= 9 and head[8:9] == b"{"):
        try:
            from safetensors.torch import load_file
            return load_file(path)
        except ImportError:
            raise UserError("reading .safetensors needs the safetensors package (pip install safetensors)")
        except Exception as e:
            raise UserError(f"{_describe(path)} is not a valid safetensors file ({_short(e)})")
    if not (zipfile.is_zipfile(path) or head[:2] == b"\x80\x02"):
        raise UserError(f"{_describe(path)} is not a PyTorch checkpoint or safetensors file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{_describe(path)} could not be read as a weights-only PyTorch checkpoint ({_short(e)})")
    return _flatten(obj, path)


def _short(e):
    msg = str(e).strip().splitlines()
    return msg[0][:200] if msg else type(e).__name__


def _flatten(obj, path):
    import torch
    if isinstance(obj, dict):
        # Training checkpoints keep the generator under 'state_dictG'.
        for key in ("state_dictG", "state_dict", "model", "netG"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{_describe(path)} holds no state dict of tensors")
    return dict(obj)


def strip_prefix(sd: dict, prefix: str = "module.") -> dict:
    """DataParallel training prefixes every key with 'module.'."""
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def check_state_dict(expected: dict, got: dict, what: str):
    """Refuse missing, unexpected or mis-shaped keys, naming the first ones."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    bad = [k for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or bad):
        return
    parts = []
    if bad:
        parts.append("mis-shaped " + ", ".join(
            f"{k} {tuple(got[k].shape)} (expected {tuple(expected[k].shape)})" for k in bad[:MAX_LISTED]))
    if missing:
        parts.append("missing " + ", ".join(f"{k} {tuple(expected[k].shape)}" for k in missing[:MAX_LISTED]))
    if unexpected:
        parts.append("unexpected " + ", ".join(f"{k} {tuple(got[k].shape)}" for k in unexpected[:MAX_LISTED]))
    counts = f"{len(bad)} mis-shaped, {len(missing)} missing, {len(unexpected)} unexpected"
    raise UserError(f"{what} does not fit the model ({counts}): " + "; ".join(parts))


def generator_config(sd: dict, what: str) -> dict:
    """Architecture hyper-parameters read off a generator state dict."""
    w = sd.get("toH.0.weight")
    t4 = sd.get("tunnel4.0.weight")
    if w is None or t4 is None or w.ndim != 4 or t4.ndim != 4:
        keys = ", ".join(list(sd)[:MAX_LISTED])
        raise UserError(f"{what} is not an AlacGAN generator (no toH.0.weight / tunnel4.0.weight; first keys: {keys})")
    ngf = int(w.shape[0])
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"tunnel4\.2\.(\d+)\.", k))}
    return {"ngf": ngf, "feat_channels": int(t4.shape[1]) - ngf * 8,
            "tunnel4_blocks": (max(blocks) + 1) if blocks else 0}


def load_generator(path: str):
    """NetG with the weights in `path`, in eval mode."""
    return generator_from_state(strip_prefix(read_tensors(path)), _describe(path))


def generator_from_state(sd: dict, what: str):
    """NetG shaped after the state dict `sd` (named `what` in errors), in eval mode."""
    from .alacgan import NetG
    cfg = generator_config(sd, what)
    if cfg["ngf"] % 32 or cfg["feat_channels"] < 0 or cfg["tunnel4_blocks"] < 1:
        raise UserError(f"{what}: unsupported generator shape {cfg}")
    g = NetG(**cfg)
    check_state_dict(g.state_dict(), sd, what)
    g.load_state_dict(sd)
    return g.eval()


def load_local_features(path: str):
    """LocalFeatures from the full i2v.pth (or just its first six convolutions)."""
    from .alacgan import I2V_CONV_INDICES, I2V_FULL_CONVS, LocalFeatures
    import torch
    sd = strip_prefix(strip_prefix(read_tensors(path)), "model.")
    sd.pop("mean", None)
    what = _describe(path)
    full = {}
    for i, (o, c) in I2V_FULL_CONVS.items():
        full[f"{i}.weight"] = torch.empty(o, c, 3, 3)
        full[f"{i}.bias"] = torch.empty(o)
    keep = {f"{i}.{p}" for i in I2V_CONV_INDICES for p in ("weight", "bias")}
    # Accept the full sequential (what was published) or only the part we use.
    expected = full if any(k not in keep for k in sd) else {k: v for k, v in full.items() if k in keep}
    check_state_dict(expected, sd, what)
    net = LocalFeatures()
    net.model.load_state_dict({k: v for k, v in sd.items() if k in keep})
    return net.eval()


def load_alacgan(netg_path: str, i2v_path: str | None):
    """The full model (generator + Illustration2Vec local features, when it has them)."""
    from .alacgan import AlacGAN
    g = load_generator(netg_path)
    local = load_local_features(i2v_path) if i2v_path else None
    # Generators trained without Illustration2Vec have no feature input at all.
    if local is None and g.feat_channels:
        raise UserError(f"{_describe(netg_path)} needs the Illustration2Vec weights: pass --i2v i2v.pth")
    if local is not None and g.feat_channels != 512:
        raise UserError(f"{_describe(netg_path)} takes no Illustration2Vec features; leave out --i2v")
    return AlacGAN(g, local).eval()
