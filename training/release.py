"""`python -m training release RUN`: a run's generator becomes the bundled alac-open model.

Writes krita_alac/models/alac-open/{alac-open.onnx, model.json}; the model
card (MODEL_CARD.md) lives in the same folder and ships with it.  RUN is a run
folder (its last.pth) or a generator chunk folder (`training gpu`'s gen/).  The
plugin's budget for the model is 30 MB: a generator whose fp32 graph is larger
(the full-size one: 79 MB) ships with int8 convolution weights (onnx_export.
quantize_weights; the arithmetic stays fp32), else fp32.
"""
from __future__ import annotations

import json
import os

from krita_alac.engine.store import sha256_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_ID = "alac-open"
DEFAULT_OUT = os.path.join(ROOT, "krita_alac", "models", MODEL_ID)
BUDGET_BYTES = 30_000_000
INT8_MAX_ABS_DIFF = 0.05    # on the [-1, 1] output; a float export must match to 1e-4
INT8_MIN_PSNR = 30.0        # int8 activations vs PyTorch on held-out training pictures (dB)
CALIBRATION = (64, 16)      # training pictures that calibrate the int8 activations, and that check them


def calibration_feeds(data: str, size: int, seed: int = 1207) -> tuple[list, list]:
    """(calibration, holdout): {"sketch", "hint"} feeds made from training pictures the way
    training makes its samples (the same hint mixture, `size` px); never the evaluation set."""
    import numpy as np
    from .train import Config, Dataset
    ds = Dataset(data)
    cfg = Config(data=data, size=size, batch=1, seed=seed)
    feeds = []
    for step in range(sum(CALIBRATION)):
        s, h, _ = ds.batch_arrays(cfg, step)
        feeds.append({"sketch": np.ascontiguousarray(s), "hint": np.ascontiguousarray(h)})
    return feeds[:CALIBRATION[0]], feeds[CALIBRATION[0]:]


def load_run(run: str):
    """(AlacGAN, training step) from a run folder or a chunk folder."""
    import torch
    from krita_alac.convert.checkpoints import load_alacgan
    from .weights import is_chunk_folder, load_chunks
    if is_chunk_folder(run):
        from krita_alac.convert.alacgan import AlacGAN
        from krita_alac.convert.checkpoints import generator_from_state
        sd, index = load_chunks(run)
        return AlacGAN(generator_from_state(sd, run), None).eval(), int(index["step"])
    ckpt = os.path.join(run, "last.pth")
    step = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
    return load_alacgan(ckpt, None), step


def release(run: str, out: str | None = None, size: int = 256, calibrate: str | None = None,
            ensemble: str | None = None) -> str:
    """`size`: the working size the model scores best at (model.json "size", the engine's default).
    `calibrate`: a training data folder; int8 activations too (the CPU's faster path), calibrated
    on its pictures.  `ensemble`: "flip" has the engine average the colors of the picture and of
    its mirror image, "flip-raw" only for the network alone (model.json "ensemble")."""
    from krita_alac.engine.registry import ENSEMBLES
    if ensemble is not None and ensemble not in ENSEMBLES:
        raise SystemExit(f"--ensemble {ensemble}: use {' or '.join(ENSEMBLES)}")
    from krita_alac.convert.onnx_export import export_onnx
    out = out or DEFAULT_OUT
    if calibrate is not None and not os.path.isfile(os.path.join(calibrate, "manifest.json")):
        raise SystemExit(f"--calibrate needs a training data folder (python -m training data): "
                         f"no manifest.json in {calibrate}")
    os.makedirs(out, exist_ok=True)
    model, step = load_run(run)
    int8 = calibrate is not None or 4 * sum(p.numel() for p in model.parameters()) > BUDGET_BYTES
    feeds, holdout = calibration_feeds(calibrate, size) if calibrate else (None, None)
    onnx_name = f"{MODEL_ID}.onnx"
    final = os.path.join(out, onnx_name)
    # Exported and checked under another name: a release that fails leaves the folder as it was.
    partial = os.path.join(out, f".{onnx_name}.partial")
    try:
        rep = export_onnx(model, partial, int8=int8, calibration=feeds, holdout=holdout)
        _check(rep, int8, calibrate, holdout)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    digest = sha256_file(rep.path)
    os.replace(partial, final)
    rep.path = final
    meta = {"id": MODEL_ID, "name": "alac-open", "kind": "alacgan",
            "onnx": onnx_name, "fp16": None, "netg": None, "i2v": None,
            "license": "CC0-1.0 (weights); trained only on public-domain/CC0 art (Openclipart, Tango icons, "
                       "DiceBear's CC0 avatar styles), see MODEL_CARD.md",
            "source": "krita_alac project: python -m training train / release, see MODEL_CARD.md",
            # Composed with flats (regions, exact hints, the network's shading) by default.
            "snap": True, "size": int(size), "training_step": step,
            "weights": "int8" if int8 else "fp32", "activations": "int8" if calibrate else "fp32",
            "sha256": digest}
    if ensemble:
        meta["ensemble"] = ensemble
    tmp = os.path.join(out, "model.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(out, "model.json"))
    kind = f"int8 weights ({rep.int8_weights} convolutions), " if int8 else ""
    if calibrate:
        kind += (f"int8 activations ({rep.int8_activations} tensors; {rep.int8_psnr:.1f} dB against torch "
                 f"on {len(holdout)} training pictures), ")
    return (f"wrote {rep.path} ({os.path.getsize(rep.path) / 1e6:.1f} MB, {kind}step {step}, "
            f"onnxruntime vs torch {rep.max_abs_diff:.2e}) and model.json")


def _check(rep, int8: bool, calibrate, holdout) -> None:
    if int8 and rep.float_max_abs_diff > 1e-4:
        raise SystemExit(f"the float export differs from torch by {rep.float_max_abs_diff:.2e}")
    if calibrate:
        if rep.int8_psnr < INT8_MIN_PSNR:
            raise SystemExit(f"int8 activations lose too much: {rep.int8_psnr:.1f} dB against torch on "
                             f"{len(holdout)} training pictures (at least {INT8_MIN_PSNR:.0f} dB)")
    elif rep.max_abs_diff > (INT8_MAX_ABS_DIFF if int8 else 1e-4):
        raise SystemExit(f"the export differs from torch by {rep.max_abs_diff:.2e}")
    if os.path.getsize(rep.path) > BUDGET_BYTES:
        raise SystemExit(f"{rep.path} is {os.path.getsize(rep.path) / 1e6:.1f} MB, over the "
                         f"{BUDGET_BYTES / 1e6:.0f} MB budget")

