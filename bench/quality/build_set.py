"""Build the quality benchmark's evaluation set from public-domain clip art.

    python -m bench.quality.build_set --out DIR [--n 60] [--size 512]

Source: Debian's openclipart-svg (Openclipart, public domain / CC0).  Each SVG
is rendered on white (ground truth, NAME.png) and its line art (NAME_lines.png)
is taken from the drawing's own strokes (fills removed, strokes black) when the
strokes outline the drawing, and by XDoG otherwise.  Candidates are visited in
a fixed order (sha1 of the relative path) and kept when they look like
outlined, colored drawings: enough area drawn, real colors, several flat
color regions, dark outlines, a sane aspect ratio, not a photo.  DIR gets a
manifest.json with each image's source, license and line-art method; the list
of sources is also written to bench/quality/eval_set.txt (committed) so the
training data leaves them out.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os

import numpy as np

# Source, license, evaluation list and vector line art are shared with the training data.
from artdata.sources import EVAL_LIST, LICENSE, OPENCLIPART, stroke_lines  # noqa: F401
from artdata.svg_render import RenderError, render_svg


def looks_like_colored_drawing(rgb: np.ndarray) -> bool:
    h, w = rgb.shape[:2]
    if min(h, w) < 0.4 * max(h, w):
        return False
    x = rgb.astype(np.int16)
    drawn = (x < 240).any(axis=2)
    if not 0.12 < drawn.mean() < 0.95:
        return False
    sat = x.max(axis=2) - x.min(axis=2)
    if (sat[drawn] > 50).mean() < 0.3:                      # mostly gray
        return False
    if (x.max(axis=2) < 70).mean() < 0.005:                 # no dark outlines
        return False
    # Flat colors: a few colors cover most of the drawing (photos and gradients do not).
    q = (rgb[drawn] // 32).astype(np.int32)
    keys, counts = np.unique(q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2], return_counts=True)
    top = np.sort(counts)[::-1]
    return len(keys) >= 3 and top[:8].sum() / counts.sum() > 0.7


def xdog_lines(rgb: np.ndarray) -> np.ndarray:
    """The set's XDoG line art: luminance XDoG with the parameters the set was built with, fixed here so the set stays
    the same when the plugin's line extraction improves (it also sees color edges now)."""
    from krita_alac.engine.imaging import luminance
    from krita_alac.engine.lines import XDoGParams, xdog_darkness
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    ink = xdog_darkness(luminance(rgba), XDoGParams(sigma=0.8, k=2.0, tau=0.95, eps=-0.01, phi=200.0))
    gray = 255 - np.clip(ink * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def candidates(src=OPENCLIPART):
    files = []
    for d, _, names in os.walk(src):
        files += [os.path.relpath(os.path.join(d, n), src) for n in names if n.endswith(".svg")]
    return sorted(files, key=lambda r: hashlib.sha1(r.encode()).hexdigest())


def build(out: str, n: int = 60, size: int = 512, src: str = OPENCLIPART, write_list: bool = True):
    from PIL import Image
    if not os.path.isdir(src):
        raise SystemExit(f"{src} not found: apt-get install openclipart-svg librsvg2-bin")
    os.makedirs(out, exist_ok=True)
    items = []
    for rel in candidates(src):
        with open(os.path.join(src, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        try:
            rgb = render_svg(text, size)
        except RenderError:
            continue
        if not looks_like_colored_drawing(rgb):
            continue
        lines = stroke_lines(text, size, rgb)
        method = "svg strokes"
        if lines is None:
            lines, method = xdog_lines(rgb), "xdog"
        name = f"{len(items):03d}_" + os.path.splitext(os.path.basename(rel))[0][:40]
        Image.fromarray(rgb).save(os.path.join(out, name + ".png"))
        Image.fromarray(lines).convert("L").save(os.path.join(out, name + "_lines.png"))
        items.append({"name": name, "source": rel, "license": LICENSE, "lines": method,
                      "size": [int(rgb.shape[1]), int(rgb.shape[0])]})
        if len(items) >= n:
            break
    manifest = {"source": "Debian openclipart-svg " + src, "license": LICENSE, "count": len(items), "images": items}
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    if write_list:
        with open(EVAL_LIST, "w", encoding="utf-8") as f:
            f.write("# Sources of the quality benchmark's evaluation set (openclipart-svg relative paths).\n")
            f.write("# Training data must leave these out.\n")
            f.writelines(it["source"] + "\n" for it in items)
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.quality.build_set", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--size", type=int, default=512)
    a = p.parse_args(argv)
    m = build(a.out, a.n, a.size)
    by = {}
    for it in m["images"]:
        by[it["lines"]] = by.get(it["lines"], 0) + 1
    print(f"{m['count']} images in {a.out} (line art: {by})")


if __name__ == "__main__":
    main()
