"""The bundled open weights (krita_alac/models/alac-open): the default model, and they follow hints."""
import json
import os

import numpy as np
import pytest

from krita_alac.engine import store
from krita_alac.engine.registry import Engines, resolve
from krita_alac.engine.flats import compute_flats
from krita_alac.engine.imaging import read_rgba
from krita_alac.engine.request import ColorizeRequest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(store.BUNDLED_DIR, "alac-open")


@pytest.fixture
def bundled(monkeypatch, store_home):
    monkeypatch.setenv("KRITA_ALAC_BUNDLED", store.BUNDLED_DIR)


@pytest.fixture(scope="module")
def example():
    return (read_rgba(os.path.join(ROOT, "examples", "lineart.png")),
            read_rgba(os.path.join(ROOT, "examples", "hints.png")))


def test_model_folder_is_complete():
    with open(os.path.join(FOLDER, "model.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["id"] == "alac-open" and meta["kind"] == "alacgan" and meta["snap"] is True
    onnx_path = os.path.join(FOLDER, meta["onnx"])
    assert os.path.getsize(onnx_path) <= 30 * 2 ** 20
    import hashlib
    with open(onnx_path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == meta["sha256"]
    card = open(os.path.join(FOLDER, "MODEL_CARD.md"), encoding="utf-8").read()
    assert f"step {meta['training_step']}" in card       # the card describes the weights that ship


def test_open_weights_are_the_default_and_snap_to_flats(bundled, example):
    lines, hints = example
    spec = resolve("auto")
    assert spec.label == "AlacGAN (alac-open)" and spec.snap
    res = Engines().colorize(ColorizeRequest(lines=lines, hints=hints))
    assert res.engine == spec.label + " + flats and shading" and res.size == 256 and res.compose == "shade"
    snapped = Engines().colorize(ColorizeRequest(lines=lines, hints=hints, snap=True))
    assert snapped.engine == spec.label + " + flats"
    f = compute_flats(lines, hints)
    hinted = np.flatnonzero(f.hinted)
    assert len(hinted) >= 3
    for r in hinted:
        px = snapped.rgba[f.labels == r]
        assert (px == f.colors[r]).all(), r              # snapped: exactly the hint color
        px = res.rgba[f.labels == r].astype(int)
        # The default: the hint color shaded by at most the composition's clamp, centred on it.
        assert np.abs(px - f.colors[r]).max() <= 16, r
        assert np.abs(np.median(px, axis=0) - f.colors[r]).max() <= 3, r


def test_open_weights_follow_the_hints(bundled, example):
    """In each hinted region the network's own colors move towards the hint color."""
    lines, hints = example
    eng = Engines()
    with_hints = eng.colorize(ColorizeRequest(lines=lines, hints=hints, snap=False)).rgba[..., :3].astype(float)
    without = eng.colorize(ColorizeRequest(lines=lines, hints=None, snap=False)).rgba[..., :3].astype(float)
    f = compute_flats(lines, hints)
    closer = []
    for r in np.flatnonzero(f.hinted):
        m = f.labels == r
        target = f.colors[r][:3].astype(float)
        d_with = np.abs(with_hints[m] - target).mean()
        d_without = np.abs(without[m] - target).mean()
        closer.append(d_with < d_without)
    assert np.mean(closer) >= 0.75, closer


CYCLE = os.path.join(ROOT, "krita_alac", "models", "cycle-open")


def test_bundled_cycle_open_draws_outlines_and_tints_closed_shapes():
    """The shipped cycle pair: its files are the ones model.json names, the line generator inks
    a drawn outline and not the fill or the paper, and Auto colors tints the inside of a closed
    shape while the paper far from it stays light."""
    from krita_alac.engine import store
    from krita_alac.engine.image2image import auto_colors, neural_lines
    m = store.read_model(CYCLE)
    assert m.meta["kind"] == "image2image" and m.meta["lines"] == "cycle-open-lines.onnx"
    assert store.sha256_file(m.onnx) == m.meta["sha256"]
    assert store.sha256_file(os.path.join(CYCLE, m.meta["lines"])) == m.meta["sha256_lines"]
    pic = np.full((256, 256, 4), 255, np.uint8)
    pic[64:192, 64:192, :3] = (200, 40, 40)
    for sl in (np.s_[64:70, 64:192], np.s_[186:192, 64:192], np.s_[64:192, 64:70], np.s_[64:192, 186:192]):
        pic[sl][..., :3] = 0
    ink = neural_lines(pic, os.path.join(CYCLE, m.meta["lines"]), size=256, backend="onnx", device="cpu")[..., 3]
    assert ink[64:70, 90:160].mean() > 128 and ink[186:192, 90:160].mean() > 128     # the outline
    assert ink[100:150, 100:150].mean() < 40 and ink[5:40, 5:40].mean() < 40          # fill, paper
    lines = np.zeros_like(pic)
    lines[..., 3] = np.where(pic[..., 0] == 0, 255, 0)
    colors = auto_colors(lines, m.onnx, size=256, backend="onnx", device="cpu")[..., :3].astype(float)
    inside, paper = colors[100:150, 100:150].mean(), colors[5:30, 5:30].mean()
    assert paper > 200 and inside < paper - 10, (inside, paper)
