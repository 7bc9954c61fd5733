"""(line art, hints, target) triples from a color image, as the AlacGAN paper made them.

- line art: XDoG with sigma in [0.3, 0.5], tau 0.95, kappa 4.5, phi 1e9 (binary),
  a jittered threshold (tone), and sometimes thicker lines;
  or, where the data has it (artdata: vector strokes, DiceBear outlines), the
  exact line art from the vector for half of the samples, with the same
  thickness and tone jitter: the network sees clean and sketchy lines;
- hints at a quarter of the resolution, made as the engine makes them from a
  hint layer (krita_alac's prepare_hints), one kind per sample (MIXTURE):
    none            35 %  as in the paper (hint-free colorization);
    artist strokes  30 %  artdata.strokes: a few short strokes per hinted region
                          (2-10 px at crop scale, often near borders, sometimes
                          touching a line, sometimes one big stroke), regions
                          left unhinted beside hinted ones, the region's color;
                          the amount of hinted regions uniform in [0, 1];
    region scribbles 20 % hintauc's scribbles of the largest regions at a
                          random hint ratio (only where the data folder has
                          region maps, training/regions.py; else artist strokes);
    dots            15 %  the paper's random dots plus short random walks
                          (PaintsTorch's finding);
- augmentation: random crop and scale, flips, hue rotation.
All randomness comes from the `rng` passed in, so a training step is
reproducible from (seed, step).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from krita_alac.engine.imaging import LUMA
from krita_alac.engine.lines import XDoGParams, xdog_darkness

from .regions import HINT_MAP, pad_square

# (kind, probability) of each sample's hints; see the module docstring.
MIXTURE = (("none", 0.35), ("artist", 0.30), ("region", 0.20), ("dots", 0.15))
P_EXACT_LINES = 0.5          # exact vector line art instead of XDoG, where the data has it
ARTIST_WIDTH = (2, 10)       # pen widths at crop scale: a 3-12 px canvas pen on a downscaled view


def hue_rotate(rgb: np.ndarray, angle: float) -> np.ndarray:
    """Rotate chroma in YIQ space: a cheap hue shift that keeps luminance."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
    m = np.linalg.inv(to_yiq) @ rot @ to_yiq
    return np.clip(rgb @ m.T.astype(np.float32), 0.0, 1.0)


def random_view(img: np.ndarray, size: int, rng) -> np.ndarray:
    """A size x size float RGB crop in [0, 1]: random scale, position, flip, hue."""
    return random_views(img, size, rng)[0]


def random_views(img: np.ndarray, size: int, rng, lines: np.ndarray | None = None,
                 crop_min: float = 0.6):
    """random_view, and the same crop of the image's exact line art (uint8, or None).
    The crop is a share in [crop_min, 1] of the short side: a small share zooms in, so
    the strokes come out thicker than the render's 1-3 px."""
    from PIL import Image
    h, w = img.shape[:2]
    short = min(h, w)
    crop = max(8, int(short * rng.uniform(crop_min, 1.0)))
    y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    im = Image.fromarray(img[y:y + crop, x:x + crop]).resize((size, size), Image.Resampling.BICUBIC)
    a = np.asarray(im, np.float32) / 255.0
    ln = None
    if lines is not None:
        ln = np.asarray(Image.fromarray(lines[y:y + crop, x:x + crop]).resize((size, size), Image.Resampling.BILINEAR))
    if rng.random() < 0.5:
        a = a[:, ::-1]
        ln = None if ln is None else ln[:, ::-1]
    if rng.random() < 0.5:
        a = hue_rotate(a, rng.uniform(-np.pi, np.pi))
    return np.ascontiguousarray(a), (None if ln is None else np.ascontiguousarray(ln))


def line_art(rgb: np.ndarray, rng, exact: np.ndarray | None = None) -> np.ndarray:
    """Sketch in [-1, 1] (1 = paper) from a color image in [0, 1] by XDoG, or from
    `exact` (uint8 vector line art, 255 = paper) when given."""
    if exact is not None:
        ink = 1.0 - exact.astype(np.float32) / 255.0
    else:
        gray = rgb @ LUMA
        p = XDoGParams(sigma=rng.uniform(0.3, 0.5), k=4.5, tau=0.95, eps=rng.uniform(-0.02, 0.0), phi=1e9)
        ink = xdog_darkness(gray, p)
    if rng.random() < 0.3:                  # thicker pens
        ink = ndi.grey_dilation(ink, size=(2, 2))
    # Tone jitter: paper and ink are not always pure white and black.
    paper, pen = rng.uniform(0.9, 1.0), rng.uniform(0.0, 0.15)
    lum = paper - (paper - pen) * ink
    return (lum * 2.0 - 1.0).astype(np.float32)


def hints(rgb: np.ndarray, rng, p_empty: float = 0.5) -> np.ndarray:
    """4 x S/4 x S/4 hint tensor (RGB in [-1, 1] times mask, then mask)."""
    s = rgb.shape[0] // 4
    small = rgb.reshape(s, 4, s, 4, 3).mean(axis=(1, 3))
    mask = np.zeros((s, s), bool)
    if rng.random() >= p_empty:
        n_dots = int(rng.integers(1, 60))
        ys, xs = rng.integers(0, s, n_dots), rng.integers(0, s, n_dots)
        mask[ys, xs] = True
        for _ in range(int(rng.integers(0, 8))):     # strokes: short random walks
            y, x = rng.integers(0, s, 2)
            for _ in range(int(rng.integers(2, 12))):
                mask[y, x] = True
                y = int(np.clip(y + rng.integers(-1, 2), 0, s - 1))
                x = int(np.clip(x + rng.integers(-1, 2), 0, s - 1))
    out = np.zeros((4, s, s), np.float32)
    out[:3] = (small.transpose(2, 0, 1) * 2.0 - 1.0) * mask
    out[3] = mask
    return out


# The benchmark's hint-ratio grid: half of the region-hint samples take one of
# these, the other half a uniform ratio.
RATIO_GRID = (0.01, 0.03, 0.05, 0.10, 0.25, 0.50, 1.00)


def region_hints(rgb: np.ndarray, rank: np.ndarray, scribble: np.ndarray, n_keep: int) -> np.ndarray:
    """4 x s x s hints: the scribbles of the regions ranked below n_keep, in their mean colors.

    rgb is the S x S crop, rank and scribble its s x s (s = S/4) slice of the
    region maps; colors are region means over the crop.
    """
    s = rgb.shape[0] // 4
    small = rgb.reshape(s, 4, s, 4, 3).mean(axis=(1, 3))
    r = rank.astype(np.int64)
    n = int(r.max()) + 1
    sums = np.stack([np.bincount(r.ravel(), small[..., c].ravel(), minlength=n) for c in range(3)], 1)
    means = sums / np.maximum(np.bincount(r.ravel(), minlength=n), 1)[:, None]
    mask = scribble & (r < n_keep)
    out = np.zeros((4, s, s), np.float32)
    out[:3] = (means[r].transpose(2, 0, 1) * 2.0 - 1.0) * mask
    out[3] = mask
    return out


def region_view(img: np.ndarray, rank: np.ndarray, scribble: np.ndarray, size: int, rng):
    """A size x size crop of the padded square image on the 4-px hint grid, and its hints.

    No rescale, so crop and region maps stay aligned; flips and hue as random_view.
    """
    a, hint, _ = region_views(img, rank, scribble, size, rng)
    return a, hint


def region_views(img, rank, scribble, size, rng, lines: np.ndarray | None = None):
    """region_view, and the same crop of the exact line art (uint8, or None)."""
    full = int(rank.shape[0]) * 4
    sq = pad_square(img, full)
    cells = size // 4
    oy, ox = (int(v) for v in rng.integers(0, HINT_MAP - cells + 1, 2))
    a = sq[oy * 4:oy * 4 + size, ox * 4:ox * 4 + size].astype(np.float32) / 255.0
    ln = None
    if lines is not None:
        ln = pad_square(np.repeat(lines[..., None], 3, 2), full)[oy * 4:oy * 4 + size, ox * 4:ox * 4 + size, 0]
    rk = rank[oy:oy + cells, ox:ox + cells]
    sc = scribble[oy:oy + cells, ox:ox + cells]
    if rng.random() < 0.5:
        a, rk, sc = a[:, ::-1], rk[:, ::-1], sc[:, ::-1]
        ln = None if ln is None else ln[:, ::-1]
    if rng.random() < 0.5:
        a = hue_rotate(a, rng.uniform(-np.pi, np.pi))
    n = int(rank.max()) + 1
    ratio = RATIO_GRID[int(rng.integers(len(RATIO_GRID)))] if rng.random() < 0.5 else rng.uniform(0.0, 1.0)
    a = np.ascontiguousarray(a)
    return a, region_hints(a, rk, sc, int(n * ratio)), (None if ln is None else np.ascontiguousarray(ln))


def artist_hint_grid(rgb: np.ndarray, sketch: np.ndarray, rng) -> np.ndarray:
    """4 x S/4 x S/4 hints from artdata's artist strokes, through the engine's own
    hint-layer conversion.  Regions: flat target colors, split by the sketch's ink."""
    from artdata.strokes import artist_hints, color_regions
    from krita_alac.engine.imaging import Geometry, prepare_hints
    s = rgb.shape[0]
    u8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    labels = color_regions(u8, ink=sketch < 0.0)
    rgba = artist_hints(u8, rng, labels=labels, amount=rng.uniform(0.0, 1.0), width=ARTIST_WIDTH)
    return prepare_hints(rgba, Geometry(s, s, s, s, s, s))[0]


def _kind(rng, has_regions: bool) -> str:
    u, acc = rng.random(), 0.0
    for kind, p in MIXTURE:
        acc += p
        if u < acc:
            break
    return "artist" if kind == "region" and not has_regions else kind


def sample(img: np.ndarray, size: int, rng, regions=None, lines=None):
    """(sketch 1xSxS, hint 4xS/4xS/4, target 3xSxS), float32 in model ranges.

    `regions` is the image's (rank, scribble) pair from training/regions.py, or None;
    `lines` its exact line art (uint8, 255 = paper, same pixels as `img`), or None.
    """
    kind = _kind(rng, regions is not None)
    if kind == "region":
        rgb, hint, ln = region_views(img, regions[0], regions[1], size, rng, lines)
    else:
        rgb, ln = random_views(img, size, rng, lines)
    exact = ln if (ln is not None and rng.random() < P_EXACT_LINES) else None
    sketch = line_art(rgb, rng, exact)
    if kind == "none":
        hint = np.zeros((4, size // 4, size // 4), np.float32)
    elif kind == "dots":
        hint = hints(rgb, rng, p_empty=0.0)
    elif kind == "artist":
        hint = artist_hint_grid(rgb, sketch, rng)
    return sketch[None], hint, (rgb.transpose(2, 0, 1) * 2.0 - 1.0).astype(np.float32)
