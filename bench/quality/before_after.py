"""python -m bench.quality.before_after --model OLD.onnx --model NEW.onnx -o sheet.png

A before/after sheet of models on the project's example (examples/lineart.png with
examples/hints.png): one row per model, the network's own colors (--compose raw) and
the default composition side by side, line art multiplied on top as in Krita.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def multiply_lines(rgba: np.ndarray, lines: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.float32)
    ink = lines[..., :3].astype(np.float32) / 255.0 * (lines[..., 3:] / 255.0) + (1 - lines[..., 3:] / 255.0)
    return np.clip(rgb * ink + 0.5, 0, 255).astype(np.uint8)


def label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, 8 + 7 * len(text), 16], fill=(255, 255, 255))
    d.text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(im)


def sheet(models, labels, size=None, scale=0.5):
    from PIL import Image
    from krita_alac.engine.imaging import read_rgba
    from krita_alac.engine.registry import Engines
    from krita_alac.engine.request import ColorizeRequest
    lines = read_rgba(os.path.join(EXAMPLES, "lineart.png"), "line art")
    hints = read_rgba(os.path.join(EXAMPLES, "hints.png"), "hints")
    eng = Engines()
    rows = []
    for model, name in zip(models, labels):
        tiles = []
        for compose in ("raw", "shade"):
            r = eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine=model, size=size, compose=compose))
            tiles.append(label(multiply_lines(r.rgba, lines), f"{name}: {'network' if compose == 'raw' else 'default'}"))
        rows.append(np.concatenate(tiles, 1))
    out = np.concatenate(rows, 0)
    h, w = out.shape[:2]
    return Image.fromarray(out).resize((int(w * scale), int(h * scale)), Image.Resampling.LANCZOS)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.quality.before_after", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="model file or id (repeat: one row each)")
    p.add_argument("--label", action="append", help="row label (default: the file name)")
    p.add_argument("--size", type=int, help="working size (default: the model's)")
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args(argv)
    labels = a.label or [os.path.basename(m) for m in a.model]
    if len(labels) != len(a.model):
        raise SystemExit(f"{p.prog}: error: give one --label per --model")
    sheet(a.model, labels, a.size, a.scale).save(a.output)
    print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
