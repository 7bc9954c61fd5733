"""The default composition (flat regions + the network's shading + exact hints), its two
layers, and the line-art cache of the engine registry."""
import numpy as np
import pytest

from krita_alac.engine.compose import ComposeOptions, compose, grain_merge, low_tables
from krita_alac.engine.flats import LineArt, compute_flats
from krita_alac.engine.registry import Engines, LineArtCache, digest
from krita_alac.engine.request import ColorizeRequest

RED, BLUE, GREEN, GRAY = (220, 30, 30), (30, 40, 220), (40, 190, 60), (128, 128, 128)
H, W = 128, 192


def two_rooms(gap_at=None):
    """Frame split by a 3-px wall at x 95..97 (optionally with a 20-px opening at y 50)."""
    lines = np.zeros((H, W, 4), np.uint8)
    ink = np.zeros((H, W), bool)
    ink[:3], ink[-3:], ink[:, :3], ink[:, -3:] = True, True, True, True
    ink[:, 95:98] = True
    if gap_at is not None:
        ink[gap_at:gap_at + 20, 95:98] = False
    lines[ink] = (0, 0, 0, 255)
    return lines, ink


def stroke(hints, y, x, color, h=6, w=20):
    hints[y:y + h, x:x + w, :3] = color
    hints[y:y + h, x:x + w, 3] = 255


def network(left, right, shade=0.0, size=(32, 48)):
    """A network result at working size: `left` and `right` halves, blurred across the wall,
    with a vertical light-to-dark gradient of +-shade levels."""
    from scipy import ndimage as ndi
    h, w = size
    net = np.zeros((h, w, 3), np.float32)
    net[:, : w // 2] = left
    net[:, w // 2:] = right
    net = ndi.uniform_filter(net, (1, 5, 1))           # bleeds across the wall, as a network does
    net += np.linspace(shade, -shade, h, dtype=np.float32)[:, None, None]
    return np.clip(net, 0, 255)


def test_hinted_regions_keep_their_color_and_get_the_networks_shading():
    lines, ink = two_rooms()
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 60, 30, RED)
    stroke(hints, 60, 130, BLUE)
    la = LineArt(lines)
    # reject=0: a network that paints a whole room green against a red hint would otherwise win
    # that room (test_the_network_wins_a_big_region_whose_hint_it_rejects).
    opts = ComposeOptions(strength=1.0, chroma=1.0, clamp=127, sigma=0.5, reject=0)
    c = compose(la, la.vote(hints), network(GREEN, GREEN, shade=30), "shade", opts).rgba
    left = ~ink & (np.arange(W) < 90)[None, :]
    # The shading fades out around the strokes: nearly their color where the artist painted ...
    assert np.abs(c[60:66, 30:50, :3].astype(int) - RED).max() <= 4
    # ... and exactly, with the overlay of the hint pixels.
    opts.exact_hints = True
    x = compose(la, la.vote(hints), network(GREEN, GREEN, shade=30), "shade", opts).rgba
    assert (x[60:66, 30:50, :3] == RED).all() and (x[60:66, 130:150, :3] == BLUE).all()
    # The region's median is the hint color; the shading runs light (top) to dark (bottom).
    med = np.median(c[left][:, :3], axis=0)
    assert np.abs(med - RED).max() <= 3
    top, bottom = c[10:20, 20:80, :3].astype(int).mean((0, 1)), c[108:118, 20:80, :3].astype(int).mean((0, 1))
    assert (top - bottom).min() > 20
    assert (c[..., 3] == 255).all()


def test_no_color_crosses_a_line_at_full_resolution():
    lines, ink = two_rooms()
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 60, 30, RED)
    stroke(hints, 60, 130, BLUE)
    la = LineArt(lines)
    # The network paints the left room green and the right one yellow, blurred across the wall.
    c = compose(la, la.vote(hints), network(GREEN, (230, 220, 20)), "shade",
                ComposeOptions(strength=1.0, chroma=1.0, clamp=127, reject=0)).rgba.astype(int)
    xs = np.arange(W)[None, :]
    for side, color in (((xs >= 3) & (xs < 95), RED), ((xs >= 98) & (xs < W - 3), BLUE)):
        px = c[~ink & side][:, :3]
        # Only the region's own (flat) variation: nothing of the neighbour's color, even at the wall.
        assert np.abs(px - color).max() <= 2, np.abs(px - color).max()


def test_the_network_wins_a_big_region_whose_hint_it_rejects():
    # A red stroke across the wall, mostly in the right room; its tail in the left room is the
    # left room's only hint.  The network, steady, paints the left room green and the right one
    # red (on the eval set: a scribble that crossed a line into the page's background).  The left
    # room takes the network's green, the right room keeps the red, and no green crosses the wall.
    lines, ink = two_rooms()
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 60, 85, RED, w=40)                  # x 85..124: 10 px left of the wall, 27 right
    la = LineArt(lines)
    net = network(GREEN, RED)
    c = compose(la, la.vote(hints), net, "shade").rgba.astype(int)
    xs = np.arange(W)[None, :]
    left, right = ~ink & (xs >= 3) & (xs < 95), ~ink & (xs >= 98) & (xs < W - 3)
    assert np.abs(c[left][:, :3] - GREEN).max() <= 2
    assert (c[right][:, :3] == RED).all()
    # The hint's color stays: off (reject=0), a small region (reject_area), a stroke wholly
    # inside the room (no other region holds its color), or a network that paints it where it
    # was drawn (reject_follow).
    inside = np.zeros((H, W, 4), np.uint8)
    stroke(inside, 60, 30, RED)
    follows = net.copy()
    follows[13:17, 20:24] = RED                       # the network's red around the stroke's tail only
    for h, n, opts in ((hints, net, ComposeOptions(reject=0)), (hints, net, ComposeOptions(reject_area=0.6)),
                       (inside, net, None), (hints, follows, None)):
        k = compose(la, la.vote(h), n, "shade", opts).rgba.astype(int)
        assert np.median(k[left][:, :3], axis=0).tolist() == list(RED)
    # An unsteady network (a garbled result) does not win either.
    noisy = net + np.random.default_rng(1).uniform(-120, 120, net.shape).astype(np.float32)
    k = compose(la, la.vote(hints), np.clip(noisy, 0, 255), "shade").rgba.astype(int)
    assert np.median(k[left][:, :3], axis=0).tolist() == list(RED)


def test_a_mixed_region_the_network_follows_takes_the_networks_colors():
    # One region (the wall is open), equal red and blue strokes: a mixed region.  The network
    # paints them where they were drawn, so its colors (hue and all) draw the border the lines
    # do not; far from the opening each side is its stroke's color.
    lines, ink = two_rooms()
    lines[:, 95:98] = 0                                  # no wall: one region
    ink[:, 95:98] = False
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 20, 30, RED, w=30)
    stroke(hints, 20, 130, BLUE, w=30)
    la = LineArt(lines)
    assert la.n == 1
    purple = (150, 40, 150)
    net = network(RED, BLUE)
    net[:, 20:28] = purple                               # the network's own border, x 80..111
    c = compose(la, la.vote(hints), net, "shade").rgba.astype(int)
    assert np.abs(c[100:110, 10:60, :3] - RED).max() <= 2
    assert np.abs(c[100:110, 135:185, :3] - BLUE).max() <= 2
    assert np.abs(c[100:110, 92:100, :3] - purple).max() <= 2
    # With the option off (agree=0) the region is split into its two hint colors only.
    s = compose(la, la.vote(hints), net, "shade", ComposeOptions(agree=0, strength=0)).rgba.astype(int)
    assert {tuple(p) for p in s[~ink][:, :3]} == {RED, BLUE}


def test_unhinted_region_takes_the_networks_median():
    lines, ink = two_rooms()
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 60, 30, RED)
    la = LineArt(lines)
    c = compose(la, la.vote(hints), network(RED, (30, 200, 200)), "snap").rgba
    right = ~ink & (np.arange(W) > 100)[None, :] & (np.arange(W) < W - 3)[None, :]
    assert (c[right][:, :3] == (30, 200, 200)).all()


def test_a_region_with_two_hint_colors_is_split_where_the_network_says():
    # The wall has an opening the gap closing cannot close: one region, two hint colors.
    lines, ink = two_rooms(gap_at=50)
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 20, 30, RED, w=30)
    stroke(hints, 20, 130, BLUE, w=30)
    la = LineArt(lines, gap=4)
    assert la.n == 1
    c = compose(la, la.vote(hints), network(RED, BLUE), "shade", ComposeOptions(strength=0)).rgba
    assert (c[100:110, 10:80, :3] == RED).all()
    assert (c[100:110, 115:185, :3] == BLUE).all()
    # Snapping gives the whole region one color.
    s = compose(la, la.vote(hints), network(RED, BLUE), "snap").rgba
    assert len(np.unique(s[~ink][:, :3], axis=0)) == 1


def test_two_layers_recompose_the_single_layer_result_with_grain_merge():
    lines, ink = two_rooms(gap_at=50)
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 20, 30, RED, w=30)
    stroke(hints, 20, 130, BLUE, w=30)
    hints[90:95, 40:60, :3], hints[90:95, 40:60, 3] = (250, 250, 0), 180      # a soft stroke
    la = LineArt(lines, gap=4)
    net = network(RED, BLUE, shade=60)
    for opts in (ComposeOptions(), ComposeOptions(strength=1, chroma=1, clamp=127, exact_hints=True)):
        c = compose(la, la.vote(hints), net, "shade", opts, layers=True)
        assert c.flats.shape == c.shading.shape == c.rgba.shape
        assert (c.shading[..., 3] == 255).all()
        back = grain_merge(c.flats, c.shading)
        assert np.abs(back.astype(int) - c.rgba.astype(int)).max() <= 1
        # The flats layer is flat: per 4x4 block at most the region's hint colors, no gradient.
        assert len(np.unique(c.flats[~ink][:, :3], axis=0)) <= 4
        alone = compose(la, la.vote(hints), net, "shade", opts)
        assert np.array_equal(alone.rgba, c.rgba)


def test_low_resolution_tables_keep_away_from_lines():
    lines, ink = two_rooms()
    la = LineArt(lines)
    t = low_tables(la, 32, 48)
    # A low-resolution pixel whose footprint holds ink is never "clean".
    assert not t["clean"][:, 23:25].any()
    assert t["clean"][10, 10] and t["lowlab"][10, 10] != t["lowlab"][10, 40]
    assert la.extra[("low", 32, 48)] is t                  # cached on the line art


def test_flats_engine_rerun_reuses_the_line_art_and_matches_compute_flats():
    lines, ink = two_rooms()
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 60, 30, RED)
    eng = Engines()
    r1 = eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="flats"))
    more = hints.copy()
    stroke(more, 60, 130, BLUE)
    r2 = eng.colorize(ColorizeRequest(lines=lines.copy(), hints=more, engine="flats"))
    assert eng.lineart.misses == 1 and eng.lineart.hits == 1
    assert np.array_equal(r1.rgba, compute_flats(lines, hints).rgba)
    assert np.array_equal(r2.rgba, compute_flats(lines, more).rgba)
    # A new gap is a new analysis.
    eng.colorize(ColorizeRequest(lines=lines, hints=more, engine="flats", gap=0))
    assert eng.lineart.misses == 2


def test_line_art_cache_keys_by_content_and_frees_old_entries():
    lines, _ = two_rooms()
    other, _ = two_rooms(gap_at=50)
    cache = LineArtCache(keep=1)
    a = cache.get(lines, None)
    assert cache.get(lines.copy(), None) is a
    assert digest(lines) != digest(other)
    b = cache.get(other, None)
    assert b is not a and len(cache._items) == 1


def test_layers_through_the_flats_engine_and_the_request_defaults():
    lines, _ = two_rooms()
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 60, 30, RED)
    r = Engines().colorize(ColorizeRequest(lines=lines, hints=hints, engine="flats", layers=True))
    assert [(n, b) for n, _, b in r.layers] == [("Flats", "normal")] and r.compose == "flats"
    req = ColorizeRequest(lines=lines)
    assert req.size is None and req.compose is None and req.layers is False


@pytest.mark.parametrize("n_side", [64])
def test_many_regions_need_no_per_region_histograms(n_side):
    """Thousands of tiny regions: every table is per region or per low-resolution pixel."""
    h = w = n_side * 8
    lines = np.zeros((h, w, 4), np.uint8)
    lines[::8, :, 3] = 255
    lines[:, ::8, 3] = 255
    la = LineArt(lines, gap=0)
    assert la.n >= n_side * n_side - 2 * n_side
    rng = np.random.default_rng(0)
    net = rng.uniform(0, 255, (64, 64, 3)).astype(np.float32)
    c = compose(la, la.vote(None), net, "shade")
    assert c.rgba.shape == (h, w, 4)
    # Every region is one flat color plus at most the clamped shading.
    lab = la.labels.ravel()
    g = c.rgba.reshape(-1, 4)[:, 0].astype(int)
    spread = np.bincount(lab, weights=g) / np.maximum(np.bincount(lab), 1)
    assert np.isfinite(spread).all()


def rings(h, w, seed=0, n=12):
    """Line art of `n` outlined circles (3-px rings) on a page of any size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    ink = np.zeros((h, w), bool)
    for _ in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(6, max(7, min(h, w) // 3))
        ink |= np.abs(np.hypot(yy - cy, xx - cx) - r) < 1.5
    lines = np.zeros((h, w, 4), np.uint8)
    lines[ink, 3] = 255
    return lines


@pytest.mark.parametrize("h,w,step", [(203, 157, 4), (128, 192, 4), (97, 61, 3), (50, 70, 1)])
def test_block_expansion_equals_the_per_pixel_composition(h, w, step, monkeypatch):
    """The field added once per block and broadcast, with the pixels of another label looked
    up one by one, gives exactly the per-pixel numbers (ragged edge blocks included)."""
    from krita_alac.engine import compose as C
    la = LineArt(rings(h, w))
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (la.n + 1, 4)).astype(np.uint8)
    palette[:, 3], palette[0] = 255, 0
    palette[1, :3] = 255                     # a white and a black region: clipping at both ends
    palette[2, :3] = 0
    qh, qw = -(-h // step), -(-w // step)
    field = rng.integers(-40, 41, (qh, qw, 3)).astype(np.int16)
    fix = C.block_fixups(la, step)
    assert fix is not None and fix[0].size < h * w / 4
    assert (fix[0].size > 0) == (step > 1)      # blocks of one pixel have nothing to look up
    for f in (field, None):
        want = C._add_field_pixels(la.labels, palette, f, step)
        assert np.array_equal(C._add_field(la, palette, f, step), want)
    if step == 1:
        return
    # A label map too busy for blocks (hatching): the per-pixel path, same numbers.
    monkeypatch.setattr(C, "_MAX_FIXUPS", 0.0)
    busy = LineArt(rings(h, w))
    assert C.block_fixups(busy, step) is None
    assert np.array_equal(C._add_field(busy, palette, field, step), C._add_field_pixels(busy.labels, palette, field,
                                                                                       step))


def test_cropped_hints_and_named_line_art_give_the_canvas_result():
    """Hints as the crop of their bounds (the worker's hints_rect) vote and feed the network
    exactly as the canvas-sized layer; a line art named by the caller is not hashed."""
    from krita_alac.engine.errors import UserError
    from krita_alac.engine.imaging import HintPixels, geometry, prepare_hints
    lines = rings(150, 230)
    hints = np.zeros((150, 230, 4), np.uint8)
    stroke(hints, 20, 30, RED)
    stroke(hints, 100, 150, BLUE, w=40)
    hints[60:64, 60:70] = (*GREEN, 100)                      # too faint to count
    crop = np.ascontiguousarray(hints[20:106, 30:190])
    full, part = HintPixels.find(hints), HintPixels.find(crop, (150, 230), (30, 20))
    assert np.array_equal(full.flat, part.flat) and np.array_equal(full.rgba, part.rgba)
    g = geometry(150, 230, 64)
    assert np.array_equal(prepare_hints(hints, g), prepare_hints(part, g))
    # Not C-contiguous (a view): the slower path, same pixels.
    assert np.array_equal(HintPixels.find(hints[20:106, 30:190], (150, 230), (30, 20)).flat, full.flat)
    eng = Engines()
    want = eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="flats")).rgba
    got = eng.colorize(ColorizeRequest(lines=lines, hints=crop, hints_origin=(30, 20), engine="flats",
                                       lines_key="page-1"))
    assert np.array_equal(got.rgba, want)
    assert eng.lineart.key(lines, "page-1") == ("named", "page-1", lines.shape)
    with pytest.raises(UserError, match="do not lie inside"):
        ColorizeRequest(lines=lines, hints=crop, hints_origin=(100, 20)).hint_pixels()


@pytest.mark.parametrize("h,w", [(23, 31), (32, 48)])
def test_low_resolution_clean_footprints_match_their_definition(h, w):
    """A low-resolution pixel is clean when its canvas footprint holds one region and no ink."""
    la = LineArt(rings(157, 203, seed=3))
    t = low_tables(la, h, w)
    ys = (np.arange(h + 1) * 157) // h
    xs = (np.arange(w + 1) * 203) // w
    for i in range(h):
        for j in range(w):
            lab = la.labels[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            ink = la.ink[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            assert t["clean"][i, j] == (lab.min() == lab.max() and not ink.any())


def test_split_blocks_pick_the_nearest_valid_hint_color_as_the_dense_formula():
    """The split regions' blocks only, candidate by candidate: the same shifts as the distance
    over all candidates at once and its argmin (first nearest; invalid ones never)."""
    from krita_alac.engine import compose as C
    la = LineArt(rings(150, 230, seed=5))
    rng = np.random.default_rng(2)
    n, k, step = la.n, 4, 4
    split = rng.random(n + 1) < 0.6
    split[0] = False
    cand = rng.integers(0, 6, (n + 1, k, 3)).astype(np.float32) * 50      # few values: ties happen
    valid = rng.random((n + 1, k)) < 0.7
    valid[1] = False                                                       # no valid candidate at all
    base = rng.uniform(-10, 265, (n + 1, 3)).astype(np.float32)
    net = rng.uniform(0, 255, (38, 58, 3)).astype(np.float32)
    idx, vals = C._split_field(la, net, base, split, cand, valid, step)
    ql = C.quarter_labels(la, step)
    inside = split[ql]
    netq = np.stack([C._upsample(net[..., c], ql.shape) for c in range(3)], -1)
    r = ql[inside]
    d = ((cand[r] - netq[inside][:, None, :]) ** 2).sum(2)
    d[~valid[r]] = np.inf
    want = np.zeros(ql.shape + (3,), np.float32)
    want[inside] = cand[r, d.argmin(1)] - np.clip(np.round(base[r]), 0, 255)
    assert np.array_equal(idx, np.flatnonzero(inside))
    assert np.array_equal(C._dense((idx, vals), ql.shape), want)


def test_bounding_box_centres_of_small_regions_as_find_objects():
    from scipy import ndimage as ndi
    from krita_alac.engine.compose import _box_centres
    lines = rings(140, 190, seed=7, n=20)
    lines[::9, ::7, 3] = 255                   # dots: tiny regions between them too
    la = LineArt(lines, gap=0)
    want = np.array([((s[0].start + s[0].stop - 1) / 2, (s[1].start + s[1].stop - 1) / 2)
                     for s in ndi.find_objects(la.labels, max_label=la.n)])
    some = np.array([3, 1, la.n, 7])
    assert np.array_equal(_box_centres(la, some), want[some - 1])
    every = np.arange(1, la.n + 1)
    assert np.array_equal(_box_centres(la, every), want)          # the rest added to the cache


def test_bgra_composition_is_the_rgba_one_with_red_and_blue_exchanged():
    """Asked for Krita's byte order, the composition reorders its palette and shifts only:
    every image (result, Flats, Shading) is the RGBA one with red and blue exchanged."""
    lines, ink = two_rooms(gap_at=50)
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 20, 30, RED, w=30)
    stroke(hints, 20, 130, BLUE, w=30)
    hints[90:95, 40:60, :3], hints[90:95, 40:60, 3] = (250, 250, 0), 180
    la = LineArt(lines, gap=4)
    net = network(RED, BLUE, shade=60)
    swap = lambda a: a[..., [2, 1, 0, 3]]  # noqa: E731
    for mode, opts in (("shade", ComposeOptions()), ("shade", ComposeOptions(strength=1, chroma=1, exact_hints=True)),
                       ("snap", None)):
        want = compose(la, la.vote(hints), net, mode, opts, layers=True)
        got = compose(la, la.vote(hints), net, mode, opts, layers=True, bgra=True)
        for w_, g_ in ((want.rgba, got.rgba), (want.flats, got.flats), (want.shading, got.shading)):
            assert np.array_equal(swap(w_), g_)
    eng = Engines()
    r = eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="flats"))
    b = eng.colorize(ColorizeRequest(lines=lines, hints=hints, engine="flats", channel_order="BGRA"))
    assert r.channel_order == "RGBA" and b.channel_order == "BGRA" and np.array_equal(swap(r.rgba), b.rgba)


def test_an_open_background_keeps_the_networks_colors_around_a_stroke_it_kept_local():
    """A dark stroke beside a drawing, on the page's open background: the network paints it as a
    local shadow and keeps the page paper-white, so the page stays white (hintauc's scribble of an
    outline's own color, or a cast shadow, would otherwise flood the whole page).  With a frame
    along the canvas edge the same background is closed: the stroke fills it, as every stroke
    wholly inside a closed region does."""
    yy, xx = np.mgrid[:H, :W]
    ring = np.abs(np.hypot(yy - 64, xx - 70) - 30) < 2
    DARK, WHITE = (40, 40, 40), (255, 255, 255)
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 100, 140, DARK, h=6, w=24)         # on the background, right of the ring
    stroke(hints, 60, 62, RED, h=6, w=16)            # inside the ring
    net = np.full((32, 48, 3), 255, np.float32)      # working size: a quarter of the page
    net[(np.hypot(np.mgrid[:32, :48][0] * 4 + 2 - 64, np.mgrid[:32, :48][1] * 4 + 2 - 70) < 28)] = RED
    net[24:27, 34:41] = DARK                         # the network's shadow where the stroke lies
    far = (np.hypot(yy - 64, xx - 70) > 36) & ((yy < 90) | (xx < 120))   # the page away from the stroke
    inside = np.hypot(yy - 64, xx - 70) < 26
    for framed in (False, True):
        ink = ring.copy()
        if framed:
            ink[:2], ink[-2:], ink[:, :2], ink[:, -2:] = True, True, True, True
        lines = np.zeros((H, W, 4), np.uint8)
        lines[ink] = (0, 0, 0, 255)
        la = LineArt(lines, gap=0)
        assert la.open_regions()[la.labels[10, 10]] == (not framed)
        assert not la.open_regions()[la.labels[64, 70]]
        c = compose(la, la.vote(hints), net, "shade").rgba.astype(int)
        assert (c[inside][:, :3] == RED).all()
        page = np.median(c[far & ~ink][:, :3], axis=0)
        if framed:
            assert page.tolist() == list(DARK)           # a closed region: the stroke's color
        else:
            assert page.tolist() == list(WHITE)          # the network's page
            assert c[101:105, 142:162, :3].max() < 160      # the network's shadow shows at the stroke
            # Off (open_area=inf), or a region under the area share: the stroke floods the page.
            for o in (ComposeOptions(open_area=float("inf")), ComposeOptions(open_area=0.99)):
                k = compose(la, la.vote(hints), net, "shade", o).rgba.astype(int)
                assert np.median(k[far & ~ink][:, :3], axis=0).tolist() == list(DARK)
            # A network that paints the open region in a color, not paper (a full-bleed picture
            # cropped by the canvas: a sky, a flag), leaves the stroke's fill alone.
            sky = np.where(net == 255, np.float32([150, 190, 240]), net)
            k = compose(la, la.vote(hints), sky, "shade").rgba.astype(int)
            assert np.median(k[far & ~ink][:, :3], axis=0).tolist() == list(DARK)


def test_a_gap_sealed_near_the_canvas_edge_does_not_open_the_region():
    """A ring 3-5 px from the left edge with a 5-px break facing it: gap closing (10 px) seals
    the break, so the inside is closed though its label may grow to the edge through the break."""
    yy, xx = np.mgrid[:H, :W]
    ink = (np.abs(np.hypot(yy - 64, xx - 44) - 40) < 1.0) | ((xx >= 3) & (xx <= 5) & (np.abs(yy - 64) <= 30))
    ink &= ~((xx < 8) & (np.abs(yy - 64) <= 2))      # the break, facing the edge
    lines = np.zeros((H, W, 4), np.uint8)
    lines[ink] = (0, 0, 0, 255)
    la = LineArt(lines, gap=10)
    inside, outside = la.labels[64, 44], la.labels[10, 150]
    assert inside != outside
    assert not la.open_regions()[inside] and la.open_regions()[outside]
    assert not la.open_regions()[0]
    # Without gap closing the break joins them: one open region.
    la0 = LineArt(lines, gap=0)
    assert la0.labels[64, 44] == la0.labels[10, 150] and la0.open_regions()[la0.labels[64, 44]]


def test_unhinted_regions_hue_and_clamp_options():
    """unhinted_clamp bounds the shift in regions without a hint only; unhinted_chroma keeps the
    network's hue there (0: light and dark only)."""
    lines, ink = two_rooms()
    hints = np.zeros((H, W, 4), np.uint8)
    stroke(hints, 60, 30, RED)                        # the left room hinted, the right one not
    la = LineArt(lines)
    net = network(GRAY, GRAY, shade=40)
    net[16:, 24:] += np.float32([60, -30, -30])       # a reddish lower half on the right
    net = np.clip(net, 0, 255)
    xs = np.arange(W)[None, :]
    right = ~ink & (xs >= 100) & (xs < W - 3)
    left = ~ink & (xs >= 3) & (xs < 93)
    base = dict(strength=1.0, unhinted=1.0, clamp=100.0, sigma=0.5, reject=0, agree=0)

    def shift(opts, mask):
        c = compose(la, la.vote(hints), net, "shade", opts).rgba[..., :3].astype(int)
        return c[mask] - np.median(c[mask], axis=0)

    wide = shift(ComposeOptions(**base), right)
    tight = shift(ComposeOptions(**base, unhinted_clamp=5.0), right)
    assert np.abs(wide).max() > 20 and np.abs(tight).max() <= 10   # clamped around the flat color
    assert np.abs(shift(ComposeOptions(**base, unhinted_clamp=5.0), left)).max() > 20   # hinted: not
    # Light and dark only: the three channels move together; with the hue they do not.
    grey = shift(ComposeOptions(**base, chroma=0.0), right)
    hue = shift(ComposeOptions(**base, chroma=0.0, unhinted_chroma=1.0), right)
    assert np.abs(grey - grey.mean(1, keepdims=True)).max() <= 3
    assert np.abs(hue - hue.mean(1, keepdims=True)).max() > 20
