"""(line art, hints, target) triples from a color image, as the AlacGAN paper made them.

- line art: XDoG with sigma in [0.3, 0.5], tau 0.95, kappa 4.5, phi 1e9 (binary),
  a jittered threshold (tone), and sometimes thicker lines;
- hints at a quarter of the resolution: half of the samples have none; the
  rest get random dots and, per PaintsTorch's finding, short strokes, with
  the target's own colors — or, when the data folder has region maps
  (training/regions.py), the quality benchmark's kind of hints: hintauc's
  region scribbles for the largest regions at a random hint ratio;
- augmentation: random crop and scale, flips, hue rotation.
All randomness comes from the `rng` passed in, so a training step is
reproducible from (seed, step).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from krita_alac.lines import XDoGParams, xdog_darkness

from .regions import HINT_MAP, pad_square

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def hue_rotate(rgb: np.ndarray, angle: float) -> np.ndarray:
    """Rotate chroma in YIQ space: a cheap hue shift that keeps luminance."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)
    m = np.linalg.inv(to_yiq) @ rot @ to_yiq
    return np.clip(rgb @ m.T.astype(np.float32), 0.0, 1.0)


def random_view(img: np.ndarray, size: int, rng) -> np.ndarray:
    """A size x size float RGB crop in [0, 1]: random scale, position, flip, hue."""
    from PIL import Image
    h, w = img.shape[:2]
    short = min(h, w)
    crop = int(short * rng.uniform(0.6, 1.0))
    y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    im = Image.fromarray(img[y:y + crop, x:x + crop]).resize((size, size), Image.Resampling.BICUBIC)
    a = np.asarray(im, np.float32) / 255.0
    if rng.random() < 0.5:
        a = a[:, ::-1]
    if rng.random() < 0.5:
        a = hue_rotate(a, rng.uniform(-np.pi, np.pi))
    return np.ascontiguousarray(a)


def line_art(rgb: np.ndarray, rng) -> np.ndarray:
    """Sketch in [-1, 1] (1 = paper) from a color image in [0, 1]."""
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
P_EMPTY, P_REGION = 0.5, 0.3       # with region maps: 50% none, 30% regions, 20% dots and strokes


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
    full = int(rank.shape[0]) * 4
    sq = pad_square(img, full)
    cells = size // 4
    oy, ox = (int(v) for v in rng.integers(0, HINT_MAP - cells + 1, 2))
    a = sq[oy * 4:oy * 4 + size, ox * 4:ox * 4 + size].astype(np.float32) / 255.0
    rk = rank[oy:oy + cells, ox:ox + cells]
    sc = scribble[oy:oy + cells, ox:ox + cells]
    if rng.random() < 0.5:
        a, rk, sc = a[:, ::-1], rk[:, ::-1], sc[:, ::-1]
    if rng.random() < 0.5:
        a = hue_rotate(a, rng.uniform(-np.pi, np.pi))
    n = int(rank.max()) + 1
    ratio = RATIO_GRID[int(rng.integers(len(RATIO_GRID)))] if rng.random() < 0.5 else rng.uniform(0.0, 1.0)
    a = np.ascontiguousarray(a)
    return a, region_hints(a, rk, sc, int(n * ratio))


def sample(img: np.ndarray, size: int, rng, regions=None):
    """(sketch 1xSxS, hint 4xS/4xS/4, target 3xSxS), float32 in model ranges.

    `regions` is the image's (rank, scribble) pair from training/regions.py, or None.
    """
    if regions is None:
        rgb = random_view(img, size, rng)
        hint = hints(rgb, rng)
    else:
        u = rng.random()
        if P_EMPTY <= u < P_EMPTY + P_REGION:
            rgb, hint = region_view(img, regions[0], regions[1], size, rng)
        else:
            rgb = random_view(img, size, rng)
            hint = hints(rgb, rng, p_empty=1.0 if u < P_EMPTY else 0.0)
    return line_art(rgb, rng)[None], hint, (rgb.transpose(2, 0, 1) * 2.0 - 1.0).astype(np.float32)
