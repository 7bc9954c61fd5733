"""The training set: public-domain (CC0) clip art from Debian's openclipart-svg.

`python -m training data --out DIR` renders every usable SVG to a PNG
(long side --size px, on white) and writes DIR/manifest.json with each file's
source and license.  Images chosen for the quality benchmark's evaluation set
(bench/quality/eval_set.txt) are left out.  Nothing here is committed.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# The same source, license text, renderer and evaluation list as the quality benchmark's set.
from bench.quality.build_set import EVAL_LIST, LICENSE, OPENCLIPART
from bench.quality.svg_render import RenderError, render_svg


def eval_exclusions() -> set:
    """Source files of the evaluation set, by basename and by relative path."""
    if not os.path.isfile(EVAL_LIST):
        return set()
    out = set()
    with open(EVAL_LIST, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.add(line)
                out.add(os.path.basename(line))
    return out


def list_svgs(src=OPENCLIPART):
    files = []
    for d, _, names in os.walk(src):
        files += [os.path.join(d, n) for n in names if n.endswith(".svg")]
    return sorted(files)


def render(svg: str, size: int) -> np.ndarray | None:
    """RGB uint8 of `svg` with long side `size`, on white; None if it cannot be rendered."""
    try:
        with open(svg, encoding="utf-8", errors="replace") as f:
            return render_svg(f.read(), size)
    except (RenderError, OSError):
        return None


def usable(rgb: np.ndarray) -> bool:
    """Colored drawings with some substance: not blank, not grayscale, not a tiny icon."""
    h, w = rgb.shape[:2]
    if min(h, w) < 0.3 * max(h, w):
        return False
    x = rgb.astype(np.int16)
    drawn = (x < 245).any(axis=2)
    if drawn.mean() < 0.08:
        return False
    sat = x.max(axis=2) - x.min(axis=2)
    if (sat[drawn] > 40).mean() < 0.2:      # mostly gray: no colors to learn
        return False
    dark = (x.max(axis=2) < 80)
    return dark.mean() > 0.002              # some outline or dark detail


def build(out: str, size: int = 320, limit: int | None = None, workers: int = 2, src: str = OPENCLIPART):
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    skip = eval_exclusions()
    svgs = [s for s in list_svgs(src)
            if os.path.relpath(s, src) not in skip and os.path.basename(s) not in skip]
    items = []

    def one(svg):
        rgb = render(svg, size)
        if rgb is None or not usable(rgb):
            return None
        name = hashlib.sha1(os.path.relpath(svg, src).encode()).hexdigest()[:12] + ".png"
        Image.fromarray(rgb).save(os.path.join(out, name))
        return {"file": name, "source": os.path.relpath(svg, src), "license": LICENSE}

    with ThreadPoolExecutor(workers) as ex:
        for r in ex.map(one, svgs):
            if r:
                items.append(r)
                if limit and len(items) >= limit:
                    break
    manifest = {"source": src, "license": LICENSE, "size": size, "excluded_eval": len(skip) // 2,
                "count": len(items), "images": items}
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    return manifest
