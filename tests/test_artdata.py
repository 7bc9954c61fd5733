"""artdata: artist-like hint strokes, and the data filter's pieces."""
import numpy as np
from scipy import ndimage as ndi

from artdata.strokes import artist_hints, artist_strokes, color_regions, line_regions, render


def cartoon(seed=0, size=160):
    """Flat colored blobs with 2-px black outlines on white, and the outline mask."""
    rng = np.random.default_rng(seed)
    a = np.full((size, size, 3), 255, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    ink = np.zeros((size, size), bool)
    for _ in range(5):
        cy, cx = rng.integers(25, size - 25, 2)
        r = int(rng.integers(12, 30))
        d = np.hypot(yy - cy, xx - cx)
        a[d < r] = rng.integers(0, 230, 3)
        ink &= ~(d < r)
        ink |= np.abs(d - r) < 1.2
    a[ink] = 0
    return a, ink


def test_deterministic_for_a_seed_and_different_across_seeds():
    rgb, ink = cartoon(1)
    lab = line_regions(np.where(ink, 0, 255).astype(np.uint8))
    a = artist_hints(rgb, np.random.default_rng(7), labels=lab, amount=0.6)
    b = artist_hints(rgb, np.random.default_rng(7), labels=lab, amount=0.6)
    c = artist_hints(rgb, np.random.default_rng(8), labels=lab, amount=0.6)
    assert a.shape == (160, 160, 4) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (a[..., 3] > 0).any() and set(np.unique(a[..., 3])) <= {0, 255}


def test_colors_widths_and_regions_follow_the_rule():
    touched = 0
    for seed in range(12):
        rgb, ink = cartoon(seed)
        lab = line_regions(np.where(ink, 0, 255).astype(np.uint8))
        strokes = artist_strokes(rgb, np.random.default_rng(seed), labels=lab, amount=1.0, p_touch=0.5)
        assert strokes
        for s in strokes:
            assert 3 <= s.width <= 12
            inside = lab == s.region
            assert tuple(np.median(rgb[inside], axis=0).astype(int)) == s.color   # the region's color
            one = render([s], lab, rgb.shape)
            painted = one[..., 3] > 0
            assert painted.any()
            assert (one[painted, :3] == np.array(s.color)).all()
            if s.touch:
                assert (inside | (lab == 0))[painted].all()                     # onto lines, never a neighbour
                touched += (painted & (lab == 0)).any()
            else:
                assert inside[painted].all()                                    # stays in its region
            # Pen width: every painted pixel is within width/2 of the path, and (unclipped)
            # the whole pen disc around every path point is painted.
            free = np.ones(painted.shape, bool)
            free[s.points[:, 0], s.points[:, 1]] = False
            reach = ndi.distance_transform_edt(free)
            assert (reach[painted] <= s.width / 2).all()
            if not s.touch:
                assert painted[reach <= s.width / 2].all()
    assert touched > 0                                                          # the touching case happens


def test_amount_is_a_ratio_of_regions_with_unhinted_neighbours():
    rgb, ink = cartoon(3)
    lab = line_regions(np.where(ink, 0, 255).astype(np.uint8))
    assert not artist_hints(rgb, np.random.default_rng(0), labels=lab, amount=0.0)[..., 3].any()
    n_regions = [len({s.region for s in artist_strokes(rgb, np.random.default_rng(k), labels=lab, amount=a)})
                 for a in (0.2, 0.5, 1.0) for k in range(5)]
    few, half, all_ = (np.mean(n_regions[i * 5:(i + 1) * 5]) for i in range(3))
    assert few < half < all_
    eligible = [r for r in range(1, lab.max() + 1)
                if (lab == r).sum() >= 16 and ndi.distance_transform_edt(np.pad(lab == r, 1)).max() >= 2]
    assert all_ == len(eligible)


def test_color_regions_split_flat_colors_and_skip_ink():
    rgb, ink = cartoon(2)
    lab = color_regions(rgb, ink)
    assert (lab[ink] == 0).all()
    for r in range(1, lab.max() + 1):
        px = rgb[lab == r]
        assert (px.max(axis=0) - px.min(axis=0) < 24).all()                  # one flat color per region


def test_float_targets_give_the_same_hints_as_uint8():
    rgb, ink = cartoon(4)
    lab = line_regions(np.where(ink, 0, 255).astype(np.uint8))
    a = artist_hints(rgb, np.random.default_rng(1), labels=lab)
    b = artist_hints(rgb.astype(np.float32) / 255, np.random.default_rng(1), labels=lab)
    assert np.array_equal(a, b)


def test_wide_drawings_are_cut_into_near_square_pieces():
    from artdata.build import judge, pieces
    ps = list(pieces(100, 460))
    assert len(ps) == 4 and ps[0][:2] == (0, 100) and ps[-1][3] == 460
    assert all((x1 - x0) <= 1.4 * 100 for _, _, x0, x1 in ps)
    assert judge(np.full((64, 64, 3), 255, np.uint8)) == "blank"
    gray = np.full((64, 64, 3), 128, np.uint8)
    assert judge(gray) == "gray"
    gray[:16, :16] = (200, 30, 30)                                            # a colored detail is enough
    assert judge(gray) is None
