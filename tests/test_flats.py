"""Flats engine on synthetic line art with known regions."""
import numpy as np
import pytest

from krita_alac.engine.errors import UserError
from krita_alac.engine.flats import compute_flats, dilate_disk, estimate_line_width

RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 40), (30, 40, 220), (240, 220, 0)


def canvas(h=200, w=300):
    return np.zeros((h, w, 4), np.uint8)


def draw_ink(lines, mask, paper=False):
    if paper:
        lines[...] = 255
        lines[mask, :3] = 0
    else:
        lines[mask] = (0, 0, 0, 255)
    return lines


def box_lines(h=200, w=300, width=3, paper=False, gap=0, gap_at=100):
    """A frame split in two by a vertical line at x=150, optionally with a gap."""
    yy, xx = np.mgrid[:h, :w]
    ink = (xx < width) | (xx >= w - width) | (yy < width) | (yy >= h - width)
    wall = (xx >= 150 - width // 2) & (xx < 150 - width // 2 + width)
    if gap:
        wall &= ~((yy >= gap_at) & (yy < gap_at + gap))
    return draw_ink(canvas(h, w), ink | wall, paper), ink | wall


def stroke(hints, y, x, color, h=6, w=30, alpha=255):
    hints[y:y + h, x:x + w, :3] = color
    hints[y:y + h, x:x + w, 3] = alpha


@pytest.mark.parametrize("paper", [False, True])
def test_each_hinted_region_gets_exactly_its_color(paper):
    lines, ink = box_lines(paper=paper)
    hints = canvas()
    stroke(hints, 50, 40, RED)
    stroke(hints, 120, 200, BLUE)
    f = compute_flats(lines, hints, gap=4)
    left = (~ink) & (np.mgrid[:200, :300][1] < 148)
    right = (~ink) & (np.mgrid[:200, :300][1] > 152)
    assert (f.rgba[left] == (*RED, 255)).all()
    assert (f.rgba[right] == (*BLUE, 255)).all()
    assert f.labels.min() >= 1 and len(np.unique(f.labels)) == 2


def test_every_line_pixel_is_covered_with_the_nearest_region():
    lines, ink = box_lines(width=5)
    hints = canvas()
    stroke(hints, 50, 40, RED)
    stroke(hints, 120, 200, BLUE)
    f = compute_flats(lines, hints, gap=4)
    assert (f.rgba[..., 3] == 255).all()
    # The wall is 5 px (x 148..152): its left part is red, its right part blue.
    assert tuple(f.rgba[100, 148, :3]) == RED and tuple(f.rgba[100, 152, :3]) == BLUE
    assert tuple(f.rgba[0, 0, :3]) == RED and tuple(f.rgba[199, 299, :3]) == BLUE


@pytest.mark.parametrize("gap,closed", [(3, True), (6, True), (7, False), (12, False)])
def test_gaps_up_to_n_pixels_close_and_wider_ones_do_not(gap, closed):
    lines, ink = box_lines(gap=gap)
    hints = canvas()
    stroke(hints, 50, 40, RED)  # only the left side is hinted
    f = compute_flats(lines, hints, gap=6, fill="none")
    right = f.rgba[150:190, 200:290]
    if closed:
        assert (right[..., 3] == 0).all()      # the right box stays its own, unhinted region
        assert len(np.unique(f.labels)) == 2
    else:
        assert (right == (*RED, 255)).all()    # color flows through the opening
        assert len(np.unique(f.labels)) == 1


def test_gap_pixels_are_shared_between_the_two_sides():
    lines, _ = box_lines(gap=5)
    hints = canvas()
    stroke(hints, 50, 40, RED)
    stroke(hints, 120, 200, BLUE)
    f = compute_flats(lines, hints, gap=6)
    row = f.rgba[102, 140:160, :3]
    colors = {tuple(c) for c in row}
    assert colors == {RED, BLUE}


def test_fill_nearest_and_none():
    h, w = 120, 330
    yy, xx = np.mgrid[:h, :w]
    ink = (xx < 2) | (xx >= w - 2) | (yy < 2) | (yy >= h - 2) | (np.abs(xx - 110) < 2) | (np.abs(xx - 220) < 2)
    lines = draw_ink(canvas(h, w), ink)
    hints = canvas(h, w)
    stroke(hints, 50, 20, GREEN)
    stroke(hints, 50, 240, YELLOW)
    f = compute_flats(lines, hints, gap=3)
    # The middle box touches both hinted boxes: it takes one of them (the longest shared border; tie -> stable).
    assert tuple(f.rgba[60, 165, :3]) in (GREEN, YELLOW) and f.rgba[60, 165, 3] == 255
    n = compute_flats(lines, hints, gap=3, fill="none")
    assert n.rgba[60, 165, 3] == 0 and tuple(n.rgba[60, 50, :3]) == GREEN
    assert not n.hinted[n.labels[60, 165]]


def test_nearest_follows_the_region_graph():
    # Four boxes in a row; only the first is hinted: all take its color.
    h, w = 80, 410
    yy, xx = np.mgrid[:h, :w]
    ink = (xx < 2) | (xx >= w - 2) | (yy < 2) | (yy >= h - 2)
    for x in (100, 200, 300):
        ink |= np.abs(xx - x) < 2
    f = compute_flats(draw_ink(canvas(h, w), ink), _hint_at(h, w, 40, 20, RED), gap=3)
    assert (f.rgba[~ink][:, :3] == RED).all()


def _hint_at(h, w, y, x, color):
    hints = canvas(h, w)
    stroke(hints, y, x, color)
    return hints


def test_dominant_hint_wins_and_soft_edges_vote_together():
    lines, _ = box_lines()
    hints = canvas()
    stroke(hints, 40, 30, RED, w=60)
    stroke(hints, 100, 30, BLUE, w=10)              # smaller stroke in the same region
    hints[47, 30:90, :3] = (228, 22, 18)            # soft edge of the red stroke, slightly off
    hints[47, 30:90, 3] = 200
    stroke(hints, 150, 200, GREEN)
    f = compute_flats(lines, hints, gap=4)
    got = tuple(int(v) for v in f.rgba[60, 60, :3])
    assert all(abs(a - b) <= 2 for a, b in zip(got, RED))


def test_model_fill_takes_region_median():
    lines, ink = box_lines()
    model = np.zeros((200, 300, 3), np.uint8)
    model[:, :150] = (10, 100, 200)
    model[:, 150:] = (200, 100, 10)
    model[60:70, 60:70] = (255, 255, 255)           # noise that the median ignores
    hints = canvas()
    stroke(hints, 120, 200, GREEN)                   # a hint overrides the model
    f = compute_flats(lines, hints, gap=4, fill="model", model_rgb=model)
    assert tuple(f.rgba[100, 50, :3]) == (10, 100, 200)
    assert tuple(f.rgba[100, 250, :3]) == GREEN
    # Without hints the model alone colors every region.
    g = compute_flats(lines, None, gap=4, fill="model", model_rgb=model)
    assert tuple(g.rgba[100, 250, :3]) == (200, 100, 10)


def test_small_closed_pockets_become_their_own_regions():
    h, w = 100, 100
    yy, xx = np.mgrid[:h, :w]
    ink = (xx < 2) | (xx >= w - 2) | (yy < 2) | (yy >= h - 2)
    ring = np.abs(np.hypot(xx - 50, yy - 50) - 4) < 1.2     # a tiny closed circle, inside < gap
    lines = draw_ink(canvas(h, w), ink | ring)
    hints = canvas(h, w)
    stroke(hints, 10, 10, RED)
    f = compute_flats(lines, hints, gap=10, fill="none")
    assert f.labels[50, 50] != f.labels[20, 20]
    assert f.rgba[50, 50, 3] == 0 and tuple(f.rgba[20, 20, :3]) == RED


def test_anti_aliased_lines_leave_no_halo():
    from PIL import Image, ImageDraw
    im = Image.new("L", (400, 200), 0)
    d = ImageDraw.Draw(im)
    d.ellipse((50, 30, 350, 170), outline=255, width=3)
    small = np.asarray(im.resize((200, 100), Image.Resampling.LANCZOS))   # soft, anti-aliased edges
    lines = canvas(100, 200)
    lines[..., 3] = small
    hints = canvas(100, 200)
    stroke(hints, 45, 90, RED, w=20)
    stroke(hints, 5, 5, BLUE, w=10, h=4)
    f = compute_flats(lines, hints)
    assert (f.rgba[..., 3] == 255).all()
    # Every pixel is either red or blue: no white or blended fringe next to the line.
    colors = {tuple(c) for c in f.rgba[..., :3].reshape(-1, 3)}
    assert colors == {RED, BLUE}


def test_bad_inputs():
    lines, _ = box_lines()
    with pytest.raises(UserError, match="hints are 100x50 but the line art is 300x200"):
        compute_flats(lines, canvas(50, 100))
    with pytest.raises(UserError, match="no hints"):
        compute_flats(lines, canvas())
    with pytest.raises(UserError, match="no hints"):
        compute_flats(lines, None)
    black = np.zeros((50, 50, 4), np.uint8)
    black[..., 3] = 255
    with pytest.raises(UserError, match="solid ink"):
        compute_flats(black, _hint_at(50, 50, 5, 5, RED))
    with pytest.raises(UserError, match="unknown fill mode"):
        compute_flats(lines, canvas(), fill="blur")
    with pytest.raises(UserError, match="RGBA 8-bit"):
        compute_flats(lines[..., :3], None)


def test_blank_line_art_is_one_region_with_a_warning():
    white = np.full((60, 80, 4), 255, np.uint8)
    f = compute_flats(white, _hint_at(60, 80, 10, 10, GREEN))
    assert (f.rgba == (*GREEN, 255)).all()
    assert f.warnings == ["the line art has no lines: the whole canvas is one region"]


def test_dilate_disk_is_an_exact_disk():
    m = np.zeros((21, 21), bool)
    m[10, 10] = True
    d = dilate_disk(m, 4.0)
    yy, xx = np.mgrid[:21, :21]
    assert np.array_equal(d, (yy - 10) ** 2 + (xx - 10) ** 2 <= 16)


def test_line_width_estimate_and_default_gap():
    _, ink = box_lines(width=4)
    assert 3.5 <= estimate_line_width(ink) <= 4.5
    lines, _ = box_lines(width=4)
    f = compute_flats(lines, _hint_at(200, 300, 50, 40, RED))
    assert f.gap == 6.0


def test_banded_luminance_and_ink_from_it_equal_the_whole_array_formulas():
    """luminance() works a band of rows at a time and the ink comes from the luminance the
    network's sketch already needed: the very same float32 values and ink pixels."""
    from krita_alac.engine.flats import INK_THRESHOLD, LineArt, ink_mask
    from krita_alac.engine.imaging import LUMA, line_darkness, luminance

    def whole(rgba):
        k = (LUMA / 255.0).astype(np.float32)
        lum = rgba[..., 0] * k[0]
        lum += rgba[..., 1] * k[1]
        lum += rgba[..., 2] * k[2]
        if rgba[..., 3].min() < 255:
            lum -= 1.0
            lum *= rgba[..., 3] * np.float32(1 / 255.0)
            lum += 1.0
        return lum

    rng = np.random.default_rng(0)
    # Every gray level under every alpha, then random colors (several bands, a ragged last one).
    g, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    every = np.stack([g, g, g, a], -1).astype(np.uint8)
    colors = rng.integers(0, 256, (150, 97, 4), dtype=np.uint8)
    opaque = colors.copy()
    opaque[..., 3] = 255
    for img in (every, colors, opaque, colors[::2, ::3]):
        lum = luminance(img)
        assert lum.dtype == np.float32 and np.array_equal(lum, whole(img))
        assert np.array_equal(ink_mask(lum), line_darkness(img) >= INK_THRESHOLD)
    lines = np.zeros((60, 80, 4), np.uint8)
    lines[:, 39:41] = (0, 0, 0, 200)
    assert np.array_equal(LineArt(lines, ink=ink_mask(luminance(lines))).labels, LineArt(lines).labels)


def test_few_pixels_are_labelled_as_ndimage_labels_them():
    """Pocket pixels are labelled from their flat indices alone: the same components, in the
    same raster order, as a scipy.ndimage.label pass (random masks and a long snake)."""
    from scipy import ndimage as ndi
    from krita_alac.engine.flats import label_pixels
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(100):
        h, w = rng.integers(1, 30), rng.integers(1, 40)
        masks.append(rng.random((h, w)) < rng.uniform(0.02, 0.9))     # rows touch end to start
    snake = np.zeros((60, 41), bool)
    snake[::2, :40] = True
    for r in range(1, 60, 2):
        snake[r, 39 if r % 4 == 1 else 0] = True
    masks.append(snake)
    for m in masks:
        idx = np.flatnonzero(m)
        if idx.size:
            lab, n = ndi.label(m)
            got, k = label_pixels(idx, m.shape[1])
            assert k == n and np.array_equal(got, lab.ravel()[idx])
    assert label_pixels(np.flatnonzero(snake), 41)[1] == 1


def _regions_padded(ink, gap):
    """The label map as a padded array spells it out (the border of 0 stands for off the page):
    seeds beyond gap / 2 of the ink, grown through the free pixels, pockets labelled on their
    own, then grown under the ink (at most 48 steps)."""
    from scipy import ndimage as ndi
    h, w = ink.shape
    free = ~ink
    seeds = free & ~dilate_disk(ink, gap / 2.0) if gap > 0 else free
    lab, n = ndi.label(seeds)
    pad = np.zeros((h + 2, w + 2), np.int32)
    pad[1:-1, 1:-1] = lab
    flat = pad.ravel()

    def grow(mask, steps):
        m = np.zeros(pad.shape, bool)
        m[1:-1, 1:-1] = mask
        todo = np.flatnonzero(m)
        for _ in range(steps):
            best = np.max([flat[todo + o] for o in (1, -1, w + 2, -w - 2)], 0) if todo.size else todo
            if not (best > 0).any():
                break
            flat[todo[best > 0]] = best[best > 0]
            todo = todo[best == 0]
        return todo

    left = grow(free & ~seeds, 1 << 30)
    if left.size:
        pocket = np.zeros(pad.shape, bool)
        pocket.ravel()[left] = True
        plab, pn = ndi.label(pocket)
        flat[left] = plab.ravel()[left] + n
        n += pn
    grow(pad[1:-1, 1:-1] == 0, 48)
    return pad[1:-1, 1:-1], n


@pytest.mark.parametrize("gap", [None, 0, 9])
def test_line_art_regions_equal_the_padded_formulation(gap):
    """LineArt grows its regions on the page itself (neighbours off the page never count) and
    fills under the ink in place: the same label map as the padded formulation, with ink
    and pockets at the page's edges."""
    from krita_alac.engine.flats import LineArt, default_gap, fill_under_lines, segment
    rng = np.random.default_rng(4)
    lines = np.zeros((120, 170, 4), np.uint8)
    yy, xx = np.mgrid[:120, :170]
    for _ in range(9):
        cy, cx, r = rng.integers(0, 120), rng.integers(0, 170), rng.integers(4, 40)
        lines[np.abs(np.hypot(yy - cy, xx - cx) - r) < 1.5, 3] = 255
    lines[50:80, 20:60, 3] = 255                                       # a solid blob of ink
    lines[:, 164:166, 3] = lines[5:7, :, 3] = 255                      # narrow strips along two edges
    la = LineArt(lines, gap)
    g = default_gap(la.ink) if gap is None else gap
    want, n = _regions_padded(la.ink, g)
    assert la.n == n and np.array_equal(la.labels, want)
    assert la.labels.flags.c_contiguous and (la.labels > 0).all()
    labels, n2 = segment(la.ink, g)
    assert n2 == n and np.array_equal(fill_under_lines(labels), want)
