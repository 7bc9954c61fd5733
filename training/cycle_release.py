"""`python -m training release-cycle RUN --out DIR`: a cycle run's generators become a cycle-open model folder.

DIR gets, in the layout of krita_alac/models/alac-open/:
  cycle-open.onnx        G_A, sketch -> color (model.json "onnx": the engine's Auto colors)
  cycle-open-lines.onnx  G_B, color -> sketch (model.json "lines": neural line extraction)
  model.json             kind "image2image", both files' sha256, the run's step and phase
  MODEL_CARD.md          the bundled card (krita_alac/models/cycle-open/), when DIR has no card of its own
Both graphs are exported by krita_alac.convert.cyclegan_export and checked against
PyTorch on a random non-square input; the finished folder is then loaded the way the
engine loads an installed model (store.read_model, registry resolution, auto_colors and
neural_lines through ONNX Runtime) before it is moved into place: nothing half-written
is left in DIR.  Nothing is bundled unless DIR is krita_alac/models/cycle-open.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

from krita_alac.engine.store import sha256_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_ID = "cycle-open"
COLOR_ONNX = f"{MODEL_ID}.onnx"
LINES_ONNX = f"{MODEL_ID}-lines.onnx"
CARD = os.path.join(ROOT, "krita_alac", "models", MODEL_ID, "MODEL_CARD.md")
MAX_DIFF = 1e-4          # ONNX Runtime vs PyTorch, as the alac-open release


def check_folder(folder: str) -> dict:
    """Load `folder` as the engine loads an installed model and run both directions on a small
    picture; returns the engine's answers (shapes, labels).  Raises on any mismatch."""
    import numpy as np
    from krita_alac.engine import registry, store
    from krita_alac.engine.image2image import auto_colors, neural_lines
    m = store.read_model(folder)
    if m is None or m.onnx is None:
        raise SystemExit(f"{folder}: the engine does not read this model folder")
    spec = registry._from_installed(m)
    if spec.kind != "image2image":
        raise SystemExit(f"{folder}: the engine sees kind {spec.kind!r}, not image2image")
    lines_path = os.path.join(folder, m.meta.get("lines", ""))
    pic = np.full((48, 40, 4), 255, np.uint8)
    pic[10:30, 8:32, :3] = (200, 40, 40)
    pic[10:12, 8:32, :3] = 0
    colors = auto_colors(pic, spec.onnx, size=64, backend="onnx", device="cpu")
    ink = neural_lines(pic, lines_path, size=64, backend="onnx", device="cpu")
    if colors.shape != pic.shape or ink.shape != pic.shape:
        raise SystemExit(f"{folder}: the engine gave {colors.shape} / {ink.shape} for a {pic.shape} picture")
    return {"label": spec.label, "colors": colors.shape, "lines": ink.shape}


def release_cycle(run: str, out: str, source: str = "latest", size: int = 256, lines_size: int | None = None) -> str:
    import torch
    from krita_alac.convert.cyclegan import load_generator
    from krita_alac.convert.cyclegan_export import export_onnx
    from krita_alac.engine.modelmeta import KIND_AUTO
    if source not in ("latest", "paired"):
        raise SystemExit(f"--from must be latest or paired, got {source!r}")
    for name, v in (("--size", size), ("--lines-size", lines_size)):
        if v is not None and (v < 32 or v % 32):
            raise SystemExit(f"{name} must be a positive multiple of 32, got {v}")
    ckpt = os.path.join(run, "last.pth")
    paths = [os.path.join(run, f"{source}_net_G_{x}.pth") for x in ("A", "B")]
    for p in [ckpt] + paths:
        if not os.path.isfile(p):
            raise SystemExit(f"{p} not found" + (" (the run has not finished its paired phase)"
                                                  if source == "paired" and p != ckpt else ""))
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    cfg = ck.get("config", {})
    step = int(ck["step"]) if source == "latest" else int(cfg.get("paired_steps", 0))
    g_a, g_b = load_generator(paths[0]), load_generator(paths[1])
    if (g_a.in_nc, g_a.out_nc, g_b.in_nc, g_b.out_nc) != (1, 3, 3, 1):
        raise SystemExit(f"{run}: expected G_A sketch(1) -> color(3) and G_B color(3) -> sketch(1)")

    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise SystemExit(f"output folder's parent does not exist: {parent}")
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
    try:
        reps = [export_onnx(g_a, os.path.join(stage, COLOR_ONNX), "sketch2color"),
                export_onnx(g_b, os.path.join(stage, LINES_ONNX), "color2sketch")]
        for r in reps:
            if r.max_abs_diff is None or r.max_abs_diff > MAX_DIFF:
                raise SystemExit(f"{os.path.basename(r.path)}: ONNX Runtime differs from torch by {r.max_abs_diff}")
        paired = int(cfg.get("paired_steps", 0))
        meta = {"id": MODEL_ID, "name": MODEL_ID, "kind": KIND_AUTO,
                "onnx": COLOR_ONNX, "lines": LINES_ONNX, "fp16": None, "netg": None, "i2v": None,
                "license": "CC0-1.0 (weights); trained only on public-domain / CC0 drawings "
                           "(Openclipart, Tango icons, DiceBear CC0 styles), see MODEL_CARD.md",
                "source": "krita_alac project: python -m training cycle / release-cycle, see MODEL_CARD.md",
                "snap": False, "size": size,
                **({"lines_size": lines_size} if lines_size else {}),
                "training_step": step,
                "phase": "paired" if source == "paired" or step <= paired else "cycle",
                "paired_steps": paired,
                "generator": {k: cfg.get(k) for k in ("ngf", "n_down", "n_blocks", "g_b", "size")},
                "sha256": sha256_file(reps[0].path),
                "sha256_lines": sha256_file(reps[1].path),
                "onnx_vs_torch": {COLOR_ONNX: reps[0].max_abs_diff, LINES_ONNX: reps[1].max_abs_diff}}
        with open(os.path.join(stage, "model.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        has_card = os.path.isfile(os.path.join(out, "MODEL_CARD.md"))
        if not has_card and os.path.isfile(CARD):
            shutil.copyfile(CARD, os.path.join(stage, "MODEL_CARD.md"))
        check_folder(stage)
        # Into place: the graphs first, model.json (which names them) last.
        os.makedirs(out, exist_ok=True)
        for name in (COLOR_ONNX, LINES_ONNX, "MODEL_CARD.md", "model.json"):
            src = os.path.join(stage, name)
            if os.path.isfile(src):
                os.replace(src, os.path.join(out, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return (f"wrote {out}: {COLOR_ONNX} and {LINES_ONNX} ({source} generators, step {step}; onnxruntime vs torch "
            f"{reps[0].max_abs_diff:.1e} / {reps[1].max_abs_diff:.1e}) and model.json; the engine loads it")
