"""One result from the flat regions and a network's colors, at full canvas resolution.

The network sees the page at its working size (256-512 px); the flat regions are
exact at canvas resolution.  `compose` keeps what each is good at:

* **base colors, one per region**: the artist's hint where the region has one
  (exact), else the network's median color over the region (as snapping does);
  an unhinted region whose network color is within `palette_snap` of a color the
  artist used anywhere takes that exact color.
* **regions that swallowed several differently hinted areas** (gap closing leaked,
  or a line is missing): each pixel takes, of that region's hint colors, the one
  nearest the network's color there, so the network draws the border the lines
  do not (`split_follow`: optionally only where the network reproduces the
  region's hints where they were painted).
* **per-region confidence** (`network_regions`): a hinted region is left to the
  network (its median, all its variation) when the network steadily rejects the
  hint over a big region (a hint that leaked into the page's background), or when
  the region is mixed (no hint color dominates) and the network follows its hints.
* **shading**: the network's own variation inside each region, as a deviation from
  its region's median, smoothed a little and upsampled.  Only low-resolution pixels
  whose footprint lies wholly inside one region (not touching ink or another
  region, an eroded "pure" mask) contribute, and the upsampling is normalised by
  their weight, so no color crosses a line: a region's color comes from the
  canvas-resolution label map, and the deviation field only shifts it.
* **the artist's strokes**: the shading fades out around them, so where the artist painted the
  result is the region's hint color.  Painting every hint pixel over the result as well
  (`exact_hints`) is an option, off by default: it also paints the strokes that lost their
  region's vote, and measured 0.9 dB worse on hintauc's scribbles, which cross color borders.

As two layers: "Flats" (base colors, the split regions, the hint pixels if painted) and
"Shading" = result - flats + 128 in the **Grain Merge** blending mode, which
recomposes flats + shading - 128 = the single-layer result exactly (the deviation is
clipped to -128..127 before it is added, so nothing is lost).  Neutral gray means
no change, so an artist can paint over the shading layer or hide it.

Every table is per region (bincount over labels) or per low-resolution pixel; the
canvas is only touched by the banded broadcast of per-block colors (plus a cached lookup of
the pixels off their block's label), so memory stays bounded at 8192^2 with any number of
regions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .flats import LineArt, Votes, paint
from .imaging import LUMA

COMPOSE_MODES = ("shade", "snap", "raw", "flats")
DEFAULT_COMPOSE = "shade"
SHADING_BLEND = "grain_merge"        # Krita's composite op id for the Shading layer
_FIELD_STEP = 4                      # the shading field is upsampled to 1/4 canvas, then blocks of 4x4
_BAND = 512                          # canvas rows per band in the shading addition
_MAX_FIXUPS = 0.25                   # share of pixels off their block's label above which
                                     # the composition is done per pixel


@dataclass
class ComposeOptions:
    """Defaults chosen from the variants measured with bench.quality and bench.compose_tune on both
    hint protocols (see the README): a tenth of the network's light and dark in hinted regions and
    a quarter elsewhere, no hue, at most 12 levels; the open-page rule measured for alac-open 2.2
    with bench.compose_tune (README, Quality)."""
    strength: float = 0.1            # how much of the network's variation is kept in hinted regions (0 = snap)
    unhinted: float | None = 0.25    # the same in regions without a hint (None: as `strength`)
    chroma: float = 0.0              # share of the variation's hue kept (0 = light and dark only)
    clamp: float = 12.0              # largest shift of a channel, levels
    unhinted_chroma: float | None = None   # `chroma` in regions without a hint (None: as `chroma`)
    unhinted_clamp: float | None = None    # `clamp` in regions without a hint (None: as `clamp`)
    sigma: float = 1.0               # smoothing of the deviation field, low-resolution pixels
    erode: int = 1                   # low-resolution pixels kept away from lines and other regions
    conflict: float = 0.15           # second hint color's weight share that marks a region "split"
    palette_snap: float = 0.0        # RGB distance under which an unhinted region takes a hint color (0: off)
    exact_hints: bool = False        # paint every hint pixel over the result (measured: -0.9 dB on hintauc)
    # Per-region confidence: a hinted region is left to the network (its median as the base color,
    # its full variation, hue included, unclamped) when the network rejects the hint, or when the
    # region holds several hint colors that the network reproduces where they were painted.
    reject: float = 120.0            # network median this far from the hint (max channel, levels): rejected (0: off)
    steady: float = 60.0             # ... if the network's color spread over the region is under this (RGB std, levels)
    reject_area: float = 0.2         # ... and the region covers at least this share of the page
    reject_follow: float = 25.0      # ... and the network misses the hint where it was painted (mean error, levels)
    open_area: float = 0.05          # a region open to the canvas edge (no line closes it) of at least
                                     # this share of the page is rejected on the distance alone (inf: off)
    open_paper: float = 230.0        # ... and the network's median there is paper: every channel at least this
    agree: float = 0.6               # share of hint weight near the winning color under which a region is mixed
    follow: float = 40.0             # mean network error at a mixed region's hint pixels under which it is trusted
    # The same for splitting a region by the network's colors; off (inf): gating the split at 40
    # won 0.14 dB on the first 20 images and lost 0.3 dB on the next 20 (both protocols together).
    split_follow: float = float("inf")


@dataclass
class Composition:
    rgba: np.ndarray                 # H x W x 4 uint8, the single-layer result
    flats: np.ndarray | None = None  # H x W x 4 "Flats" layer (layers=True)
    shading: np.ndarray | None = None  # H x W x 4 "Shading" layer, Grain Merge


# --- tables that depend only on the line art and the working size (cached in LineArt.extra) ----

def _starts(n_canvas: int, n_low: int) -> np.ndarray:
    return (np.arange(n_low, dtype=np.int64) * n_canvas) // n_low


def low_tables(la: LineArt, h: int, w: int) -> dict:
    """Per low-resolution pixel (h x w): the label at its centre and whether its
    footprint is one region with no ink (eroded by `erode` later)."""
    key = ("low", h, w)
    t = la.extra.get(key)
    if t is not None:
        return t
    H, W = la.shape
    ys, xs = _starts(H, h), _starts(W, w)
    cy = ((np.arange(h) + 0.5) * H / h).astype(np.int64).clip(0, H - 1)
    cx = ((np.arange(w) + 0.5) * W / w).astype(np.int64).clip(0, W - 1)
    lowlab = la.labels[cy][:, cx]
    if h < H and w < W:
        # One band of footprint rows at a time: its columns reduced first, then the footprints
        # along the row (a reduceat down axis 0 of the whole canvas is about 20 times slower).
        clean = np.empty((h, w), bool)
        for i in range(h):
            band = slice(ys[i], ys[i + 1] if i + 1 < h else H)
            lab = la.labels[band]
            lo = np.minimum.reduceat(lab.min(0), xs)
            hi = np.maximum.reduceat(lab.max(0), xs)
            inked = np.logical_or.reduceat(la.ink[band].any(0), xs)
            clean[i] = (lo == hi) & ~inked
    else:
        clean = ~la.ink[cy][:, cx]
    t = {"lowlab": lowlab, "clean": clean, "cy": cy, "cx": cx}
    la.extra[key] = t
    return t


def _pure(t: dict, erode: int) -> np.ndarray:
    key = ("pure", erode)
    if key not in t:
        lab, pure = t["lowlab"], t["clean"].copy()
        for _ in range(erode):
            # A pixel stays pure if its 4 neighbours are pure and of its region.
            p = np.pad(pure, 1)
            lp = np.pad(lab, 1, mode="edge")
            same = ((lp[:-2, 1:-1] == lab) & p[:-2, 1:-1] & (lp[2:, 1:-1] == lab) & p[2:, 1:-1]
                    & (lp[1:-1, :-2] == lab) & p[1:-1, :-2] & (lp[1:-1, 2:] == lab) & p[1:-1, 2:])
            pure = pure & same
        t[key] = pure
    return t[key]


def _box_centres(la: LineArt, regions: np.ndarray) -> np.ndarray:
    """len(regions) x 2 (y, x) centre of each given region's bounding box (cached per region).

    The regions asked for are the few too small to own a low-resolution pixel: one lookup
    pass finds their pixels, instead of bounding every region of the page."""
    c = la.extra.get("boxes")
    if c is None:
        c = la.extra["boxes"] = np.full((la.n + 1, 2), np.nan)
    todo = regions[np.isnan(c[regions, 0])]
    if todo.size:
        want = np.zeros(la.n + 1, bool)
        want[todo] = True
        W = la.shape[1]
        at = np.flatnonzero(want[la.labels])     # sorted: rows ascending (np.take would first copy
                                                 # the int32 labels to a canvas of intp)
        lab = la.labels.ravel()[at]
        ys, xs = np.divmod(at, W)
        y0 = np.full(la.n + 1, np.iinfo(np.int64).max)
        x0 = y0.copy()
        y1 = np.full(la.n + 1, -1)
        x1 = y1.copy()
        np.minimum.at(y0, lab, ys)
        np.maximum.at(y1, lab, ys)
        np.minimum.at(x0, lab, xs)
        np.maximum.at(x1, lab, xs)
        c[todo, 0] = (y0[todo] + y1[todo]) / 2.0
        c[todo, 1] = (x0[todo] + x1[todo]) / 2.0
    return c[regions]


# --- per run -------------------------------------------------------------------------------------

def _group_median(lab: np.ndarray, vals: np.ndarray, n: int):
    """Per-label median of vals (k x 3, 0..255) by sorting one integer key per channel
    (k is a low-resolution pixel count)."""
    med = np.zeros((n + 1, 3), np.float32)
    count = np.bincount(lab, minlength=n + 1)
    have = count > 0
    if lab.size == 0:
        return med, have
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    mid = (start + (count - 1) // 2)[have]
    q = np.clip(np.round(vals), 0, 255).astype(np.int64)
    for c in range(3):
        key = np.sort(lab * 256 + q[:, c])
        med[have, c] = key[mid] & 255
    return med, have


def region_network_colors(la: LineArt, net: np.ndarray, erode: int = 1) -> np.ndarray:
    """(n+1) x 3 float32: each region's median network color over its pure low-resolution
    pixels; regions with none use all their low-resolution pixels, and regions too small to
    own one use the network's color at their bounding box centre."""
    h, w = net.shape[:2]
    t = low_tables(la, h, w)
    lab = t["lowlab"].ravel().astype(np.int64)
    flat = net.reshape(-1, 3)
    pure = _pure(t, erode).ravel()
    med, have = _group_median(lab[pure], flat[pure], la.n)
    if not have[1:].all():
        med2, have2 = _group_median(lab, flat, la.n)
        fill = ~have & have2
        med[fill] = med2[fill]
        have |= have2
        if not have[1:].all():
            H, W = la.shape
            miss = np.flatnonzero(~have)
            miss = miss[miss > 0]
            c = _box_centres(la, miss)
            yy = np.clip((c[:, 0] * h / H).astype(np.int64), 0, h - 1)
            xx = np.clip((c[:, 1] * w / W).astype(np.int64), 0, w - 1)
            med[miss] = net[yy, xx]
    return med


def split_regions(votes: Votes, n: int, share: float, k: int = 4):
    """Regions whose second hint color holds at least `share` of the hint weight:
    (bool (n+1), (n+1) x k x 3 candidate colors, (n+1) x k valid)."""
    split = np.zeros(n + 1, bool)
    if votes.bin_region.size == 0:
        return split, None, None
    r, wgt = votes.bin_region, votes.bin_weight
    total = np.bincount(r, weights=wgt, minlength=n + 1)
    order = np.lexsort((-wgt, r))                 # per region, heaviest bin first
    r_o = r[order]
    first = np.r_[True, r_o[1:] != r_o[:-1]]
    grp_start = np.maximum.accumulate(np.where(first, np.arange(r_o.size), 0))
    rank = np.arange(r_o.size) - grp_start
    second = order[rank == 1]
    split[r[second]] = wgt[second] >= share * total[r[second]]
    split[0] = False
    if not split.any():
        return split, None, None
    cand = np.zeros((n + 1, k, 3), np.float32)
    valid = np.zeros((n + 1, k), bool)
    keep = (rank < k) & split[r_o] & (wgt[order] >= 0.5 * share * total[r_o])
    cand[r_o[keep], rank[keep]] = votes.bin_rgb[order[keep]]
    valid[r_o[keep], rank[keep]] = True
    return split, cand, valid


def network_regions(la: LineArt, votes: Votes, net: np.ndarray, med: np.ndarray,
                    o: "ComposeOptions", follow: np.ndarray) -> np.ndarray:
    """(n+1) bool: hinted regions whose color is better left to the network, per pixel.

    * the network rejects the hint: its median over the region is more than `reject` levels
      (max channel) from the hint color, its colors there are steady (spread under `steady`), it
      does not reproduce the hint even where it was painted (mean error over `reject_follow`), the
      region covers at least `reject_area` of the page, and most of the hint color's weight lies
      in other regions (the stroke crossed a line; a stroke wholly inside a closed region always
      keeps its color).  On the eval set this is a scribble that crossed a line into the page's
      background: the whole page takes the hint color while the network, which saw the lines,
      keeps it white.  Where the network's colors are unsteady it
      is lost rather than sure (a garbled page): the hint stays.
    * the region is open (its paper reaches the canvas edge: the page's background, which no
      line closes), covers at least `open_area` of the page, the network paints it as paper (every
      channel of its median at least `open_paper`) and its median is more than `reject` levels
      from the hint: the network saw the stroke and kept it local (a cast shadow, an outline's own
      color hinted just outside it), so the page keeps the network's colors, the stroke's color
      showing where the network put it.  The stroke-in-a-closed-region promise above stands: only
      an open page the network keeps blank is judged on the distance alone; a full-bleed picture
      (a sky, a flag cropped by the canvas), which the network colors, keeps its strokes' fill.
      Measured on the eval set (all 60 images, bench.compose_tune): +0.40 dB on hintauc (+0.28 and
      +0.53 on the two halves of the set), +0.19 on strokes (all of it in the second half); no
      sample lost more than 0.04 dB.
    * the region is mixed: under `agree` of its hint weight lies within 40 levels of the winning
      color (a leaking region, or an unclosed drawing, swallowed several hinted areas), and the
      network reproduces the hints where they were painted (mean error under `follow`): then its
      colors draw the borders the lines do not.
    Measured per region on the eval set (first 16 images, both protocols): these regions' error
    falls by 40-60 % against the flat or split colors; regions with one agreeing hint color do
    better flat."""
    free = np.zeros(la.n + 1, bool)
    if not votes.hinted.any():
        return free
    if o.reject > 0:
        d = np.abs(votes.colors.astype(np.float32) - med).max(1)
        area = la.area()
        open_page = la.open_regions() & (area >= o.open_area * la.labels.size) & (med.min(1) >= o.open_paper)
        cand = votes.hinted & (d > o.reject) & (((area >= o.reject_area * la.labels.size)
                                                 & (follow > o.reject_follow)) | open_page)
        if cand.any():
            h, w = net.shape[:2]
            lab = low_tables(la, h, w)["lowlab"].ravel()
            px = net.reshape(-1, 3).astype(np.float64)
            cnt = np.maximum(np.bincount(lab, minlength=la.n + 1), 1)
            var = np.zeros(la.n + 1)
            for c in range(3):
                s1 = np.bincount(lab, weights=px[:, c], minlength=la.n + 1) / cnt
                var += np.bincount(lab, weights=px[:, c] ** 2, minlength=la.n + 1) / cnt - s1 ** 2
            cand &= open_page | (np.sqrt(np.maximum(var, 0)) < o.steady)
            # A stroke that crossed a line: most of its color's weight lies in other regions.
            # (At most 1 / reject_area regions are big enough: a short loop.)
            for r in np.flatnonzero(cand & ~open_page):
                same = np.abs(votes.bin_rgb.astype(np.int16) - votes.colors[r].astype(np.int16)).max(1) <= 8
                here = votes.bin_weight[same & (votes.bin_region == r)].sum()
                cand[r] = votes.bin_weight[same].sum() - here > here
            free |= cand
    if o.agree > 0 and votes.idx.size:
        n = la.n
        r = votes.bin_region
        near = np.abs(votes.bin_rgb.astype(np.int16) - votes.colors[r].astype(np.int16)).max(1) <= 40
        total = np.bincount(r, weights=votes.bin_weight, minlength=n + 1)
        share = np.bincount(r, weights=votes.bin_weight * near, minlength=n + 1) / np.maximum(total, 1e-9)
        free |= votes.hinted & (share < o.agree) & (follow < o.follow)
    free[0] = False
    return free


def hint_follow(la: LineArt, votes: Votes, net: np.ndarray) -> np.ndarray:
    """(n+1) float: per region, the network's mean error (max channel, levels) at the region's
    hint pixels, i.e. how well it reproduces the hints where they were painted (inf: no hint)."""
    n = la.n
    follow = np.full(n + 1, np.inf)
    if votes.idx.size == 0:
        return follow
    H, W = la.shape
    h, w = net.shape[:2]
    yy = (votes.idx // W) * h // H
    xx = (votes.idx % W) * w // W
    err = np.abs(net[yy, xx] - votes.rgb).max(1)
    lab = la.labels.ravel()[votes.idx]
    cnt = np.bincount(lab, minlength=n + 1)
    have = cnt > 0
    follow[have] = np.bincount(lab, weights=err, minlength=n + 1)[have] / cnt[have]
    return follow


def quarter_labels(la: LineArt, step: int) -> np.ndarray:
    """The label at the centre of every step x step block of the canvas (cached)."""
    key = ("quarter", step)
    q = la.extra.get(key)
    if q is None:
        H, W = la.shape
        cy = np.minimum(np.arange(-(-H // step)) * step + step // 2, H - 1)
        cx = np.minimum(np.arange(-(-W // step)) * step + step // 2, W - 1)
        q = la.extra[key] = la.labels[cy][:, cx]
    return q


def _upsample(a: np.ndarray, out_hw) -> np.ndarray:
    from PIL import Image
    oh, ow = out_hw
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, np.float32), "F").resize(
        (ow, oh), Image.Resampling.BILINEAR), np.float32)


def _field(net: np.ndarray, lowlab: np.ndarray, pure: np.ndarray, med: np.ndarray, sigma: float,
           out_hw, chroma: float = 1.0, region_gain: np.ndarray | None = None,
           region_chroma: np.ndarray | None = None) -> np.ndarray:
    """The network's deviation from its region's median, from pure pixels only, smoothed
    and upsampled (normalised by the pure weight) to out_hw: float32 x 3.
    region_chroma: per region share of hue kept (overrides `chroma`)."""
    wgt = pure.astype(np.float32)
    dev = (net - med[lowlab]) * wgt[..., None]
    if region_gain is not None:
        dev *= region_gain[lowlab][..., None]
    if region_chroma is not None:
        lum = (dev @ LUMA)[..., None]
        dev = lum + region_chroma[lowlab][..., None] * (dev - lum)
    elif chroma != 1:
        lum = (dev @ LUMA)[..., None]
        dev = lum + chroma * (dev - lum)
    if sigma > 0:
        wgt = ndi.gaussian_filter(wgt, sigma, mode="nearest")
        dev = np.stack([ndi.gaussian_filter(dev[..., c], sigma, mode="nearest") for c in range(3)], -1)
    uw = _upsample(wgt, out_hw)
    norm = np.where(uw > 1e-3, 1.0 / np.maximum(uw, 1e-3), 0.0).astype(np.float32)
    return np.stack([_upsample(dev[..., c], out_hw) * norm for c in range(3)], -1)


def block_fixups(la: LineArt, step: int):
    """The canvas pixels whose label is not their step x step block's centre label (cached per
    line art): (flat pixel indices, their labels, their block indices), or None where they are
    too many for the lookup to pay (hatching, screentone: then every pixel is gathered).

    Inside a block every other pixel has the block's label, so the composition is computed
    once per block and broadcast; only these pixels (along region borders, mostly under the
    lines) are looked up one by one."""
    key = ("fixups", step)
    if key in la.extra:
        return la.extra[key]
    H, W = la.shape
    ql = quarter_labels(la, step)
    qw = ql.shape[1]
    band = max(_BAND // step, 1) * step
    parts = []
    for y0 in range(0, H, band):
        y1 = min(y0 + band, H)
        centre = np.repeat(ql[y0 // step:-(-y1 // step)], step, axis=1)[:, :W]     # block rows x W
        lab = la.labels[y0:y1]
        full = (y1 - y0) // step
        miss = np.empty((y1 - y0, W), bool)
        if full:
            np.not_equal(lab[:full * step].reshape(full, step, W), centre[:full, None, :],
                         out=miss[:full * step].reshape(full, step, W))
        for r in range(full * step, y1 - y0):
            np.not_equal(lab[r], centre[r // step], out=miss[r])
        parts.append(np.flatnonzero(miss) + y0 * W)
    idx = np.concatenate(parts)
    if idx.size > _MAX_FIXUPS * H * W:
        la.extra[key] = None
        return None
    ys, xs = np.divmod(idx, W)
    blk = (ys // step) * qw + xs // step
    it = np.int32 if H * W < 2 ** 31 else np.int64
    t = la.extra[key] = (idx.astype(it), la.labels.ravel()[idx], blk.astype(it))
    return t


def _add_field(la: LineArt, palette: np.ndarray, field: np.ndarray | None, step: int, out=None) -> np.ndarray:
    """clip(palette[labels] + field expanded to step x step blocks): H x W x 4 uint8, alpha kept
    (into `out` when it is such an array: a recycled result, see registry.Engines.recycle).

    Once per block (at the block's centre label), broadcast to its pixels a band of rows at
    a time, then the pixels of another label (block_fixups) one by one: the same numbers as
    per pixel, with one 32-bit store per pixel instead of a gather and an int16 addition."""
    labels = la.labels
    H, W = labels.shape
    fix = block_fixups(la, step)
    out = out if _fits(out, (H, W, 4)) else np.empty((H, W, 4), np.uint8)
    if fix is None:
        return _add_field_pixels(labels, palette, field, step, out)
    ql = quarter_labels(la, step)
    qh, qw = ql.shape
    # (np.take: several times faster than fancy indexing for these gathers)
    if field is None:
        blocks = np.take(palette, ql, axis=0)
        fixed = np.take(palette, fix[1], axis=0)
    else:
        # The palette as four int16 per region, gathered as one 64-bit word.
        p64 = np.ascontiguousarray(palette.astype(np.int16)).view(np.int64).ravel()
        b = np.take(p64, ql).view(np.int16).reshape(qh, qw, 4)
        b[..., :3] += field
        blocks = np.clip(b, 0, 255, out=b).astype(np.uint8)
        fx = np.take(p64, fix[1]).view(np.int16).reshape(-1, 4)
        fx[:, :3] += np.take(field.reshape(-1, 3), fix[2], axis=0)
        fixed = np.clip(fx, 0, 255, out=fx).astype(np.uint8)
    b32 = blocks.view(np.uint32).reshape(qh, qw)
    o32 = out.view(np.uint32).reshape(H, W)
    band = max(_BAND // step, 1) * step
    for y0 in range(0, H, band):
        y1 = min(y0 + band, H)
        row = np.repeat(b32[y0 // step:-(-y1 // step)], step, axis=1)[:, :W]        # block rows x W
        full = (y1 - y0) // step
        if full:
            o32[y0:y0 + full * step].reshape(full, step, W)[...] = row[:full, None, :]
        for r in range(full * step, y1 - y0):
            o32[y0 + r] = row[r // step]
    o32.ravel()[fix[0]] = fixed.view(np.uint32).ravel()
    return out


def _add_field_pixels(labels: np.ndarray, palette: np.ndarray, field: np.ndarray | None, step: int,
                      out=None) -> np.ndarray:
    """_add_field per pixel, for label maps where most blocks hold several labels.

    In bands of rows: each band's flat colors are gathered, the field (int16, 1/step of the
    canvas per side, repeated along the row once) is added to `step` canvas rows at a time by
    broadcasting, clipped and stored, so no canvas-sized temporary exists and each band stays
    in the cache."""
    H, W = labels.shape
    p32 = np.ascontiguousarray(palette, np.uint8).view(np.uint32).ravel()
    out = out if _fits(out, (H, W, 4)) else np.empty((H, W, 4), np.uint8)
    o32 = out.view(np.uint32).reshape(H, W)
    if field is None:
        np.take(p32, labels, out=o32)
        return out
    f4 = np.zeros(field.shape[:2] + (4,), np.int16)
    f4[..., :3] = field
    # The palette as four int16 per region, gathered as one 64-bit word per pixel: the band
    # arrives ready for the signed addition.
    p64 = np.ascontiguousarray(palette.astype(np.int16)).view(np.int64).ravel()
    band = max(_BAND // step, 1) * step
    for y0 in range(0, H, band):
        y1 = min(y0 + band, H)
        rows = y1 - y0
        nb = -(-rows // step)
        fh = np.repeat(f4[y0 // step:y0 // step + nb], step, axis=1)[:, :W]      # nb x W x 4
        b = p64[labels[y0:y1]].view(np.int16).reshape(rows, W, 4)
        full = rows // step
        if full:
            b[:full * step].reshape(full, step, W * 4)[...] += fh[:full].reshape(full, 1, W * 4)
        for r in range(full * step, rows):
            b[r] += fh[r // step]
        np.clip(b, 0, 255, out=b)
        out[y0:y1] = b
    return out


def _fits(a, shape) -> bool:
    return isinstance(a, np.ndarray) and a.shape == shape and a.dtype == np.uint8 and a.flags.c_contiguous \
        and a.flags.writeable


def _split_field(la: LineArt, net: np.ndarray, base_colors: np.ndarray, split, cand, valid, step: int):
    """For regions holding several hint colors: per step x step block, the region's hint color
    nearest the network's color there, as a shift from the region's base color.  Only those
    blocks: (their flat indices into the block grid, K x 3 float32 shifts), or None."""
    ql = quarter_labels(la, step)
    idx = np.flatnonzero(np.take(split, ql))
    if idx.size == 0:
        return None
    qh, qw = ql.shape
    r = np.take(ql.ravel(), idx)
    c = [np.take(_upsample(net[..., ch], (qh, qw)).ravel(), idx) for ch in range(3)]
    cr = np.take(cand, r, axis=0)                       # K x k x 3
    vr = np.take(valid, r, axis=0)
    # Squared distance to each candidate, summed red, green, blue in that order; the first
    # nearest valid one wins (as argmin over the candidates).
    best = pick = None
    for j in range(cand.shape[1]):
        d = (cr[:, j, 0] - c[0]) ** 2
        d += (cr[:, j, 1] - c[1]) ** 2
        d += (cr[:, j, 2] - c[2]) ** 2
        d[~vr[:, j]] = np.inf
        if best is None:
            best, pick = d, np.zeros(idx.size, np.intp)
        else:
            better = d < best
            best = np.where(better, d, best)
            pick[better] = j
    vals = cr[np.arange(idx.size), pick] - np.clip(np.round(np.take(base_colors, r, axis=0)), 0, 255)
    return idx, vals


def _dense(blocks, hw) -> np.ndarray:
    """(block indices, K x 3 values) as a h x w x 3 float32 field, 0 elsewhere."""
    f = np.zeros(tuple(hw) + (3,), np.float32)
    f.reshape(-1, 3)[blocks[0]] = blocks[1]
    return f


def compose(la: LineArt, votes: Votes, net: np.ndarray, mode: str = DEFAULT_COMPOSE,
            options: ComposeOptions | None = None, layers: bool = False, bgra: bool = False,
            out: np.ndarray | None = None) -> Composition:
    """`net`: the network's colors over the content at working size, h x w x 3 float32 in
    0..255 (not upsampled).  `mode`: shade (the default), snap (one network or hint color
    per region) or flats-like palettes; 'raw' is the caller's plain upsampling.  `bgra`: the
    images in B, G, R, A byte order (as Krita's layers take them): the palette and the
    shifts are reordered, the pixels never are.  `out`: an H x W x 4 uint8 array the result may
    be written into (the caller's spare; nobody may look at it any more)."""
    o = options or ComposeOptions()
    n = la.n
    net = np.asarray(net, np.float32)
    med = region_network_colors(la, net, o.erode)
    colors = np.where(votes.hinted[:, None], votes.colors.astype(np.float32), med)
    free = None
    if mode == "shade":
        follow = hint_follow(la, votes, net)
        free = network_regions(la, votes, net, med, o, follow)
        if free.any():
            colors[free] = med[free]
        else:
            free = None
    if mode == "snap":
        palette = _palette(colors, bgra)
        rgba = paint(la.labels, palette)
        return Composition(rgba, rgba if layers else None, _neutral(rgba) if layers else None)
    if mode != "shade":
        raise ValueError(f"compose mode {mode!r}")
    # Unhinted regions: a color the artist used, when the network's color is close to it.
    if o.palette_snap > 0 and votes.bin_rgb.shape[0]:
        pal = np.unique(votes.bin_rgb, axis=0).astype(np.float32)
        unh_r = np.flatnonzero(~votes.hinted)
        unh_r = unh_r[unh_r > 0]
        if unh_r.size and pal.shape[0]:
            d = np.full(unh_r.size, np.inf, np.float32)
            pick = np.zeros(unh_r.size, np.int64)
            for j in range(pal.shape[0]):            # palette is small (distinct hint colors)
                dj = np.sqrt(((med[unh_r] - pal[j]) ** 2).sum(1))
                better = dj < d
                d[better], pick[better] = dj[better], j
            near = d < o.palette_snap
            colors[unh_r[near]] = pal[pick[near]]
    palette = _palette(colors, bgra)
    H, W = la.shape
    h, w = net.shape[:2]
    # Blocks of the shading field: 4 px on big pages, finer where the page is near the working size.
    step = int(max(1, min(_FIELD_STEP, H // h, W // w)))
    qhw = (-(-H // step), -(-W // step))
    split_at = None
    if o.conflict > 0:
        split, cand, valid = split_regions(votes, n, o.conflict)
        # Optionally split by the network's colors only where the network reproduces the hints.
        split &= follow < o.split_follow
        if free is not None:
            split &= ~free                      # left to the network
        if cand is not None and split.any():
            split_at = _split_field(la, net, colors, split, cand, valid, step)
    unh = o.strength if o.unhinted is None else o.unhinted
    uch = o.chroma if o.unhinted_chroma is None else o.unhinted_chroma
    lim = min(o.clamp, 127.0)
    ulim = lim if o.unhinted_clamp is None else min(o.unhinted_clamp, 127.0)
    shade_f = None
    if o.strength > 0 or unh > 0 or free is not None:
        t = low_tables(la, h, w)

        def per_region(hinted, unhinted):        # None: one value for every region
            if hinted == unhinted and free is None:
                return None
            return np.where(votes.hinted, hinted, unhinted).astype(np.float32)
        gain, rchroma, rlim = per_region(o.strength, unh), per_region(o.chroma, uch), per_region(lim, ulim)
        if free is not None:
            # The network's regions: all of its variation, hue included, unclamped.
            gain[free], rchroma[free], rlim[free] = 1.0, 1.0, 127.0
        shade_f = _field(net, t["lowlab"], _pure(t, o.erode), med, o.sigma, qhw, o.chroma, gain, rchroma)
        if gain is None and o.strength != 1:
            shade_f *= o.strength
        if rlim is None:
            np.clip(shade_f, -lim, lim, out=shade_f)
        else:
            # Each region its own limit (by the block's centre label).
            lim_q = rlim[quarter_labels(la, step)][..., None]
            np.clip(shade_f, -lim_q, lim_q, out=shade_f)
        if split_at is not None:
            shade_f.reshape(-1, 3)[split_at[0]] = 0         # split regions: flat colors only
        if o.exact_hints and votes.idx.size:
            # Fade the shading out around the artist's strokes, so an exact stroke never shows
            # as a line of another shade.
            m = np.zeros(qhw, np.float32)
            m[(votes.idx // W) // step, (votes.idx % W) // step] = 1.0
            m = ndi.gaussian_filter(ndi.maximum_filter(m, 3), 2.0)
            shade_f *= (1.0 - np.minimum(m * 2.0, 1.0))[..., None]

    def expand(f, into=None):
        if f is not None and bgra:
            f = f[..., ::-1]
        return _add_field(la, palette, None if f is None else np.round(f).astype(np.int16), step, into)
    if split_at is None:
        total = shade_f
    elif shade_f is None:
        total = _dense(split_at, qhw)
    else:
        total = shade_f                          # 0 in the split blocks: add their shifts there
        total.reshape(-1, 3)[split_at[0]] += split_at[1]
    rgba = expand(total, out)
    flats = expand(None if split_at is None else _dense(split_at, qhw)) if layers else None
    if o.exact_hints and votes.idx.size:
        a = (votes.alpha / 255.0)[:, None]
        for img in ((rgba, flats) if layers else (rgba,)):
            f = img.reshape(-1, 4)
            rgb = votes.rgb[:, ::-1] if bgra else votes.rgb
            f[votes.idx, :3] = np.clip(np.round(f[votes.idx, :3] * (1 - a) + rgb * a), 0, 255).astype(np.uint8)
    if not layers:
        return Composition(rgba)
    return Composition(rgba, flats, shading_layer(rgba, flats))


def shading_layer(rgba: np.ndarray, flats: np.ndarray) -> np.ndarray:
    """result - flats + 128, opaque: the Grain Merge layer that turns flats into the result."""
    s = np.empty_like(rgba)
    d = rgba[..., :3].astype(np.int16) - flats[..., :3] + 128
    s[..., :3] = np.clip(d, 0, 255)
    s[..., 3] = 255
    return s


def grain_merge(flats: np.ndarray, shading: np.ndarray) -> np.ndarray:
    """Krita's Grain Merge of an opaque layer over flats: flats + shading - 128, clipped."""
    out = flats.copy()
    out[..., :3] = np.clip(flats[..., :3].astype(np.int16) + shading[..., :3] - 128, 0, 255)
    return out


def _neutral(rgba):
    s = np.full_like(rgba, 128)
    s[..., 3] = 255
    return s


def _palette(colors: np.ndarray, bgra: bool = False) -> np.ndarray:
    p = np.zeros((colors.shape[0], 4), np.uint8)
    p[:, :3] = np.clip(np.round(colors[:, ::-1] if bgra else colors), 0, 255)
    p[:, 3] = 255
    p[0] = 0
    return p
