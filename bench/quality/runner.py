"""Hint-AUC of engines on an evaluation set, with the hintauc package, on two hint protocols.

* hintauc: hintauc's deterministic scribbles from the ground truth's regions, at hint
  ratios 0 … 1 (the paper's protocol).
* strokes: artdata.strokes' artist-like short strokes (a few per region, 3-12 px wide,
  often near borders, sometimes touching a line, some regions left unhinted), seeded by
  the image's index, at stroke amounts 0 … 1 (the share of regions hinted) in place of the
  ratio.  Regions are the ground truth's color areas between the lines.

For each sample every row (engine + composition) colorizes the line art through the same
code path as `krita-alac colorize` (Engines().colorize with a ColorizeRequest that sets only
what the row names: `auto` alone is exactly the command's default); the line art is laid
over the result with Multiply, as it sits above the color layer in Krita; hintauc's
Evaluator scores the picture against the ground truth, and Hint-AUC is hintauc's trapezoid
over the ratios (or amounts).  All rows see the same hints.
"""
from __future__ import annotations

import contextlib
import functools
import os

import numpy as np

from krita_alac.engine.errors import UserError
from krita_alac.engine.registry import Engines
from krita_alac.engine.request import ColorizeRequest

METRICS = ("mse", "psnr", "ssim")   # the perceptual ones need weights from model hubs
PROTOCOLS = ("hintauc", "strokes")
STROKE_AMOUNTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
STROKE_SEED = 20260
SCRIBBLE_SEED = 0        # FilFinder's medial-axis tie breaks (seeded_scribbles)
COMPOSE_CHOICES = ("default", "shade", "snap", "raw")


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


def sample_layers(sample):
    """The line-art and hint layers (RGBA) of a sample, as an artist's document holds them; the
    hint layer is None where the sample has no hint pixel."""
    gray = sample["line_art"]
    h, w = gray.shape
    lines = np.empty((h, w, 4), np.uint8)
    lines[..., :3] = gray[..., None]
    lines[..., 3] = 255
    hints = np.zeros((h, w, 4), np.uint8)
    hints[..., :3] = sample["hint_color"][..., ::-1]   # BGR -> RGB
    hints[..., 3] = np.where(sample["hint_mask"] > 0, 255, 0)
    return lines, (hints if hints[..., 3].any() else None)


def as_seen(rgba, gray) -> np.ndarray:
    """What the artist sees (RGB uint8): the result over white paper (None: no result, the bare
    paper), the line art multiplied on top, as it sits above the color layer in Krita."""
    if rgba is None:
        colors = np.full(gray.shape + (3,), 255.0, np.float32)
    else:
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        colors = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
    return np.clip(colors * (gray[..., None].astype(np.float32) / 255.0) + 0.5, 0, 255).astype(np.uint8)


class EngineColorizer:
    """hintauc's colorizer callable around krita_alac's engines: one row of the table.
    engine: "flats", "auto" or a model; compose: None (the command's default) or a mode;
    size: None (the model's) or a working size."""

    def __init__(self, engine: str, size: int | None = None, snap: bool | None = None, sheet=None,
                 compose: str | None = None, engines: Engines | None = None):
        self.engines = engines or Engines()
        self.engine, self.size, self.snap, self.compose = engine, size, snap, compose
        self.notes: dict = {}
        self.sheet = sheet

    def request(self, lines, hints) -> ColorizeRequest:
        kw = {}
        if self.size is not None:
            kw["size"] = self.size
        if self.snap is not None:
            kw["snap"] = self.snap
        if self.compose is not None:
            kw["compose"] = self.compose
        return ColorizeRequest(lines=lines, hints=hints, engine=self.engine, **kw)

    def __call__(self, sample) -> np.ndarray:
        gray = sample["line_art"]                        # H x W uint8, white paper
        lines, hints = sample_layers(sample)
        req = self.request(lines, hints)
        try:
            rgba = self.engines.colorize(req).rgba
        except UserError as e:
            # e.g. flats without any hint: the artist sees the bare line art.
            self.notes[str(e)] = self.notes.get(str(e), 0) + 1
            rgba = None
        out = as_seen(rgba, gray)
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


def _load(pair):
    from PIL import Image
    lines_path, gt_path = pair
    gt = np.asarray(Image.open(gt_path).convert("RGB"))
    gray = Image.open(lines_path).convert("L")
    if gray.size != (gt.shape[1], gt.shape[0]):
        gray = gray.resize((gt.shape[1], gt.shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(gray), gt


@contextlib.contextmanager
def seeded_scribbles(seed: int = SCRIBBLE_SEED):
    """hintauc's scribbles follow FilFinder's longest path, whose medial-axis step (scikit-image's
    medial_axis) breaks pixel ties with an unseeded generator: the same image got slightly
    different scribbles on every run, and Hint-AUC moved by up to 0.1 dB between runs of the same
    model.  Within this block that generator is seeded, so the paper's path method gives the
    same scribbles every time."""
    import inspect

    import fil_finder.filfinder2D as ff          # hintauc's FilFinder2D looks medial_axis up here
    real = ff.medial_axis
    # hintauc counts a failing path as a failed region and goes on: a TypeError here would be silent.
    if "rng" not in inspect.signature(real).parameters:
        raise RuntimeError("scikit-image's medial_axis takes no rng (scikit-image >= 0.23 needed to seed "
                           "hintauc's scribbles)")
    ff.medial_axis = functools.partial(real, rng=seed)
    try:
        yield
    finally:
        ff.medial_axis = real


def hintauc_samples(pairs, alphas):
    """hintauc's samples (its evaluate_colorizer's loop, kept here so several rows share them),
    with its scribbles made the same on every run (seeded_scribbles)."""
    import hintauc
    for idx, pair in enumerate(pairs):
        gray, gt = _load(pair)
        h, w = gt.shape[:2]
        with seeded_scribbles():
            hints = hintauc.generate_hints(np.ascontiguousarray(gt[..., ::-1]))
        for a in alphas:
            color, mask = hintauc.hint_inputs(hints, a, "scribble", h, w)
            yield gt, {"index": idx, "name": os.path.basename(pair[1]), "alpha": a, "line_art": gray,
                       "hint_color": color, "hint_mask": mask}


def stroke_samples(pairs, amounts):
    """artdata.strokes' artist hints: regions are the ground truth's color areas between the
    lines; the rng is seeded by the image's index (the same strokes on every run)."""
    from artdata.strokes import artist_hints, color_regions
    for idx, pair in enumerate(pairs):
        gray, gt = _load(pair)
        labels = color_regions(gt, ink=gray < 128)
        for a in amounts:
            rgba = artist_hints(gt, np.random.default_rng(STROKE_SEED + idx), labels=labels, amount=a)
            yield gt, {"index": idx, "name": os.path.basename(pair[1]), "alpha": a, "line_art": gray,
                       "hint_color": np.ascontiguousarray(rgba[..., 2::-1]),
                       "hint_mask": np.where(rgba[..., 3] > 0, 255, 0).astype(np.uint8)}


def protocol_samples(pairs, protocol: str, ratios=None):
    """(ratios or stroke amounts, the samples' generator) of a hint protocol; ValueError for an
    unknown protocol or a grid that does not span 0 … 1."""
    import hintauc
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown hint protocol {protocol!r}: use {' or '.join(PROTOCOLS)}")
    if protocol == "hintauc":
        alphas = hintauc.check_alphas(tuple(ratios) if ratios else hintauc.DEFAULT_ALPHAS, full_range=True)
        return alphas, hintauc_samples(pairs, alphas)
    alphas = tuple(float(a) for a in (ratios or STROKE_AMOUNTS))
    if list(alphas) != sorted(set(alphas)) or alphas[0] != 0.0 or alphas[-1] != 1.0:
        raise ValueError("stroke amounts must be strictly increasing from 0 to 1")
    return alphas, stroke_samples(pairs, alphas)


def evaluate_rows(data: str, rows: dict, protocol: str = "hintauc", ratios=None, limit: int | None = None,
                  sheet_rows: dict | None = None, metric_size: int = 256) -> dict:
    """rows: {label: EngineColorizer}.  Returns {label: result} (per ratio means, Hint-AUC)."""
    import hintauc
    pairs = list_set(data)[:limit]
    alphas, samples = protocol_samples(pairs, protocol, ratios)
    ev = hintauc.Evaluator(metrics=METRICS, resize=metric_size)
    sums = {label: {a: {} for a in alphas} for label in rows}
    for gt, sample in samples:
        for label, col in rows.items():
            pred = col(sample)
            for k, v in ev(pred[:, :, ::-1], gt).items():
                sums[label][sample["alpha"]][k] = sums[label][sample["alpha"]].get(k, 0.0) + float(v)
    n = len(pairs)
    out = {}
    for label, col in rows.items():
        per = {a: {k: v / n for k, v in sums[label][a].items()} for a in alphas}
        out[label] = {"engine": label, "protocol": protocol, "ratios": list(alphas),
                      "per_ratio": {str(a): v for a, v in per.items()},
                      "hint_auc": hintauc.hint_auc_table(per), "images": n, "notes": col.notes}
        if col.sheet is not None and sheet_rows and label in sheet_rows:
            col.sheet.save(sheet_rows[label], [gt for _, gt in pairs])
    return out


def evaluate(data: str, engine: str, size: int | None = None, ratios=None, snap: bool | None = None,
             sheet: str | None = None, limit: int | None = None, metric_size: int = 256,
             compose: str | None = None, protocol: str = "hintauc"):
    """One row (kept for scripts): the result dict of `evaluate_rows`."""
    col = EngineColorizer(engine, size, snap, Sheet() if sheet else None, compose)
    r = evaluate_rows(data, {engine: col}, protocol, ratios, limit, {engine: sheet} if sheet else None,
                      metric_size)
    return r[engine]


def table(result) -> str:
    metrics = list(next(iter(result["per_ratio"].values())))
    head = "| ratio | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
    rows = "".join(f"| {r} | " + " | ".join(f"{v[m]:.4f}" for m in metrics) + " |\n"
                   for r, v in result["per_ratio"].items())
    auc = "| **Hint-AUC** | " + " | ".join(f"**{result['hint_auc'][m]:.4f}**" for m in metrics) + " |\n"
    return head + rows + auc


def side_by_side(results: dict, metric: str = "psnr") -> str:
    """One line per row: the metric at every ratio and its Hint-AUC."""
    first = next(iter(results.values()))
    ratios = list(first["per_ratio"])
    head = "| row | " + " | ".join(ratios) + f" | **Hint-AUC {metric}** | Hint-AUC ssim |\n"
    head += "|---|" + "---|" * (len(ratios) + 2) + "\n"
    body = "".join(f"| {label} | " + " | ".join(f"{r['per_ratio'][k][metric]:.2f}" for k in ratios)
                   + f" | **{r['hint_auc'][metric]:.2f}** | {r['hint_auc']['ssim']:.3f} |\n"
                   for label, r in results.items())
    return head + body
