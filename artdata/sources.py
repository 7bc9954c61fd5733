"""The openly licensed sources, their licenses, and exact line art from vectors.

Only public-domain / CC0 art is used, so weights trained on it carry no
obligations:

- Debian `openclipart-svg`: Openclipart, public domain (CC0 1.0);
- Debian `tango-icon-theme`: public domain (debian/copyright: the Tango
  contributors relicensed the artwork into the public domain for 0.8.90);
- npm `@dicebear/collection` 9.4.3: only the styles whose `meta.license` is
  CC0 1.0 (artdata/dicebear/render.mjs refuses the others); the package code
  is MIT and is only run, not shipped.

Never the Tux Paint packages: the project keeps them for independent checks.
"""
from __future__ import annotations

import os

import numpy as np

from .svg_render import RenderError, render_svg, strokes_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OPENCLIPART = "/usr/share/openclipart/svg"
LICENSE = "Public domain (Openclipart, CC0 1.0), Debian package openclipart-svg"
TANGO = "/usr/share/icons/Tango/scalable"
TANGO_LICENSE = "Public domain (Tango icon theme 0.8.90), Debian package tango-icon-theme"
DICEBEAR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dicebear")
DICEBEAR_LICENSE = "{license} (DiceBear style {style} by {creator}), npm @dicebear/collection 9.4.3"
# DiceBear's CC0 styles that look like drawings.  notionists is CC0 too but has no
# color options (black on white only); pixel-art, shapes, rings, glass, identicon and
# initials are not drawings.
DICEBEAR_STYLES = ("lorelei", "openPeeps", "thumbs")

# The quality benchmark's evaluation images (openclipart relative paths); training leaves them out.
EVAL_LIST = os.path.join(ROOT, "bench", "quality", "eval_set.txt")


def eval_exclusions(path: str = EVAL_LIST) -> set:
    """Source files of the evaluation set, by relative path and by basename."""
    if not os.path.isfile(path):
        return set()
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.add(line)
                out.add(os.path.basename(line))
    return out


def list_svgs(src: str) -> list:
    files = []
    for d, _, names in os.walk(src):
        files += [os.path.join(d, n) for n in names if n.endswith(".svg")]
    return sorted(files)


def stroke_lines(svg_text: str, size: int, rgb: np.ndarray) -> np.ndarray | None:
    """Line art from the SVG's own strokes, if they outline the drawing."""
    try:
        lines = render_svg(strokes_only(svg_text), size)
    except RenderError:
        return None
    if lines.shape != rgb.shape:
        return None
    ink = lines.min(axis=2) < 128
    drawn = (rgb < 240).any(axis=2)
    # The strokes must cover a real share of the drawing's outline, not a few details.
    if ink.mean() < 0.01 or ink.mean() > 0.35:
        return None
    edge = drawn ^ np.roll(drawn, 1, 0) | drawn ^ np.roll(drawn, 1, 1)
    near = np.zeros_like(ink)
    for dy in (-2, 0, 2):
        for dx in (-2, 0, 2):
            near |= np.roll(np.roll(ink, dy, 0), dx, 1)
    if (near[edge]).mean() < 0.5:
        return None
    return lines.min(axis=2, keepdims=True).repeat(3, 2)
