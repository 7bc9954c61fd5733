"""Checkpoints -> ONNX with the engine's own loader and exporter."""
from __future__ import annotations

import os
import sys

from krita_alac.convert.checkpoints import load_alacgan
from krita_alac.engine.errors import UserError
from krita_alac.convert.onnx_export import export_onnx

ONNX_NAME = "model.onnx"
# ONNX Runtime and PyTorch agree to ~1e-5 on a sound export; colors live in [-1, 1].
MAX_CHECK_DIFF = 1e-2


def convert(netg: str, i2v: str | None, folder: str, fp16: bool = False, check: bool = True,
            quiet: bool = False) -> dict:
    """Write model.onnx (and model.fp16.onnx) into `folder`; the model.json fields for them."""
    model = load_alacgan(netg, i2v)  # weights_only=True inside
    if not quiet:
        print("converting to ONNX (this takes a little while)...", file=sys.stderr, flush=True)
    rep = export_onnx(model, os.path.join(folder, ONNX_NAME), fp16=fp16, check=check)
    if rep.max_abs_diff is not None:
        if not rep.max_abs_diff <= MAX_CHECK_DIFF:
            raise UserError(f"the converted model does not match PyTorch (max abs diff {rep.max_abs_diff:.2e}); "
                            "nothing was installed")
        if not quiet:
            print(f"onnxruntime vs torch: max abs diff {rep.max_abs_diff:.2e}", file=sys.stderr)
    return {"onnx": ONNX_NAME, "fp16": os.path.basename(rep.fp16_path) if rep.fp16_path else None}
