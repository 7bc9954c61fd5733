"""Classical line extraction (XDoG)."""
import numpy as np
import pytest
from PIL import Image

from krita_alac.engine.cli import main
from krita_alac.engine.errors import UserError
from krita_alac.engine.lines import extract_lines


def shapes(h=200, w=300):
    a = np.full((h, w, 4), 255, np.uint8)
    a[50:150, 40:140, :3] = (200, 30, 30)        # red square
    yy, xx = np.mgrid[:h, :w]
    a[np.hypot(xx - 220, yy - 100) < 50, :3] = (20, 40, 160)  # blue disk
    return a, yy, xx


def test_xdog_outlines_synthetic_shapes():
    a, yy, xx = shapes()
    ink = extract_lines(a)[..., 3] >= 128
    # Lines sit on the shapes' borders ...
    assert ink[100, 37:44].any() and ink[100, 137:144].any() and ink[47:54, 90].any()
    r = np.hypot(xx - 220, yy - 100)
    # Every direction from the disk's centre crosses a line near radius 50.
    t = np.linspace(0, 2 * np.pi, 360, endpoint=False)[:, None]
    rad = np.arange(46, 55)[None, :]
    ys, xs = np.round(100 + rad * np.sin(t)).astype(int), np.round(220 + rad * np.cos(t)).astype(int)
    assert ink[ys, xs].any(axis=1).all()
    # ... and nowhere else: flat interiors and the paper stay empty.
    far = ~(np.abs(r - 50) <= 4)
    far &= ~((xx >= 36) & (xx <= 144) & (yy >= 46) & (yy <= 154) & ~((xx >= 44) & (xx <= 136) & (yy >= 54) & (yy <= 146)))
    assert ink[far].mean() < 0.002
    assert not ink[90:110, 80:100].any() and not ink[90:110, 210:230].any()


def test_line_thickness_grows_and_output_modes():
    a, _, _ = shapes()
    thin = (extract_lines(a, thickness=1.0)[..., 3] >= 128).sum()
    thick = (extract_lines(a, thickness=2.5)[..., 3] >= 128).sum()
    assert thick > 1.5 * thin
    white = extract_lines(a, transparent=False)
    assert (white[..., 3] == 255).all() and white[5, 5, 0] == 255 and white[100, 40, 0] < 128


def test_bad_inputs():
    a, _, _ = shapes()
    with pytest.raises(UserError, match="unknown line extraction method 'canny'"):
        extract_lines(a, "canny")
    with pytest.raises(UserError, match="thickness must be between 0 and 20"):
        extract_lines(a, thickness=0)
    with pytest.raises(UserError, match="too small"):
        extract_lines(a[:2, :2])


def test_lines_command(tmp_path, capsys):
    a, _, _ = shapes()
    Image.fromarray(a).save(tmp_path / "pic.png")
    assert main(["lines", str(tmp_path / "pic.png"), "-o", str(tmp_path / "l.png")]) == 0
    out = np.array(Image.open(tmp_path / "l.png"))
    assert out.shape == (200, 300, 4) and (out[..., :3] == 0).all() and out[100, 40, 3] > 128
    assert main(["lines", str(tmp_path / "none.png"), "-o", str(tmp_path / "l.png")]) == 1
    assert capsys.readouterr().err.strip() == f"krita-alac: error: picture not found: {tmp_path / 'none.png'}"


def test_line_precision_recall_with_tolerance():
    from bench.lines_quality import score
    true = np.zeros((50, 50), bool)
    true[25, 5:45] = True
    shifted = np.roll(true, 2, axis=0)            # 2 px off: within tolerance 2
    assert score(shifted, true, 2.0) == (1.0, 1.0)
    assert score(np.roll(true, 3, axis=0), true, 2.0) == (0.0, 0.0)
    half = true.copy()
    half[25, 25:] = False                         # finds half the line, nothing false
    p, r = score(half, true, 1.0)
    assert p == 1.0 and abs(r - 0.5) < 0.05


def test_xdog_sees_edges_between_colors_of_similar_lightness():
    """Sky blue against green (about the same luminance): luminance alone sees no edge."""
    a = np.full((120, 160, 4), 255, np.uint8)
    a[:60, :, :3] = (110, 170, 240)       # sky
    a[60:, :, :3] = (90, 170, 70)         # hills
    a[20:40, 100:140, :3] = (255, 205, 40)  # sun (lighter, yellow)
    ink = extract_lines(a)[..., 3] >= 128
    assert ink[57:63, 5:95].any(axis=0).all()          # the horizon, everywhere along it
    assert ink[17:23, 105:135].any(axis=0).all() and ink[25:35, 97:103].any(axis=1).all()   # the sun's border
    assert not ink[5:15, 5:90].any() and not ink[75:115, 5:155].any()   # flat colors: no ink
    # One line, not a double edge: at most 3 px of ink across the horizon.
    assert ink[50:70, 50].sum() <= 3


def test_bench_examples_recovers_every_color_edge(capsys):
    from bench.lines_quality import main as bench_main
    bench_main(["--examples"])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    n = int(out.split()[1])
    assert out.startswith(f"examples: {n} color boundaries, {n} recovered"), out
