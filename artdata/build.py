"""Render every source into one training folder with a manifest.

    python -m training data --out DIR [--size 256] [--sources openclipart,tango,dicebear] [--limit N]

DIR gets NAME.png (RGB on white, long side --size) and, where the vector gives
it, NAME_lines.png (exact line art, grayscale, same pixels).  DIR/manifest.json
lists every image with its source file, license and line-art method, and per
source how many files were kept and why the others were dropped.  The quality
benchmark's evaluation images are left out.  Nothing here is committed.

Filter (`judge`): a drawing is kept when it is not blank (4 % of the pixels
drawn), has some color (5 % of the drawn pixels saturated, at least 1.5 % of
the image: mostly-gray drawings with a colored detail are kept, they teach the
network to leave gray alone).  Drawings without outlines are kept too: XDoG
finds their lines at the color boundaries, as an artist would draw them.  Very wide or tall drawings (aspect below 0.5) are rendered larger and
cut into near-square pieces instead of being dropped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .sources import (DICEBEAR_DIR, DICEBEAR_LICENSE, DICEBEAR_STYLES, LICENSE, OPENCLIPART, TANGO,
                      TANGO_LICENSE, eval_exclusions, list_svgs, stroke_lines)
from .svg_render import RenderError, render_svg

SOURCES = ("openclipart", "tango", "dicebear")
DICEBEAR_COUNTS = {"lorelei": 1500, "openPeeps": 1500, "thumbs": 200}
MIN_ASPECT = 0.5          # below this a drawing is cut into pieces
PIECE_ASPECT = 1.4        # the longest piece, in short sides


def judge(rgb: np.ndarray) -> str | None:
    """None when `rgb` is a usable drawing, else why not."""
    x = rgb.astype(np.int16)
    drawn = (x < 245).any(axis=2)
    if drawn.mean() < 0.04:
        return "blank"
    sat = (x.max(axis=2) - x.min(axis=2)) > 40
    colored = (sat & drawn).sum()
    if colored < 0.05 * drawn.sum() or colored < 0.015 * drawn.size:
        return "gray"
    return None


def pieces(h: int, w: int):
    """Near-square (y0, y1, x0, x1) pieces covering an image, along its long axis."""
    short, long_ = min(h, w), max(h, w)
    n = max(1, int(np.ceil(long_ / (PIECE_ASPECT * short))))
    edges = np.linspace(0, long_, n + 1).round().astype(int)
    for a, b in zip(edges[:-1], edges[1:]):
        yield (a, b, 0, w) if h > w else (0, h, a, b)


def fit(rgb: np.ndarray, lines: np.ndarray | None, size: int):
    """Downscale a piece whose long side exceeds `size` (rounding), lines alike."""
    from PIL import Image
    h, w = rgb.shape[:2]
    if max(h, w) <= size:
        return rgb, lines
    s = size / max(h, w)
    wh = (max(1, min(size, round(w * s))), max(1, min(size, round(h * s))))
    rgb = np.asarray(Image.fromarray(rgb).resize(wh, Image.Resampling.LANCZOS))
    if lines is not None:
        lines = np.asarray(Image.fromarray(lines).resize(wh, Image.Resampling.BILINEAR))
    return rgb, lines


def _name(tag: str) -> str:
    return hashlib.sha1(tag.encode()).hexdigest()[:12]


def _save(out, name, rgb, lines):
    from PIL import Image
    Image.fromarray(rgb).save(os.path.join(out, name + ".png"))
    if lines is not None:
        Image.fromarray(lines).save(os.path.join(out, name + "_lines.png"))


def render_vector(path: str, size: int):
    """[(rgb, lines or None, piece index)] for one SVG file, or a reason string."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        rgb = render_svg(text, size)
    except (RenderError, OSError):
        return "render error"
    h, w = rgb.shape[:2]
    long_side = size
    if min(h, w) < MIN_ASPECT * max(h, w):
        # Rendered larger, so that the pieces' long sides come out near `size`.
        long_side = int(min(4 * size, round(size / PIECE_ASPECT * max(h, w) / max(min(h, w), 1))))
        try:
            rgb = render_svg(text, long_side)
        except RenderError:
            return "render error"
    lines_full = stroke_lines(text, long_side, rgb)
    kept, reasons = [], []
    for k, (y0, y1, x0, x1) in enumerate(pieces(*rgb.shape[:2])):
        part = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        why = judge(part)
        lines = None if lines_full is None else np.ascontiguousarray(lines_full[y0:y1, x0:x1, 0])
        if why is None and min(part.shape[:2]) < 48:
            why = "too small"
        if why is None:
            part, lines = fit(part, lines, size)
            kept.append((part, lines, k))
        else:
            reasons.append(why)
    return kept if kept else reasons[0]


def fill_edges(rgb: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Boundaries between fills of different colors away from the existing ink: the
    outline a vector leaves implicit (DiceBear's hair has no outline shape).  A
    2-px central difference, so antialiased boundaries are not missed."""
    x = rgb.astype(np.int16)
    edge = np.zeros(rgb.shape[:2], bool)
    edge[1:-1] |= np.abs(x[2:] - x[:-2]).max(axis=2) > 60
    edge[:, 1:-1] |= np.abs(x[:, 2:] - x[:, :-2]).max(axis=2) > 60
    from scipy import ndimage as ndi
    near_ink = ndi.binary_dilation(lines < 160, iterations=2)
    return edge & ~near_ink


def build_vectors(out, source, files, src_root, license_, size, limit, workers, skip):
    items, rejected = [], {}

    def one(path):
        rel = os.path.relpath(path, src_root)
        if rel in skip or os.path.basename(path) in skip:
            return rel, "evaluation set"
        return rel, render_vector(path, size)

    with ThreadPoolExecutor(workers) as ex:
        for rel, res in ex.map(one, files):
            if isinstance(res, str):
                rejected[res] = rejected.get(res, 0) + 1
                continue
            for rgb, lines, k in res:
                name = _name(f"{source}:{rel}:{k}")
                _save(out, name, rgb, lines)
                items.append({"file": name + ".png", "lines": name + "_lines.png" if lines is not None else None,
                              "lines_method": "svg strokes" if lines is not None else None,
                              "origin": source, "source": rel, "piece": k, "license": license_})
            if limit and len(items) >= limit:
                break
    return items, rejected


def npm_install(folder=DICEBEAR_DIR):
    """DiceBear at the versions pinned in package-lock.json, into an ignored node_modules."""
    if os.path.isdir(os.path.join(folder, "node_modules", "@dicebear", "collection")):
        return
    if shutil.which("npm") is None:
        raise SystemExit("npm not found: apt-get install nodejs npm")
    cmd = ["npm", "ci" if os.path.isfile(os.path.join(folder, "package-lock.json")) else "install",
           "--no-audit", "--no-fund"]
    subprocess.run(cmd, cwd=folder, check=True, stdout=subprocess.DEVNULL)


def build_dicebear(out, size, counts, workers):
    from PIL import Image
    npm_install()
    tmp = os.path.join(out, ".dicebear_svg")
    items, rejected = [], {}
    for style, n in counts.items():
        if style not in DICEBEAR_STYLES:
            raise SystemExit(f"DiceBear style {style!r} is not one of the CC0 drawing styles {DICEBEAR_STYLES}")
        if n <= 0:
            continue
        proc = subprocess.run(["node", os.path.join(DICEBEAR_DIR, "render.mjs"), tmp, style, str(n)],
                              check=True, capture_output=True, text=True)
        metas = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]

        def one(meta):
            try:
                with open(os.path.join(tmp, meta["name"] + ".svg"), encoding="utf-8") as f:
                    rgb = render_svg(f.read(), size)
                lines = None
                if meta["lines"]:
                    with open(os.path.join(tmp, meta["name"] + "_lines.svg"), encoding="utf-8") as f:
                        lines = render_svg(f.read(), size).min(axis=2)
                    lines = np.where(fill_edges(rgb, lines), np.minimum(lines, 40), lines).astype(np.uint8)
            except (RenderError, OSError):
                return meta, None
            return meta, (rgb, lines)

        with ThreadPoolExecutor(workers) as ex:
            for meta, res in ex.map(one, metas):
                if res is None:
                    rejected["render error"] = rejected.get("render error", 0) + 1
                    continue
                rgb, lines = res
                name = meta["name"]
                Image.fromarray(rgb).save(os.path.join(out, name + ".png"))
                if lines is not None:
                    Image.fromarray(lines).save(os.path.join(out, name + "_lines.png"))
                items.append({"file": name + ".png", "lines": name + "_lines.png" if lines is not None else None,
                              "lines_method": "vector outlines + fill edges" if lines is not None else None,
                              "origin": "dicebear", "source": f"dicebear:{style}:{meta['seed']}",
                              "colors": meta["colors"],
                              "license": DICEBEAR_LICENSE.format(license=meta["license"], style=style,
                                                                 creator=meta["creator"])})
    shutil.rmtree(tmp, ignore_errors=True)
    return items, rejected


def build(out: str, size: int = 256, sources=SOURCES, limit: int | None = None, workers: int = 2,
          dicebear_counts: dict | None = None, openclipart: str = OPENCLIPART, tango: str = TANGO):
    os.makedirs(out, exist_ok=True)
    skip = eval_exclusions()
    images, per_source = [], {}
    for source in sources:
        if source == "openclipart":
            if not os.path.isdir(openclipart):
                raise SystemExit(f"{openclipart} not found: apt-get install openclipart-svg librsvg2-bin")
            files = list_svgs(openclipart)
            items, rej = build_vectors(out, source, files, openclipart, LICENSE, size, limit, workers, skip)
        elif source == "tango":
            if not os.path.isdir(tango):
                raise SystemExit(f"{tango} not found: apt-get install tango-icon-theme librsvg2-bin")
            files = list_svgs(tango)
            items, rej = build_vectors(out, source, files, tango, TANGO_LICENSE, size, limit, workers, set())
        elif source == "dicebear":
            counts = dict(dicebear_counts or DICEBEAR_COUNTS)
            if limit:
                counts = {k: min(v, limit) for k, v in counts.items()}
            files = []
            items, rej = build_dicebear(out, size, counts, workers)
        else:
            raise SystemExit(f"unknown source {source!r} (have {', '.join(SOURCES)})")
        per_source[source] = {"files": len(files) if files else len(items), "images": len(items),
                              "with_exact_lines": sum(it["lines"] is not None for it in items),
                              "rejected": rej, "license": items[0]["license"] if items else None}
        images += items
    manifest = {"size": size, "sources": per_source, "excluded_eval": len(skip) // 2,
                "count": len(images), "images": images}
    tmp = os.path.join(out, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(out, "manifest.json"))
    return manifest
