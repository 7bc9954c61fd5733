"""Hint-AUC of an engine on an evaluation set, with the hintauc package.

For each image hintauc generates the deterministic hints from the ground truth
at each ratio; the engine colorizes the line art through the same code path as
`krita-alac colorize` (Engines().colorize); the line art is laid over the
result with Multiply, as it sits above the color layer in Krita; hintauc scores
the picture against the ground truth.
"""
from __future__ import annotations

import os

import numpy as np

from krita_alac.engine.registry import Engines
from krita_alac.engine.errors import UserError
from krita_alac.engine.request import ColorizeRequest

METRICS = ("mse", "psnr", "ssim")   # the perceptual ones need weights from model hubs


def list_set(folder: str):
    """(line art path, ground truth path) pairs of a set: NAME.png beside NAME_lines.png."""
    if not os.path.isdir(folder):
        raise SystemExit(f"no evaluation set at {folder}: build one with python -m bench.quality.build_set")
    pairs = []
    for n in sorted(os.listdir(folder)):
        if n.endswith("_lines.png"):
            gt = os.path.join(folder, n[:-len("_lines.png")] + ".png")
            if os.path.isfile(gt):
                pairs.append((os.path.join(folder, n), gt))
    if not pairs:
        raise SystemExit(f"{folder} holds no NAME.png / NAME_lines.png pairs")
    return pairs


class EngineColorizer:
    """hintauc's colorizer callable around krita_alac's engines."""

    def __init__(self, engine: str, size: int = 512, snap: bool = False, sheet=None):
        self.engines = Engines()
        self.engine, self.size, self.snap = engine, size, snap
        self.notes: dict = {}
        self.sheet = sheet

    def __call__(self, sample) -> np.ndarray:
        gray = sample["line_art"]                        # H x W uint8, white paper
        h, w = gray.shape
        lines = np.empty((h, w, 4), np.uint8)
        lines[..., :3] = gray[..., None]
        lines[..., 3] = 255
        hints = np.zeros((h, w, 4), np.uint8)
        hints[..., :3] = sample["hint_color"][..., ::-1]   # BGR -> RGB
        hints[..., 3] = np.where(sample["hint_mask"] > 0, 255, 0)
        req = ColorizeRequest(lines=lines, hints=hints if hints[..., 3].any() else None, engine=self.engine,
                              size=self.size, snap=self.snap)
        try:
            rgb = self.engines.colorize(req).rgba
            alpha = rgb[..., 3:4].astype(np.float32) / 255.0
            colors = rgb[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)   # over white paper
        except UserError as e:
            # e.g. flats without any hint: the artist sees the bare line art.
            self.notes[str(e)] = self.notes.get(str(e), 0) + 1
            colors = np.full((h, w, 3), 255.0, np.float32)
        out = np.clip(colors * (gray[..., None].astype(np.float32) / 255.0) + 0.5, 0, 255).astype(np.uint8)
        if self.sheet is not None:
            self.sheet.add(sample, out)
        return out[..., ::-1].copy()                     # RGB -> BGR for hintauc


class Sheet:
    """Contact sheet rows: line art | hints | result | ground truth, at a few ratios."""

    def __init__(self, ratios=(0.0, 0.05, 0.25), max_images=6, tile=160):
        self.ratios, self.max_images, self.tile = set(ratios), max_images, tile
        self.rows: dict = {}

    def add(self, sample, result_rgb):
        if sample["index"] >= self.max_images or sample["alpha"] not in self.ratios:
            return
        from PIL import Image
        t = self.tile
        fit = lambda a: np.asarray(Image.fromarray(a).resize((t, t), Image.Resampling.BILINEAR))  # noqa: E731
        gray = np.repeat(sample["line_art"][..., None], 3, 2)
        hint = np.where(sample["hint_mask"][..., None] > 0, sample["hint_color"][..., ::-1], 255).astype(np.uint8)
        self.rows[(sample["index"], sample["alpha"])] = [fit(gray), fit(hint), fit(result_rgb)]

    def save(self, path, ground_truths):
        from PIL import Image
        rows = []
        for (i, a) in sorted(self.rows):
            gt = np.asarray(Image.open(ground_truths[i]).convert("RGB").resize((self.tile, self.tile)))
            rows.append(np.concatenate(self.rows[(i, a)] + [gt], 1))
        if rows:
            Image.fromarray(np.concatenate(rows, 0)).save(path)


def evaluate(data: str, engine: str, size: int = 512, ratios=None, snap: bool = False, sheet: str | None = None,
             limit: int | None = None, metric_size: int = 256):
    import hintauc
    pairs = list_set(data)[:limit]
    alphas = tuple(ratios) if ratios else hintauc.DEFAULT_ALPHAS
    sh = Sheet() if sheet else None
    col = EngineColorizer(engine, size, snap, sh)
    res = hintauc.evaluate_colorizer(col, pairs, alphas=alphas, metrics=METRICS)
    if sh is not None:
        sh.save(sheet, [gt for _, gt in pairs])
    label = engine + (" + snap" if snap else "")
    return {"engine": label, "ratios": list(res["alphas"]),
            "per_ratio": {str(a): v for a, v in res["per_alpha"].items()},
            "hint_auc": res["hint_auc"], "images": res["n_images"], "notes": col.notes,
            "protocol": res["protocol"]}


def table(result) -> str:
    metrics = list(next(iter(result["per_ratio"].values())))
    head = "| ratio | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
    rows = "".join(f"| {r} | " + " | ".join(f"{v[m]:.4f}" for m in metrics) + " |\n"
                   for r, v in result["per_ratio"].items())
    auc = "| **Hint-AUC** | " + " | ".join(f"**{result['hint_auc'][m]:.4f}**" for m in metrics) + " |\n"
    return head + rows + auc
