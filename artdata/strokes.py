"""Hints as the docker's users paint them: a few short strokes per region.

`artist_hints(rgb, rng, labels=..., lines=..., amount=...)` returns an RGBA
uint8 hint image at canvas resolution (alpha 0 where there is no hint), made
by this rule, all randomness from `rng`:

1. Regions: `labels` (H x W ints, 0 = line / no region), or the connected
   non-line areas of `lines` (H x W, dark = ink), or, with neither, connected
   areas of one quantized color of `rgb` (`color_regions`).  Regions smaller
   than `min_area` pixels are never hinted.
2. Which regions: round(amount x n) of the n eligible regions, drawn without
   replacement with probability proportional to sqrt(area) (big regions are
   hinted first, small ones sometimes).  The others stay unhinted, so hinted
   and unhinted regions sit side by side.  `amount` is the knob analogous to a
   hint ratio: 0 = no hints, 1 = every region.
3. Per hinted region, with probability `p_big` one big stroke: the widest
   width that fits (at most width[1]) and a long path (about 1.5 x sqrt(area));
   otherwise 1 to `max_strokes` short strokes: width uniform in `width`
   (canvas pixels, 3-12 by default) capped by what fits in the region, length
   8-40 px.  A region too thin for width[0] gets no stroke.
4. Path: a smooth random walk in 2-px steps from a start point that lies near
   the region's border with probability `p_border` (its distance to the border
   within [r, r + 6] px for stroke radius r), anywhere in the region otherwise.
   Every path point keeps a distance > r to the region's border, so the stroke
   stays inside its region.
5. With probability `p_touch` a short stroke touches a line: its path may come
   up to the border and the painted disc may cover line pixels (label 0), never
   another region.
6. Color: the region's color in the target, the per-channel median of `rgb`
   over the region, painted opaque with hard edges (no antialiasing), so every
   hint pixel has exactly its region's color.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

WIDTH = (3, 12)


@dataclass
class Stroke:
    region: int          # label of the region it colors
    color: tuple         # RGB uint8, the region's median color in the target
    width: int           # pen diameter, canvas pixels
    touch: bool          # allowed to cover line pixels next to its region
    points: np.ndarray   # N x 2 (y, x) path of pen centres


def color_regions(rgb: np.ndarray, ink: np.ndarray | None = None, step: int = 24,
                  min_area: int = 16) -> np.ndarray:
    """Labels of connected areas of one quantized color (0 = ink or tiny areas)."""
    q = (np.asarray(rgb)[..., :3] // step).astype(np.int32)
    key = (q[..., 0] * 64 + q[..., 1]) * 64 + q[..., 2]
    if ink is not None:
        key = np.where(ink, -1, key)
    vals, inv, counts = np.unique(key.ravel(), return_inverse=True, return_counts=True)
    inv = inv.reshape(key.shape)
    labels = np.zeros(key.shape, np.int32)
    nxt = 1
    for i in np.nonzero((counts >= min_area) & (vals >= 0))[0]:
        lab, n = ndi.label(inv == i)
        if n:
            sizes = np.bincount(lab.ravel())
            big = np.nonzero(sizes >= min_area)[0]
            big = big[big > 0]
            if big.size:
                remap = np.zeros(n + 1, np.int32)
                remap[big] = np.arange(nxt, nxt + big.size)
                labels = np.where(lab > 0, np.maximum(labels, remap[lab]), labels)
                nxt += big.size
    return labels


def line_regions(lines: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Labels of the connected non-ink areas of a line drawing (dark = ink)."""
    lines = np.asarray(lines)
    if lines.ndim == 3:
        lines = lines[..., :3].min(axis=2)
    if threshold is None:
        threshold = 128 if lines.dtype == np.uint8 else 0.5
    lab, _ = ndi.label(lines >= threshold)
    return lab.astype(np.int32)


def _walk(allowed: np.ndarray, start, length: float, rng) -> np.ndarray:
    """A smooth random walk of 2-px steps that never leaves `allowed`."""
    h, w = allowed.shape
    y, x = float(start[0]), float(start[1])
    pts = [(int(round(y)), int(round(x)))]
    theta = rng.uniform(0, 2 * np.pi)
    for _ in range(int(length / 2)):
        moved = False
        for turn in (0.0, 0.6, -0.6, 1.4, -1.4):
            t = theta + rng.normal(0, 0.25) + turn
            ny, nx = y + 2 * np.sin(t), x + 2 * np.cos(t)
            iy, ix = int(round(ny)), int(round(nx))
            if 0 <= iy < h and 0 <= ix < w and allowed[iy, ix]:
                y, x, theta, moved = ny, nx, t, True
                pts.append((iy, ix))
                break
        if not moved:
            break
    return np.array(pts, np.int32)


def artist_strokes(rgb: np.ndarray, rng, labels: np.ndarray | None = None, lines: np.ndarray | None = None,
                   amount: float = 0.5, width=WIDTH, max_strokes: int = 3, p_big: float = 0.2,
                   p_border: float = 0.6, p_touch: float = 0.15, min_area: int | None = None) -> list:
    """The strokes of the rule in the module docstring (paint them with `render`)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.asarray(rgb, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    h, w = rgb.shape[:2]
    if labels is None:
        labels = line_regions(lines) if lines is not None else color_regions(rgb)
    labels = np.asarray(labels)
    if min_area is None:
        min_area = max(16, int(0.0005 * h * w))
    counts = np.bincount(labels.ravel())
    ids = np.nonzero(counts >= min_area)[0]
    ids = ids[ids > 0]
    n_pick = int(round(float(np.clip(amount, 0.0, 1.0)) * len(ids)))
    if n_pick == 0:
        return []
    p = np.sqrt(counts[ids].astype(np.float64))
    chosen = rng.choice(ids, size=n_pick, replace=False, p=p / p.sum())
    objs = ndi.find_objects(labels)
    out = []
    for reg in chosen:
        sl = objs[reg - 1]
        # A margin so the distance transform sees the region's border inside the box.
        y0, x0 = max(sl[0].start - 1, 0), max(sl[1].start - 1, 0)
        y1, x1 = min(sl[0].stop + 1, h), min(sl[1].stop + 1, w)
        inside = labels[y0:y1, x0:x1] == reg
        # Image borders count as region borders too: pad with "outside".
        dist = ndi.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        color = tuple(int(v) for v in np.median(rgb[y0:y1, x0:x1][inside], axis=0))
        fit = int(np.floor(2 * dist.max() - 1))        # widest pen whose disc stays inside
        if fit < width[0]:
            continue
        area = int(inside.sum())
        big = rng.random() < p_big
        n = 1 if big else int(rng.integers(1, max_strokes + 1))
        for _ in range(n):
            if big:
                wd, length, touch = min(width[1], fit), 1.5 * np.sqrt(area), False
            else:
                wd = int(min(rng.integers(width[0], width[1] + 1), fit))
                length, touch = rng.uniform(8, 40), rng.random() < p_touch
            r = wd / 2.0
            allowed = inside & (dist > (1.0 if touch else r))
            strict = inside & (dist > r)
            near = strict & (dist <= r + 6)
            pool = near if (rng.random() < p_border and near.any()) else strict
            ys, xs = np.nonzero(pool)
            k = int(rng.integers(len(ys)))
            pts = _walk(allowed, (ys[k], xs[k]), length, rng)
            out.append(Stroke(int(reg), color, wd, bool(touch), pts + np.array([y0, x0], np.int32)))
    return out


def render(strokes: list, labels: np.ndarray, shape) -> np.ndarray:
    """H x W x 4 uint8 RGBA: each stroke's discs, clipped to its region (and to the
    line pixels, label 0, for touching strokes)."""
    h, w = shape[:2]
    out = np.zeros((h, w, 4), np.uint8)
    for s in strokes:
        r = s.width / 2.0
        pad = int(np.ceil(r)) + 1
        y0, x0 = max(int(s.points[:, 0].min()) - pad, 0), max(int(s.points[:, 1].min()) - pad, 0)
        y1, x1 = min(int(s.points[:, 0].max()) + pad + 1, h), min(int(s.points[:, 1].max()) + pad + 1, w)
        centres = np.ones((y1 - y0, x1 - x0), bool)
        centres[s.points[:, 0] - y0, s.points[:, 1] - x0] = False
        disc = ndi.distance_transform_edt(centres) <= r
        lab = labels[y0:y1, x0:x1]
        disc &= (lab == s.region) | ((lab == 0) if s.touch else False)
        box = out[y0:y1, x0:x1]
        box[disc] = (*s.color, 255)
    return out


def artist_hints(rgb: np.ndarray, rng, labels: np.ndarray | None = None, lines: np.ndarray | None = None,
                 amount: float = 0.5, **kw) -> np.ndarray:
    """RGBA uint8 hints at canvas resolution by the module's rule (transparent = no hint)."""
    rgb = np.asarray(rgb)
    if labels is None:
        labels = line_regions(lines) if lines is not None else color_regions(
            rgb if rgb.dtype == np.uint8 else np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8))
    return render(artist_strokes(rgb, rng, labels=labels, amount=amount, **kw), labels, rgb.shape)
