"""Flat colors from hint strokes at full canvas resolution; no neural network.

Pipeline (all vectorised NumPy/SciPy, no per-pixel Python):
1. ink: line-art darkness (composited over white) >= 0.5.
2. seeds: free pixels farther than gap/2 from any ink (exact disk dilation of
   the ink), labelled 4-connected.  A disk of diameter `gap` cannot pass an
   opening of width <= gap, so such openings separate regions: the idea of
   trapped-ball filling.
3. growth: seeds grow pixel by pixel through free pixels only (never across
   ink), so the margins along lines and the closed gaps are filled by the
   region they belong to.  Free pockets that no seed reaches (closed areas
   smaller than the ball) become regions of their own.
4. colors: each region takes the dominant hint color inside it; the rest
   follow `fill` (nearest hinted neighbour region, transparent, or the median
   of a neural result).
5. under the lines: every ink pixel takes the color of the nearest region so
   no white halo shows between the lines and the color.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .errors import UserError
from .imaging import HintPixels, line_darkness

INK_THRESHOLD = 0.5
FILL_MODES = ("nearest", "none", "model")
# Growth steps before falling back to a Euclidean nearest-region fill (only
# solid ink blobs and very long closed corridors need more).
_MAX_GROW_STEPS = 48
# Up to this many pocket pixels are labelled on their own (label_pixels), not by a canvas pass.
_FEW_PIXELS = 1 << 18


@dataclass
class Flats:
    rgba: np.ndarray        # H x W x 4 uint8
    labels: np.ndarray      # H x W int32, region id per pixel (1..n), under the lines too
    colors: np.ndarray      # (n + 1) x 4 uint8 palette, row 0 unused
    hinted: np.ndarray      # (n + 1) bool: region had its own hint
    gap: float
    warnings: list


def ink_mask(lum: np.ndarray) -> np.ndarray:
    """The ink of a line art from its luminance (imaging.luminance): the same pixels as
    line_darkness >= INK_THRESHOLD, since float32 1 - lum is exact where lum >= 0.5."""
    return lum <= 1.0 - INK_THRESHOLD


def estimate_line_width(ink: np.ndarray) -> float:
    """Typical stroke width in pixels: 2 * area / boundary transitions."""
    area = int(np.count_nonzero(ink))
    if area == 0:
        return 0.0
    # Transitions inside the image, plus ink touching the canvas edge (a boundary too).
    trans = int(np.count_nonzero(ink[:, 1:] != ink[:, :-1])) + int(np.count_nonzero(ink[1:] != ink[:-1]))
    trans += int(ink[0].sum() + ink[-1].sum() + ink[:, 0].sum() + ink[:, -1].sum())
    return 2.0 * area / max(trans, 1)


def default_gap(ink: np.ndarray) -> float:
    return float(np.clip(round(1.5 * estimate_line_width(ink)), 3, 16))


def _shift_or(dst, src, dy, dx):
    """dst |= src shifted by (dy, dx), without wrap-around."""
    h, w = src.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    dst[yd, xd] |= src[ys, xs]


def dilate_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation by the disk {dx^2 + dy^2 <= radius^2}, as a union of rows.

    Each row of the disk is a horizontal segment; horizontal dilations of each
    distinct half-width are built once and OR-ed in at their vertical offset.
    """
    r = int(np.floor(radius))
    if r <= 0:
        return mask.copy()
    half = {dy: int(np.floor(np.sqrt(radius * radius - dy * dy))) for dy in range(-r, r + 1)}
    horiz = {0: mask}
    for w in sorted(set(half.values())):
        if w in horiz:
            continue
        prev = max(k for k in horiz if k < w)
        out = horiz[prev].copy()
        # Widen from half-width `prev` to `w` by OR-ing shifted copies of the base mask.
        for dx in range(prev + 1, w + 1):
            _shift_or(out, mask, 0, dx)
            _shift_or(out, mask, 0, -dx)
        horiz[w] = out
    res = np.zeros_like(mask)
    for dy, w in half.items():
        _shift_or(res, horiz[w], dy, 0)
    return res


def _grow(labels: np.ndarray, todo: np.ndarray, max_steps: int) -> np.ndarray:
    """Grow nonzero labels into the unlabelled (0) pixels `todo` (sorted flat indices into the
    C-contiguous `labels`, changed in place), 4-connected, one pixel per step.  Returns the
    flat indices still unlabelled."""
    flat = labels.ravel()
    h, w = labels.shape
    # Each pixel's four neighbours; off the page a pixel names itself (0 while it is to do).
    col = todo % w
    nbs = [np.where(col > 0, todo - 1, todo), np.where(col < w - 1, todo + 1, todo),
           np.where(todo >= w, todo - w, todo), np.where(todo < flat.size - w, todo + w, todo)]
    del col
    for _ in range(max_steps):
        if todo.size == 0:
            break
        best = flat[nbs[0]]
        for nb in nbs[1:]:
            np.maximum(best, flat[nb], out=best)
        hit = best > 0
        if not hit.any():
            break
        flat[todo[hit]] = best[hit]
        keep = ~hit
        todo = todo[keep]
        nbs = [nb[keep] for nb in nbs]
    return todo


def segment(ink: np.ndarray, gap: float):
    """Regions bounded by ink: (labels int32 with 0 on ink, number of regions)."""
    h, w = ink.shape
    free = ~ink
    if gap > 0:
        blocked = dilate_disk(ink, gap / 2.0)
        seeds = free & ~blocked
        del blocked
    else:
        seeds = free
    labels = np.empty((h, w), np.int32)
    n = ndi.label(seeds, output=labels)
    todo = np.flatnonzero(free & ~seeds)
    del free, seeds
    left = _grow(labels, todo, 1 << 30)
    if left.size:
        # Closed pockets no seed reached (smaller than the ball): regions of their own.
        if left.size <= _FEW_PIXELS:
            plab, pn = label_pixels(left, w)
        else:
            pocket = np.zeros((h, w), bool)
            pocket.ravel()[left] = True
            plab, pn = ndi.label(pocket)
            plab = plab.ravel()[left]
        labels.ravel()[left] = plab + n
        n += pn
    return labels, n


def label_pixels(idx: np.ndarray, w: int):
    """4-connected components of a few pixels, given as sorted flat indices into an array of
    row width `w`: (labels 1..k of each pixel, k), numbered in raster order of each
    component's first pixel, as ndimage.label numbers them -- without a pass over the
    whole array."""
    k = idx.size
    a, b = [], []
    for right, off in ((True, 1), (False, w)):     # right and lower neighbours among the pixels
        j = np.minimum(np.searchsorted(idx, idx + off), k - 1)
        ok = idx[j] == idx + off
        if right:
            ok &= idx % w != w - 1          # not the next row's first pixel
        a.append(np.flatnonzero(ok))
        b.append(j[ok])
    a, b = np.concatenate(a), np.concatenate(b)
    root = np.arange(k)
    while True:
        # Hook each edge's two roots onto the smaller, then compress every path to its root:
        # each component ends at its smallest index, i.e. its first pixel in raster order.
        ra, rb = root[a], root[b]
        if np.array_equal(ra, rb):
            break
        lo = np.minimum(ra, rb)
        np.minimum.at(root, ra, lo)
        np.minimum.at(root, rb, lo)
        while True:
            nxt = root[root]
            if np.array_equal(nxt, root):
                break
            root = nxt
    first, lab = np.unique(root, return_inverse=True)
    return lab.reshape(-1) + 1, first.size


def fill_under_lines(labels: np.ndarray, unlabelled: np.ndarray | None = None, in_place: bool = False) -> np.ndarray:
    """Give every 0 pixel the label of the nearest labelled pixel.  `unlabelled`: the 0
    pixels, when the caller knows them (labels == 0); `in_place`: fill `labels` itself
    (C-contiguous) instead of a copy."""
    h, w = labels.shape
    out = labels if in_place else np.array(labels, np.int32, order="C")
    todo = np.flatnonzero(labels == 0 if unlabelled is None else unlabelled)
    left = _grow(out, todo, _MAX_GROW_STEPS)
    if left.size:
        # Thick ink: exact Euclidean nearest label, on the bounding box only.
        ys, xs = np.divmod(left, w)
        m = _MAX_GROW_STEPS + 2
        y0, y1 = max(ys.min() - m, 0), min(ys.max() + m + 1, h)
        x0, x1 = max(xs.min() - m, 0), min(xs.max() + m + 1, w)
        box = out[y0:y1, x0:x1]
        if (box > 0).any():
            iy, ix = ndi.distance_transform_edt(box == 0, return_distances=False, return_indices=True)
            out[y0:y1, x0:x1] = box[iy, ix]
    return out


def hint_pixels(ink: np.ndarray, hints):
    """Flat indices, RGB (int64) and alpha (float64) of the hint pixels that count (opaque
    enough, not on ink): the only pixels a re-run with new hints has to look at.  `hints`:
    canvas-sized RGBA or imaging.HintPixels."""
    if not isinstance(hints, HintPixels):
        hints = HintPixels.find(hints)
    idx = hints.flat
    keep = ~ink.ravel()[idx]
    px = hints.rgba[keep].astype(np.int64)
    return idx[keep], px[:, :3], px[:, 3].astype(np.float64)


@dataclass
class Votes:
    """The hint vote of every region.  colors/hinted: the winning color per region;
    bins: every (region, 5-bit color) bin with its alpha weight and mean color, so
    that a region holding several differently hinted areas can be told apart."""
    colors: np.ndarray       # (n+1) x 3 uint8
    hinted: np.ndarray       # (n+1) bool
    bin_region: np.ndarray   # B int64
    bin_rgb: np.ndarray      # B x 3 uint8
    bin_weight: np.ndarray   # B float64
    idx: np.ndarray          # hint pixels (flat indices), their RGB and alpha
    rgb: np.ndarray
    alpha: np.ndarray


def vote(labels: np.ndarray, ink: np.ndarray, hints: np.ndarray | None, n: int) -> Votes:
    colors = np.zeros((n + 1, 3), np.uint8)
    hinted = np.zeros(n + 1, bool)
    e = np.zeros(0, np.int64)
    if hints is None:
        return Votes(colors, hinted, e, np.zeros((0, 3), np.uint8), e.astype(float), e, np.zeros((0, 3), np.int64),
                     e.astype(float))
    idx, rgb, a = hint_pixels(ink, hints)
    if idx.size == 0:
        return Votes(colors, hinted, e, np.zeros((0, 3), np.uint8), e.astype(float), idx, rgb, a)
    lab = labels.ravel()[idx].astype(np.int64)
    # Vote on 5-bit colors so soft-brush strokes still agree; weight by alpha.
    q = ((rgb[:, 0] >> 3) << 10) | ((rgb[:, 1] >> 3) << 5) | (rgb[:, 2] >> 3)
    key = lab * 32768 + q
    ukey, inv = np.unique(key, return_inverse=True)
    weight = np.bincount(inv, weights=a)
    ulab = ukey // 32768
    # Mean color of each bin's pixels, alpha-weighted.
    brgb = np.empty((ukey.size, 3), np.uint8)
    for c in range(3):
        s = np.bincount(inv, weights=a * rgb[:, c], minlength=ukey.size)
        brgb[:, c] = np.clip(np.round(s / np.maximum(weight, 1e-9)), 0, 255).astype(np.uint8)
    # Per region, the bin with the largest weight (stable: last after sort by weight).
    order = np.lexsort((weight, ulab))
    last = np.r_[ulab[order][1:] != ulab[order][:-1], True]
    win = order[last]
    colors[ulab[win]] = brgb[win]
    hinted[ulab[win]] = True
    hinted[0] = False
    return Votes(colors, hinted, ulab, brgb, weight, idx, rgb, a)


def hint_votes(labels: np.ndarray, ink: np.ndarray, hints: np.ndarray, n: int):
    """Dominant hint color per region: ((n+1) x 3 uint8, (n+1) bool)."""
    v = vote(labels, ink, hints, n)
    return v.colors, v.hinted


def region_adjacency(labels: np.ndarray):
    """Unique neighbouring label pairs (both directions) with their border length."""
    flat = labels.ravel()
    w = labels.shape[1]
    # Horizontal pairs (i, i+1) on the flat array, minus those wrapping to the next row.
    hi = np.flatnonzero(flat[1:] != flat[:-1])
    hi = hi[(hi + 1) % w != 0]
    vi = np.flatnonzero(flat[w:] != flat[:-w])
    a = np.concatenate([flat[hi], flat[vi]]).astype(np.int64)
    b = np.concatenate([flat[hi + 1], flat[vi + w]]).astype(np.int64)
    big = int(flat.max()) + 1
    key = np.concatenate([a * big + b, b * big + a])
    ukey, count = np.unique(key, return_counts=True)
    return ukey // big, ukey % big, count


def spread_nearest(labels: np.ndarray, colors: np.ndarray, known: np.ndarray, adjacency=None):
    """Unhinted regions take the color of the nearest hinted region through the
    region adjacency graph (ties: the neighbour sharing the longest border)."""
    src, dst, count = adjacency if adjacency is not None else region_adjacency(labels)
    known = known.copy()
    while True:
        m = ~known[src] & known[dst]
        if not m.any():
            break
        s, d, c = src[m], dst[m], count[m]
        order = np.lexsort((c, s))
        last = np.r_[s[order][1:] != s[order][:-1], True]
        pick = order[last]
        colors[s[pick]] = colors[d[pick]]
        known[s[pick]] = True
    return known


def region_medians(labels: np.ndarray, ink: np.ndarray, rgb: np.ndarray, n: int):
    """Per-region median color of `rgb` over the region's non-ink pixels."""
    lab = labels.ravel()
    keep = ~ink.ravel()
    lab = lab[keep].astype(np.int64)
    out = np.zeros((n + 1, 3), np.uint8)
    have = np.bincount(lab, minlength=n + 1) > 0
    for c in range(3):
        v = rgb[..., c].ravel()[keep].astype(np.int64)
        hist = np.bincount(lab * 256 + v, minlength=(n + 1) * 256).reshape(n + 1, 256)
        cum = np.cumsum(hist, axis=1)
        half = (cum[:, -1:] + 1) // 2
        out[:, c] = np.argmax(cum >= np.maximum(half, 1), axis=1).astype(np.uint8)
    return out, have


class LineArt:
    """Everything about a line art (and its gap setting) that does not depend on the
    hints: the ink, the regions filled under the lines, and, computed on first use,
    the region adjacency, areas and centroids.  The engine registry keeps these, so
    a re-run with new hints only looks at the hint pixels."""

    def __init__(self, lines: np.ndarray, gap: float | None = None, ink: np.ndarray | None = None):
        """`ink`: ink_mask(luminance(lines)), when the caller has the luminance already."""
        _check_rgba(lines, "line art")
        self.warnings = []
        if ink is None:
            ink = line_darkness(lines) >= INK_THRESHOLD
        if ink.all():
            raise UserError("the line art is solid ink: there are no regions to fill")
        if not ink.any():
            self.warnings.append("the line art has no lines: the whole canvas is one region")
        if gap is None:
            gap = default_gap(ink)
        if gap < 0:
            raise UserError("gap must be zero or more pixels")
        labels, n = segment(ink, gap)
        self.ink, self.n, self.gap = ink, n, float(gap)
        # segment() labels every free pixel: the pixels left to fill are exactly the ink.
        self.labels = fill_under_lines(labels, ink, in_place=True)
        self.shape = ink.shape
        self.extra: dict = {}            # per working size: compose.py's low-resolution tables
        self.forget_tables()             # the tables made on first use: none yet

    def forget_tables(self):
        """Drop every table made on first use (adjacency, areas, centroids, open regions,
        compose.py's low-resolution tables): a kept analysis then answers with today's code."""
        self._adjacency = self._area = self._centroid = self._open = None
        self.extra = {}

    def adjacency(self):
        if self._adjacency is None:
            self._adjacency = region_adjacency(self.labels)
        return self._adjacency

    def area(self) -> np.ndarray:
        if self._area is None:
            self._area = np.bincount(self.labels.ravel(), minlength=self.n + 1)
        return self._area

    def open_regions(self) -> np.ndarray:
        """(n+1) bool: regions that reach the canvas edge with their own paper (the page's
        background, or a drawing cropped by the canvas), as gap closing sees it: an edge pixel
        counts only where it is a seed of `segment` (no ink within gap / 2), so neither a frame
        drawn along the edge nor a gap that gap closing sealed near the edge opens a region."""
        if self._open is None:
            lab, ink, r = self.labels, self.ink, self.gap / 2.0
            k = int(np.floor(r)) + 1            # the ink that can block an edge pixel lies this close
            o = np.zeros(self.n + 1, bool)
            for strip, edge, labels in ((ink[:k], 0, lab[0]), (ink[-k:], -1, lab[-1]),
                                        (ink[:, :k].T, 0, lab[:, 0]), (ink[:, -k:].T, -1, lab[:, -1])):
                blocked = dilate_disk(strip, r)[edge] if r > 0 else strip[edge]
                o[labels[~blocked]] = True
            o[0] = False
            self._open = o
        return self._open

    def centroid(self) -> np.ndarray:
        """(n+1) x 2 float (y, x) mean position of each region."""
        if self._centroid is None:
            h, w = self.shape
            lab = self.labels
            area = np.maximum(self.area(), 1)
            ys = np.bincount(lab.ravel(), weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=self.n + 1)
            xs = np.bincount(lab.ravel(), weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=self.n + 1)
            self._centroid = np.stack([ys / area, xs / area], 1)
        return self._centroid

    def vote(self, hints) -> Votes:
        """`hints`: canvas-sized RGBA, imaging.HintPixels of this canvas, or None."""
        if isinstance(hints, HintPixels):
            shape = hints.shape
        elif hints is not None:
            _check_rgba(hints, "hints")
            shape = hints.shape[:2]
        if hints is not None and tuple(shape) != tuple(self.shape):
            raise UserError(f"hints are {shape[1]}x{shape[0]} but the line art is "
                            f"{self.shape[1]}x{self.shape[0]}: they must be the same size")
        return vote(self.labels, self.ink, hints, self.n)


def flat_palette(la: LineArt, votes: Votes, fill: str = "nearest") -> tuple:
    """((n+1) x 4 uint8 palette, known) from the votes: hinted regions their color, the
    others as `fill` says (nearest hinted region through the adjacency graph, or none)."""
    colors = votes.colors.copy()
    known = votes.hinted.copy()
    if fill == "nearest" and known.any():
        known = spread_nearest(la.labels, colors, known, la.adjacency())
    palette = np.zeros((la.n + 1, 4), np.uint8)
    palette[:, :3] = colors
    palette[:, 3] = np.where(known, 255, 0)
    palette[0] = 0
    return palette, known


def paint(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """palette[labels] as H x W x 4 uint8, gathered as 32-bit words (several times faster)."""
    p32 = np.ascontiguousarray(palette, np.uint8).view(np.uint32).ravel()
    return p32[labels].view(np.uint8).reshape(*labels.shape, 4)


def compute_flats(lines: np.ndarray, hints: np.ndarray | None, gap: float | None = None,
                  fill: str = "nearest", model_rgb: np.ndarray | None = None,
                  lineart: LineArt | None = None) -> Flats:
    """Flat colors for RGBA line art (H x W x 4 uint8) and RGBA hints of the same size.
    `lineart`: the line art's analysis from an earlier run (same lines and gap)."""
    if fill not in FILL_MODES:
        raise UserError(f"unknown fill mode {fill!r}: use one of {', '.join(FILL_MODES)}")
    if fill == "model":
        if model_rgb is None or model_rgb.shape[:2] != lines.shape[:2]:
            raise UserError("fill 'model' needs a colored result of the line art's size")
    la = lineart if lineart is not None else LineArt(lines, gap)
    votes = la.vote(hints)
    if not votes.hinted.any() and fill != "model":
        raise UserError("no hints: paint color strokes on the hint layer (opaque pixels inside the regions)")
    if fill == "model":
        colors, known = votes.colors.copy(), votes.hinted.copy()
        med, have = region_medians(la.labels, la.ink, model_rgb, la.n)
        take = ~votes.hinted & have
        colors[take] = med[take]
        known |= take
        palette = np.zeros((la.n + 1, 4), np.uint8)
        palette[:, :3] = colors
        palette[:, 3] = np.where(known, 255, 0)
        palette[0] = 0
    else:
        palette, known = flat_palette(la, votes, fill)
    return Flats(rgba=paint(la.labels, palette), labels=la.labels, colors=palette, hinted=votes.hinted,
                 gap=la.gap, warnings=list(la.warnings))


def _check_rgba(a, what):
    if not (isinstance(a, np.ndarray) and a.ndim == 3 and a.shape[2] == 4 and a.dtype == np.uint8):
        raise UserError(f"{what} must be an RGBA 8-bit image")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise UserError(f"{what} is empty")
