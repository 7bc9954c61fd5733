"""The new training sample mixture: exact vector line art and artist-stroke hints."""
import numpy as np

from training import synth
from training.synth import MIXTURE, artist_hint_grid, line_art, random_views, region_views, sample


def flat_drawing(size=128):
    a = np.full((size, size, 3), 255, np.uint8)
    lines = np.full((size, size), 255, np.uint8)
    a[10:60, 10:100] = (200, 40, 40)
    a[70:120, 30:110] = (40, 90, 210)
    for y0, y1, x0, x1 in ((10, 60, 10, 100), (70, 120, 30, 110)):
        for img in (a, lines[..., None]):
            img[y0:y0 + 2, x0:x1] = 0
            img[y1 - 2:y1, x0:x1] = 0
            img[y0:y1, x0:x0 + 2] = 0
            img[y0:y1, x1 - 2:x1] = 0
    return a, lines


def test_mixture_is_a_distribution_with_every_kind():
    assert abs(sum(p for _, p in MIXTURE) - 1) < 1e-9
    assert {k for k, _ in MIXTURE} == {"none", "artist", "region", "dots"}
    kinds = [synth._kind(np.random.default_rng(i), True) for i in range(2000)]
    for k, p in MIXTURE:
        assert abs(kinds.count(k) / 2000 - p) < 0.04
    assert "region" not in {synth._kind(np.random.default_rng(i), False) for i in range(300)}


def test_exact_lines_follow_the_crop_and_replace_xdog():
    img, lines = flat_drawing()
    rgb, ln = random_views(img, 64, np.random.default_rng(4), lines)
    rgb2 = random_views(img, 64, np.random.default_rng(4))[0]
    assert np.array_equal(rgb, rgb2)                                   # the same view with or without lines
    assert ln.shape == (64, 64)
    # The crop of the lines matches the crop of the drawing: ink where the drawing is black.
    dark = rgb.max(axis=2) < 0.2
    assert (ln[dark] < 128).mean() > 0.9
    sk = line_art(rgb, np.random.default_rng(0), exact=ln)
    assert sk.shape == (64, 64) and ((sk < 0) == (ln < 128)).mean() > 0.9
    # Region crops (no rescale) carry the lines too.
    rank = np.zeros((64, 64), np.uint16)
    scribble = np.zeros((64, 64), bool)
    a, _, l2 = region_views(np.pad(img, ((64, 64), (64, 64), (0, 0)), constant_values=255), rank, scribble, 64,
                            np.random.default_rng(1), np.pad(lines, 64, constant_values=255))
    assert l2.shape == (64, 64) and (l2[a.max(axis=2) < 0.2] < 128).mean() > 0.9


def test_artist_hints_on_the_grid_have_their_regions_colors():
    img, lines = flat_drawing(128)
    rgb = img.astype(np.float32) / 255
    sk = line_art(rgb, np.random.default_rng(0), exact=lines)
    found, pure = 0, 0
    for seed in range(20):
        h = artist_hint_grid(rgb, sk, np.random.default_rng(seed))
        assert h.shape == (4, 32, 32)
        on = h[3] > 0
        found += on.sum()
        cols = (h[:3, on].T + 1) / 2 * 255
        # A hinted cell is one region's color (white paper included); a cell on a line
        # between two hinted regions is their mix, as the engine averages hint pixels.
        palette = np.array([(200, 40, 40), (40, 90, 210), (255, 255, 255)], np.float32)
        d = np.abs(cols[:, None] - palette[None]).max(axis=2).min(axis=1)
        pure += (d < 1.0).sum()
    assert found > 0 and pure > 0.95 * found


def test_samples_use_exact_lines_for_about_half():
    img, lines = flat_drawing(128)
    lines[63:67] = 0          # a line only the exact line art has, across white paper
    exact = 0
    for i in range(60):
        s, h, t = sample(img, 64, np.random.default_rng(i), None, lines)
        assert s.shape == (1, 64, 64) and h.shape == (4, 16, 16) and t.shape == (3, 64, 64)
        paper = t.min(axis=0) > 0.95
        exact += (s[0][paper] < 0).sum() > 20       # XDoG finds no lines in plain paper
    assert 15 < exact < 45
