"""Render SVG clip art with rsvg-convert, as is and reduced to its strokes.

The line art of a drawing comes from the drawing itself: the same SVG with
every fill removed and every stroke painted black.  Fills are removed with an
injected `* { fill: none !important }` rule because an `!important` author
rule beats both presentation attributes and inline styles (and shapes without
any fill attribute, which default to black); stroke colours are rewritten in
the text because CSS cannot select "has a stroke".
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess

import numpy as np

RSVG = "rsvg-convert"
RENDER_TIMEOUT_S = 20

_ROOT_TAG = re.compile(r"<svg\b[^>]*>", re.IGNORECASE)
_STROKE_ATTR = re.compile(r"""(\sstroke\s*=\s*)(["'])(?!\s*none\s*\2)[^"']*\2""", re.IGNORECASE)
_STROKE_PROP = re.compile(r"""((?<![-\w])stroke\s*:\s*)(?!\s*none\b)[^;"'}]+""", re.IGNORECASE)
STROKES_ONLY_CSS = '<style type="text/css">* { fill: none !important; }</style>'


class RenderError(RuntimeError):
    pass


def rsvg_available() -> bool:
    return shutil.which(RSVG) is not None


def render_svg(svg_text: str, long_side: int) -> np.ndarray:
    """H x W x 3 uint8 RGB on white, the long side `long_side` pixels, aspect kept."""
    if not rsvg_available():
        raise RenderError(f"{RSVG} not found: apt-get install librsvg2-bin")
    cmd = [RSVG, "--keep-aspect-ratio", "-w", str(long_side), "-h", str(long_side),
           "--background-color", "white", "--format", "png"]
    try:
        proc = subprocess.run(cmd, input=svg_text.encode("utf-8"), capture_output=True,
                              timeout=RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RenderError(f"rendering took more than {RENDER_TIMEOUT_S} s")
    if proc.returncode != 0 or not proc.stdout:
        raise RenderError(proc.stderr.decode("utf-8", "replace").strip()[:200] or "rsvg-convert failed")
    from PIL import Image
    with Image.open(io.BytesIO(proc.stdout)) as im:
        return np.array(im.convert("RGB"))


def strokes_only(svg_text: str) -> str:
    """The drawing with fills removed and every stroke black (line art)."""
    m = _ROOT_TAG.search(svg_text)
    if m is None:
        raise RenderError("no <svg> root element")
    body = svg_text[m.end():]
    body = _STROKE_ATTR.sub(lambda g: f'{g.group(1)}{g.group(2)}#000000{g.group(2)}', body)
    body = _STROKE_PROP.sub(lambda g: f"{g.group(1)}#000000", body)
    return svg_text[:m.end()] + STROKES_ONLY_CSS + body
