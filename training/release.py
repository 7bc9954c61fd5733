"""`python -m training release RUN`: a run's generator becomes the bundled alac-open model.

Writes krita_alac/models/alac-open/{alac-open.onnx, model.json}; the model
card (MODEL_CARD.md) lives in the same folder and ships with it.  fp32 only:
the model is small (about 16 MB), and fp16 only pays off on a GPU.
"""
from __future__ import annotations

import json
import os

from krita_alac.engine.store import sha256_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_ID = "alac-open"
DEFAULT_OUT = os.path.join(ROOT, "krita_alac", "models", MODEL_ID)


def release(run: str, out: str | None = None, size: int = 256) -> str:
    """`size`: the working size the model scores best at (model.json "size", the engine's default)."""
    import torch
    from krita_alac.convert.checkpoints import load_alacgan
    from krita_alac.convert.onnx_export import export_onnx
    out = out or DEFAULT_OUT
    os.makedirs(out, exist_ok=True)
    ckpt = os.path.join(run, "last.pth")
    step = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
    onnx_name = f"{MODEL_ID}.onnx"
    rep = export_onnx(load_alacgan(ckpt, None), os.path.join(out, onnx_name))
    if rep.max_abs_diff > 1e-4:
        raise SystemExit(f"the export differs from torch by {rep.max_abs_diff:.2e}")
    digest = sha256_file(rep.path)
    meta = {"id": MODEL_ID, "name": "alac-open", "kind": "alacgan",
            "onnx": onnx_name, "fp16": None, "netg": None, "i2v": None,
            "license": "CC0-1.0 (weights); trained only on public-domain/CC0 art (Openclipart, Tango icons, "
                       "DiceBear's CC0 avatar styles), see MODEL_CARD.md",
            "source": "krita_alac project: python -m training train / release, see MODEL_CARD.md",
            # Composed with flats (regions, exact hints, the network's shading) by default.
            "snap": True, "size": int(size), "training_step": step, "sha256": digest}
    tmp = os.path.join(out, "model.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(out, "model.json"))
    return f"wrote {rep.path} (step {step}, onnxruntime vs torch {rep.max_abs_diff:.2e}) and model.json"
